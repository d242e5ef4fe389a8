"""Nothing of a chapter in the engine: the course's exercises live in course.yaml, the suites
and the misconception modules, never in the engine's logic.

The engine is every module of ``grader/`` and ``grader/sandbox/`` plus the misconception
library's ``__init__``; the suites (``grader/suites/``) and the per-exercise misconception
modules are the course's content. Docstrings and comments may use the course as an example.
"""
from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, make_submission

ENGINE = sorted(p for p in ROOT.glob("grader/**/*.py") if "suites" not in p.relative_to(ROOT).parts)


def course_words() -> set[str]:
    """The course's exercise ids and function names, from course.yaml."""
    course = yaml.safe_load((ROOT / "course.yaml").read_text())
    return {w for e in course["exercises"] for w in (e["id"], e.get("function", e["id"]))}


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            for statement in node.body:  # a string statement anywhere in a body documents something
                if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant) \
                        and isinstance(statement.value.value, str):
                    found.add(id(statement.value))
    return found


def course_names_in(path: Path, words: set[str]) -> list[str]:
    """``file:line: name`` for each string constant (not a docstring), variable, argument,
    function or attribute name of ``path`` that is one of ``words``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    docstrings = _docstrings(tree)
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            names = [node.value]
        elif isinstance(node, ast.Name):
            names = [node.id]
        elif isinstance(node, ast.Attribute):
            names = [node.attr]
        elif isinstance(node, ast.arg):
            names = [node.arg]
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names = [node.name]
        elif isinstance(node, ast.keyword) and node.arg:
            names = [node.arg]
        else:
            continue
        hits += [(node.lineno, n) for n in names if n in words]
    where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
    return [f"{where}:{line}: {n!r}" for line, n in sorted(hits)]


def test_the_scan_finds_a_branch_on_an_exercise(tmp_path):
    """Does the scan see an exercise id in a branch and in a name, and leave docstrings and comments alone?"""
    module = tmp_path / "engine.py"
    module.write_text('"""Draws softmax weights."""\n# attention: a comment\n'
                      'def f(name):\n    """For softmax."""\n    return name in ("softmax", "x")\n'
                      'def g(o):\n    return o.attention\n')
    hits = course_names_in(module, {"softmax", "attention"})
    assert hits == ["engine.py:5: 'softmax'", "engine.py:7: 'attention'"]


def test_engine_names_no_exercise():
    """Does no engine module name one of the course's exercises (or their functions) in its code?"""
    words = course_words()
    assert {"softmax", "attention", "attention_scores", "apply_weights"} <= words
    hits = [hit for path in ENGINE for hit in course_names_in(path, words)]
    assert not hits, "the engine names the course's exercises; move this to course.yaml or the suites:\n" + \
        "\n".join(hits)


# ---------------------------------------------------------------- pictures are the suite's to ask for

GRADE = """
import json, sys
from pathlib import Path
import grader.run.direct
from grader.course.load import load_course
from grader.run.session import grade

if sys.argv[1] == "pytest":
    grader.run.direct.runs_directly = lambda item: False
course = load_course(Path(sys.argv[2]))
paths = [Path(p) for p in sys.argv[3:]]
print(json.dumps([r.to_record() for r in grade(course, [(p.name, p) for p in paths])]))
"""

DOUBLED = "def apply_attention_weights(weights, V):\n    return 2 * (weights @ V)\n"


def graded(how: str, course: Path, paths: list[Path]) -> list[dict]:
    proc = subprocess.run([sys.executable, "-c", GRADE, how, str(course), *map(str, paths)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def pictured_course(tmp_path_factory) -> Path:
    """A copy of the course whose apply_weights suite asks for pictures (softmax's no longer does)."""
    course = tmp_path_factory.mktemp("course")
    shutil.copy(ROOT / "course.yaml", course / "course.yaml")
    shutil.copytree(ROOT / "solutions", course / "solutions")
    shutil.copytree(ROOT / "grader" / "suites", course / "grader" / "suites")
    shutil.copytree(ROOT / "misconceptions", course / "misconceptions")
    suite = course / "grader" / "suites" / "test_apply_weights.py"
    text = suite.read_text()
    assert "pytestmark" not in text
    suite.write_text(text.replace('DIMS = ("query", "feature")\n',
                                  'DIMS = ("query", "feature")\npytestmark = pytest.mark.picture\n'))
    softmax = course / "grader" / "suites" / "test_softmax.py"
    softmax.write_text(softmax.read_text().replace("pytestmark = pytest.mark.picture\n", ""))
    return course / "course.yaml"


@pytest.mark.parametrize("how", ["direct", "pytest"])
def test_a_suite_that_asks_for_pictures_gets_them(pictured_course, tmp_path, how):
    """Does a failing apply_weights test get a picture once its suite asks for one, by either
    way of running a test, and a suite that does not ask get none?"""
    paths = [make_submission(tmp_path / "doubled", {"apply_weights": DOUBLED}),
             make_submission(tmp_path / "sigmoid", {"softmax": "import torch\n\ndef softmax(x, dim=-1):\n"
                                                                "    return torch.sigmoid(x)\n"})]
    doubled, sigmoid = graded(how, pictured_course, paths)
    figures = doubled["figures"]
    assert "apply_weights/test_lesson_example" in figures, sorted(figures)
    ((title, expected, got, how),) = figures["apply_weights/test_lesson_example"]
    assert title == "apply_weights: test_lesson_example"
    assert how == {"axes": ["row", "column"]}  # the marker names no axes
    assert sum(expected, []) == pytest.approx([2.4, 3.4, 3.2, 4.2, 2.8, 3.8])
    assert sum(got, []) == pytest.approx([4.8, 6.8, 6.4, 8.4, 5.6, 7.6])
    assert not any(k.startswith("softmax/") for k in figures)
    failed_softmax = [t for e in sigmoid["result"]["exercises"] if e["id"] == "softmax" for t in e["tests"]
                      if t["status"] == "failed"]
    assert failed_softmax  # its softmax fails, and that suite asks for no picture here
    assert not any(k.startswith("softmax/") for k in sigmoid["figures"])


def test_the_picture_marker_is_parsed():
    """Does ``picture`` take only ``part=`` (an index) and ``axes=`` (two names), and say so otherwise?"""
    from types import SimpleNamespace as Mark

    from grader.run.items import NO_PICTURE, marker_picture

    assert marker_picture(None) is NO_PICTURE
    assert marker_picture(Mark(args=(), kwargs={})) == (None, ("row", "column"))
    assert marker_picture(Mark(args=(), kwargs={"part": 1})) == (1, ("row", "column"))
    assert marker_picture(Mark(args=(), kwargs={"part": 0, "axes": ["query", "key"]})) == (0, ("query", "key"))
    for args, kwargs in [(("weights",), {}), ((), {"part": "1"}), ((), {"part": True}), ((), {"index": 1}),
                         ((), {"axes": "query"}), ((), {"axes": ("query", "")}), ((), {"axes": ("a", "b", "c")})]:
        with pytest.raises(ValueError, match="picture"):
            marker_picture(Mark(args=args, kwargs=kwargs))
