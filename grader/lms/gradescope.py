"""Gradescope's autograder ``results.json`` for one submission.

Shape (Gradescope's specification): a top-level ``score`` (Gradescope shows it instead of
adding up the tests), ``output`` and ``tests``, each with ``name``, ``score``,
``max_score``, ``status`` (``passed``/``failed``), ``output`` and ``visibility``.

One entry per exercise and kind of test, in course.yaml order: ``softmax: public tests``
(visible at once: what ``python -m grader check`` shows) and ``softmax: hidden tests``
(course.yaml's ``feedback.hidden_tests``, by default ``after_published``). One entry per
exercise would show a hidden test's result in its score; one per test would be some 60
entries of 0.1429 points that do not add up. Each entry's output lists its tests as
``check`` does: a mark, the name, and for a failure the status, our message and hints.

Scores are rounded to 4 digits, as the CSV gradebook rounds them, and the entries add up
exactly to the total (the CLI's total): the parts of each exercise's points to its points, the
entries' scores to the submission's score. Where rounding each part alone would miss the sum,
the parts nearest to rounding the other way take the difference (largest remainder), one
0.0001 each.
"""
from __future__ import annotations

from ..course.load import Course
from ..feedback import check_view
from ..outputs.results import DIGITS, UNIT, CaseResult, SubmissionResult, apportion

def results_json(result: SubmissionResult, *, hidden_tests: str = Course.hidden_tests) -> dict:
    """The results.json of ``result``; ``hidden_tests`` is the hidden entries' visibility."""
    parts = []  # (name, tests, visibility, max_score units)
    for exercise in result.exercises:
        groups = [(f"{exercise.id}: public tests", [t for t in exercise.tests if not t.hidden], "visible"),
                  (f"{exercise.id}: hidden tests", [t for t in exercise.tests if t.hidden], hidden_tests)]
        groups = [g for g in groups if g[1]]
        maxima = apportion([sum(t.max_score for t in tests) for _, tests, _ in groups], exercise.max_score)
        parts += [(*group, cap) for group, cap in zip(groups, maxima)]
    scores = apportion([sum(t.score for t in tests) for _, tests, _, _ in parts], result.score,
                       caps=[cap for *_, cap in parts])
    tests = [{"name": name, "score": units / UNIT, "max_score": cap / UNIT,
              "status": "passed" if all(t.status == "passed" for t in cases) else "failed",
              "output": entry_output(cases), "visibility": visibility}
             for (name, cases, visibility, cap), units in zip(parts, scores)]
    notes = "Notes on your submission:\n" + "\n".join(f"- {e}" for e in result.errors) if result.errors else ""
    return {"score": round(result.score, DIGITS), "output": notes, "tests": tests,
            "visibility": "visible", "stdout_visibility": "hidden"}


def entry_output(tests: list[CaseResult]) -> str:
    """The entry's tests as ``check`` shows them (grader/feedback/check_view.py)."""
    return check_view.as_text(check_view.exercise_lines(tests), indent="")
