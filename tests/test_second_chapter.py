"""The second chapter, courses/multi_head_attention/, is content only: its own course file,
stubs, references, suites, misconceptions and sample class, run by the unchanged engine with
``--course``. Graded, checked, released and published to otter from the repository's root."""
from __future__ import annotations

import doctest
import importlib
import importlib.util
import json
import math
import re
import sys
import types
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT, grade_json, otter_run, run_grader

from grader.course.load import load_course

FOLDER = ROOT / "courses" / "multi_head_attention"
COURSE_FILE = FOLDER / "course.yaml"
COURSE = load_course(COURSE_FILE, check_torch_names=False)
SAMPLES = FOLDER / "examples" / "submissions"
IDS = ("split_heads", "merge_heads", "multi_head_attention")
# Each wrong sample: the exercises it must fail, each with a phrase of the hint it must get.
WRONG = {
    "reshape_no_transpose": {"split_heads": "head 0 gets the first rows of x",
                             "merge_heads": "the first positions get head 0's rows",
                             "multi_head_attention": "Your heads mix positions"},
    "sqrt_d_model": {"multi_head_attention": "by sqrt(d_model)"},
    "causal_inverted": {"multi_head_attention": "on the wrong side of the diagonal"},
    "causal_diagonal_excluded": {"multi_head_attention": "off by one diagonal"},
}
HIDDEN_TESTS = ("test_as_many_positions_as_heads", "test_float64_is_kept", "test_many_heads_causal",
                "test_causal_more_keys_than_queries")
SOLUTION_LINES = ("x.transpose(-3, -2)", "/ math.sqrt(d_head)", "def reshape_without_transpose(",
                  "def scaled_by_d_model(")


def exercises(submission: dict) -> dict[str, dict]:
    return {e["id"]: e for e in submission["exercises"]}


def hints(exercise: dict) -> list[str]:
    return [h for t in exercise["tests"] for h in t["hints"]]


def test_the_course_is_a_folder_of_its_own():
    """Does the course file name the chapter's own folders, with its misconceptions found by default?"""
    assert COURSE.ids == IDS
    assert COURSE.paths.suites == FOLDER / "suites" and COURSE.paths.solutions == FOLDER / "solutions"
    assert COURSE.paths.misconceptions == FOLDER / "misconceptions"
    assert COURSE.exercise("multi_head_attention").uses == ("split_heads", "merge_heads")
    assert {f"{i}.py" for i in IDS} <= {p.name for p in (FOLDER / "misconceptions").iterdir()}


def _module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("exercise_id", IDS)
def test_worked_examples_are_the_references_output(exercise_id):
    """Does each stub's worked example (its doctest) print what the reference computes?"""
    if "_chapter2_solutions" not in sys.modules:  # the references as a package of their own name
        package = types.ModuleType("_chapter2_solutions")
        package.__path__ = [str(FOLDER / "solutions")]
        sys.modules["_chapter2_solutions"] = package
    reference = getattr(importlib.import_module(f"_chapter2_solutions.{exercise_id}"), exercise_id)
    stub = getattr(_module(FOLDER / "exercises" / f"{exercise_id}.py", f"_stub_{exercise_id}"), exercise_id)
    (example,) = doctest.DocTestFinder().find(stub, exercise_id, globs={exercise_id: reference})
    runner = doctest.DocTestRunner()
    runner.run(example)
    assert runner.summarize(verbose=False) == (0, len(example.examples)) and example.examples


@pytest.fixture(scope="module")
def sample_class(tmp_path_factory) -> dict[str, dict]:
    """The sample class graded once, as a batch, through --course."""
    document = grade_json(tmp_path_factory.mktemp("mha_class"), SAMPLES, extra=("--course", str(COURSE_FILE)))
    return {Path(s["submission"]).name: s for s in document["submissions"]}


def test_the_correct_sample_gets_full_marks(sample_class):
    """Does the correct sample get every point the course file gives, hidden tests included?"""
    assert set(sample_class) == {"correct", *WRONG}
    correct = sample_class["correct"]
    assert correct["max_score"] == COURSE.max_score and correct["score"] == COURSE.max_score, correct
    assert [e["id"] for e in correct["exercises"]] == list(IDS) and not correct["errors"]
    assert any(t["hidden"] for e in correct["exercises"] for t in e["tests"])


