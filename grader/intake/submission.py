"""Step 2 of the grading path: find the submissions and read them, safely.

A submission is a directory (exercise files at its top level, in ``exercises/``, or inside
one wrapping folder), a ``.zip`` of such a directory, or a notebook ``.ipynb``. Nothing is
ever extracted or written: files are read into memory with size limits, zip members that
climb out (``../``, absolute paths) and symlinks that lead outside are ignored, and every
problem becomes a sentence in ``errors`` instead of an exception.
"""
from __future__ import annotations

import ast
import getopt
import io
import os
import re
import shlex
import tokenize
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath


from ..errors import UsageError

MAX_FILE_BYTES = 1 << 20           # one source file or notebook
MAX_SUBMISSION_BYTES = 32 << 20    # everything read from one submission
MAX_ZIP_MEMBERS = 2000
IGNORED_PARTS = {"__MACOSX", "__pycache__", ".ipynb_checkpoints", ".git"}


@dataclass(frozen=True)
class SourceFile:
    path: str
    """Where the file sits inside the submission, as shown to the student."""
    text: str


@dataclass
class Submission:
    name: str
    """The path as given, or a batch child's file or folder name."""
    sources: dict[str, SourceFile] = field(default_factory=dict)
    """Python modules at the submission's code level, by module name (``softmax``)."""
    notebook: list[str] | None = None
    """For a notebook: the Python of its cells in order (``read_cell``; Markdown ones and
    cells not graded for their cell magic empty), self-check lines (``check("softmax")``)
    blanked out."""
    cell_names: list[str] = field(default_factory=list)
    """For a notebook: how messages name each cell (``cell_names``: ``cell [5]``), by index."""
    ungraded_cells: dict[int, tuple[str, str]] = field(default_factory=dict)
    """For a notebook: cell index -> (cell magic, source) of each cell not graded for its
    cell magic (``%%bash``, ``%%writefile``...); noted in ``errors``."""
    unreadable: dict[str, str] = field(default_factory=dict)
    """Module name -> why its file could not be read (encoding, size)."""
    errors: list[str] = field(default_factory=list)
    """Problems with the submission as a whole, in words."""

    def cell_name(self, index: int) -> str:
        """How messages name notebook cell ``index`` (``cell_names``)."""
        names = self.cell_names or plain_cell_names(self.notebook or [])
        return names[index] if 0 <= index < len(names) and names[index] else f"cell [{index + 1}]"


# ---------------------------------------------------------------- finding submissions


def is_submission_file(path: Path) -> bool:
    return path.suffix.lower() in (".zip", ".ipynb")


def _holds_code(path: Path) -> bool:
    return (path / "exercises").is_dir() or any(p.suffix == ".py" for p in path.iterdir() if p.is_file())


def discover(paths: list[str]) -> list[tuple[str, Path]]:
    """Expand the command line into ``(name, path)`` submissions, batches included."""
    found: list[tuple[str, Path]] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise UsageError(f"{raw}: no such file or directory. Fix: check the path.")
        if path.is_dir() and not _holds_code(path):
            children = sorted(c for c in path.iterdir()
                              if not c.name.startswith((".", "_")) and (c.is_dir() or is_submission_file(c)))
            if children:
                found.extend((c.name, c) for c in children)
                continue
        found.append((raw, path))
    return found


# ---------------------------------------------------------------- reading one


class _Tree:
    """A read-only view of a submission's files: a real folder or a zip in memory."""

    def __init__(self) -> None:
        self.files: dict[PurePosixPath, object] = {}  # path -> opaque handle for read()
        self.budget = MAX_SUBMISSION_BYTES
        self.errors: list[str] = []

    def read(self, path: PurePosixPath) -> bytes | None:
        raise NotImplementedError


class _FolderTree(_Tree):
    def __init__(self, root: Path):
        super().__init__()
        self.root = root.resolve()
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if d not in IGNORED_PARTS and not d.startswith(".")]
            if len(self.files) > MAX_ZIP_MEMBERS:
                self.errors.append(f"more than {MAX_ZIP_MEMBERS} files: only the first were read")
                break
            for name in filenames:
                full = Path(dirpath) / name
                rel = PurePosixPath(full.relative_to(root).as_posix())
                if full.is_symlink() and not full.resolve().is_relative_to(self.root):
                    self.errors.append(f"{rel} is a link to a file outside the submission and was ignored")
                    continue
                self.files[rel] = full

    def read(self, path: PurePosixPath) -> bytes | None:
        full: Path = self.files[path]  # type: ignore[assignment]
        size = full.stat().st_size
        if size > MAX_FILE_BYTES or size > self.budget:
            return None
        self.budget -= size
        return full.read_bytes()


