"""The CSV gradebook: one row per submission, one column per exercise in course.yaml order."""
from __future__ import annotations

import csv
import io
from pathlib import Path

from ..course.load import Course
from .results import DIGITS, UNIT, SubmissionResult, apportion


def student_id(submission: str) -> str:
    """The student id is the file or folder name, without .zip or .ipynb."""
    name = Path(submission.rstrip("/")).name
    for suffix in (".zip", ".ipynb"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def status(result: SubmissionResult) -> str:
    """``complete`` when every point was earned, else what went wrong per exercise."""
    problems = [f"{e.id}: {e.status}" for e in result.exercises if not e.complete]
    if result.errors:
        problems.append("see errors")
    return "; ".join(problems) or "complete"


def to_csv(course: Course, results: list[SubmissionResult]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["student", *course.ids, "total", "max_score", "status"])
    for result in results:
        # rounded so that the columns add up to the total (largest remainder: results.apportion)
        units = apportion([e.score for e in result.exercises], result.score)
        scores = {e.id: u / UNIT for e, u in zip(result.exercises, units)}
        writer.writerow([student_id(result.submission), *(scores.get(i, 0) for i in course.ids),
                         round(result.score, DIGITS), round(result.max_score, DIGITS), status(result)])
    return out.getvalue()
