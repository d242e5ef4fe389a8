"""The misconception library: a failing test gets a hint that names the student's mistake.

Each exercise has a module in its course's misconceptions folder (course.yaml ``paths:
misconceptions``, by default ``misconceptions/`` beside course.yaml) named after its id
(``softmax.py``...), holding a list ``MISCONCEPTIONS``. A ``Misconception`` is a classic mistake written as code: ``compute``
takes the same inputs as the student's function and returns what the *wrong*
implementation returns. When a test fails with an ``AssertionError`` the pytest plugin
hands the calls that test made (inputs and the student's results) to ``hint_for``, which
replays each misconception on those inputs. A misconception matches when

- on every recorded call where it can be computed, the student's result equals its
  output within the exercise's tolerance for the dtype (``grader.compare.closeness``, the rule
  of every comparison; a call where ``compute`` raises,
  e.g. ``Q @ K`` with shapes that do not fit, does not count, nor one where the output
  that matches is a single number repeated, like exp(-1e4) underflowing to all zeros,
  which many mistakes produce), at least one call counting;
- on at least one of those calls its output differs from the reference's (otherwise the
  student was simply right there, and the test failed for another reason).

The first matching misconception of the list (the list order is the priority) gives the
hint: its sentence, and when ``code_pattern`` finds a line in the student's source, a
quote of that line. Hints never show a test's inputs: hidden tests stay hidden.
See docs/authoring.md for how to add one.
"""
from __future__ import annotations

import functools
import hashlib
import importlib
import io
import sys
import types
import re
import tokenize
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, NamedTuple, Sequence

import torch

from ..compare.closeness import is_close
from ..intake.submission import plain_cell_names

if TYPE_CHECKING:
    from ..course.load import Course

QUOTE_LIMIT = 120  # characters of the student's line quoted in a hint


@dataclass(frozen=True)
class Misconception:
    """One classic mistake of an exercise, as data plus a small function."""

    name: str
    """A short identifier, unique within the exercise (``unscaled``)."""
    hint: str
    """One or two sentences for the student: the mistake, and the fix."""
    compute: Callable[..., Any]
    """``compute(*args, **kwargs)``: what the wrong implementation returns for the inputs
    the student's function got. It may raise when the mistake cannot run on these inputs,
    and may return ``AnyOf(...)`` when students write the same mistake in several ways."""
    code_pattern: str | None = None
    """A regular expression for the line of the student's source where the mistake likely
    sits (searched line by line, comments and docstrings left out); None: quote nothing."""


class AnyOf(tuple):
    """Several results of one mistake, written in different ways (with or without the line
    that zeroes fully masked rows, say): a call matches when the student's equals any."""

    def __new__(cls, *alternatives: Any) -> "AnyOf":
        return super().__new__(cls, alternatives)


class Call(NamedTuple):
    """One successful call of the student's function during a test."""

    args: tuple
    kwargs: dict
    result: Any
    """The student's result, decoded in the grader."""


# ---------------------------------------------------------------- the library


def misconceptions_for(exercise_id: str, folder: "Path | Course | None" = None) -> tuple[Misconception, ...]:
    """The ``MISCONCEPTIONS`` of ``<folder>/<exercise_id>.py``, where ``folder`` is a course's
    misconceptions folder (or a course: its ``paths.misconceptions``); () without that module.

    A course's modules are loaded as a package of their own, named after the folder, so
    that two courses' ``softmax.py`` never meet: they import the machinery as ``from
    grader.misconceptions import Misconception, AnyOf``."""
    if not exercise_id.isidentifier():
        return ()
    if folder is not None and not isinstance(folder, (str, Path)):
        folder = folder.paths.misconceptions
    if folder is None or not (Path(folder) / f"{exercise_id}.py").is_file():
        return ()
    return tuple(_course_package(Path(folder)).load(exercise_id).MISCONCEPTIONS)


