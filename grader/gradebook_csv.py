"""The CSV gradebook: one row per submission, one column per exercise in course.yaml order."""
from __future__ import annotations

import csv
import io
from pathlib import Path

from .course import Course
from .results import SubmissionResult


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
        scores = {e.id: round(e.score, 4) for e in result.exercises}
        writer.writerow([student_id(result.submission), *(scores.get(i, 0) for i in course.ids),
                         round(result.score, 4), round(result.max_score, 4), status(result)])
    return out.getvalue()
