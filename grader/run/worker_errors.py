"""A worker's error reports in a student's words.

The worker says what went wrong as a small dict (``kind``, ``type``, ``message``, ``file``,
``line``, ``code``...). Every field is untrusted: each is read as text of a bounded length
(or a line number) and left out when it is anything else. A notebook's cells are named as
every message names them (``cell [5]``), never as the worker's ``<cell k>`` file.
"""
from __future__ import annotations

import difflib
import re
from typing import Any

from ..course.load import DEFAULT_ALLOWED_IMPORTS, Exercise
from ..intake.allowlist import notebook_definitions
from ..intake.submission import Submission
from ..sandbox import codec
from . import faults


def _clip(text: Any, limit: int = 300) -> str:
    text = str(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def text_field(error: Any, key: str, limit: int, default: str = "") -> str:
    """A text field of a worker's error report, clipped; ``default`` when it has none."""
    value = error.get(key) if isinstance(error, dict) else None
    return _clip(value, limit) if isinstance(value, str) and value else default


def describe_error(exercise: Exercise, error: Any, op: str,
              allowed_imports: tuple[str, ...] = DEFAULT_ALLOWED_IMPORTS,
              notebook: Submission | None = None) -> faults.StudentFault:
    """Words for an error the worker reported. Its fields are untrusted: each is read as text
    of a bounded length (or a line number), and left out when it is anything else.
    ``allowed_imports``: the course's (``policy.allowed_imports``), named in an import error.
    ``notebook``: the submission when it is a notebook: the words name its cells
    (``Submission.cell_name``), never a file."""
    kind = text_field(error, "kind", 40)
    name = exercise.function
    where = _where(error, notebook)
    raised = f"{text_field(error, 'type', 60, 'Exception')}: {_cells_named(text_field(error, 'message', 300), notebook)}"
    if kind == "missing_function":
        found = _missing_in_notebook(name, notebook) if notebook is not None else None
        if found is not None:
            return faults.NotImplementedFault(found)
        message = (f"{exercise.filename} defines no function named {name}." if notebook is None
                   else f"no cell of your notebook defines a function named {name}.")
        close = difflib.get_close_matches(name, _names(error), n=1, cutoff=0.6)
        if close:
            cell = notebook_definitions(tuple(notebook.notebook or ())).get(close[0]) if notebook else None
            message += (f" Did you mean {close[0]}" + (f" ({notebook.cell_name(cell)})" if cell is not None else "")
                        + f"? Rename it to {name}.")
        return faults.NotImplementedFault(message)
    if kind == "not_callable":
        what = text_field(error, 'type', 40, 'value')
        what = f"{'an' if what[:1].lower() in 'aeiou' else 'a'} {what}"
        if notebook is None:
            return faults.ErrorFault(f"{name} in {exercise.filename} is {what}, not a function.")
        cell = notebook_definitions(tuple(notebook.notebook or ())).get(name)
        last = f" ({notebook.cell_name(cell)} assigns it last)" if cell is not None else ""
        return faults.ErrorFault(f"{name} in your notebook is {what}, not a function{last}.")
    if kind == "not_implemented":
        return faults.NotImplementedFault(f"{name} is not implemented yet: it raises NotImplementedError{where}.")
    if kind == "import_error":
        module = text_field(error, "module", 60)
        missing = f" the module {module!r} is not available" if module else f" {raised}"
        if notebook is not None:
            return faults.ErrorFault(f"an import in your notebook failed:{missing}{where}. "
                                     f"Only {', '.join(allowed_imports)} can be imported in a notebook.")
        return faults.ErrorFault(f"importing {exercise.filename} failed:{missing}{where}. "
                                 f"Only {', '.join(allowed_imports)} and your own exercise files can be imported.")
    if kind == "exit":
        return faults.ErrorFault(f"your code called sys.exit() or raised SystemExit{where}. Return a value instead.")
    if kind == "not_differentiable":
        return faults.WrongResultFault(
            f"the output of {name} is not connected to its inputs in autograd, so no gradient flows back. "
            "Avoid .detach(), .item(), .numpy(), torch.tensor(...) of results, and in-place tricks on the inputs.")
    if kind == "forbidden":
        return faults.ForbiddenFault(
            f"{name} ran the operator aten.{text_field(error, 'kernel', 60, '?')}{where}, which this exercise forbids "
            "(a library version of what the exercise asks you to write, reached through whatever route). "
            "It scores 0 until that call is gone.")
    if kind == "bad_output":
        return faults.WrongResultFault(f"{name} returned something that cannot be checked: {text_field(error, 'message', 300)}.")
    when = "while being imported" if op == "load" else "during this call"
    hints = ()
    if "same device" in text_field(error, "message", codec.MAX_TEXT):
        hints = ("A tensor your code created is on a different device from the inputs: create new tensors on the "
                 "inputs' device, e.g. torch.ones(L, L, dtype=torch.bool, device=Q.device), or mask.to(Q.device).",)
    return faults.ErrorFault(f"{name} raised {raised}{where} {when}.", hints)


def cell_error(error: Any, index: int, notebook: Submission) -> str:
    """The note for notebook cell ``index``, which raised ``error`` (a worker's report, untrusted)."""
    error = error if isinstance(error, dict) else {}
    cell, kind = notebook.cell_name(index), text_field(error, "type", 60, "an error")
    if kind in ("SyntaxError", "IndentationError", "TabError") and text_field(error, "file", 80) == f"<cell {index + 1}>":
        why = re.sub(r" \(<cell \d+>, line \d+\)$", "", text_field(error, "message", 300))  # the place is said first
        line, code = error.get("line"), text_field(error, "code", 120)
        line = line if isinstance(line, int) and not isinstance(line, bool) else "?"
        return (f"{cell} line {line}: syntax error ({why})" + (f": {code}" if code else "")
                + ". Nothing of that cell ran (the cells after it did): fix that line and run the cell again.")
    return (f"{cell} raised {kind}: {_cells_named(text_field(error, 'message', 300), notebook)}"
            f"{_where(error, notebook, index)} (the cells after it still ran).")


def _missing_in_notebook(name: str, notebook: Submission) -> str | None:
    """Why a notebook has no ``name`` when graded, when a cell defines it: that cell is not
    graded for its cell magic, or stopped before the definition (its own note says why)."""
    defines = re.compile(rf"^(async\s+)?def\s+{re.escape(name)}\s*\(|^{re.escape(name)}\s*=", re.MULTILINE)
    for index, (magic, source) in sorted(notebook.ungraded_cells.items()):
        if defines.search(source):
            cell = notebook.cell_name(index)
            return (f"{name} is defined in {cell}, a %%{magic} cell, which is not graded (see the note about {cell}). "
                    f"Move {name} into a plain code cell.")
    cells = notebook.notebook or []
    index = notebook_definitions(tuple(cells)).get(name)
    if index is None:  # a cell that does not parse binds nothing, as far as the scan can tell
        index = next((i for i, text in enumerate(cells) if defines.search(text)), None)
    if index is not None:
        cell = notebook.cell_name(index)
        return (f"{name} is defined in {cell}, but when your notebook was graded that cell did not get that far "
                f"(see the note about {cell}). Fix that cell first.")
    return None


def _where(error: Any, notebook: Submission | None = None, here: int | None = None) -> str:
    """`` (file line N: code)`` for an error report that names the student's line; else nothing.
    In a notebook the file is the worker's ``<cell k>``: named as messages name cells, and
    left out when it is the cell ``here`` (the one the message is about)."""
    file = text_field(error, "file", 80)
    if not file:
        return ""
    cell = re.fullmatch(r"<cell (\d{1,6})>", file) if notebook is not None else None
    if cell is not None:
        index = int(cell.group(1)) - 1
        file = "" if index == here else notebook.cell_name(index)
    line = error.get("line")
    line = line if isinstance(line, int) and not isinstance(line, bool) else "?"
    where = f" ({file + ' ' if file else ''}line {line}"
    code = text_field(error, "code", 120)
    return where + (f": {code})" if code else ")")


def _cells_named(text: str, notebook: Submission | None) -> str:
    """``text`` (a worker's message) with the worker's ``<cell k>`` named as messages name cells."""
    if notebook is None:
        return text
    return re.sub(r"<cell (\d{1,6})>", lambda m: notebook.cell_name(int(m.group(1)) - 1), text)


def _names(error: Any) -> list[str]:
    """The names a module defines, from a missing-function report (at most 200, clipped)."""
    available = error.get("available") if isinstance(error, dict) else None
    return [a[:80] for a in available[:200] if isinstance(a, str)] if isinstance(available, list) else []
