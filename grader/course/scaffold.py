"""``python -m grader new ID``: the files of a new exercise, and its entry in course.yaml.

One id everywhere: the stub ``exercises/<id>.py``, the reference ``solutions/<id>.py``, the
suite ``grader/suites/test_<id>.py``, the misconception module
``misconceptions/<id>.py`` (the course's folder) and a ``- id: <id>`` entry appended to course.yaml (as
text: the file's comments and layout stay as they are). Everything is checked before the
first file is written; if the course does not load afterwards, every file written is
removed and course.yaml restored, so a refused or failed ``new`` leaves the course as it was.
"""
from __future__ import annotations

import json
import keyword
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from .load import Course, CourseError, default_course_path, load_course
from ..errors import UsageError


@dataclass(frozen=True)
class Scaffold:
    """What ``new`` wrote."""

    course_file: Path
    """The course.yaml the entry was appended to."""
    files: tuple[Path, ...]
    """The new files: stub, reference, suite, misconception module."""
    exercise_id: str
    function: str
    started: bool = False
    """Whether ``new`` started the course (wrote its course file and suites' conftest.py)."""


def _folders(course: Course) -> dict[str, Path]:
    """The course's folders: course.yaml ``paths:`` (``Course.paths``) where the course has
    them, else the attention course's layout under its root."""
    paths = getattr(course, "paths", None)
    if paths is not None:
        return {"exercises": paths.exercises, "solutions": paths.solutions, "suites": paths.suites,
                "misconceptions": getattr(paths, "misconceptions", None)}
    return {"exercises": course.root / "exercises", "solutions": course.root / "solutions",
            "suites": course.root / "grader" / "suites", "misconceptions": None}


def misconceptions_folder(course: Course) -> Path:
    """Where the new exercise's misconception module goes: the course's own folder
    (``paths: misconceptions:``, by default ``misconceptions/`` beside course.yaml, made if
    the course has none yet)."""
    return _folders(course)["misconceptions"] or course.root / "misconceptions"


def planned_files(course: Course, exercise_id: str) -> dict[str, Path]:
    """The files ``new`` writes for ``exercise_id``, by role."""
    folders = _folders(course)
    return {
        "stub": folders["exercises"] / f"{exercise_id}.py",
        "reference": folders["solutions"] / f"{exercise_id}.py",
        "suite": folders["suites"] / f"test_{exercise_id}.py",
        "misconceptions": misconceptions_folder(course) / f"{exercise_id}.py",
    }


def _is_name(text: str) -> bool:
    return text.isidentifier() and not keyword.iskeyword(text)


def new_exercise(exercise_id: str, *, course_file: str | Path | None = None, title: str | None = None,
                 points: float = 1, function: str | None = None) -> Scaffold:
    """Write the stub, reference, suite and misconception module of a new exercise and append
    its entry to course.yaml. Raises UsageError (one line, nothing written) when the id is not
    a Python name, is already in the course, or one of the files already exists."""
    course_file = Path(course_file) if course_file is not None else default_course_path()
    starting = not course_file.exists()  # a course of its own, from nothing: its file and suites' conftest.py too
    if starting and not course_file.parent.is_dir():
        raise UsageError(f"{course_file.parent}: no such folder. Fix: make it first, or name a course file in an "
                         "existing folder.")
    course = Course(_course_title(course_file), COURSE_SEED, (), course_file.parent.resolve(), file=course_file) \
        if starting else load_course(course_file, check_torch_names=False)
    function = function or exercise_id
    title = title or exercise_id.replace("_", " ").capitalize()
    if not _is_name(exercise_id):
        raise UsageError(f"{exercise_id!r} is not a Python module name. Fix: use letters, digits and _ "
                         "(not starting with a digit), such as layer_norm.")
    if not _is_name(function):
        raise UsageError(f"--function {function!r} is not a Python function name. Fix: use letters, digits and _.")
    if exercise_id in course.ids:
        raise UsageError(f"{course_file}: an exercise {exercise_id!r} already exists. Fix: choose another id.")
    if isinstance(points, bool) or not points > 0:
        raise UsageError(f"--points {points!r}: give a number greater than 0.")
    files = planned_files(course, exercise_id)
    if starting:
        files["plugin"] = files["suite"].parent / "conftest.py"
    existing = [p for p in files.values() if p.exists()]
    if existing:
        raise UsageError(f"{existing[0]} already exists. Fix: choose another id, or remove that file.")

    contents = {
        "stub": stub_source(exercise_id, title, function),
        "reference": reference_source(exercise_id, title, function),
        "suite": suite_source(exercise_id, title, function),
        "misconceptions": misconceptions_source(exercise_id, function),
        "plugin": SUITES_CONFTEST,
    }
    original = course_file.read_text(encoding="utf-8") if not starting else course_header(course.title)
    written: list[Path] = []
    created_dirs: list[Path] = []
    try:
        for role, path in files.items():
            for parent in reversed(path.parents):
                if not parent.exists():
                    parent.mkdir()
                    created_dirs.append(parent)
            path.write_text(contents[role], encoding="utf-8")
            written.append(path)
        course_file.write_text(original + course_entry(original, exercise_id, title, points, function),
                               encoding="utf-8")
        loaded = load_course(course_file, check_torch_names=False)
        entry = loaded.exercise(exercise_id) if exercise_id in loaded.ids else None
        if entry is None or (entry.title, entry.points, entry.function) != (title, points, function):
            raise CourseError(f"{course_file}: the appended entry did not load as exercise {exercise_id!r} "
                              "(is exercises: the file's last key?). Fix: add the entry by hand")
    except BaseException as exc:
        for path in reversed(written):
            path.unlink(missing_ok=True)
        for folder in reversed(created_dirs):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        if starting:
            course_file.unlink(missing_ok=True)
        else:
            course_file.write_text(original, encoding="utf-8")
        if isinstance(exc, CourseError):
            raise UsageError(f"nothing written: {exc}") from None
        raise
    return Scaffold(course_file, tuple(written), exercise_id, function, started=starting)


