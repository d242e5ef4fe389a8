"""An otter-grader assignment whose grading is ours: ``python -m grader otter --out DIR``.

Writes::

    DIR/autograder.zip     built by the real ``otter generate``; upload it to Gradescope
    DIR/requirements.txt   what the zip's environment installs on Gradescope (given to otter generate)
    DIR/student/           for students: the release bundle (grader/release/bundle.py) whose notebook has
                           otter's ``grader.check("softmax")`` cells, and tests/ for those checks

Inside ``autograder.zip``:

- ``files/course/``: this course in the default layout (its course file as course.yaml, less
  its ``paths:``; solutions/; misconceptions/ when the course has its own; the grader with the
  course's suites and no other course's), which
  setup.sh pip-installs in editable mode, so that otter's grading process can import the
  plugin ``grader.lms.otter_plugin.GraderPlugin`` and the suites and solutions stay in the one
  folder the sandbox hides from student code;
- ``tests/<id>.py``: one otter test file per exercise, one test case per test of our suite,
  with our points and hidden flags. Their bodies are placeholders that fail: the plugin
  replaces every result with our grader's (if it ever did not run, a submission would score
  0, never full marks);
- ``otter_config.json``: the plugin, with course.yaml's ``feedback.hidden_tests`` (when
  Gradescope shows the hidden tests' entries) and ``course``, the zip's course file
  (``files/course/course.yaml``), which the plugin grades with; the plugin writes results.json
  (``grader/lms/gradescope.py``). ``points_possible``, ``show_hidden: false`` and ``show_stdout:
  false`` apply only if the plugin never ran: otter's own results.json then has the total of the
  failing placeholders, 0, hides their per-exercise entries and the autograder's stdout;
- ``environment.yml``: otter's environment plus requirements.txt: a CPU build of torch (an
  unpinned torch would pull several GB of CUDA libraries) and the course.

The student's ``tests/<id>.py`` hold the public test cases only; each asks the student's
copy of the grader (``grader.selfcheck.notebook.public_test``), so otter's ``grader.check`` in
Jupyter shows the same verdicts as ``python -m grader check``.
"""
from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ..course.load import COURSE_FILE, MISCONCEPTIONS_FOLDER, Course
from ..errors import UsageError
from ..release.bundle import (IGNORED, PACKAGE, new_folder, project_file, without_suites_and_answers, write_course_file,
                              write_release)
from ..outputs.results import SubmissionResult

OTTER_VERSION = "7.0.0"
GRADESCOPE_COURSE = "/autograder/source/files/course"  # where Gradescope unpacks files/course
# The course file inside the zip, relative to the autograder's source/ folder: the plugin grades it.
ZIP_COURSE_FILE = f"files/course/{COURSE_FILE}"
PYTHON_VERSION = "3.11"  # the Python this project is tested with
# The Makefile's torch, as the CPU wheel from PyTorch's CPU index.
CPU_TORCH = ("--extra-index-url https://download.pytorch.org/whl/cpu", "torch==2.13.0+cpu")

PLACEHOLDER = ("not graded: the attention grader's otter plugin did not run on this submission. "
               "Tell your instructor.")


