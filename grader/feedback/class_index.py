"""The class overview beside the feedback reports: ``index.html`` in the report folder.

The score distribution (an HTML/CSS bar chart: no picture file, nothing to draw), each
exercise's mean and statuses, the tests failed most often and the most common mistakes
(all from grader/feedback/stats.py), and one row per submission linking to its report.
It is a page for staff: it lists every student's score. With ``audience="student"`` it leaves
hidden tests out of the failing tests and the mistakes, as the student reports do.
"""
from __future__ import annotations

import html
import statistics
from pathlib import Path

from .student_report import CSS, report_name
from ..outputs.gradebook_csv import status as submission_status
from ..outputs.terminal import write_atomically
from ..outputs.results import SubmissionResult
from .stats import compute, histogram

INDEX = "index.html"
TOP = 10


def write_class_index(results: list[SubmissionResult], folder: Path, audience: str = "staff") -> Path:
    """Write ``index.html`` for the class into ``folder`` (beside the reports); return its path."""
    folder = Path(folder)
    write_atomically(folder / INDEX, class_index_html(results, audience))
    return folder / INDEX


def _num(value: float) -> str:
    return f"{round(value, 2):g}"


def _chart(scores: list[float], max_score: float) -> str:
    """Vertical bars, one per tenth of the maximum score, each with its count on top."""
    bins = histogram(scores, max_score)
    widest = max((n for _, n in bins), default=0) or 1
    bars = []
    for label, n in bins:
        bars.append(f"<div class='bin' title='{html.escape(label)}: {n}'><span class='n'>{n}</span>"
                    f"<div class='bar' style='height:{85 * n / widest:.1f}%'></div>"
                    f"<span class='label'>{html.escape(label)}</span></div>")
    return (f"<div class='chart' role='img' aria-label='score distribution'>{''.join(bars)}</div>"
            f"<p class='axis'>score (out of {max_score:g}); bar: submissions in that range, the last one "
            "including full marks</p>")


def class_index_html(results: list[SubmissionResult], audience: str = "staff") -> str:
    e = html.escape
    stats = compute(results, include_hidden=audience != "student")
    ids = list(dict.fromkeys(ex.id for r in results for ex in r.exercises))
    full = sum(1 for r in results if r.max_score and r.score >= r.max_score - 1e-6)
    body = [f"<h1>Class overview <span class='total'>{stats.count} submission{'s' * (stats.count != 1)}</span></h1>",
            f"<p>mean <strong>{stats.mean:.2f}</strong>, median <strong>{stats.median:.2f}</strong> of "
            f"{stats.max_score:g}; full marks: {full}</p>",
            "<h2>Score distribution</h2>", _chart(stats.scores, stats.max_score)]

    body.append("<h2>Exercises</h2><table class='summary'><thead><tr><th>exercise</th><th class='num'>mean</th>"
                "<th class='num'>complete</th><th>statuses</th></tr></thead><tbody>")
    for exercise_id in ids:
        mine = [ex for r in results for ex in r.exercises if ex.id == exercise_id]
        top = max(ex.max_score for ex in mine)
        counts = ", ".join(f"{e(s.replace('_', ' '))}: {n}" for s, n in stats.statuses.get(exercise_id, {}).most_common())
        body.append(f"<tr><td>{e(exercise_id)}</td><td class='num'>{statistics.fmean(ex.score for ex in mine):.2f} / "
                    f"{top:g}</td><td class='num'>{sum(ex.complete for ex in mine)} of {len(mine)}</td>"
                    f"<td>{counts}</td></tr>")
    body.append("</tbody></table>")

    body.append("<h2>Tests failed most often</h2>")
    if stats.failure_rates:
        body.append("<table class='tests'><thead><tr><th>test</th><th class='num'>failed</th></tr></thead><tbody>")
        for key, rate, n in stats.failure_rates[:TOP]:
            hidden = " (hidden)" if key in stats.hidden else ""
            body.append(f"<tr><td><code>{e(key)}</code>{hidden}</td><td class='num'>{rate:.0%} ({n} of "
                        f"{round(n / rate)})</td></tr>")
        body.append("</tbody></table>")
    else:
        body.append("<p>No test failed.</p>")

    body.append("<h2>Most common mistakes</h2>")
    if stats.common_hints:
        body.append("<table class='tests'><thead><tr><th>mistake (the hint students got)</th>"
                    "<th class='num'>submissions</th></tr></thead><tbody>")
        for hint, n in stats.common_hints:
            exercise_id, _, text = hint.partition(": ")
            body.append(f"<tr><td><strong>{e(exercise_id)}</strong>: {e(text)}</td><td class='num'>{n}</td></tr>")
        body.append("</tbody></table>")
    else:
        body.append("<p>No hint was given.</p>")

    body.append("<h2>Submissions</h2><table class='tests students'><thead><tr><th>submission</th>"
                + "".join(f"<th class='num'>{e(i)}</th>" for i in ids)
                + "<th class='num'>total</th><th>status</th></tr></thead><tbody>")
    for result in results:
        scores = {ex.id: ex for ex in result.exercises}
        cells = "".join(f"<td class='num{' done' if i in scores and scores[i].complete else ''}'>"
                        f"{_num(scores[i].score) if i in scores else '-'}</td>" for i in ids)
        body.append(f"<tr><td><a href='{e(report_name(result.submission))}.html'>{e(result.submission)}</a></td>"
                    f"{cells}<td class='num'><strong>{_num(result.score)}</strong> / {result.max_score:g}</td>"
                    f"<td>{e(submission_status(result))}</td></tr>")
    body.append("</tbody></table>")
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'><title>Class overview</title>"
            f"<style>{CSS}{_CHART_CSS}</style></head><body>" + "\n".join(body) + "</body></html>\n")


_CHART_CSS = """
.chart { display: flex; align-items: stretch; gap: .3rem; height: 12rem; max-width: 40rem; padding-top: 1.2rem;
         border-bottom: 1px solid #999; }
.bin { flex: 1; display: flex; flex-direction: column; justify-content: flex-end; align-items: center; position: relative; }
.bin .bar { width: 100%; background: #4c72b0; border-radius: .15rem .15rem 0 0; }
.bin .n { font-size: .8rem; color: #333; }
.bin .label { position: absolute; bottom: -1.3rem; font-size: .7rem; color: #555; white-space: nowrap; }
.axis { color: #555; font-size: .85rem; margin-top: 1.7rem; }
td.done { color: #1a7f37; }
"""
