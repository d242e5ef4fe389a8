"""Gradescope's autograder ``results.json`` for one submission.

Shape (Gradescope's specification): ``score``, ``output``, and ``tests`` with ``name``,
``score``, ``max_score``, ``status`` (``passed``/``failed``), ``output`` and ``visibility``.
Hidden tests are ``hidden`` there too: students never see them.
"""
from __future__ import annotations

from .results import SubmissionResult


def results_json(result: SubmissionResult) -> dict:
    tests = []
    for exercise in result.exercises:
        for test in exercise.tests:
            output = test.message if test.status != "passed" else ""
            if test.hints:
                output += "".join(f"\nHint: {h}" for h in test.hints)
            tests.append({"name": f"{exercise.id}: {test.name}", "score": round(test.score, 4),
                          "max_score": round(test.max_score, 4),
                          "status": "passed" if test.status == "passed" else "failed",
                          "output": output.strip() or (test.status if test.status != "passed" else ""),
                          "visibility": "hidden" if test.hidden else "visible"})
    return {"score": round(result.score, 4), "output": "\n".join(result.errors), "tests": tests,
            "visibility": "visible", "stdout_visibility": "hidden"}