def library_problems(course: "Course") -> list[str]:
    """What keeps the course's misconception modules from giving hints, one line each
    (``<file> line N: ...``): a module that cannot be imported, or whose ``MISCONCEPTIONS``
    is not a list of ``Misconception``; [] when there is nothing to say (or no such folder)."""
    folder = course.paths.misconceptions
    if folder is None or course.uses_answer_book:
        return []
    problems = []
    for exercise in course.exercises:
        file = folder / f"{exercise.id}.py"
        if not file.is_file():
            continue
        try:
            library = _course_package(folder).load(exercise.id).MISCONCEPTIONS
        except Exception as exc:  # noqa: BLE001 - the author's code may raise anything
            line = exc.lineno if isinstance(exc, SyntaxError) else next(
                (frame.lineno for frame in reversed(traceback.extract_tb(exc.__traceback__))
                 if Path(frame.filename) == file.resolve()), None)
            problems.append(f"{file}{f' line {line}' if line else ''}: {type(exc).__name__}: {exc}")
            continue
        if not isinstance(library, (list, tuple)):
            problems.append(f"{file}: MISCONCEPTIONS is a {type(library).__name__}, not a list")
            continue
        wrong = next((n for n, m in enumerate(library) if not isinstance(m, Misconception)), None)
        if wrong is not None:
            problems.append(f"{file}: MISCONCEPTIONS[{wrong}] is a {type(library[wrong]).__name__}, not a Misconception")
    return problems


class _CoursePackage:
    """A course's misconceptions folder as a package named ``_course_misconceptions_<digest>``."""

    def __init__(self, folder: Path):
        self.name = "_course_misconceptions_" + hashlib.sha256(str(folder).encode()).hexdigest()[:16]
        if self.name not in sys.modules:
            package = types.ModuleType(self.name, f"The misconception modules of the course folder {folder}.")
            package.__path__ = [str(folder)]
            sys.modules[self.name] = package

    def load(self, exercise_id: str) -> types.ModuleType:
        return importlib.import_module(f"{self.name}.{exercise_id}")


@functools.lru_cache(maxsize=None)
def _course_package(folder: Path) -> _CoursePackage:
    return _CoursePackage(folder.resolve())


def hint_for(misconceptions: Sequence[Misconception], calls: Sequence[Call],
             source_text: str | Sequence[str] | Mapping[str, str] | None, tolerance: Mapping[str, Any],
             reference: Callable[..., Any]) -> str | None:
    """The hint of the first of ``misconceptions`` that explains ``calls``; None if none does.

    ``source_text`` is the student's file for the exercise, or a notebook's cells (by the
    name messages give them, or a list), or None; ``tolerance`` maps dtype names
    (``"float32"``) to ``Tolerance`` (course.yaml's); ``reference`` is the reference's function.
    """
    misconception = explaining(misconceptions, calls, tolerance, reference)
    return None if misconception is None else hint_text(misconception, source_text)


def explaining(misconceptions: Sequence[Misconception], calls: Sequence[Call], tolerance: Mapping[str, Any],
               reference: Callable[..., Any]) -> Misconception | None:
    """The first of ``misconceptions`` that explains ``calls`` (a function of the calls alone,
    never of the student's source); None if none does."""
    if not calls or not misconceptions:
        return None
    references = _References(calls, reference)
    with torch.no_grad():
        for misconception in misconceptions:
            if _matches(misconception, calls, references, tolerance):
                return misconception
    return None


def hint_text(misconception: Misconception, source_text: str | Sequence[str] | Mapping[str, str] | None) -> str:
    """The misconception's hint, quoting the student's line that matches its code pattern."""
    return misconception.hint + _quote(misconception.code_pattern, source_text)


# ---------------------------------------------------------------- matching


class _References:
    """The reference's result for each recorded call, computed at most once and only when asked."""

    def __init__(self, calls: Sequence[Call], reference: Callable[..., Any]):
        self.calls = calls
        self.reference = reference
        self.results: dict[int, Any] = {}

    def __getitem__(self, index: int) -> Any:
        if index not in self.results:
            call = self.calls[index]
            self.results[index] = self.reference(*call.args, **call.kwargs)
        return self.results[index]


