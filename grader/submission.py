"""Step 2 of the grading path: find the submissions and read them, safely.

A submission is a directory (exercise files at its top level, in ``exercises/``, or inside
one wrapping folder), a ``.zip`` of such a directory, or a notebook ``.ipynb``. Nothing is
ever extracted or written: files are read into memory with size limits, zip members that
climb out (``../``, absolute paths) and symlinks that lead outside are ignored, and every
problem becomes a sentence in ``errors`` instead of an exception.
"""
from __future__ import annotations

import ast
import io
import os
import re
import tokenize
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import nbformat

from .errors import UsageError

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
    """For a notebook: its cells in order (Markdown ones empty, so numbers match what the
    student sees), magics, shell lines and self-check lines (``check("softmax")``) blanked out."""
    unreadable: dict[str, str] = field(default_factory=dict)
    """Module name -> why its file could not be read (encoding, size)."""
    errors: list[str] = field(default_factory=list)
    """Problems with the submission as a whole, in words."""


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
        submission.errors.append("no exercise files found: put softmax.py and the others at the top of the "
                                 "folder or zip, or in an exercises/ folder.")
        return
    here = [p for p in tree.files if p.parent == level]
    modules = [p for p in here if p.suffix == ".py" and p.stem.isidentifier() and p.stem != "__init__"]
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

_MAGIC = re.compile(r"^\s*([%!]|\S.*\?\s*$)")


def strip_magics(source: str) -> str:
    """Blank out IPython magics and ``!shell`` lines, keeping line numbers for tracebacks."""
    if source.lstrip().startswith("%%"):
        return "\n" * source.count("\n")  # a cell magic: the cell is not Python
    return "\n".join("" if _MAGIC.match(line) else line for line in source.split("\n"))


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
    try:
        text = data.decode("utf-8-sig")
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
    submission.notebook = [strip_self_checks(strip_magics(c.get("source", ""))) if c.get("cell_type") == "code" else ""
                           for c in notebook.get("cells", [])]
    submission.sources = {}
