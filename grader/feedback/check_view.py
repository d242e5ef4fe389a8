"""The one rendering of tests for a student: a mark and a name per test, the message of a
failure under it, each hint once per exercise, after its tests.

``python -m grader check``, the notebook's ``check(...)`` (text and HTML), Gradescope's
entries and otter's test cases all show what ``exercise_lines`` (a group of tests) or
``case_lines`` (one test) give, in their medium: ``as_text``, ``as_rich`` or ``as_html``.

    softmax  2.62/3                                 <- the caller's title
      ✓ test_rows_sum_to_one                        <- Line("test", "passed", name)
      ✗ test_large_logits_do_not_overflow (failed)  <- Line("test", "failed", name)
          softmax of logits around 1e4: ...         <- Line("message", "failed", message)
      hint: Your softmax takes exp but ...          <- Line("hint", "failed", hint)

An exercise whose tests all failed the same way (not written yet, forbidden, an import that
fails) is one message line, not the same sentence under every test.
"""
from __future__ import annotations

import html
from typing import TYPE_CHECKING, NamedTuple, Sequence

from ..outputs.results import CaseResult, same_failure

if TYPE_CHECKING:
    from rich.text import Text

MARK = {"passed": "✓", "not_implemented": "·"}  # any other status: ✗
STYLE = {"passed": "green", "failed": "red", "error": "red", "timeout": "magenta", "crashed": "magenta",
         "memory": "magenta", "forbidden": "yellow", "not_implemented": "dim", "skipped": "dim"}  # terminal
COLOUR = {"passed": "#1a7f37", "not_implemented": "#6e7781", "skipped": "#6e7781", "forbidden": "#9a6700",
          "timeout": "#8250df", "crashed": "#8250df", "memory": "#8250df"}  # HTML
FAILED_COLOUR = "#cf222e"


def mark(status: str) -> str:
    return MARK.get(status, "✗")


def words(status: str) -> str:
    """``not_implemented`` -> ``not implemented``."""
    return status.replace("_", " ")


class Line(NamedTuple):
    kind: str    # "test" (a mark and the test's name), "message", "hint", or "case" (one test's status and message)
    status: str  # of the test (or tests) the line is about
    text: str


def exercise_lines(tests: Sequence[CaseResult]) -> list[Line]:
    """What a student sees of one exercise's ``tests`` (or of one Gradescope entry's)."""
    shared = same_failure(list(tests))
    if shared is not None:
        return [Line("message", shared.status, shared.message), *(Line("hint", shared.status, h) for h in shared.hints)]
    lines: list[Line] = []
    hints: dict[str, str] = {}  # hint -> status of its first test, in order
    for test in tests:
        lines.append(Line("test", test.status, test.name))
        if test.status != "passed":
            lines.append(Line("message", test.status, test.message))
            for hint in test.hints:
                hints.setdefault(hint, test.status)
    return lines + [Line("hint", status, hint) for hint, status in hints.items()]


def case_lines(test: CaseResult) -> list[Line]:
    """One test alone: its status and message, then its hints (a passed test: its status only)."""
    if test.status == "passed":
        return [Line("case", "passed", "passed")]
    return [Line("case", test.status, f"{words(test.status)}: {test.message}"),
            *(Line("hint", test.status, h) for h in test.hints)]


def _rendered(lines: Sequence[Line], indent: str) -> list[tuple[Line, bool, str]]:
    """(line, whether it sits under a test's line, its text as shown)."""
    out = []
    previous = None
    for line in lines:
        under_test, previous = previous == "test", line.kind
        if line.kind == "test":
            shown = f"{indent}{mark(line.status)} {line.text}{'' if line.status == 'passed' else f' ({words(line.status)})'}"
        elif line.kind == "hint":
            shown = f"{indent}hint: {line.text}"
        else:  # a message: under its test, or alone (all tests the same), or one test's case
            prefix = indent + "    " if under_test else indent if line.kind == "case" else f"{indent}{mark(line.status)} "
            shown = "\n".join(prefix + text for text in line.text.splitlines() or [""])
        out.append((line, under_test, shown))
    return out


def as_text(lines: Sequence[Line], indent: str = "  ") -> str:
    """Plain text: a test's line marked, its message indented under it, hints after."""
    return "\n".join(shown for _, _, shown in _rendered(lines, indent))


def as_rich(lines: Sequence[Line], indent: str = "  ") -> "Text":
    """``as_text`` for a terminal: statuses coloured, hints in cyan. Names and messages stay
    plain text (``[float32]`` in a test's name is not a style tag)."""
    from rich.text import Text  # imported on use: a notebook's check renders no terminal text

    text = Text()
    for number, (line, under_test, shown) in enumerate(_rendered(lines, indent)):
        style = "cyan" if line.kind == "hint" else "" if under_test else STYLE.get(line.status, "")
        text.append(("\n" if number else "") + shown, style=style)
    return text


def as_html(lines: Sequence[Line]) -> str:
    """Rows of a table (mark, test, detail), every text escaped: a notebook's output. A failed
    test's row holds its status and message; an exercise whose tests all failed the same way,
    one row with its message; each hint a row of its own."""
    rows = []
    for number, line in enumerate(lines):
        colour = COLOUR.get(line.status, FAILED_COLOUR)
        cell = '<td style="text-align:left">'
        if line.kind == "test":
            follows = lines[number + 1] if number + 1 < len(lines) else None
            message = follows.text if follows is not None and follows.kind == "message" else ""
            detail = "" if line.status == "passed" else f"<b>{words(line.status)}</b>" + (f": {html.escape(message)}"
                                                                                          if message else "")
            rows.append(f'<tr><td style="color:{colour}">{mark(line.status)}</td>'
                        f'{cell}<code>{html.escape(line.text)}</code></td>{cell}{detail}</td></tr>')
        elif line.kind in ("message", "case") and (number == 0 or lines[number - 1].kind != "test"):
            rows.append(f'<tr><td style="color:{colour}">{mark(line.status)}</td><td></td>'
                        f'{cell}{html.escape(line.text)}</td></tr>')
        elif line.kind == "hint":
            rows.append(f'<tr><td></td><td></td>{cell}<i>hint:</i> {html.escape(line.text)}</td></tr>')
    return "".join(rows)


__all__ = ["Line", "exercise_lines", "case_lines", "as_text", "as_rich", "as_html", "mark", "MARK", "STYLE", "COLOUR",
           "FAILED_COLOUR"]
