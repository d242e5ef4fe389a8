"""Readable feedback reports, one per submission: Markdown, and HTML that opens offline.

A report opens with the score summary (each exercise's score, status and tests passed, then
the total). Each exercise then gives its hints once each, with the student's line when the
hint quotes one (not once per failing test), one picture of the most telling failing case
(the expected values, the student's and their difference), the failing tests with their
messages, and the names of the passing ones.

Pictures are stored once: PNG files in ``pictures/`` beside the reports, which the HTML and
the Markdown both reference by relative path. They are drawn on one reused matplotlib
figure with a fixed layout (no ``bbox_inches="tight"``, which draws each figure twice).
``audience="student"`` leaves out what hidden tests saw: their messages, hints and pictures.
"""
from __future__ import annotations

import html
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..outputs.gradebook_csv import student_id
from ..outputs.terminal import write_atomically
from ..outputs.results import CaseResult, ExerciseResult, SubmissionResult
from ..run.items import DEFAULT_AXES
from .stats import split_hint

AUDIENCES = ("staff", "student")
HIDDEN_NOTE = "a hidden test: its details are not shown."
PICTURES = "pictures"
"""The report folder's subfolder holding the heatmaps, ``<student>-<exercise>.png``."""


def report_name(submission: str) -> str:
    """The file stem of a submission's reports: ``<stem>.html``, ``<stem>.md``."""
    return _slug(student_id(submission))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:80]


def _num(value: float) -> str:
    return f"{round(value, 2):g}"  # 4.79, 2, 0.13: the JSON report has the unrounded scores


# ---------------------------------------------------------------- pictures