COURSE_SEED = 20260101
SUITES_CONFTEST = '''"""The suites of this course run as pytest files with the grader's plugin (markers, fixtures)."""
pytest_plugins = ["grader.pytest_plugin"]
'''


def _course_title(course_file: Path) -> str:
    """A first title for a new course: its folder's name, in words."""
    name = course_file.resolve().parent.name.replace("_", " ").replace("-", " ").strip()
    return name.capitalize() or "My course"


def course_header(title: str) -> str:
    """The course file of a new course, up to its ``exercises:`` list (``new`` appends the first entry)."""
    return f'''# A course: its exercises in order, their points and their limits (see docs/authoring.md).
# Every path is relative to this file's folder: exercises/ (the stubs), solutions/ (the
# references), grader/suites/ (test_<id>.py each), misconceptions/ (known mistakes).
title: {json.dumps(title)}

# Base of every test's seed: each test is seeded with hash(seed, test node id).
seed: {COURSE_SEED}

feedback:
  blame_earns_points: false      # a failure blamed on an earlier exercise is feedback only
  hidden_tests: after_published  # when Gradescope shows hidden tests' results

defaults:
  time_limit: 2.0                # seconds for one call of a student's function
  device: cpu
  tolerance:                     # how close a result must be to the reference's, per dtype
    float16:  {{rtol: 1.0e-2, atol: 1.0e-3}}
    bfloat16: {{rtol: 2.0e-2, atol: 1.0e-2}}
    float32:  {{rtol: 1.0e-5, atol: 1.0e-6}}
    float64:  {{rtol: 1.0e-9, atol: 1.0e-10}}

exercises:
'''