def _matches(misconception: Misconception, calls: Sequence[Call], references: _References,
             tolerance: Mapping[str, Any]) -> bool:
    counted = differs = False
    for index, call in enumerate(calls):
        try:
            wrong = misconception.compute(*call.args, **call.kwargs)
        except Exception:
            continue  # the mistake cannot run on these inputs: this call does not count
        alternatives = wrong if isinstance(wrong, AnyOf) else (wrong,)
        explained = [w for w in alternatives if is_close(call.result, w, tolerance)]
        if not explained:
            return False  # the student computed something else here
        explained = [w for w in explained if not _constant(w)]
        if not explained:
            continue  # only a constant (all 0, say) explains it: many mistakes underflow to that
        counted = True
        if not differs:
            differs = any(not is_close(w, references[index], tolerance) for w in explained)
    return counted and differs


def _constant(value: Any) -> bool:
    """Is every tensor in ``value`` one finite number repeated (exp of -1e4 underflowing to all
    zeros, say)? Such an output says nothing about which computation produced it."""
    items = value if isinstance(value, (tuple, list)) else (value,)  # an (output, weights) pair, or one
    tensors = [t for t in items if isinstance(t, torch.Tensor)]
    return bool(tensors) and all(
        t.numel() > 1 and bool(torch.isfinite(t).all()) and bool((t == t.reshape(-1)[0]).all()) for t in tensors)


# ---------------------------------------------------------------- quoting the student's line


def _quote(pattern: str | None, source_text: str | Sequence[str] | Mapping[str, str] | None) -> str:
    """`` (line 7: return Q @ K.T)`` for the first code line matching ``pattern``; "" if none.
    In a notebook (cells by name, or a list of cells saved without execution counts):
    `` (cell [2], line 7: ...)``, the cell named as every message names it."""
    if pattern is None or source_text is None:
        return ""
    regex = re.compile(pattern)
    if isinstance(source_text, str):
        cells = {"": source_text}
    elif isinstance(source_text, Mapping):
        cells = dict(source_text)
    else:
        cells = dict(zip(plain_cell_names(list(source_text)), source_text))
    for cell, text in cells.items():
        for line_number, code in _code_lines_of(text):
            if regex.search(code):
                code = code.strip()
                if len(code) > QUOTE_LIMIT:
                    code = code[: QUOTE_LIMIT - 3] + "..."
                return f" ({cell + ', ' if cell else ''}line {line_number}: {code})"
    return ""


@functools.lru_cache(maxsize=64)
def _code_lines_of(text: str) -> tuple[tuple[int, str], ...]:
    """``code_lines``, once per text: a submission's failures quote lines of the same few files."""
    return tuple(code_lines(text))


def code_lines(text: str) -> list[tuple[int, str]]:
    """``(line number, code)`` for each line holding code: comments cut off; docstrings (any
    statement that is only a string) and the inside of multi-line strings left out."""
    lines = text.splitlines()
    skip: set[int] = set()
    comment_at: dict[int, int] = {}  # line number -> column where its comment starts
    statement: list[tokenize.TokenInfo] = []  # the significant tokens of the current statement
    layout = (tokenize.NL, tokenize.INDENT, tokenize.DEDENT, tokenize.COMMENT, tokenize.ENCODING)
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type == tokenize.COMMENT:
                comment_at[token.start[0]] = token.start[1]
            if token.type == tokenize.STRING and token.start[0] != token.end[0]:
                skip.update(range(token.start[0] + 1, token.end[0] + 1))  # the string's own lines
            if token.type in (tokenize.NEWLINE, tokenize.ENDMARKER):
                if statement and all(t.type == tokenize.STRING for t in statement):  # a docstring
                    skip.update(range(statement[0].start[0], statement[-1].end[0] + 1))
                statement = []
            elif token.type not in layout:
                statement.append(token)
    except (tokenize.TokenError, SyntaxError):
        pass  # source that does not tokenize: search what was found so far, whole lines after
    found = []
    for number, line in enumerate(lines, start=1):
        code = line[: comment_at.get(number, len(line))].rstrip()
        if number not in skip and code.strip():
            found.append((number, code))
    return found


__all__ = ["Misconception", "AnyOf", "Call", "misconceptions_for", "hint_for", "explaining", "hint_text",
           "code_lines", "library_problems"]