class _ZipTree(_Tree):
    def __init__(self, archive: zipfile.ZipFile, name: str):
        super().__init__()
        self.archive = archive
        for info in archive.infolist()[:MAX_ZIP_MEMBERS]:
            member = info.filename.replace("\\", "/")
            path = PurePosixPath(member)
            if member.startswith("/") or re.match(r"^[A-Za-z]:", member) or ".." in path.parts:
                self.errors.append(f"{name}: member {member[:100]!r} points outside the archive and was ignored")
                continue
            if info.is_dir() or any(p in IGNORED_PARTS or p == ".DS_Store" for p in path.parts):
                continue
            if (info.external_attr >> 16) & 0o170000 == 0o120000:
                self.errors.append(f"{name}: member {member[:100]!r} is a symbolic link and was ignored")
                continue
            self.files[path] = info
        if len(archive.infolist()) > MAX_ZIP_MEMBERS:
            self.errors.append(f"{name} has more than {MAX_ZIP_MEMBERS} members: only the first were read")

    def read(self, path: PurePosixPath) -> bytes | None:
        info: zipfile.ZipInfo = self.files[path]  # type: ignore[assignment]
        if info.file_size > MAX_FILE_BYTES or info.file_size > self.budget:
            return None
        with self.archive.open(info) as member:
            data = member.read(MAX_FILE_BYTES + 1)  # never trust the declared size
        if len(data) > MAX_FILE_BYTES:
            return None
        self.budget -= len(data)
        return data


def load_submission(name: str, path: Path) -> Submission:
    """Read one submission into memory. Never raises for a bad submission."""
    submission = Submission(name=name)
    try:
        if path.is_dir():
            _read_tree(submission, _FolderTree(path))
        elif path.suffix.lower() == ".ipynb":
            _read_notebook_file(submission, path)
        elif path.suffix.lower() == ".zip":
            try:
                with zipfile.ZipFile(path) as archive:
                    _read_tree(submission, _ZipTree(archive, path.name))
            except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as exc:
                submission.errors.append(f"{path.name} is not a readable zip archive ({exc}). "
                                         "Fix: create it again with your system's 'Compress' or 'zip -r'.")
        else:
            submission.errors.append(f"{path.name} is not a submission: hand in a folder, a .zip or a .ipynb notebook.")
    except OSError as exc:
        submission.errors.append(f"{name} could not be read ({exc.strerror or exc}).")
    return submission


def _code_level(tree: _Tree) -> PurePosixPath | None:
    """Where the exercise files are: ``exercises/``, the top, or inside one wrapping folder."""
    folder = PurePosixPath()
    for _ in range(3):
        inside = [p.relative_to(folder) for p in tree.files if p.is_relative_to(folder)]
        if any(len(p.parts) > 1 and p.parts[0] == "exercises" for p in inside):
            return folder / "exercises"
        if any(len(p.parts) == 1 and p.suffix in (".py", ".ipynb") for p in inside):
            return folder
        tops = {p.parts[0] for p in inside if len(p.parts) > 1}
        if len(tops) != 1:
            return None
        folder = folder / tops.pop()
    return None


def _read_tree(submission: Submission, tree: _Tree) -> None:
    submission.errors.extend(tree.errors)
    level = _code_level(tree)
    if level is None:
        submission.errors.append("no exercise files found: put the exercises' .py files at the top of the "
                                 "folder or zip, or in an exercises/ folder.")
        return
    here = [p for p in tree.files if p.parent == level]
    modules = [p for p in here if p.suffix == ".py" and p.stem.isidentifier() and p.stem != "__init__"]
    if level.name == "exercises":  # files of the same names beside exercises/ are not graded: say so
        graded = {p.name for p in modules}
        for other in sorted(p for p in tree.files if p.parent == level.parent and p.name in graded):
            submission.errors.append(f"{other} was not graded: {level / other.name} was (when a submission has an "
                                     "exercises/ folder, its files are read from there). Remove one of the two.")
    notebooks = [p for p in here if p.suffix == ".ipynb"]
    if not modules and len(notebooks) == 1:
        data = tree.read(notebooks[0])
        if data is None:
            submission.errors.append(f"{notebooks[0]} is larger than {MAX_FILE_BYTES >> 20} MiB and was not read")
        else:
            _read_notebook_bytes(submission, data, str(notebooks[0]))
        return
    for path in sorted(modules):
        display = str(path)
        data = tree.read(path)
        if data is None:
            submission.unreadable[path.stem] = f"{display} is too large to grade (over {MAX_FILE_BYTES >> 20} MiB)."
            continue
        try:
            submission.sources[path.stem] = SourceFile(display, decode_source(data))
        except SourceDecodeError as exc:
            submission.unreadable[path.stem] = f"{display}: {exc}"


