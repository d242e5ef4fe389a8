"""Step 5 of the grading path: show the results (terminal tables) and write them (JSON).

Files are written atomically (a temporary file renamed into place), so an interrupted run
never leaves half a report behind. Names from outside (tests with their parametrize ids such
as ``test_dtype_is_kept[float32]``, submissions) go into tables as ``Text``, never as a plain
string: rich reads ``[float32]`` in a string as a style tag and drops it.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ..course.load import Course
from ..feedback import check_view
from .results import SubmissionResult, document

STATUS_STYLE = check_view.STYLE


def console(**kwargs) -> Console:
    """A console for reports: the terminal's width, or a wide page when writing to a file or pipe."""
    import sys

    if not sys.stdout.isatty() and "width" not in kwargs:
        kwargs["width"] = 160
    return Console(**kwargs)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomically(path: str | Path, text: str | bytes) -> None:
    """Write ``text`` (or bytes: a PNG) to ``path`` whole or not at all, with the permissions of a normal file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would keep TAs and a web server out
        with (os.fdopen(fd, "wb") if isinstance(text, bytes) else os.fdopen(fd, "w", encoding="utf-8")) as out:
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def to_json(results: list[SubmissionResult], device: dict | None = None, course: dict | None = None) -> str:
    return report_text(document(results, device, course))


def report_text(report: dict) -> str:
    """The JSON report as text: one submission per line under an indented top level.

    ``json.dumps(..., indent=2)`` throughout would take json's pure-Python encoder (its C one
    does no indenting): 19 s for a class of 5,000, against well under 1 s this way."""
    rows = "".join(f"\n    {json.dumps(row)}," for row in report["submissions"]).rstrip(",")
    rest = "".join(f",\n  {json.dumps(key)}: {json.dumps(value)}" for key, value in report.items() if key != "submissions")
    close = "\n  ]" if rows else "]"
    return f'{{\n  "submissions": [{rows}{close}{rest}\n}}\n'


def _points(score: float, max_score: float) -> str:
    return f"{score:g}/{max_score:g}"


def gradebook(course: Course, results: list[SubmissionResult]) -> Table:
    """One row per submission, one column per exercise in course.yaml order."""
    table = Table(title=f"{course.title}: gradebook", title_justify="left")
    table.add_column("submission", overflow="fold")
    for exercise in course.exercises:
        table.add_column(exercise.id, justify="right")
    table.add_column("total", justify="right", style="bold")
    table.add_column("notes", overflow="fold")
    for result in results:
        cells = []
        notes = []
        for ex in result.exercises:
            style = "green" if ex.complete else STATUS_STYLE.get(ex.status, "")
            cells.append(Text(f"{ex.score:.3g}", style=style))
            if ex.status not in ("passed", "failed"):
                notes.append(f"{ex.id}: {ex.status}")
        notes.extend(result.errors[:1])
        table.add_row(Text(result.submission), *cells, _points(round(result.score, 2), result.max_score),
                      Text("; ".join(notes)))
    return table


def details(result: SubmissionResult, *, show_hidden: bool = True) -> Table:
    """Every test of one submission with its status, and the message of each failure."""
    table = Table(title=Text(f"{result.submission}: {_points(round(result.score, 4), result.max_score)}"),
                  title_justify="left", show_lines=False)
    table.add_column("exercise")
    table.add_column("test", overflow="fold")
    table.add_column("points", justify="right")
    table.add_column("result", overflow="fold")
    for ex in result.exercises:
        for test in ex.tests:
            if test.hidden and not show_hidden:
                continue
            name = Text(test.name + (" (hidden)" if test.hidden else ""))
            table.add_row(Text(ex.id), name, f"{test.score:.3g}/{test.max_score:.3g}",
                          check_view.as_rich(check_view.case_lines(test), indent=""))
    return table


def print_grades(console: Console, course: Course, results: list[SubmissionResult], device: dict | None = None) -> None:
    if len(results) == 1:
        console.print(details(results[0]))
    console.print(gradebook(course, results))
    for result in results:
        for error in result.errors:
            console.print(f"[yellow]{escape(result.submission)}[/yellow]: {escape(error)}", highlight=False)
    protections = next((r.protections for r in results if r.protections), [])
    if protections:
        console.print(f"[dim]sandbox: {escape('; '.join(protections))}[/dim]", highlight=False)
    if device and device.get("used") == "cuda":
        console.print(f"[dim]device: CUDA ({escape(device.get('gpu', ''))}), TF32 off[/dim]", highlight=False)
    elif device and device.get("requested") == "cuda":
        console.print("[yellow]device: CPU; CUDA was requested: not verified on GPU[/yellow]")


def print_check(console: Console, result: SubmissionResult) -> None:
    """The student's view: one block per exercise, what failed and why, the score so far."""
    for ex in result.exercises:
        console.print(Text(f"{ex.id}  {ex.score:.3g}/{ex.max_score:g}", style="bold " + STATUS_STYLE.get(ex.status, "")))
        console.print(check_view.as_rich(check_view.exercise_lines(ex.tests)))
    for error in result.errors:
        console.print(f"[yellow]note:[/yellow] {escape(error)}", highlight=False)
    console.print(Text(f"score so far (public tests): {result.score:.4g}/{result.max_score:g}", style="bold"))