def write_assignment(course: Course, out: Path) -> None:
    """Write the otter assignment of ``course`` into ``out`` (a new or empty folder)."""
    if importlib.util.find_spec("otter") is None:
        raise UsageError("otter-grader is not installed. Fix: pip install -e '.[lms]' "
                         f"(otter-grader[grading]=={OTTER_VERSION}).")
    if course.uses_answer_book:
        raise UsageError(f"{course.root} has no solutions/ folder (a student release?): the autograder grades "
                         "against the solutions. Fix: run from the course repository.")
    new_folder(out)
    structure = suite_structure(course)
    write_release(course, out / "student", flavour="otter")
    write_tests(out / "student" / "tests", structure, public_only=True)
    requirements = "\n".join([*CPU_TORCH, f"-e {GRADESCOPE_COURSE}"]) + "\n"
    (out / "requirements.txt").write_text(requirements, encoding="utf-8")
    with tempfile.TemporaryDirectory(prefix="grader-otter-") as folder:
        stage = Path(folder)
        copy = stage / "course"  # the running grader, with the course's file, solutions and suites
        shutil.copytree(PACKAGE, copy / "grader", ignore=without_suites_and_answers(course))
        shutil.copytree(course.paths.solutions, copy / "solutions", ignore=IGNORED)
        if (course.paths.suites / "conftest.py").is_file():  # the course's own, if it has one
            shutil.copy2(course.paths.suites / "conftest.py", copy / "grader" / "suites")
        for exercise in course.exercises:  # this course's suites, and no other's
            shutil.copy2(course.suite_path(exercise), copy / "grader" / "suites")
        if course.paths.misconceptions is not None:  # found there by default: misconceptions/
            shutil.copytree(course.paths.misconceptions, copy / MISCONCEPTIONS_FOLDER, ignore=IGNORED)
        write_course_file(course, copy / COURSE_FILE)  # the default layout: no paths: needed
        shutil.copy2(project_file(), copy / "pyproject.toml")
        write_tests(stage / "tests", structure, public_only=False)
        config = {"lang": "python", "points_possible": course.max_score, "show_stdout": False, "show_hidden": False,
                  "plugins": [{"grader.lms.otter_plugin.GraderPlugin": {"hidden_tests": course.hidden_tests,
                                                                    "course": ZIP_COURSE_FILE}}]}
        (stage / "otter_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
        shutil.copy2(out / "requirements.txt", stage / "requirements.txt")
        # otter generate takes its extra files relative to its working folder.
        proc = subprocess.run([sys.executable, "-m", "otter", "generate", "-t", "tests", "-o", "autograder.zip",
                               "-c", "otter_config.json", "-r", "requirements.txt", "--no-environment",
                               "--python-version", PYTHON_VERSION, "course"],
                              cwd=stage, capture_output=True, text=True)
        if proc.returncode != 0:
            raise UsageError(f"otter generate failed: {proc.stderr.strip()[-1000:]}")
        shutil.move(stage / "autograder.zip", out / "autograder.zip")


def suite_structure(course: Course) -> SubmissionResult:
    """Every test of every suite with its points and hidden flag, as our grader allots them:
    the stubs graded (each test is then ``not_implemented``), so this cannot disagree with grading."""
    from ..run.session import grade

    (result,) = grade(course, [("stubs", course.paths.exercises)])
    return result


def write_tests(folder: Path, structure: SubmissionResult, *, public_only: bool) -> None:
    """One otter exception-format test file per exercise: the public cases ask the student's
    grader (``public_only``), the autograder's cases are placeholders for the plugin."""
    folder.mkdir(parents=True)
    for exercise in structure.exercises:
        cases = []
        for number, test in enumerate(exercise.tests, 1):
            if public_only and test.hidden:
                continue
            body = (f"    public_test({exercise.id!r}, {test.name!r})" if public_only
                    else "    raise AssertionError(PLACEHOLDER)")
            cases.append(f"@test_case(name={test.name!r}, points={test.max_score!r}, hidden={test.hidden!r})\n"
                         f"def case_{number}():\n{body}\n")
        if public_only:
            header = (f'"""Public tests of {exercise.id}, for otter\'s grader.check("{exercise.id}"): each case asks '
                      "this folder's grader\n(the same tests as python -m grader check) about the functions your "
                      'notebook defines."""\n'
                      "from otter.test_files import test_case\n\nfrom grader.selfcheck.notebook import public_test\n")
        else:
            header = (f'"""Placeholders for {exercise.id}: the attention grader\'s otter plugin replaces every '
                      'result with its own."""\n'
                      f"from otter.test_files import test_case\n\nPLACEHOLDER = {PLACEHOLDER!r}\n")
        text = f"{header}\nOK_FORMAT = False\nname = {exercise.id!r}\n\n\n" + "\n\n".join(cases)
        (folder / f"{exercise.id}.py").write_text(text, encoding="utf-8")