class _Heatmaps:
    """One matplotlib figure drawn again for every picture: three panels (expected, yours,
    yours - expected) at fixed places, so a picture costs one draw and no layout pass."""

    UNDER = "#d62728"  # below the expected values' range, or not a number
    OVER = "#ff9896"  # above it

    def __init__(self) -> None:
        import matplotlib
        import numpy as np
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator

        self.np = np
        self.figure = Figure(figsize=(9, 3.0), dpi=100)
        FigureCanvasAgg(self.figure)
        values = matplotlib.colormaps["viridis"].with_extremes(under=self.UNDER, over=self.OVER, bad=self.UNDER)
        diverging = matplotlib.colormaps["RdBu_r"].with_extremes(bad="#bbbbbb")  # not a number: no difference to show
        self.axes, self.images = [], []
        for left, name, cmap in ((0.06, "expected", values), (0.31, "yours", values),
                                 (0.645, "yours - expected", diverging)):
            ax = self.figure.add_axes((left, 0.13, 0.2, 0.66))
            image = ax.imshow(np.zeros((2, 2)), cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")
            ax.set_title(name, fontsize=10)
            ax.tick_params(labelsize=7)
            if self.axes:  # the rows are labelled once, on the left (each tick label is a text to draw)
                ax.tick_params(labelleft=False)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            self.axes.append(ax)
            self.images.append(image)
        self.bars = []
        for image, left in ((self.images[1], 0.525), (self.images[2], 0.86)):
            bar = self.figure.colorbar(image, cax=self.figure.add_axes((left, 0.13, 0.012, 0.66)), extend="both")
            bar.ax.tick_params(labelsize=7)
            self.bars.append(bar)
        self.title = self.figure.suptitle("", fontsize=10, y=0.97)

    def draw(self, title: str, expected: list, got: list, axes: tuple[str, str]) -> bytes:
        np = self.np
        expected, got = _values(expected), _values(got)
        low, high = _scale(expected)
        width = high - low
        difference = np.clip(got - expected, -width, width)  # NaN where either is not a number
        rows, cols = expected.shape
        for ax, image, data in zip(self.axes, self.images, (expected, got, difference)):
            image.set_data(data)
            image.set_extent((-0.5, cols - 0.5, rows - 0.5, -0.5))
            ax.set_xlim(-0.5, cols - 0.5)
            ax.set_ylim(rows - 0.5, -0.5)
            ax.set_xlabel(axes[1], fontsize=8, labelpad=1)
        self.axes[0].set_ylabel(axes[0], fontsize=8, labelpad=1)
        for image in self.images[:2]:
            image.set_clim(low, high)
        self.images[2].set_clim(-width, width)
        self.bars[0].set_ticks([low, (low + high) / 2, high])
        self.bars[1].set_ticks([-width, 0.0, width])
        self.title.set_text(title)
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png")
        return buffer.getvalue()


def _values(cells: list):
    """A figure's 2-D list as a float array, NaN where it holds None (not a number)."""
    import numpy as np

    return np.array([[np.nan if v is None else v for v in row] for row in cells], dtype=float)


def _scale(expected) -> tuple[float, float]:
    """The colour scale of a picture (``expected`` an array from ``_values``): 0 to 1 when the
    expected values lie there (weights, probabilities), else their own range; one value alone,
    that value to one more."""
    import numpy as np

    finite = expected[np.isfinite(expected)]
    if finite.size == 0 or (finite.min() >= 0.0 and finite.max() <= 1.0):
        return 0.0, 1.0
    low, high = float(finite.min()), float(finite.max())
    return (low, high) if high > low else (low, low + 1.0)


_heatmaps: _Heatmaps | None = None


def warm_up() -> None:
    """Import matplotlib and build the figure now (about 0.5 s), so that the first picture
    costs one draw; a long-lived process that forks report writers calls it once."""
    global _heatmaps
    if _heatmaps is None:
        import matplotlib

        matplotlib.use("Agg")
        _heatmaps = _Heatmaps()


def heatmap_png(figure: tuple) -> bytes:
    """A failed test's figure ``(title, expected, got[, {"axes": [rows, columns]}])``: the
    expected values, the student's and their difference side by side."""
    warm_up()
    title, expected, got, *how = figure
    axes = tuple((how[0] if how else {}).get("axes") or DEFAULT_AXES)
    return _heatmaps.draw(title, expected, got, axes)


def _difference(figure: tuple) -> float:
    """How far the student's values are from the expected ones, summed over the cells, each
    as a share of the picture's scale (at most 1; a value that is not a number where one was
    expected counts 1: a picture all NaN shows less than one partly right)."""
    expected, got = figure[1], figure[2]
    low, high = _scale(_values(expected))
    return sum((0.0 if e is None and g is None else 1.0) if e is None or g is None else min(abs(g - e) / (high - low), 1.0)
               for row_e, row_g in zip(expected, got) for e, g in zip(row_e, row_g))


def _out_of_range(figure: tuple) -> tuple[float, float, bool, bool]:
    """(the scale's low end, its high end, a value of the student's below it or not a number,
    one above it)."""
    low, high = _scale(_values(figure[1]))
    cells = [v for row in figure[2] for v in row]
    return low, high, any(v is None or v < low for v in cells), any(v is not None and v > high for v in cells)


# ---------------------------------------------------------------- what a report shows


@dataclass
class Hint:
    text: str
    """The hint without the student's quoted line."""
    lines: list[tuple[str, str]] = field(default_factory=list)
    """(where: "line 6" or "cell [4], line 3", the student's code) that the hint quotes."""
    tests: int = 0
    """How many failing tests gave it."""


@dataclass
class Picture:
    file: str
    """Relative to the report folder: ``pictures/<student>-<exercise>.png``."""
    title: str
    test: str
    low: float
    """The colour scale: ``low`` to ``high`` (see ``_scale``)."""
    high: float
    below: bool
    """A value of the student's below the scale, or not a number (red)."""
    above: bool


@dataclass
class ExerciseView:
    """One exercise as a report shows it to its audience."""

    exercise: ExerciseResult
    failing: list[tuple[CaseResult, str, list[int]]]
    """(test, the message its audience may see, numbers of its hints in ``hints``, from 1)."""
    passed: list[CaseResult]
    hints: list[Hint]
    picture: Picture | None = None
    figure: tuple | None = None

    @property
    def status(self) -> str:
        return "passed" if self.exercise.complete else self.exercise.status


def _exercise_view(exercise: ExerciseResult, audience: str) -> ExerciseView:
    view = ExerciseView(exercise, [], [], [])
    by_text: dict[str, Hint] = {}
    candidates = []
    for test in exercise.tests:
        if test.status == "passed":
            view.passed.append(test)
            continue
        if test.hidden and audience == "student":
            view.failing.append((test, HIDDEN_NOTE, []))
            continue
        numbers = []
        for raw in test.hints:
            text, where, code = split_hint(raw)
            hint = by_text.setdefault(text, Hint(text))
            if hint not in view.hints:
                view.hints.append(hint)
            if where is not None and (where, code) not in hint.lines:
                hint.lines.append((where, code))
            hint.tests += 1
            number = view.hints.index(hint) + 1
            if number not in numbers:
                numbers.append(number)
        view.failing.append((test, test.message, numbers))
        candidates += [(test, f) for f in test.figures]
    if candidates:
        # The most telling case: one that got the hint most tests got (its picture shows that
        # mistake), a public test (the student can rerun it), and the farthest from the expected.
        top = max(view.hints, key=lambda h: h.tests).text if view.hints else None
        test, view.figure = max(candidates, key=lambda c: (top is None or top in {split_hint(h)[0] for h in c[0].hints},
                                                           not c[0].hidden, _difference(c[1])))  # the first of equals
        view.picture = Picture("", view.figure[0], test.name, *_out_of_range(view.figure))
    return view


def _draw(views: list[ExerciseView], folder: Path, name: str) -> None:
    """Write each exercise's picture once, and remove the one a previous run left for an
    exercise that has none now."""
    for view in views:
        relative = f"{PICTURES}/{name}-{_slug(view.exercise.id)}.png"
        if view.picture is None:
            (folder / relative).unlink(missing_ok=True)
            continue
        write_atomically(folder / relative, heatmap_png(view.figure))
        view.picture.file = relative


def write_report(result: SubmissionResult, folder: Path, *, audience: str = "staff") -> Path:
    """Write ``<student>.md`` and ``<student>.html`` (and their pictures); return the HTML path."""
    folder = Path(folder)
    name = report_name(result.submission)
    views = [_exercise_view(e, audience) for e in result.exercises]
    _draw(views, folder, name)
    write_atomically(folder / f"{name}.md", _markdown(result, views))
    write_atomically(folder / f"{name}.html", _html(result, views))
    return folder / f"{name}.html"


def _tests_passed(view: ExerciseView) -> str:
    return f"{len(view.passed)} of {len(view.exercise.tests)}"


def _picture_caption(picture: Picture) -> str:
    notes = ["left: expected", "middle: yours", "right: yours - expected"]
    if picture.below:
        notes.append(f"red: below {picture.low:.3g} or not a number (grey on the right)")
    if picture.above:
        notes.append(f"pink: above {picture.high:.3g}")
    return "; ".join(notes)


# ---------------------------------------------------------------- Markdown


def _code(text: str) -> str:
    fence = "``" if "`" in text else "`"
    return f"{fence}{text}{fence}" if fence == "`" else f"{fence} {text} {fence}"


def _md_escape(text: str) -> str:
    return re.sub(r"([\[\]\\])", r"\\\1", text)


def _markdown(result: SubmissionResult, views: list[ExerciseView]) -> str:
    md = [f"# {result.submission}: {_num(result.score)} / {result.max_score:g}", "",
          "| exercise | score | status | tests passed |", "|---|---:|---|---:|"]
    for view in views:
        ex = view.exercise
        md.append(f"| {ex.id} | {_num(ex.score)} / {ex.max_score:g} | {view.status} | {_tests_passed(view)} |")
    md.append(f"| **total** | **{_num(result.score)} / {result.max_score:g}** | | |")
    md.append("")
    for error in result.errors:
        md.append(f"> {error}")
    for view in views:
        ex = view.exercise
        md += ["", f"## {ex.id}: {_num(ex.score)} / {ex.max_score:g} ({view.status})", ""]
        for number, hint in enumerate(view.hints, start=1):
            md.append(f"**Hint {number}** (from {hint.tests} failing test{'s' * (hint.tests != 1)}): {hint.text}")
            for where, code in hint.lines:
                md.append(f"- your {where}: {_code(code)}")
            md.append("")
        if view.picture is not None:
            picture = view.picture
            md += [f"![{_md_escape(picture.title)}]({picture.file})", "",
                   f"*{_md_escape(_picture_caption(picture))}*", ""]
        for test, message, numbers in view.failing:
            label = test.name + (" (hidden)" if test.hidden else "")
            refs = f" (hint {', '.join(map(str, numbers))})" if numbers else ""
            md.append(f"- ✗ `{label}`: **{test.status}**" + (f": {message}" if message else "") + refs)
        if view.passed:
            names = ", ".join(f"`{t.name}`" + (" (hidden)" if t.hidden else "") for t in view.passed)
            md.append(f"- ✓ passed ({len(view.passed)}): {names}")
    return "\n".join(md) + "\n"


# ---------------------------------------------------------------- HTML


def _status_badge(status: str) -> str:
    return f"<span class='badge {html.escape(status)}'>{html.escape(status.replace('_', ' '))}</span>"


def _html(result: SubmissionResult, views: list[ExerciseView]) -> str:
    e = html.escape
    body = [f"<h1>{e(result.submission)} <span class='total'>{_num(result.score)} / {result.max_score:g}</span></h1>",
            "<table class='summary'><thead><tr><th>exercise</th><th>score</th><th>status</th><th>tests passed</th>"
            "</tr></thead><tbody>"]
    for view in views:
        ex = view.exercise
        body.append(f"<tr><td><a href='#{e(ex.id)}'>{e(ex.id)}</a></td><td class='num'>{_num(ex.score)} / "
                    f"{ex.max_score:g}</td><td>{_status_badge(view.status)}</td><td class='num'>{_tests_passed(view)}</td></tr>")
    body.append(f"</tbody><tfoot><tr><td>total</td><td class='num'>{_num(result.score)} / {result.max_score:g}</td>"
                "<td></td><td></td></tr></tfoot></table>")
    for error in result.errors:
        body.append(f"<p class='note'>{e(error)}</p>")
    for view in views:
        ex = view.exercise
        body.append(f"<section id='{e(ex.id)}'><h2>{e(ex.id)} <span class='score'>{_num(ex.score)} / "
                    f"{ex.max_score:g}</span> {_status_badge(view.status)}</h2>")
        for number, hint in enumerate(view.hints, start=1):
            lines = "".join(f"<div class='line'>your {e(where)}: <code>{e(code)}</code></div>" for where, code in hint.lines)
            body.append(f"<div class='hint'><div><strong>Hint {number}</strong> <span class='count'>(from {hint.tests} "
                        f"failing test{'s' * (hint.tests != 1)})</span>: {e(hint.text)}</div>{lines}</div>")
        if view.picture is not None:
            picture = view.picture
            body.append(f"<figure><img src='{e(picture.file)}' alt='{e(picture.title)}' width='900' height='300'>"
                        f"<figcaption>{e(_picture_caption(picture))}</figcaption></figure>")
        if view.failing:
            body.append("<table class='tests failing'>")
            for test, message, numbers in view.failing:
                label = test.name + (" (hidden)" if test.hidden else "")
                refs = "".join(f" <span class='ref'>hint {n}</span>" for n in numbers)
                body.append(f"<tr><td class='mark'>✗</td><td class='name'><code>{e(label)}</code></td>"
                            f"<td>{_status_badge(test.status)}</td><td>{e(message)}{refs}</td></tr>")
            body.append("</table>")
        if view.passed:
            names = ", ".join(f"<code>{e(t.name)}</code>" + (" (hidden)" if t.hidden else "") for t in view.passed)
            body.append(f"<p class='passed'><span class='mark'>✓</span> passed ({len(view.passed)}): {names}</p>")
        body.append("</section>")
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{e(result.submission)}: {_num(result.score)} / {result.max_score:g}</title><style>{CSS}</style>"
            "</head><body>" + "\n".join(body) + "</body></html>\n")


