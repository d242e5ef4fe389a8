"""Readable feedback reports, one per submission: Markdown, and HTML that opens offline.

Each exercise's tests with their status, message and hints; for failing softmax and
attention cases, heatmaps of the expected and the student's weights side by side
(matplotlib, PNG embedded in the HTML as data: URIs, written beside the Markdown).
``audience="student"`` leaves out what hidden tests saw: their messages and pictures.
"""
from __future__ import annotations

import base64
import html
import io
import re
from pathlib import Path

from .gradebook_csv import student_id
from .report import write_atomically
from .results import CaseResult, SubmissionResult

AUDIENCES = ("staff", "student")
HIDDEN_NOTE = "a hidden test: its details are not shown."


def heatmap_png(expected: list, got: list, title: str) -> bytes:
    """Two heatmaps side by side: the expected weights and the student's (queries x keys)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 2, figsize=(7, 3.2), dpi=110)
    for ax, data, name in zip(axes, (expected, got), ("expected", "yours")):
        image = ax.imshow(data, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
        ax.set_title(name)
        ax.set_xlabel("key")
        ax.set_ylabel("query")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    fig.colorbar(image, ax=list(axes), shrink=0.8)
    fig.suptitle(title, fontsize=9)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def _visible(test: CaseResult, audience: str) -> tuple[str, list[str], list]:
    if test.hidden and audience == "student" and test.status != "passed":
        return HIDDEN_NOTE, [], []
    return test.message, list(test.hints), list(test.figures)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:80]


def write_report(result: SubmissionResult, folder: Path, *, audience: str = "staff") -> Path:
    """Write ``<student>.md`` and ``<student>.html`` (and the Markdown's PNGs); return the HTML path."""
    name = _slug(student_id(result.submission))
    md = [f"# {result.submission}: {result.score:.4g} / {result.max_score:g}", ""]
    body = [f"<h1>{html.escape(result.submission)}: {result.score:.4g} / {result.max_score:g}</h1>"]
    for error in result.errors:
        md.append(f"> {error}")
        body.append(f"<p class='note'>{html.escape(error)}</p>")
    for exercise in result.exercises:
        md += ["", f"## {exercise.id}: {exercise.score:.4g} / {exercise.max_score:g}", ""]
        body.append(f"<h2>{html.escape(exercise.id)}: {exercise.score:.4g} / {exercise.max_score:g}</h2><table>")
        for test in exercise.tests:
            message, hints, figures = _visible(test, audience)
            mark = "✓" if test.status == "passed" else "✗"
            label = test.name + (" (hidden)" if test.hidden else "")
            md.append(f"- {mark} `{label}`: **{test.status}**" + (f": {message}" if test.status != "passed" and message else ""))
            cells = html.escape(message) if test.status != "passed" else ""
            for hint in hints:
                md.append(f"  - hint: {hint}")
                cells += f"<div class='hint'>hint: {html.escape(hint)}</div>"
            for index, (title, expected, got) in enumerate(figures):
                png = heatmap_png(expected, got, title)
                file = folder / f"{name}-{_slug(exercise.id)}-{_slug(test.name)}-{index}.png"
                file.parent.mkdir(parents=True, exist_ok=True)
                file.write_bytes(png)
                md.append(f"  ![{title}]({file.name})")
                cells += (f"<div><img alt='{html.escape(title)}' src='data:image/png;base64,"
                          f"{base64.b64encode(png).decode()}'></div>")
            body.append(f"<tr class='{html.escape(test.status)}'><td>{mark}</td><td>{html.escape(label)}</td>"
                        f"<td>{html.escape(test.status)}</td><td>{cells}</td></tr>")
        body.append("</table>")
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>"
            f"{html.escape(result.submission)}</title><style>{_CSS}</style></head><body>"
            + "\n".join(body) + "</body></html>\n")
    write_atomically(folder / f"{name}.md", "\n".join(md) + "\n")
    write_atomically(folder / f"{name}.html", page)
    return folder / f"{name}.html"


_CSS = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; color: #222; }
table { border-collapse: collapse; width: 100%; margin-bottom: 1.5rem; }
td { border-top: 1px solid #ddd; padding: .35rem .5rem; vertical-align: top; }
tr.passed td:first-child { color: #1a7f37; } tr:not(.passed) td:first-child { color: #cf222e; }
.hint { color: #0550ae; margin-top: .3rem; } .note { background: #fff8c5; padding: .5rem; }
img { max-width: 100%; margin-top: .4rem; }
"""
