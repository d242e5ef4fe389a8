"""Static scan of a submission's code, done in the grader where a student cannot touch it.

Every Python file of a submission and every notebook code cell is read as an AST (never
run) and checked against an allowlist, course.yaml's ``policy:``:

- **imports**: only ``policy.allowed_imports`` (each with its public submodules) and the
  submission's own files (``exercises.<name>``, ``<name>``, ``from .. import <name>``);
- **names**: nothing under ``policy.blocked`` (torch's dispatcher, compilers and loaders,
  the reflective builtins ``getattr``, ``vars``, ``eval``, ``open``...), no private
  ``_name`` of a library, no module the imports do not allow reached through an allowed one
  (``torch.sys``, ``F.importlib``), whether the base is a resolved name or any other object;
- **no reflection**: no double-underscore attribute or name (``x.__class__``,
  ``__builtins__``; ``__init__``, ``__name__`` and ``__doc__`` are fine, and so is defining
  dunder methods), no frame or code object attribute (``f_back``, ``tb_frame``, ``co_code``),
  no attribute read by name in a ``case`` pattern;
- **an exercise's banned names** (``torch.nn.functional.softmax``...): any reference that
  resolves through the imports and aliases to one, or to the same object, and a method call
  ``x.softmax(...)`` for a banned ``torch.Tensor`` method.

Comments, strings, the student's own identifiers and, in a file, code under ``if __name__
== "__main__":`` (the grader imports the file, so it never runs) are not violations. A
notebook is ``__main__`` when it runs, so that block is scanned there.

Where a violation applies: a file's reach every exercise whose file imports it, directly or
through other files (``exercise_violations``); a notebook cell with one is not run, and an
exercise defined in it is forbidden (``scan_notebook``). Each violation names the file or
cell (``cell [5]``, as ``grader.intake.submission.cell_names`` names it), the line, and what to
write instead.
"""
from __future__ import annotations

import ast
import builtins
import functools
import importlib
import importlib.util
import sys
import types
from dataclasses import dataclass, replace
from typing import Mapping, NamedTuple, Sequence

from ..course.load import Policy
from .submission import plain_cell_names

ALLOWED_DUNDER_ATTRIBUTES = frozenset({"__init__", "__name__", "__qualname__", "__doc__"})
ALLOWED_DUNDER_NAMES = frozenset({"__name__", "__doc__", "__file__", "__all__", "__slots__"})
# Attributes of frames, tracebacks, generators, coroutines and code objects: the way from any
# function to the grader's worker and its globals.
FRAME_ATTRIBUTES = frozenset({
    "f_back", "f_builtins", "f_code", "f_globals", "f_locals", "f_lasti", "f_lineno", "f_trace",
    "tb_frame", "tb_next", "tb_lasti", "tb_lineno", "gi_frame", "gi_code", "gi_yieldfrom", "cr_frame",
    "cr_code", "cr_await", "cr_origin", "ag_frame", "ag_code", "ag_await", "co_code", "co_consts",
    "co_names", "co_varnames", "co_filename", "co_freevars", "co_cellvars", "co_name", "co_qualname",
})
# The names under which allowed modules hold modules that are not allowed (torch.sys,
# dataclasses.inspect, torch.cuda.memory.pickle...): flagged on any object whose module the
# scan cannot tell (``[torch][0].sys``). tests/test_forbidden.py walks the allowed modules to
# keep this complete, but for LEFT_OUT.
MODULE_ATTRIBUTES = frozenset({
    "abc", "ast", "bisect", "builtins", "classes", "compiler", "concurrent", "contextlib", "contextvars", "copyreg",
    "cpp", "ctypes", "dataclasses", "distributed", "emath", "enum", "export", "func", "fx", "gc", "glob", "gzip",
    "hooks", "hub", "importlib", "inspect", "io", "jit", "jiterator", "json", "keyword", "lib", "library",
    "logging", "marshal", "mp", "multiprocessing", "operator", "ops", "os", "overrides", "package", "pickle",
    "platform", "posix", "re", "return_types", "runpy", "serialization", "shutil", "signal", "socket",
    "stdlib_re", "subprocess", "sys", "tempfile", "textwrap", "threading", "traceback", "types", "utils",
    "uuid", "weakref",
})