CSS = """
body { font-family: system-ui, sans-serif; max-width: 62rem; margin: 2rem auto; padding: 0 1rem; color: #222; line-height: 1.4; }
h1 .total, h2 .score { font-weight: normal; color: #555; margin-left: .4rem; }
h2 { margin-top: 2.2rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
table { border-collapse: collapse; margin-bottom: 1rem; }
td, th { border-top: 1px solid #ddd; padding: .35rem .6rem; vertical-align: top; text-align: left; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.summary tfoot td { font-weight: bold; border-top: 2px solid #999; }
table.tests { width: 100%; } table.tests td.name { white-space: nowrap; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: .88em; }
.badge { display: inline-block; padding: 0 .45rem; border-radius: .7rem; font-size: .8rem; font-weight: normal;
         background: #eee; color: #333; white-space: nowrap; vertical-align: middle; }
.badge.passed { background: #dafbe1; color: #1a7f37; } .badge.failed, .badge.error { background: #ffebe9; color: #cf222e; }
.badge.forbidden { background: #fff8c5; color: #7d4e00; } .badge.timeout, .badge.crashed, .badge.memory { background: #fbefff; color: #8250df; }
.mark { color: #cf222e; } .passed .mark { color: #1a7f37; } p.passed { color: #444; font-size: .92rem; }
.hint { background: #ddf4ff; border-left: 4px solid #0969da; padding: .5rem .8rem; margin: .6rem 0; }
.hint .count { color: #555; font-size: .9rem; } .hint .line { margin-top: .3rem; }
.hint code { background: #fff; padding: .05rem .3rem; border-radius: .2rem; }
.ref { color: #0969da; font-size: .85rem; white-space: nowrap; }
.note { background: #fff8c5; padding: .5rem; }
figure { margin: .8rem 0; } figure img { max-width: 100%; height: auto; } figcaption { color: #555; font-size: .9rem; }
@media (max-width: 40rem) { body { margin: 1rem auto; } td, th { padding: .3rem .3rem; }
  table.failing, table.failing tbody { display: block; }
  table.failing tr { display: grid; grid-template-columns: 1.2rem 1fr auto; border-top: 1px solid #ddd; }
  table.failing td { border: 0; } table.failing td.name { white-space: normal; overflow-wrap: anywhere; }
  table.failing td:last-child { grid-column: 2 / -1; padding-top: 0; } }
"""
