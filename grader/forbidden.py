"""Static scan for forbidden operations, done in the grader where a student cannot touch it.

Reads the student's source as an AST (never runs it). Flags, for an exercise's banned list
(``torch.nn.functional.softmax``...): any reference that resolves through the file's
imports and aliases to a banned name, a method call ``x.softmax(...)`` for a banned
``torch.Tensor`` method, and the usual ways around a name check (``getattr`` with a
banned name, ``eval``/``exec``/``compile``/``__import__``, ``torch.ops`` and private
``torch._...`` attributes). Comments, strings, the student's own identifiers and code
under ``if __name__ == "__main__":`` are not violations.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass

EVASIONS = {"eval", "exec", "compile", "__import__"}


@dataclass(frozen=True)
class Violation:
    what: str
    """The banned operation or the evasion, in words."""
    file: str
    line: int
    code: str

    def __str__(self) -> str:
        return f"{self.what} at {self.file}:{self.line}: {self.code}"


def _is_main_guard(node: ast.AST) -> bool:
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Compare) and isinstance(test.left, ast.Name) and test.left.id == "__name__"
            and len(test.comparators) == 1 and isinstance(test.comparators[0], ast.Constant)
            and test.comparators[0].value == "__main__")


class _Scanner(ast.NodeVisitor):
    def __init__(self, banned: tuple[str, ...], file: str, lines: list[str]):
        self.banned = set(banned)
        # Tensor methods are reached through any tensor: x.softmax(...). Their short names.
        self.methods = {b.rsplit(".", 1)[1] for b in banned if b.startswith("torch.Tensor.")}
        self.short_names = {b.rsplit(".", 1)[1] for b in banned}
        self.aliases: dict[str, str] = {}
        self.star_modules: list[str] = []
        self.file, self.lines = file, lines
        self.found: dict[int, Violation] = {}

    # ---- aliases: imports and simple assignments, collected before the scan
    def collect(self, tree: ast.AST) -> None:
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.asname:
                        self.aliases[a.asname] = a.name
                    else:
                        top = a.name.partition(".")[0]
                        self.aliases[top] = top
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for a in node.names:
                    if a.name == "*":
                        self.star_modules.append(node.module)
                    else:
                        self.aliases[a.asname or a.name] = f"{node.module}.{a.name}"
            elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                target = self.resolve(node.value)
                if target and target.startswith("torch"):
                    self.aliases[node.targets[0].id] = target

    def resolve(self, node: ast.AST) -> str | None:
        """The dotted name an expression stands for, if it is built from imports."""
        if isinstance(node, ast.Name):
            if node.id in self.aliases:
                return self.aliases[node.id]
            for module in self.star_modules:
                if f"{module}.{node.id}" in self.banned:
                    return f"{module}.{node.id}"
            return None
        if isinstance(node, ast.Attribute):
            base = self.resolve(node.value)
            return f"{base}.{node.attr}" if base else None
        return None

    def flag(self, node: ast.AST, what: str) -> None:
        line = getattr(node, "lineno", 0)
        if line not in self.found:
            code = self.lines[line - 1].strip() if 0 < line <= len(self.lines) else ""
            self.found[line] = Violation(what, self.file, line, code[:160])

    # ---- the scan
    def visit_If(self, node: ast.If) -> None:
        if _is_main_guard(node):
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for a in node.names:
            if node.module and f"{node.module}.{a.name}" in self.banned:
                self.flag(node, f"imports {node.module}.{a.name}, which this exercise forbids")

    def visit_Name(self, node: ast.Name) -> None:
        name = self.resolve(node)
        if name in self.banned:
            self.flag(node, f"uses {name}, which this exercise forbids")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        name = self.resolve(node)
        if name in self.banned:
            self.flag(node, f"uses {name}, which this exercise forbids")
        elif name is None and node.attr in self.methods:
            self.flag(node, f"calls the tensor method .{node.attr}(), which this exercise forbids")
        elif name and name.startswith("torch.") and self.banned:
            parts = name.split(".")
            if parts[1] == "ops" or any(p.startswith("_") and not p.startswith("__") for p in parts[1:]):
                self.flag(node, f"uses the private torch API {name}, which may not be used in this exercise")
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if self.banned and isinstance(func, ast.Name) and func.id in EVASIONS and func.id not in self.aliases:
            self.flag(node, f"calls {func.id}(), which may not be used in this exercise")
        if (self.banned and isinstance(func, ast.Name) and func.id == "getattr" and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant) and node.args[1].value in self.short_names):
            self.flag(node, f"looks up {node.args[1].value!r} with getattr(), which this exercise forbids")
        self.generic_visit(node)


def scan_source(tree: ast.AST, banned: tuple[str, ...], file: str, text: str) -> list[Violation]:
    """Violations of ``banned`` in a parsed module (or a function definition in it)."""
    if not banned:
        return []
    scanner = _Scanner(banned, file, text.splitlines())
    scanner.collect(tree)
    scanner.visit(tree)
    return [scanner.found[line] for line in sorted(scanner.found)]