LEFT_OUT = frozenset({
    "copy",  # the copy module is harmless, and x.copy() is a common method
    "dist",  # x.dist(y) is a tensor method; the way to torch.distributed through it passes .distributed
    "N",     # numpy.matrixlib.defmatrix.N, numpy's numeric functions; a common attribute name
})

_FIXES = {  # a blocked name -> what to write instead
    "builtins.getattr": "Call the function or read the attribute by its name, e.g. torch.exp(x) or x.shape",
    "builtins.setattr": "Assign the attribute by its name, e.g. self.scale = scale",
    "builtins.delattr": "Delete the attribute by its name, e.g. del self.cache",
    "builtins.vars": "Use the names themselves, e.g. torch.exp(x)",
    "builtins.globals": "Use the names themselves, e.g. torch.exp(x)",
    "builtins.locals": "Use the names themselves, e.g. scores",
    "builtins.eval": "Write the expression itself instead of building it as a string",
    "builtins.exec": "Write the code itself instead of building it as a string",
    "builtins.compile": "Write the code itself instead of building it as a string",
    "builtins.__import__": "Import with an import statement at the top of the file, e.g. import math",
    "builtins.breakpoint": "Remove it before handing in: it stops the program for a debugger",
    "builtins.help": "Remove it before handing in: it is for the interactive prompt",
    "builtins.open": "Graded code reads and writes no files: compute the result from the function's arguments",
}
_LIBRARY_FIX = ("It reaches past the library's maths into its machinery, which this chapter does not need: "
                "write it with tensor operations")
_PRIVATE_FIX = "Use public names only: a name that starts with _ is a library's internals"
_DUNDER_FIXES = {
    "__class__": "Use type(x), or isinstance(x, torch.Tensor)",
    "__dict__": "Read the attribute by its name, e.g. torch.exp",
}
_DUNDER_FIX = ("Double-underscore names reach Python's internals: use the object's public attributes and "
               "methods (defining __init__ and calling super().__init__() are fine)")
_FRAME_FIX = "Graded code works on its arguments only: it does not inspect the running program"
_MATCH_FIX = "Read the attribute directly, e.g. x.shape, before the match statement"
_BANNED_FIX = "This exercise is about writing it yourself"
_OWN_FILES_FIX = "Import your own files as exercises.<name>"
_OWN_PACKAGE = "exercises"


@dataclass(frozen=True)
class Violation:
    what: str
    """What the line does, in words: ``imports os, which graded code may not import``."""
    file: str
    """The file as shown to the student, or in a notebook the cell as every message names it
    (``cell [5]``: ``grader.intake.submission.cell_names``)."""
    line: int
    code: str
    """The line itself, stripped."""
    fix: str
    """What to write instead."""

    def __str__(self) -> str:
        return f"{self.file} line {self.line} {self.what}" + (f": {self.code}" if self.code else "") + f". {self.fix}."


def describe(violations: Sequence[Violation]) -> str:
    """The first violation in words, and how many more there are."""
    more = f" ({len(violations) - 1} more like it)" if len(violations) > 1 else ""
    return f"{violations[0]}{more}"


class _Use(NamedTuple):
    """A line's reference to a library name or a method, kept for the exercises' banned lists."""

    line: int
    code: str
    verb: str
    """``uses`` or ``imports`` (a name), ``calls`` (a method)."""
    names: tuple[str, ...]
    """The dotted name as written through the aliases, and its canonical spelling; empty for a method."""
    target: object
    """The object the name stands for, when the scan found it; else None."""
    method: str
    """For ``x.name`` on an object the scan cannot resolve: ``name``; else empty."""
    owners: frozenset[str] | None
    """In a notebook, the names its top-level statement binds (None for an import: it counts
    for every exercise); None in a file (the whole file counts)."""


