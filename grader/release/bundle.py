"""The student release: what students get, and nothing they must not see.

``python -m grader release --out DIR`` writes::

    README.md          for students: set up, work, check, hand in
    course.yaml        the course file (named course.yaml whatever its own name, so that the
                       bundle's commands find it without --course), less its ``paths:``: the
                       bundle has the default layout
    pyproject.toml     so that ``pip install -e .`` installs the grader and its dependencies
    exercises/         the stubs
    grader/            the grader, less what is secret (below)
    <course>.ipynb     the course notebook: the lesson as Markdown (the stubs' docstrings),
                       one stub cell per exercise in course.yaml order, a check cell after each

    answers.pt         the answer book: the reference's and the misconceptions' answers to
                       the public tests' inputs, recorded now (``grader/release/answer_book.py``)

Left out: ``solutions/`` (the public tests compare with the answer book instead), every
``@pytest.mark.hidden`` test (removed from the suites' source, with its decorators and the
comments just above it), and the per-exercise misconception modules
(the course's misconceptions folder: they compute
with the correct algorithm to tell mistakes apart; their hints come from the book). No code
in the bundle solves an exercise.
``tests/test_release.py`` scans a fresh bundle for solution code and hidden tests.
"""
from __future__ import annotations

import ast
import inspect
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import nbformat
import yaml

from ..course.load import ANSWERS_FILE, COURSE_FILE, Course, Exercise
from ..errors import UsageError

if TYPE_CHECKING:
    from .answer_book import AnswerBook

from ..locations import PACKAGE  # the running grader: its code is what ships
PYPROJECT = PACKAGE.parent / "pyproject.toml"  # its project file, for `pip install -e .`
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")


class ReleaseError(UsageError):
    """The release cannot be written without leaking something; the message says what."""


def write_release(course: Course, out: Path, *, flavour: str = "grader") -> Path:
    """Write the student bundle into ``out`` (a new or empty folder); return the notebook's path.

    ``flavour`` picks the notebook's check cells: ``"grader"`` (``check("softmax")``) or
    ``"otter"`` (otter's ``grader.check("softmax")``, see ``grader/lms/otter_bridge.py``).
    """
    new_folder(out)
    write_course_file(course, out / COURSE_FILE)
    shutil.copy2(project_file(), out / PYPROJECT.name)
    shutil.copytree(course.paths.exercises, out / "exercises", ignore=without_suites_and_answers(course))
    _copy_public_grader(out / "grader", course)
    record_answers(course).save(out / ANSWERS_FILE)
    notebook = out / notebook_name(course)
    nbformat.write(course_notebook(course, flavour=flavour), notebook)
    (out / "README.md").write_text(student_readme(course, notebook.name, flavour=flavour), encoding="utf-8")
    return notebook