@pytest.mark.parametrize("name", sorted(WRONG))
def test_each_wrong_sample_fails_its_exercise_with_its_hint(sample_class, name):
    """Does each wrong sample lose points exactly where its mistake is, with that mistake named?"""
    graded = exercises(sample_class[name])
    for exercise_id in IDS:
        exercise = graded[exercise_id]
        if exercise_id not in WRONG[name]:
            assert exercise["score"] == exercise["max_score"], (name, exercise_id)
            continue
        assert exercise["score"] < exercise["max_score"], (name, exercise_id)
        assert any(WRONG[name][exercise_id] in h for h in hints(exercise)), (name, exercise_id, hints(exercise))


def test_a_hint_quotes_the_students_line(sample_class):
    """Does the sqrt(d_model) hint quote the line of the student's scale?"""
    (hint,) = set(hints(exercises(sample_class["sqrt_d_model"])["multi_head_attention"]))
    assert "math.sqrt(d_model)" in hint


def test_check_on_a_folder(tmp_path):
    """Does check --course --dir run the public tests on a folder: the stubs politely at 0, a
    wrong sample with its hint?"""
    proc = run_grader("check", "--course", str(COURSE_FILE), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr and all(i in proc.stdout for i in IDS)
    proc = run_grader("check", "--course", str(COURSE_FILE), "--dir", str(SAMPLES / "sqrt_d_model"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "by sqrt(d_model)" in proc.stdout


def test_release(tmp_path):
    """Does the release load without --course, hold no solution or misconception code and no
    hidden test, and does its check run, with the chapter's hint from the answer book?"""
    bundle = tmp_path / "bundle"
    proc = run_grader("release", "--course", str(COURSE_FILE), "--out", str(bundle), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    course = load_course(bundle / "course.yaml")
    assert course.ids == IDS and course.max_score == COURSE.max_score and course.uses_answer_book
    for path in bundle.rglob("*.py"):
        text = path.read_text()
        assert not [line for line in SOLUTION_LINES if line in text], path
        assert not [name for name in HIDDEN_TESTS if name in text], path
    for exercise_id in IDS:
        assert "@pytest.mark.hidden" not in (bundle / "grader" / "suites" / f"test_{exercise_id}.py").read_text()
    assert not (bundle / "solutions").exists() and not (bundle / "misconceptions").exists()
    proc = run_grader("check", "--dir", str(SAMPLES / "causal_inverted"), cwd=bundle)
    assert proc.returncode == 0, proc.stderr
    assert "on the wrong side of the diagonal" in proc.stdout
    proc = run_grader("check", "--dir", str(SAMPLES / "correct"), cwd=bundle)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stdout


def test_otter(tmp_path):
    """Does the chapter's autograder.zip carry its course, and (with otter installed) does otter
    run give the released notebook, filled with the references, full marks?"""
    out = tmp_path / "assignment"
    proc = run_grader("otter", "--course", str(COURSE_FILE), "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    with zipfile.ZipFile(out / "autograder.zip") as archive:
        names = set(archive.namelist())
        config = json.loads(archive.read("otter_config.json"))
    assert {f"files/course/solutions/{i}.py" for i in IDS} <= names
    assert {f"files/course/misconceptions/{i}.py" for i in IDS} <= names
    suites = {n for n in names if n.startswith("files/course/grader/suites/test_")}
    assert suites == {f"files/course/grader/suites/test_{i}.py" for i in IDS}  # the attention course's stay out
    assert math.isclose(config["points_possible"], COURSE.max_score)
    pytest.importorskip("otter", reason="the lms extra is not installed: pip install -e '.[lms]'")
    import nbformat

    (student,) = (out / "student").glob("*.ipynb")
    notebook = nbformat.read(student, as_version=4)
    for exercise_id in IDS:
        # the notebook's cells share one namespace: the references' relative imports go
        reference = (FOLDER / "solutions" / f"{exercise_id}.py").read_text()
        reference = re.sub(r"^from \.\w+ import \w+\n", "", reference, flags=re.M)
        (cell,) = [c for c in notebook.cells if c.cell_type == "code" and f"def {exercise_id}(" in c.source]
        cell.source = reference
    handed_in = tmp_path / "handed_in.ipynb"
    nbformat.write(notebook, handed_in)
    graded = otter_run(out / "autograder.zip", handed_in, tmp_path / "otter_out")
    assert math.isclose(graded["score"], COURSE.max_score), graded.get("output")