class _Scan(NamedTuple):
    """One file's or cell's scan: violations of the policy, banned-list references, own imports."""

    problems: tuple[Violation, ...]
    uses: tuple[_Use, ...]
    imports: frozenset[str]
    """The submission's own modules it imports (their module names)."""


# ---------------------------------------------------------------- names, in the grader's torch


def _is_dunder(name: str) -> bool:
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


def _is_private(name: str) -> bool:
    return name.startswith("_") and not _is_dunder(name)


def _under(name: str, prefixes: tuple[str, ...]) -> str | None:
    """The first of ``prefixes`` that is ``name`` or a dotted prefix of it."""
    return next((p for p in prefixes if name == p or name.startswith(p + ".")), None)


@functools.lru_cache(maxsize=64)
def _root(name: str) -> types.ModuleType | None:
    """A top-level module the policy allows (the only kind imported here, in the grader)."""
    try:
        return sys.modules.get(name) or importlib.import_module(name)
    except ImportError:
        return None


class _Found(NamedTuple):
    """Where a dotted name of an allowed module leads (``_lookup``)."""

    canonical: str
    """Its spelling from the last module passed: ``torch.nn.functional.torch.exp`` is ``torch.exp``."""
    target: object
    """The object, or None when the walk stopped before the end."""
    passed: tuple[str, ...]
    """The modules passed on the way."""
    rest: tuple[str, ...]
    """The parts after the walk stopped (attributes of a class, or not found)."""


@functools.lru_cache(maxsize=8192)
def _lookup(dotted: str) -> _Found:
    """Follow a dotted name of an allowed module through its modules' own dictionaries (no
    ``__getattr__`` of theirs runs)."""
    parts = dotted.split(".")
    obj: object = _root(parts[0])
    if obj is None:
        return _Found(dotted, None, (), tuple(parts[1:]))
    canonical, passed = [parts[0]], [parts[0]]
    for index, part in enumerate(parts[1:], 1):
        here = ".".join([*canonical, part])
        found = vars(obj).get(part, sys.modules.get(here)) if isinstance(obj, types.ModuleType) else None
        if found is None:
            return _Found(".".join(canonical + parts[index:]), None, tuple(passed), tuple(parts[index:]))
        obj = found
        if isinstance(obj, types.ModuleType):  # known by the name it is imported as: os.path, not posixpath
            canonical = (here if sys.modules.get(here) is obj else obj.__name__).split(".")
            passed.append(".".join(canonical))
        else:
            canonical.append(part)
    return _Found(".".join(canonical), obj, tuple(passed), ())


def _only(policy: Policy) -> str:
    return f"Only {', '.join(policy.allowed_imports)} and your own exercise files can be imported"


@functools.lru_cache(maxsize=256)
def _reached(policy: Policy) -> frozenset[str]:
    """Attribute names that lead, on any object, to a module or name the policy keeps out
    (not the builtins': ``model.eval()`` is no ``eval``)."""
    blocked = {entry.rpartition(".")[2] for entry in policy.blocked if not entry.startswith("builtins.")}
    return MODULE_ATTRIBUTES | blocked


def _reached_problem(attr: str, policy: Policy) -> tuple[str, str]:
    """(what, fix) for ``.attr`` on an object the scan cannot follow, judged by its name."""
    fix = _only(policy) if attr in MODULE_ATTRIBUTES else _LIBRARY_FIX
    return f"uses .{attr}, which leads to a module or name graded code may not use", fix


