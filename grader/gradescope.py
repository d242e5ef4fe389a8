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

import math

from .course import Course
from .results import DIGITS, CaseResult, SubmissionResult

UNIT = 10 ** DIGITS  # 0.0001 points
MARK = {"passed": "✓", "not_implemented": "·"}


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
    """One line per test, as ``check`` prints them; a failure's message and hints below it."""
    if all(t.status == "not_implemented" for t in tests):
        return f"{MARK['not_implemented']} {tests[0].message}"  # every test says the same
    lines = []
    for test in tests:
        if test.status == "passed":
            lines.append(f"{MARK['passed']} {test.name}")
            continue
        lines.append(f"{MARK.get(test.status, '✗')} {test.name} ({test.status.replace('_', ' ')})")
        lines += [f"    {line}" for line in test.message.splitlines()]
        lines += [f"    hint: {hint}" for hint in test.hints]
    return "\n".join(lines)


def apportion(values: list[float], total: float, caps: list[int] | None = None) -> list[int]:
    """``values`` in whole units of 0.0001, adding up to ``total`` rounded to 4 digits: each is
    its value rounded down, plus one unit for those with the largest remainders, never past its
    cap (in units) when another can take it."""
    target = round(round(total, DIGITS) * UNIT)
    scaled = [v * UNIT for v in values]
    units = [math.floor(s + 1e-6) for s in scaled]  # 1e-6: float noise, as in 2.9999999999
    order = sorted((i for i, s in enumerate(scaled) if s - units[i] > 1e-6), key=lambda i: units[i] - scaled[i])
    under_cap = [i for i in order if caps is None or units[i] < caps[i]]
    for i in (under_cap + [i for i in order if i not in under_cap])[:max(0, target - sum(units))]:
        units[i] += 1
    return units