class SourceDecodeError(ValueError):
    pass


def decode_source(data: bytes) -> str:
    """Decode Python source as Python does (PEP 263: BOM, coding cookie, else UTF-8)."""
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    except SyntaxError as exc:
        raise SourceDecodeError(f"{exc.msg}. Fix: save the file as UTF-8.") from None
    try:
        return data.decode(encoding).removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SourceDecodeError(
            f"line {line} is not valid {encoding} text (byte 0x{data[exc.start]:02x}). "
            f"Fix: save the file as UTF-8 in your editor, or declare its encoding on line 1 "
            f"(# -*- coding: latin-1 -*-).") from None


# ---------------------------------------------------------------- notebooks
#
# A notebook is graded as Jupyter runs it: each code cell's Python, in order, in one
# namespace. IPython's own syntax is read as IPython reads it (``read_cell``).

PYTHON_CELL_MAGICS = frozenset({"time", "capture", "prun", "debug"})
"""Cell magics whose body is Python that IPython runs in the notebook's namespace, so what
the body defines stays defined (measured with IPython 9): the cell is graded as its body."""

_PLAIN = "Put code to be graded in a plain code cell (no %% line at its top)."
_SHELL = ("shell commands, not Python", "")
_SHOWN = ("text to display, not Python", "")
_ELSEWHERE = ("it runs its code in a separate Python process, so what it defines never reaches the notebook", _PLAIN)
_WRITES = ("it writes its text to a file and runs none of it", "Put code to be graded in a plain code cell: a "
           "graded notebook writes no files, so importing that file fails.")
OTHER_CELL_MAGICS = {
    **dict.fromkeys(("bash", "sh", "script", "system", "sx", "perl", "ruby"), _SHELL),
    **dict.fromkeys(("html", "javascript", "js", "latex", "markdown", "svg"), _SHOWN),
    **dict.fromkeys(("python", "python2", "python3", "pypy"), _ELSEWHERE),
    "writefile": _WRITES,
    "file": _WRITES,
    "timeit": ("it runs its code inside a timing function, many times over, so what it defines stays inside that "
               "function (in Jupyter too)", "Define functions in a plain cell, then time a call with %%timeit."),
    "cython": ("Cython, compiled apart, not Python run in the notebook", _PLAIN),
}
"""Cell magics whose body is not graded: (why, what to do). Any other cell magic (``%%sql``,
a typo) is not graded either: its body is not known to be Python."""

# A line magic whose rest is a Python statement run in the notebook's namespace: its
# options as getopt reads them (short, long); the statement is what is left, as IPython
# joins it. Every other line magic (``%timeit`` runs its statement inside a function:
# what it binds does not stay) and every ``!shell`` line is left out.
_STATEMENT_MAGICS = {"time": ("", ["no-raise-error"]), "prun": ("D:l:rs:T:q", []),
                     "debug": ("b:", ["breakpoint="])}
_ESCAPED = re.compile(r"^(\s*)[%!]")
_LINE_MAGIC = re.compile(r"^(\s*)%([A-Za-z_]\w*)(.*)$")
_HELP = re.compile(r"^\s*(\?\??%{0,2}[\w.*]+|%{0,2}[\w.*]+(\[-?\d+\])?\?\??)\s*$")  # torch.softmax?  ?x  x??
_ASSIGNED = re.compile(r"^\s*[A-Za-z_][\w.]*(\s*,\s*[A-Za-z_][\w.]*)*\s*=\s*[%!]")  # files = !ls, t = %time f()