@functools.lru_cache(maxsize=4096)
def _module_problem(name: str, policy: Policy) -> tuple[str, str] | None:
    """Why a library module may not be imported: (what, fix), or None."""
    if _under(name, policy.allowed_imports) is None:
        return f"imports {name}, which graded code may not import", _only(policy)
    blocked = _under(name, policy.blocked)
    if blocked:
        return f"imports {blocked}, which graded code may not use", _FIXES.get(blocked, _LIBRARY_FIX)
    if any(_is_private(part) or _is_dunder(part) for part in name.split(".")[1:]):
        return f"imports {name}, a private part of {name.partition('.')[0]}", _PRIVATE_FIX
    return None


@functools.lru_cache(maxsize=8192)
def _name_problem(name: str, policy: Policy) -> tuple[str, str] | None:
    """Why a dotted name of an allowed module may not be used: (what, fix), or None."""
    parts = name.split(".")
    for part in parts[1:]:
        if _is_dunder(part) and part not in ALLOWED_DUNDER_ATTRIBUTES:
            return f"uses {name}, which graded code may not use", _DUNDER_FIXES.get(part, _DUNDER_FIX)
        if _is_private(part):
            return f"uses {name}, a private part of {parts[0]}", _PRIVATE_FIX
    found = _lookup(name)
    blocked = _under(name, policy.blocked) or _under(found.canonical, policy.blocked)
    if blocked:
        return f"uses {blocked}, which graded code may not use", _FIXES.get(blocked, _LIBRARY_FIX)
    for module in found.passed:
        if _module_problem(module, policy):
            return f"reaches the module {module} through {name}, which graded code may not use", _only(policy)
    home = _home(found.target)
    if home is not None and _home_problem(home, policy):
        return (f"uses {name}, which is {home}: graded code may not use {home.rpartition('.')[0] or home}",
                _only(policy) if not home.startswith("builtins") else _LIBRARY_FIX)
    for part in found.rest:  # past a class, judged by name as on any object (torch.ByteStorage.from_file)
        if part in _reached(policy):
            return _reached_problem(part, policy)
    return None


# Modules whose functions a standard module re-exports under its own name (``os.getcwd`` is
# ``posix.getcwd``), besides the underscore ones (``_functools`` for ``functools``).
_C_MODULES = {"posix": "os", "nt": "os", "posixpath": "os.path", "ntpath": "os.path"}


def _home(target: object) -> str | None:
    """Where a function or class found in an allowed module really comes from: its defining
    module and name (``torch.autograd.profiler_util.attrgetter`` is ``operator.attrgetter``).
    A C accelerator module counts as its Python module (``_functools.reduce``: ``functools``);
    a built-in type that has no name in ``builtins`` (``types.FunctionType``) is ``builtins``."""
    if target is None or isinstance(target, types.ModuleType) or not callable(target):
        return None
    module = getattr(target, "__module__", None)
    if not isinstance(module, str) or not module:
        return None
    top, _, rest = module.partition(".")
    top = _C_MODULES.get(top, top[1:] if top.startswith("_") and top[1:] in sys.stdlib_module_names else top)
    module = top + (f".{rest}" if rest else "")
    name = getattr(target, "__name__", None)
    if module == "builtins":
        return f"builtins.{name}" if isinstance(name, str) and getattr(builtins, name, None) is target else "builtins"
    return f"{module}.{name}" if isinstance(name, str) else module


@functools.lru_cache(maxsize=4096)
def _home_problem(home: str, policy: Policy) -> bool:
    """Is the home of an object (``_home``) a module, or a builtin, the policy keeps out?"""
    if home == "builtins":
        return True  # a Python internal type (function, code, frame...) under another name
    if home.startswith("builtins."):
        return _under(home, policy.blocked) is not None
    module = home.rpartition(".")[0] or home
    return _under(module, policy.allowed_imports) is None or _under(home, policy.blocked) is not None


@functools.lru_cache(maxsize=256)
def _shadows(name: str) -> bool:
    """Is ``name`` also a module Python has (the standard library, an installed package)?
    Then ``import name`` may give that module instead of the submission's file."""
    if name in sys.stdlib_module_names or name in sys.modules:
        return True
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return True