def next_steps(scaffold: Scaffold) -> str:
    """What the instructor does next, as printed by ``new``."""
    root = scaffold.course_file.resolve().parent
    rel = [p.resolve().relative_to(root) if p.resolve().is_relative_to(root) else p for p in scaffold.files]
    course = "" if scaffold.course_file.resolve() == (Path.cwd() / "course.yaml").resolve() \
        else f" --course {scaffold.course_file}"
    python = os.path.relpath(sys.executable) if Path(sys.executable).resolve().is_relative_to(Path.cwd().resolve()) \
        else "python"  # the venv's python, as the README writes it (.venv/bin/python)
    lines = [f"new course {scaffold.course_file}, with its first exercise {scaffold.exercise_id!r}. Wrote:"
             if scaffold.started else
             f"exercise {scaffold.exercise_id!r} added to {scaffold.course_file} (appended at the end). Wrote:"]
    lines += [f"  {p}" for p in ([scaffold.course_file.name] if scaffold.started else []) + rel]
    lines += [
        "Next:",
        f"  1. write the reference in {rel[1]} (and the signature of {scaffold.function} in all three files)",
        f"  2. write the lesson, the shapes and the worked example in {rel[0]}'s docstring, "
        "then the same example as test_worked_example",
        f"  3. {python} -m grader{course} grade solutions        # the reference must get full marks",
        f"  4. {python} -m grader{course} check {scaffold.exercise_id}   # the stub: 'not implemented yet', 0 points",
        f"  5. add tests (shapes, dtypes, gradients; @pytest.mark.hidden ones) and known mistakes in {rel[3]}",
        f"  6. {python} -m grader{course} release --out release  # the student bundle: check it runs",
        "See docs/authoring.md, 'Add an exercise'.",
    ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- the templates


def course_entry(course_text: str, exercise_id: str, title: str, points: float, function: str) -> str:
    """The YAML text of the new entry, indented as the file's other ``- id:`` entries."""
    indent = re.search(r"^([ \t]*)- id:", course_text, re.MULTILINE)
    pad = indent.group(1) if indent else "  "
    number = int(points) if float(points).is_integer() else points
    lead = "" if course_text.endswith("\n") or not course_text else "\n"
    lines = [f"{pad}- id: {exercise_id}", f"{pad}  title: {json.dumps(title)}", f"{pad}  points: {number}"]
    if function != exercise_id:
        lines.append(f"{pad}  function: {function}")
    lines.append(f"{pad}  banned: []          # library functions that would solve it, e.g. torch.nn.functional.layer_norm")
    return lead + "\n" + "\n".join(lines) + "\n"


def stub_source(exercise_id: str, title: str, function: str) -> str:
    return f'''"""{title}.

TODO (instructor): the lesson, in a few sentences: what the function computes and why.

Shapes:
    x       (..., d)    TODO: name each dimension
    output  (..., d)
"""
from torch import Tensor


def {function}(x: Tensor) -> Tensor:
    """TODO: one line saying what to return.

    A worked example (the same numbers as test_worked_example in
    grader/suites/test_{exercise_id}.py; tests/test_lesson_text.py runs it on the reference):

    >>> import torch
    >>> x = torch.tensor([[1., 2., 3.]])
    >>> {function}(x)  # TODO: the reference's output
    tensor([[1., 2., 3.]])

    Keep the dtype and device, do not modify the inputs, and stay differentiable.
    """
    raise NotImplementedError("{function}: TODO, a hint of the first step")
'''


def reference_source(exercise_id: str, title: str, function: str) -> str:
    return f'''"""Reference: {title.rstrip('.')}."""
from torch import Tensor


def {function}(x: Tensor) -> Tensor:
    """TODO: the reference solution (same signature as exercises/{exercise_id}.py)."""
    # unpack the shapes first, and comment each step with its shape: (..., d) -> (..., d)
    raise NotImplementedError("solutions/{exercise_id}.py: write the reference solution")
'''


def suite_source(exercise_id: str, title: str, function: str) -> str:
    return f'''"""Suite for {exercise_id}: {function}(x). TODO: say what it computes, in one line."""
import pytest
import torch

from grader.testing import randn

DIMS = ("row", "feature")  # names of the output's dims, for messages: "at row 1, feature 2"


@pytest.mark.points(2)
def test_worked_example(student, reference, expect):
    """Does the docstring's worked example give the reference's output?"""
    x = torch.tensor([[1.0, 2.0, 3.0]])  # TODO: the example of exercises/{exercise_id}.py
    expect.close(student(x), reference(x), what="the output", dims=DIMS)


@pytest.mark.parametrize("shape", [(4, 5), (2, 3, 6)], ids=["2d", "3d"])
def test_random_shapes(student, reference, expect, shape):
    """Is the output right for random inputs of any batch dims?"""
    x = randn(*shape)
    expect.close(student(x), reference(x), what="the output")


@pytest.mark.hidden
def test_fresh_inputs_each_call(student, reference, expect):
    """Is every call computed afresh (nothing cached or hard-coded)? Hidden: not in check."""
    for _ in range(3):
        x = randn(3, 4)
        expect.close(student(x), reference(x), what="the output", dims=DIMS)
'''


def misconceptions_source(exercise_id: str, function: str) -> str:
    return f'''"""Classic mistakes of {exercise_id}, {function}(x): none known yet.

Each entry is a Misconception(name, hint, compute, code_pattern): ``compute`` takes the
student's inputs and returns what the wrong code returns. See docs/authoring.md,
"Adding a misconception", and label a corpus student in tests/test_misconceptions.py.
"""
from torch import Tensor  # noqa: F401  (for the compute functions)

from grader.misconceptions import AnyOf, Misconception  # noqa: F401  (absolute: a course's own folder is no subpackage)

MISCONCEPTIONS: list[Misconception] = [
    # Misconception(
    #     "forgot_x",
    #     "The mistake, in one sentence. Then the fix.",
    #     lambda x: ...,      # what the wrong code returns for the student's inputs
    #     r"\\bpattern\\(",     # the student's line to quote; None to quote nothing
    # ),
]
'''