def read_cell(source: str) -> tuple[str, str | None]:
    """The Python a code cell runs in the notebook's namespace, line numbers kept, and the
    name of its cell magic when the cell is not graded for one (else None).

    A cell magic is the cell's first non-blank line, at its very start (``%%time``), as
    IPython reads it. One of ``PYTHON_CELL_MAGICS``: the cell is its body (which may start
    with another cell magic: ``%%capture`` then ``%%time``); any other: nothing of it runs
    (``%%time`` with a statement on its own line too: Jupyter refuses that cell). Then each
    line (``_read_line``): ``%time x = f()`` is ``x = f()``, other magics and ``!shell``
    lines are left out, ``name?`` help lines too."""
    lines = source.split("\n")
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is not None and lines[first].startswith("%%"):
        magic, _, rest = lines[first][2:].rstrip().partition(" ")
        if magic in PYTHON_CELL_MAGICS and not (magic == "time" and rest.replace("--no-raise-error", "").strip()):
            return read_cell("\n".join([""] * (first + 1) + lines[first + 1:]))
        return "\n" * source.count("\n"), magic[:40]
    return "\n".join(_read_line(line) for line in lines), None


def _read_line(line: str) -> str:
    """One line of a cell as Python: a statement magic's statement, or, for anything else of
    IPython's, nothing (``pass`` where the line is indented, so its block stays a block)."""
    magic = _LINE_MAGIC.match(line)
    if magic and magic.group(2) in _STATEMENT_MAGICS:
        statement = _magic_statement(magic.group(3), *_STATEMENT_MAGICS[magic.group(2)])
        if statement:
            return magic.group(1) + statement
    if _ESCAPED.match(line) or _HELP.match(line) or _ASSIGNED.match(line):
        indent = line[: len(line) - len(line.lstrip())]
        return indent + "pass" if indent else ""
    return line


def _magic_statement(rest: str, short: str, long: list[str]) -> str:
    """The statement of ``%time``/``%prun``/``%debug`` after their options; "" if none."""
    lexer = shlex.shlex(rest, posix=False)
    lexer.whitespace_split = True
    try:
        _, words = getopt.getopt(list(lexer), short, long)
    except (ValueError, getopt.GetoptError):
        return ""
    return " ".join(words)


def cell_magic_note(name: str, magic: str) -> str:
    """The note for a cell not graded for its cell magic (``read_cell``), naming the cell."""
    why, fix = OTHER_CELL_MAGICS.get(magic, ("not a cell magic the grader knows, so its body is not known to be Python",
                                             _PLAIN))
    if magic == "time":
        why, fix = "Jupyter refuses a %%time cell with a statement on its %%time line", _PLAIN
    what = f"a %%{magic} cell" if magic else "a cell that starts with %% and no magic name"
    return f"{name} is {what}, not graded: {why}." + (f" {fix}" if fix else "")


def cell_names(cells: list[tuple[str, str, int | None]]) -> list[str]:
    """How every message names each cell of a notebook, given as ``(cell_type, source,
    execution_count)``: by the number Jupyter shows beside it, ``[n]``.

    - ``cell [n]``: a code cell saved with execution count ``n`` that no other cell shows;
    - ``cell [k]``: in a notebook saved without any count (never run, or cleared), ``k``
      counts its non-blank code cells: what Jupyter shows after Restart & Run All (blank
      cells get no number);
    - ``code cell k``: a code cell showing ``[ ]`` while others show numbers (or a blank
      one), or a number another cell shows too (saved across kernel restarts); ``k`` counts
      every code cell from the top.

    Markdown and raw cells are named ``""``: nothing is said about them. The notebook
    self-check gives entry ``n`` of the kernel's history the count ``n``: ``In [n]``.
    """
    counts = [c if isinstance(c, int) and not isinstance(c, bool) and c > 0 and kind == "code" else None
              for kind, _, c in cells]
    shown = [c for c in counts if c is not None]
    names, code, run_all = [], 0, 0
    for (kind, source, _), count in zip(cells, counts):
        if kind != "code":
            names.append("")
            continue
        code += 1
        run_all += bool(source.strip())
        if not shown and source.strip():
            names.append(f"cell [{run_all}]")
        elif count is not None and shown.count(count) == 1:
            names.append(f"cell [{count}]")
        else:
            names.append(f"code cell {code}")
    return names


def plain_cell_names(cells: list[str] | tuple[str, ...]) -> list[str]:
    """``cell_names`` of code cells saved without counts (a list of cell texts)."""
    return cell_names([("code", text, None) for text in cells])