@functools.lru_cache(maxsize=256)
def _banned_objects(banned: tuple[str, ...]) -> dict[int, str]:
    """``id`` of each banned name's object -> the name, to catch another spelling of it."""
    found = {}
    for name in banned:
        target = _lookup(name).target
        if target is not None and not isinstance(target, types.ModuleType):
            found[id(target)] = name
    return found


def _banned_base(target: object, objects: dict[int, str]) -> str | None:
    """The banned class a class derives from (a quantizable MultiheadAttention is one)."""
    if not isinstance(target, type):
        return None
    return next((objects[id(base)] for base in target.__mro__[1:] if id(base) in objects), None)


# ---------------------------------------------------------------- the scan of one file or cell


def _is_main_guard(node: ast.AST) -> bool:
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Compare) and isinstance(test.left, ast.Name) and test.left.id == "__name__"
            and len(test.comparators) == 1 and isinstance(test.comparators[0], ast.Constant)
            and test.comparators[0].value == "__main__")


def _bound_names(node: ast.stmt) -> frozenset[str]:
    """The names a top-level statement binds (``def f``, ``f = ...``, ``from m import f``)."""
    if isinstance(node, ast.Import):
        return frozenset(a.asname or a.name.partition(".")[0] for a in node.names)
    if isinstance(node, ast.ImportFrom):
        return frozenset(a.asname or a.name for a in node.names)
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return frozenset({node.name})
    targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
    return frozenset(n.id for t in targets if t is not None for n in ast.walk(t) if isinstance(n, ast.Name))