def write_course_file(course: Course, target: Path) -> None:
    """The course file at ``target``, for a copy of the course in the default layout (a release,
    the autograder zip's course): as it is, or without its ``paths:`` when it has one."""
    text = course.file.read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    if isinstance(data, dict) and "paths" in data:
        del data["paths"]
        text = (f"# {course.file.name} of the course, without its paths: (this copy has the default layout)\n"
                + yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    target.write_text(text, encoding="utf-8")


def new_folder(out: Path) -> None:
    """Create ``out``, or accept it empty; anything else is a usage error."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out} already exists and is not an empty folder. Fix: give a new folder to --out "
                         "(a stale solutions/ folder there would change what check compares with).")
    out.mkdir(parents=True, exist_ok=True)


def project_file() -> Path:
    if not PYPROJECT.is_file():
        raise UsageError(f"{PYPROJECT} does not exist: releases are written from the grader's source checkout. "
                         "Fix: run from a clone of the course repository (pip install -e .).")
    return PYPROJECT


def notebook_name(course: Course) -> str:
    """``Attention, step by step`` -> ``attention_step_by_step.ipynb``."""
    return (re.sub(r"[^a-z0-9]+", "_", course.title.lower()).strip("_") or "course") + ".ipynb"


# ---------------------------------------------------------------- the references, as answers


def record_answers(course: Course) -> "AnswerBook":
    """The answer book of the release (``grader/release/answer_book.py``): the public tests run on the
    reference solutions, each answer they or a hint ask of the reference or a misconception
    recorded. The reference must pass its own public tests: else nothing is released."""
    from .answer_book import Recorder
    from ..run.session import Job, grade

    if course.uses_answer_book:
        raise ReleaseError(f"{course.paths.solutions} does not exist (a student release?): its answers cannot be "
                           "recorded. Fix: run from the course repository.")
    recorder = Recorder()
    (result,) = grade(course, [Job("solutions", course.paths.solutions)], public_only=True, recorder=recorder)
    failed = [f"{e.id}::{t.name} ({t.status}: {t.message})" for e in result.exercises for t in e.tests
              if t.status != "passed"]
    if failed or result.errors:
        raise ReleaseError("the reference solutions fail their own public tests, so no answers were recorded: "
                           + "; ".join([*failed, *result.errors])[:1000] + ". Fix the solution or the test.")
    return recorder.book


# ---------------------------------------------------------------- the grader, less its secrets


def without_suites_and_answers(course: Course) -> Callable[[str, list[str]], set[str]]:
    """A copytree filter for the exercises and the grader package, as a release or an
    autograder copies them: it leaves out every suite in the package (the attention course's
    sit there) and the course's suites, solutions and misconceptions folders wherever they sit
    (inside its exercises folder, say). The copier then adds the suites of the course it ships
    (a release: their public tests only)."""
    folders = {course.paths.solutions.resolve()}
    if course.paths.suites.resolve() != PACKAGE / "suites":  # the engine's keeps its conftest.py
        folders.add(course.paths.suites.resolve())
    if course.paths.misconceptions is not None:
        folders.add(course.paths.misconceptions.resolve())

    def secret(folder: str, names: list[str]) -> set[str]:
        here = Path(folder).resolve()
        left_out = set(IGNORED(folder, names)) | {n for n in names if (here / n).resolve() in folders}
        if here == PACKAGE / "suites":
            left_out |= {n for n in names if n.startswith("test_") and n.endswith(".py")}
        return left_out

    return secret


def _copy_public_grader(target: Path, course: Course) -> None:
    """The grader package with public suites only and no per-exercise misconception modules."""
    shutil.copytree(PACKAGE, target, ignore=without_suites_and_answers(course))
    for exercise in course.exercises:
        suite = course.suite_path(exercise)
        (target / "suites" / suite.name).write_text(public_suite(suite.read_text(encoding="utf-8"), suite.name),
                                                   encoding="utf-8")


def _is_hidden_mark(node: ast.expr) -> bool:
    """``pytest.mark.hidden`` (or ``mark.hidden``), called or not."""
    target = node.func if isinstance(node, ast.Call) else node
    return isinstance(target, ast.Attribute) and target.attr == "hidden"


def public_suite(source: str, filename: str = "<suite>") -> str:
    """The suite's source without its hidden tests: each test function or class decorated
    with ``@pytest.mark.hidden`` goes, with its decorators and the comment lines just above.

    Raises ReleaseError when a hidden mark is left that this cannot remove (a module-level
    ``pytestmark``, ``pytest.param(..., marks=pytest.mark.hidden)``): never ship it.
    """
    tree = ast.parse(source, filename=filename)
    lines = source.splitlines(keepends=True)
    drop: set[int] = set()
    nodes = [*tree.body, *(n for c in tree.body if isinstance(c, ast.ClassDef) for n in c.body)]
    for node in nodes:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and any(
                _is_hidden_mark(d) for d in node.decorator_list):
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)]) - 1
            while first > 0 and lines[first - 1].lstrip().startswith("#"):
                first -= 1
            drop.update(range(first, node.end_lineno))
    kept = "".join(line for index, line in enumerate(lines) if index not in drop)
    kept = re.sub(r"\n{3,}(?=\S)", "\n\n\n", kept).rstrip("\n") + "\n"  # at most two blank lines
    for node in ast.walk(ast.parse(kept, filename=filename)):
        if isinstance(node, ast.Attribute) and node.attr == "hidden":
            raise ReleaseError(f"{filename} line {node.lineno}: a hidden mark the release cannot remove. "
                               "Fix: mark hidden tests with @pytest.mark.hidden on the test function itself.")
    return kept


# ---------------------------------------------------------------- the course notebook


CHECK_STYLES: dict[str, tuple[str, Callable[[Exercise], str]]] = {
    # flavour -> (set-up cell, check cell of an exercise)
    "grader": ("import torch\n\n"
               "# check(\"softmax\") runs the public tests of an exercise on the function this notebook\n"
               "# defines, and shows what passed and what did not (check() checks every exercise).\n"
               "from grader import check",
               lambda e: f'check("{e.id}")'),
    "otter": ("import torch\n\n"
              "# grader.check(\"softmax\") runs the public tests of an exercise on the function this\n"
              "# notebook defines (otter-grader runs them with the course's grader).\n"
              "import otter\n"
              "grader = otter.Notebook(\"{notebook}\")",
              lambda e: f'grader.check("{e.id}")'),
}


def course_notebook(course: Course, *, flavour: str = "grader") -> nbformat.NotebookNode:
    """The lesson as Markdown, a stub cell per exercise in course order, a check cell after each."""
    setup, check_cell = CHECK_STYLES[flavour]
    cells = [
        nbformat.v4.new_markdown_cell(
            f"# {course.title}\n\n"
            f"{len(course.exercises)} exercises, {course.max_score:g} points. Run the next cell first. For each "
            "exercise, read the lesson, replace the `raise NotImplementedError(...)` line of the stub with your "
            "code, run the cell, then run the check cell below it. Every function you define is visible to the "
            "cells after it, so the last exercise can call the earlier ones directly.\n\n"
            "The check runs the public tests only; the final grade also counts hidden tests with new inputs."),
        nbformat.v4.new_code_cell(setup.format(notebook=notebook_name(course))),
    ]
    for number, exercise in enumerate(course.exercises, 1):
        stub = course.stub_path(exercise).read_text(encoding="utf-8")
        lesson, code = split_stub(stub)
        banned = ""
        if exercise.banned:
            banned = "\n\nNot allowed here: " + ", ".join(f"`{b}`" for b in exercise.banned) + "."
        cells += [
            nbformat.v4.new_markdown_cell(f"## {number}. {exercise.title} ({exercise.points:g} points)\n\n"
                                          f"{to_markdown(lesson)}{banned}"),
            nbformat.v4.new_code_cell(code),
            nbformat.v4.new_code_cell(check_cell(exercise)),
        ]
    cells.append(nbformat.v4.new_markdown_cell(
        "## Hand in\n\nSave this notebook and hand it in as your instructor says. It is graded by running its "
        "code cells in order in a fresh Python (the check cells are left out): make sure it runs top to bottom."))
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata.update(kernelspec={"name": "python3", "display_name": "Python 3", "language": "python"},
                             language_info={"name": "python"})
    return notebook


def split_stub(source: str) -> tuple[str, str]:
    """A stub file's module docstring (the lesson, its summary line dropped: the notebook's
    heading is course.yaml's title) and its code (imports and the function)."""
    tree = ast.parse(source)
    docstring = ast.get_docstring(tree, clean=True) or ""
    code = source
    if docstring:
        code = "".join(source.splitlines(keepends=True)[tree.body[0].end_lineno:])
    lesson = docstring.partition("\n")[2].strip() if "\n" in docstring else ""
    return lesson, code.strip() + "\n"


def to_markdown(text: str) -> str:
    """A docstring in Markdown: ``code`` becomes `code`, indented lines become code blocks."""
    out: list[str] = []
    for line in inspect.cleandoc(text).splitlines():
        indented = line.startswith("    ")
        if indented and out and out[-1].strip() and not out[-1].startswith("    "):
            out.append("")  # Markdown needs a blank line before an indented code block
        out.append(line)
    return re.sub(r"``([^`]+)``", r"`\1`", "\n".join(out))


# ---------------------------------------------------------------- the student README


def _policy_paragraph(course: Course) -> str:
    """What graded code may import and use, from course.yaml's ``policy:`` (empty when the
    course turns the static scan off)."""
    policy = course.policy
    if not policy.static_scan:
        return ""
    quoted = lambda names: ", ".join(f"`{n}`" for n in names)  # noqa: E731
    reflective = [b.removeprefix("builtins.") for b in policy.blocked if b.startswith("builtins.")]
    machinery = [b for b in policy.blocked if not b.startswith("builtins.")]
    rules = [f"import only {quoted(policy.allowed_imports)} and your own exercise files" if policy.allowed_imports
             else "import only your own exercise files"]
    if reflective:
        rules.append(f"not use {quoted(reflective)}")
    rules.append("not use double-underscore attributes such as `x.__class__` (writing `__init__` and calling "
                 "`super().__init__()` are fine) or a library's private `_names`")
    if machinery:
        more = " and the others under `policy: blocked` in `course.yaml`" if len(machinery) > 4 else ""
        rules.append(f"not reach into a library's machinery ({quoted(machinery[:4])}{more})")
    return (f"\nAll graded code (every file you hand in and every notebook cell) may {'; may '.join(rules)}. "
            "An exercise whose file, or a file it imports, has such a line scores 0 without running, and a "
            "notebook cell with one is not run; the message names the line and what to write instead.\n")


def student_readme(course: Course, notebook: str, *, flavour: str = "grader") -> str:
    exercises = "\n".join(f"{n}. `{e.id}`: {e.title} ({e.points:g} points)" for n, e in enumerate(course.exercises, 1))
    banned = "\n".join(f"- `{e.id}`: " + ", ".join(f"`{b}`" for b in e.banned) for e in course.exercises if e.banned)
    policy = _policy_paragraph(course)
    if flavour == "otter":
        notebook_check = (f"In `{notebook}`, run the first code cell, then the `grader.check(\"softmax\")` cell after "
                          "each exercise: otter-grader runs that exercise's public tests (the files in `tests/`, "
                          "which ask this folder's grader) and shows what passed. This needs `pip install "
                          "\"otter-grader[grading]==7.0.0\"` besides the set-up above, or a course JupyterHub that "
                          "has it.")
    else:
        notebook_check = (f"In `{notebook}`, run the first code cell, then the `check(\"softmax\")` cell after each "
                          "exercise: it runs that exercise's public tests on the function the notebook defines and "
                          "shows a table of what passed, with the reason for each failure. `check()` checks every "
                          "exercise.")
    return f"""# {course.title}

What is here:

- `{notebook}`: the lesson and the exercises in one notebook, with a check after each one;
- `exercises/`: the same exercises as Python files, if you prefer an editor to Jupyter;
- `grader/`, `course.yaml`: the course's grader with its public tests, which runs on your computer.

The exercises, in order:

{exercises}

## Set up (once)

You need Python 3.10 or newer on Linux (on Windows, in WSL). In this folder:

```console
$ python3 -m venv .venv
$ .venv/bin/python -m pip install "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu
$ .venv/bin/python -m pip install -e . jupyter
```

(The first install is PyTorch for the CPU: no graphics card is needed.)

## Work in the notebook

```console
$ .venv/bin/jupyter notebook {notebook}
```

{notebook_check}

## Or work in the Python files

Edit the files in `exercises/` (each docstring holds the lesson, the shapes and a worked
example), then, from this folder:

```console
$ .venv/bin/python -m grader check            # every exercise
$ .venv/bin/python -m grader check softmax    # one exercise
```

`attention.py` may reuse your earlier work with `from exercises.softmax import softmax`.

## What the check tells you, and what it does not

- It runs the **public tests** only. Your grade also counts hidden tests, which call your
  functions on new inputs: code that only reproduces the worked examples loses those points.
- Each test compares your result with the reference solution's answers (recorded in
  `answers.pt` for the public tests' inputs), within a small
  tolerance, and says what differs in words (shape, dtype, NaN, the worst element).
- Your code runs in a separate, locked-down process: printing, loops that never end and
  crashes cost only the exercise they happen in.
- Some library functions are not allowed, because the exercise is to write them yourself;
  using one scores 0 for that exercise:

{banned}
{policy}
## Hand in

Hand in what your instructor asks for: the notebook `{notebook}` (its code cells run in order
in a fresh Python; the check cells are left out), or the `exercises/` folder as a `.zip`.
Make sure the notebook runs from top to bottom without errors before you hand it in.
"""