def strip_magics(source: str) -> str:
    """A code cell's Python (``read_cell``), IPython's syntax left out, line numbers kept."""
    return read_cell(source)[0]


# The notebook's self-check lines: the student's tools, not their answer (and they cannot
# run in the sandbox, which has neither the grader nor otter).
_CHECK_MODULES = {"grader", "otter"}
_CHECK_METHODS = {"check", "check_all", "export"}


def _is_self_check(node: ast.stmt) -> bool:
    """``from grader import check``, ``check("softmax")``, ``import otter``,
    ``grader = otter.Notebook(...)``, ``grader.check("softmax")``, ``grader.export()``."""
    if isinstance(node, ast.Import):
        return all(alias.name.partition(".")[0] in _CHECK_MODULES for alias in node.names)
    if isinstance(node, ast.ImportFrom):
        return node.level == 0 and (node.module or "").partition(".")[0] in _CHECK_MODULES
    call = node.value if isinstance(node, (ast.Expr, ast.Assign)) else None
    if not isinstance(call, ast.Call):
        return False
    func = call.func
    if isinstance(node, ast.Assign):  # grader = otter.Notebook(...)
        return (len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) and node.targets[0].id == "grader"
                and isinstance(func, ast.Attribute) and func.attr == "Notebook"
                and isinstance(func.value, ast.Name) and func.value.id == "otter")
    if isinstance(func, ast.Name):
        return func.id == "check"
    return (isinstance(func, ast.Attribute) and func.attr in _CHECK_METHODS
            and isinstance(func.value, ast.Name) and func.value.id == "grader")


def strip_self_checks(source: str) -> str:
    """Blank out a cell's self-check statements (top level, alone on their lines), keeping
    line numbers. A cell that does not parse is left as it is: it is reported when it runs."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return source
    lines = source.split("\n")
    spans = [(node, range(node.lineno - 1, node.end_lineno)) for node in tree.body]
    for node, span in spans:
        shared = any(other is not node and set(span) & set(rows) for other, rows in spans)
        if _is_self_check(node) and not shared:
            for row in span:
                lines[row] = ""
    return "\n".join(lines)


def _read_notebook_file(submission: Submission, path: Path) -> None:
    if path.stat().st_size > MAX_FILE_BYTES:
        submission.errors.append(f"{path.name} is larger than {MAX_FILE_BYTES >> 20} MiB and was not read.")
        return
    _read_notebook_bytes(submission, path.read_bytes(), path.name)


def _read_notebook_bytes(submission: Submission, data: bytes, name: str) -> None:
    import nbformat  # here, not at the top: its import costs 0.1-3 s (jsonschema), and a folder needs none

    try:
        text = data.decode("utf-8-sig")
        with warnings.catch_warnings():  # cells saved without ids (MissingIDFieldWarning): nothing a grader must say
            warnings.simplefilter("ignore")
            notebook = nbformat.reads(text, as_version=4)
    except UnicodeDecodeError:
        submission.errors.append(f"{name} is not a text file: a notebook is JSON saved as UTF-8. "
                                 "Fix: download it again from Jupyter (File > Download > Notebook).")
        return
    except Exception as exc:  # nbformat raises JSON, validation and its own errors
        what = "not valid JSON" if "JSON" in type(exc).__name__ or "Expecting" in str(exc) else "not a Jupyter notebook"
        submission.errors.append(f"{name} is {what} ({str(exc).splitlines()[0][:200]}). "
                                 "Fix: download it again from Jupyter (File > Download > Notebook).")
        return
    cells = [c for c in notebook.get("cells", []) if isinstance(c, dict)]
    kinds = [(c.get("cell_type"), _text(c.get("source")), c.get("execution_count")) for c in cells]
    submission.cell_names = cell_names(kinds)
    submission.notebook = []
    for (kind, source, _), name in zip(kinds, submission.cell_names):
        python, magic = read_cell(source) if kind == "code" else ("", None)
        if magic is not None:
            submission.errors.append(cell_magic_note(name, magic))
            submission.ungraded_cells[len(submission.notebook)] = (magic, source)
        submission.notebook.append(strip_self_checks(python))
    submission.sources = {}


def _text(source: object) -> str:
    """A cell's source as nbformat reads it (a string; a list of lines in some files)."""
    if isinstance(source, list):
        return "".join(part for part in source if isinstance(part, str))
    return source if isinstance(source, str) else ""