class _Scanner(ast.NodeVisitor):
    """Scans the files of one submission, or the cells of one notebook (``notebook=True``:
    the cells share their aliases, and ``if __name__ == "__main__":`` blocks run)."""

    def __init__(self, policy: Policy, own: frozenset[str], *, notebook: bool = False):
        self.policy = policy
        self.own = own
        self.notebook = notebook
        self.aliases: dict[str, str] = {}
        self.stars: list[str] = []  # allowed library modules imported with *
        self.reached = _reached(policy)

    # ---- aliases: imports and simple assignments, collected before the scan

    def collect(self, tree: ast.AST) -> None:
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:  # import a.b binds a; import a.b as x binds x to a.b
                    top = a.name.partition(".")[0]
                    self.aliases[a.asname or top] = a.name if a.asname else top
            elif isinstance(node, ast.ImportFrom) and node.level <= 1:
                module = self._from_module(node)
                for a in node.names:
                    if a.name == "*":
                        self.stars.append(module)
                    else:
                        self.aliases[a.asname or a.name] = f"{module}.{a.name}"
            elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                target = self.resolve(node.value)
                if target:
                    self.aliases[node.targets[0].id] = target

    @staticmethod
    def _from_module(node: ast.ImportFrom) -> str:
        """The absolute module of ``from M import ...`` (``from .x`` is ``exercises.x``)."""
        if node.level == 0:
            return node.module or ""
        return f"{_OWN_PACKAGE}.{node.module}" if node.module else _OWN_PACKAGE

    def resolve(self, node: ast.AST) -> str | None:
        """The dotted name an expression stands for, if it is built from imports."""
        if isinstance(node, ast.Name):
            if node.id in self.aliases:
                return self.aliases[node.id]
            for module in self.stars:
                found = _lookup(module).target if self.allowed(module) else None
                if isinstance(found, types.ModuleType) and node.id in vars(found):
                    return f"{module}.{node.id}"
            return None
        if isinstance(node, ast.Attribute):
            base = self.resolve(node.value)
            return f"{base}.{node.attr}" if base else None
        return None

    def is_own(self, name: str) -> bool:
        top = name.partition(".")[0]
        return top == _OWN_PACKAGE or top in self.own

    def allowed(self, name: str) -> bool:
        """Is ``name`` in a library module the policy allows (whatever it is inside)?"""
        return not self.is_own(name) and _under(name, self.policy.allowed_imports) is not None

    @staticmethod
    def shallow(name: str) -> bool:
        """An own module, or a name of it (``exercises.softmax.softmax``): not something the
        module holds from elsewhere (``exercises.softmax.torch.library``)."""
        parts = name.split(".")
        return len(parts) - (parts[0] == _OWN_PACKAGE) <= 2

    def own_module(self, name: str) -> str | None:
        """The submission module an own dotted name is in (``exercises.softmax.f`` -> ``softmax``)."""
        parts = name.split(".")
        if parts[0] == _OWN_PACKAGE:
            return parts[1] if len(parts) > 1 and parts[1] in self.own else None
        return parts[0] if parts[0] in self.own else None

    # ---- one file or cell

    def scan(self, tree: ast.Module, file: str, text: str) -> _Scan:
        self.file, self.lines = file, text.splitlines()
        self.found: dict[int, Violation] = {}
        self.uses: list[_Use] = []
        self.imports: set[str] = set()
        self.owners: frozenset[str] | None = None
        try:
            for node in tree.body:
                if self.notebook and not isinstance(node, (ast.Import, ast.ImportFrom)):
                    self.owners = _bound_names(node)
                else:
                    self.owners = None
                self.visit(node)
        except RecursionError:
            self.found[0] = Violation("is nested too deeply to be checked", file, 0, "",
                                      "Split its long expressions into several lines")
        return _Scan(tuple(self.found[line] for line in sorted(self.found)), tuple(self.uses), frozenset(self.imports))

    def code(self, line: int) -> str:
        return self.lines[line - 1].strip()[:160] if 0 < line <= len(self.lines) else ""

    def flag(self, node: ast.AST, what: str, fix: str) -> None:
        line = getattr(node, "lineno", 0)
        if line not in self.found:
            self.found[line] = Violation(what, self.file, line, self.code(line), fix)

    def use(self, node: ast.AST, name: str, verb: str = "uses") -> None:
        """A library name: check it against the policy, and keep it for the banned lists."""
        if not self.allowed(name):
            return  # in a module that may not be imported: its import is flagged
        problem = _name_problem(name, self.policy)
        if problem:
            self.flag(node, *problem)
        found = _lookup(name)
        self.uses.append(_Use(node.lineno, self.code(node.lineno), verb, (name, found.canonical), found.target, "",
                              self.owners))

    # ---- the visitors

    def visit_If(self, node: ast.If) -> None:
        if _is_main_guard(node) and not self.notebook:
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for a in node.names:
            self.import_module(node, a.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level > 1:
            self.flag(node, "imports from outside your submission", _OWN_FILES_FIX)
            return
        module = self._from_module(node)
        self.import_module(node, module)
        for a in node.names:
            full = f"{module}.{a.name}"
            if a.name != "*" and self.own_module(full):
                self.imports.add(self.own_module(full))
            elif a.name != "*" and not _module_problem(module, self.policy):
                self.use(node, full, "imports")

    def import_module(self, node: ast.stmt, name: str) -> None:
        parts = name.split(".")
        if parts[0] == _OWN_PACKAGE:
            if len(parts) > 1 and parts[1] in self.own:
                self.imports.add(parts[1])
        elif parts[0] in self.own:
            if _shadows(parts[0]):
                self.flag(node, f"imports {name}, which is also the name of a module of Python's",
                          f"Rename your file {parts[0]}.py (for example to my_{parts[0]}.py), or import it "
                          f"as exercises.{parts[0]}")
            else:
                self.imports.add(parts[0])
        else:
            problem = _module_problem(name, self.policy)
            if problem:
                self.flag(node, *problem)

    def visit_Name(self, node: ast.Name) -> None:
        load = isinstance(node.ctx, ast.Load)
        name = self.resolve(node) if load else None
        builtin = _under(f"builtins.{node.id}", self.policy.blocked) if load else None
        if name is not None:
            self.use(node, name)
        elif _is_dunder(node.id) and node.id not in ALLOWED_DUNDER_NAMES:
            self.flag(node, f"uses {node.id}, which graded code may not use", _DUNDER_FIX)
        elif builtin:
            self.flag(node, f"uses {node.id}(), which graded code may not use", _FIXES.get(builtin, _LIBRARY_FIX))

    def visit_Attribute(self, node: ast.Attribute) -> None:
        attr, name = node.attr, self.resolve(node)
        if _is_dunder(attr) and attr not in ALLOWED_DUNDER_ATTRIBUTES:
            self.flag(node, f"uses .{attr}, which graded code may not use", _DUNDER_FIXES.get(attr, _DUNDER_FIX))
        elif attr in FRAME_ATTRIBUTES:
            self.flag(node, f"uses .{attr}, which graded code may not use", _FRAME_FIX)
        elif name is not None and not self.is_own(name):
            self.use(node, name)
        elif name is not None and self.shallow(name):
            pass  # exercises.softmax.softmax: a name of the student's own file
        elif attr in self.reached:  # an object the scan cannot follow: judged by the attribute's name
            self.flag(node, *_reached_problem(attr, self.policy))
        elif _is_private(attr) and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
            self.flag(node, f"uses .{attr}, a private name", _PRIVATE_FIX)
        if name is None:
            self.uses.append(_Use(node.lineno, self.code(node.lineno), "calls", (), None, attr, self.owners))
        self.generic_visit(node)

    def visit_MatchClass(self, node: ast.MatchClass) -> None:
        if node.kwd_attrs:
            self.flag(node, "reads attributes by name in a case pattern", _MATCH_FIX)
        self.generic_visit(node)


# ---------------------------------------------------------------- files and exercises


@functools.lru_cache(maxsize=32)  # a submission's files, while its exercises are gated
def _scan_file(path: str, text: str, policy: Policy, own: frozenset[str]) -> _Scan | None:
    """One file of a submission whose own modules are ``own``; None when it does not parse
    (importing it fails, which the worker reports)."""
    try:
        tree = ast.parse(text, filename=path)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    scanner = _Scanner(policy, own)
    scanner.collect(tree)
    return scanner.scan(tree, path, text)


def _banned(uses: tuple[_Use, ...], banned: tuple[str, ...], file: str, owner: str | None = None) -> list[Violation]:
    """The uses of ``banned`` names (in a notebook: by the statements that bind ``owner``)."""
    if not banned:
        return []
    names, objects = set(banned), _banned_objects(banned)
    methods = {b.rpartition(".")[2] for b in banned if b.startswith("torch.Tensor.")}
    found: dict[int, Violation] = {}
    for use in uses:
        if use.line in found or (owner is not None and use.owners is not None and owner not in use.owners):
            continue
        if use.method:
            if use.method in methods:
                found[use.line] = Violation(f"calls the tensor method .{use.method}(), which this exercise forbids",
                                            file, use.line, use.code, _BANNED_FIX)
            continue
        hit = next((n for n in use.names if n in names), None)
        if hit is None and use.target is not None:
            hit = objects.get(id(use.target)) or _banned_base(use.target, objects)
        if hit:
            found[use.line] = Violation(f"{use.verb} {hit}, which this exercise forbids", file, use.line, use.code,
                                        _BANNED_FIX)
    return [found[line] for line in sorted(found)]


def _merged(*groups: list[Violation]) -> list[Violation]:
    """One violation per line, in line order (the first group's wins a line)."""
    found: dict[int, Violation] = {}
    for group in groups:
        for violation in group:
            found.setdefault(violation.line, violation)
    return [found[line] for line in sorted(found)]


def exercise_violations(sources: Mapping[str, tuple[str, str]], exercise: str, banned: tuple[str, ...],
                        policy: Policy) -> list[Violation]:
    """Everything that forbids ``exercise`` in a submission of files ``{module: (path, text)}``:
    the violations of its own file and of every file it imports, directly or through others
    (they run when it is imported), its banned names included. Its own file's come first."""
    own, order, found = frozenset(sources), [exercise], []
    for name in order:  # grows as imports are found
        scan = _scan_file(*sources[name], policy, own)
        if scan is not None:
            order += sorted(scan.imports - set(order))
            found += _merged(list(scan.problems), _banned(scan.uses, banned, sources[name][0]))
    return found


# ---------------------------------------------------------------- notebooks


@dataclass(frozen=True)
class NotebookScan:
    """A notebook's cells scanned as one program (``cells[index]``, Markdown ones empty)."""

    problems: Mapping[int, tuple[Violation, ...]]
    """Cell index -> its violations: such a cell is not run."""
    uses: Mapping[int, tuple[_Use, ...]]
    defined_in: Mapping[str, int]
    """Top-level name -> the last cell that binds it."""
    names: tuple[str, ...] = ()
    """Cell index -> how messages name it (``cell [5]``)."""

    def skipped(self) -> dict[int, str]:
        """Cell index -> why it is not run, in words (for the submission's errors)."""
        return {index: f"{describe(found)} The cell was not run." for index, found in self.problems.items()}

    def banned(self, function: str, banned: tuple[str, ...]) -> list[Violation]:
        """The uses of ``banned`` names where ``function`` is defined, and in any import."""
        return [v for index, uses in self.uses.items() for v in _banned(uses, banned, self.names[index], function)]


def _notebook_fix(fix: str, policy: Policy) -> str:
    """A violation's fix in a notebook's words: a notebook has no files of its own to import."""
    if fix == _only(policy):
        return f"Only {', '.join(policy.allowed_imports)} can be imported in a notebook"
    if fix == _OWN_FILES_FIX:
        return "A notebook's functions are all in one namespace: call them by name"
    return fix


@functools.lru_cache(maxsize=4)
def scan_notebook(cells: tuple[str, ...], policy: Policy, names: tuple[str, ...] | None = None) -> NotebookScan:
    """Scan every code cell (a cell that does not parse is reported when it runs). ``names``:
    how messages name each cell (``Submission.cell_names``); by default, those of cells
    saved without execution counts."""
    names = tuple(names) if names and len(names) == len(cells) else tuple(plain_cell_names(cells))
    trees = _parsed(cells)
    scanner = _Scanner(policy, frozenset(), notebook=True)
    for tree in trees.values():
        scanner.collect(tree)
    problems, uses = {}, {}
    for index, tree in trees.items():
        scan = scanner.scan(tree, names[index], cells[index])
        if scan.problems:
            problems[index] = tuple(replace(v, fix=_notebook_fix(v.fix, policy)) for v in scan.problems)
        uses[index] = scan.uses
    return NotebookScan(problems, uses, notebook_definitions(cells), names)


@functools.lru_cache(maxsize=4)
def _parsed(cells: tuple[str, ...]) -> dict[int, ast.Module]:
    """Cell index -> its syntax tree, for the cells that parse."""
    trees = {}
    for index, cell in enumerate(cells):
        try:
            trees[index] = ast.parse(cell)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
    return trees


@functools.lru_cache(maxsize=4)
def notebook_definitions(cells: tuple[str, ...]) -> dict[str, int]:
    """Top-level name -> the index of the last cell that binds it (``def f``, ``f = ...``,
    an import); a cell that does not parse binds nothing."""
    defined_in: dict[str, int] = {}
    for index, tree in _parsed(cells).items():
        for node in tree.body:
            defined_in.update(dict.fromkeys(_bound_names(node), index))
    return defined_in
