"""`python -m grader new`: a new exercise is graded, checked and released like the course's own,
and a refused or failed `new` leaves the course as it was."""
from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from conftest import ROOT, run_grader, solution_sources
from grader import cli
from grader.course.load import load_course
from grader.course.scaffold import misconceptions_folder

LAYER_NORM = '''"""Layer normalisation over the last dim."""
import torch
from torch import Tensor


def layer_norm(x: Tensor) -> Tensor:
    mean = x.mean(dim=-1, keepdim=True)                  # (..., 1)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)   # (..., 1), the biased variance
    return (x - mean) / torch.sqrt(var + 1e-5)           # (..., d)
'''


def course_copy(folder: Path) -> Path:
    """course.yaml, exercises/, solutions/, grader/suites/ and misconceptions/ copied (the files `new` writes land here)."""
    shutil.copy2(ROOT / "course.yaml", folder / "course.yaml")
    ignore = shutil.ignore_patterns("__pycache__")
    for name in ("exercises", "solutions"):
        shutil.copytree(ROOT / name, folder / name, ignore=ignore)
    shutil.copytree(ROOT / "grader" / "suites", folder / "grader" / "suites", ignore=ignore)
    shutil.copytree(ROOT / "misconceptions", folder / "misconceptions", ignore=ignore)
    return folder / "course.yaml"


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def scaffolded(tmp_path_factory) -> dict:
    """A course copy after `new layer_norm`, its reference filled in."""
    folder = tmp_path_factory.mktemp("course")
    course_file = course_copy(folder)
    before = course_file.read_text()
    proc = run_grader("new", "layer_norm", "--course", str(course_file), "--title", "Layer normalisation",
                      "--points", "2", cwd=folder)
    assert proc.returncode == 0, proc.stderr
    # not from the copy's folder: its grader/ (suites only) would shadow the grader package
    stub_check = run_grader("check", "--course", str(course_file), "--dir", str(folder / "exercises"), "layer_norm",
                            cwd=folder.parent)
    (folder / "solutions" / "layer_norm.py").write_text(LAYER_NORM)
    return {"folder": folder, "course_file": course_file, "before": before, "new": proc, "stub_check": stub_check}


def test_new_writes_the_four_files_and_appends_the_entry(scaffolded):
    """Are stub, reference, suite and misconception module written, and course.yaml only appended to?"""
    folder, course_file = scaffolded["folder"], scaffolded["course_file"]
    after = course_file.read_text()
    assert after.startswith(scaffolded["before"]) and "# The attention chapter." in after  # comments kept
    course = load_course(course_file, check_torch_names=False)
    original = load_course(ROOT / "course.yaml", check_torch_names=False)
    assert course.ids == (*original.ids, "layer_norm")
    entry = course.exercise("layer_norm")
    assert (entry.title, entry.points, entry.function) == ("Layer normalisation", 2, "layer_norm")
    assert course.max_score == original.max_score + 2
    stub = (folder / "exercises" / "layer_norm.py").read_text()
    assert "Shapes:" in stub and ">>> layer_norm(x)" in stub and "raise NotImplementedError" in stub
    suite = (folder / "grader" / "suites" / "test_layer_norm.py").read_text()
    assert "def test_worked_example(student, reference, expect)" in suite and "@pytest.mark.hidden" in suite
    module_path = misconceptions_folder(course) / "layer_norm.py"
    assert module_path.is_relative_to(folder)  # in the course copy, never in the repo
    spec = importlib.util.spec_from_file_location("scaffolded_layer_norm_misconceptions", module_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.MISCONCEPTIONS == []
    printed = scaffolded["new"].stdout
    assert "grade solutions" in printed and "check layer_norm" in printed and "release" in printed


def test_the_untouched_stub_is_not_implemented_yet(scaffolded):
    """Does `check` on the new stub say "not implemented yet", with no traceback?"""
    proc = scaffolded["stub_check"]
    assert proc.returncode == 0, proc.stderr
    assert "not implemented yet" in proc.stdout and "Traceback" not in proc.stdout + proc.stderr


def test_a_correct_submission_gets_the_new_total(scaffolded, tmp_path):
    """Graded with the new course, does a correct submission get every point, layer_norm's included?"""
    course = load_course(scaffolded["course_file"], check_torch_names=False)
    submission = tmp_path / "right"
    submission.mkdir()
    for name, text in dict(solution_sources(), layer_norm=LAYER_NORM).items():
        (submission / f"{name}.py").write_text(text)
    out = tmp_path / "report.json"
    proc = run_grader("grade", str(submission), "--course", str(scaffolded["course_file"]), "--format", "json",
                      "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    (report,) = json.loads(out.read_text())["submissions"]
    assert report["errors"] == []
    assert report["score"] == report["max_score"] == course.max_score
    layer_norm = next(e for e in report["exercises"] if e["id"] == "layer_norm")
    assert layer_norm["score"] == layer_norm["max_score"] == 2
    assert any(t["hidden"] for t in layer_norm["tests"]) and any(not t["hidden"] for t in layer_norm["tests"])
    assert all(t["status"] == "passed" for t in layer_norm["tests"])


def test_check_grades_the_new_exercise_on_a_folder(scaffolded, tmp_path):
    """Does `check --dir` give the new exercise its public points, and show no hidden test?"""
    work = tmp_path / "work"
    work.mkdir()
    (work / "layer_norm.py").write_text(LAYER_NORM)
    proc = run_grader("check", "--course", str(scaffolded["course_file"]), "--dir", str(work), "layer_norm",
                      cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "layer_norm  2/2" in proc.stdout and "✓ test_worked_example" in proc.stdout
    assert "test_fresh_inputs_each_call" not in proc.stdout


def test_the_release_carries_the_new_exercise(scaffolded, tmp_path):
    """Does `release --course` ship the new stub and public suite, and does the bundle's check grade it?"""
    bundle = tmp_path / "bundle"
    proc = run_grader("release", "--course", str(scaffolded["course_file"]), "--out", str(bundle), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "raise NotImplementedError" in (bundle / "exercises" / "layer_norm.py").read_text()
    public = (bundle / "grader" / "suites" / "test_layer_norm.py").read_text()
    assert "test_worked_example" in public and "hidden" not in public
    assert not (bundle / "solutions").exists()
    (bundle / "exercises" / "layer_norm.py").write_text(LAYER_NORM)
    proc = run_grader("check", "layer_norm", cwd=bundle)  # the bundle's grader, course and answer book
    assert proc.returncode == 0, proc.stderr
    assert "layer_norm  2/2" in proc.stdout


def test_the_otter_assignment_carries_the_new_exercise(scaffolded, tmp_path):
    """Does `otter --course` write an autograder.zip whose points and otter test files include the
    new exercise, and a student folder with its stub?"""
    pytest.importorskip("otter", reason="the lms extra is not installed: pip install -e '.[lms]'")
    import zipfile

    out = tmp_path / "otter"
    proc = run_grader("otter", "--course", str(scaffolded["course_file"]), "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    with zipfile.ZipFile(out / "autograder.zip") as archive:
        names = set(archive.namelist())
        config = json.loads(archive.read("otter_config.json"))
    assert "tests/layer_norm.py" in names and "files/course/solutions/layer_norm.py" in names
    assert config["points_possible"] == pytest.approx(load_course(scaffolded["course_file"]).max_score)
    assert (out / "student" / "exercises" / "layer_norm.py").is_file()


@pytest.mark.parametrize("args, says", [
    (["softmax"], "already exists"),
    (["layer-norm"], "not a Python module name"),
    (["class"], "not a Python module name"),
    (["layer_norm", "--function", "layer norm"], "not a Python function name"),
    (["layer_norm", "--points", "0"], "greater than 0"),
], ids=["existing_id", "not_an_identifier", "keyword", "bad_function", "no_points"])
def test_refusals_write_nothing(tmp_path, capsys, args, says):
    """Is a bad id or option refused in one line, exit 2, with the course left byte for byte as it was?"""
    course_file = course_copy(tmp_path)
    before = snapshot(tmp_path)
    assert cli.main(["new", *args, "--course", str(course_file)]) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1 and err.startswith("error: ")
    assert snapshot(tmp_path) == before


def test_an_existing_file_is_refused_and_nothing_written(tmp_path, capsys):
    """With the suite of the new id already there, is `new` refused before writing any file?"""
    course_file = course_copy(tmp_path)
    (tmp_path / "grader" / "suites" / "test_layer_norm.py").write_text("# someone's work\n")
    before = snapshot(tmp_path)
    assert cli.main(["new", "layer_norm", "--course", str(course_file)]) == 2
    err = capsys.readouterr().err
    assert "test_layer_norm.py already exists" in err and err.count("\n") == 1
    assert snapshot(tmp_path) == before


def test_a_course_that_does_not_load_after_the_append_is_rolled_back(tmp_path, capsys):
    """When exercises: is not the file's last key, the appended entry breaks the file: are all
    written files removed and course.yaml restored?"""
    course_file = course_copy(tmp_path)
    course_file.write_text(course_file.read_text() + "\nseed: 7\n")  # a later duplicate key: still loads
    course_file.write_text(course_file.read_text().replace("seed: 20261128\n", ""))
    assert load_course(course_file, check_torch_names=False).seed == 7
    before = snapshot(tmp_path)
    assert cli.main(["new", "layer_norm", "--course", str(course_file)]) == 2
    err = capsys.readouterr().err
    assert "nothing written" in err and err.count("\n") == 1
    assert snapshot(tmp_path) == before
    assert not (tmp_path / "misconceptions" / "layer_norm.py").exists()


def test_new_starts_a_course_of_its_own_from_an_empty_folder(tmp_path):
    """In an empty folder, does `new` write a course file that loads, the suites' conftest.py
    and the exercise's four files, so that the reference, filled in, gets full marks and the
    untouched stub 'not implemented yet'? A folder that does not exist is refused, nothing made."""
    folder = tmp_path / "norm_lab"
    folder.mkdir()
    proc = run_grader("new", "layer_norm", "--course", str(folder / "course.yaml"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"new course {folder / 'course.yaml'}, with its first exercise 'layer_norm'")
    course = load_course(folder / "course.yaml")
    assert course.ids == ("layer_norm",) and course.title == "Norm lab"
    assert (folder / "grader" / "suites" / "conftest.py").is_file()
    (folder / "solutions" / "layer_norm.py").write_text(LAYER_NORM)
    out = tmp_path / "report.json"
    graded = run_grader("grade", str(folder / "solutions"), str(folder / "exercises"), "--course",
                        str(folder / "course.yaml"), "--format", "json", "--out", str(out), cwd=tmp_path)
    assert graded.returncode == 0, graded.stderr
    reference, stub = json.loads(out.read_text())["submissions"]
    assert reference["score"] == reference["max_score"] == 1
    assert {t["status"] for e in stub["exercises"] for t in e["tests"]} == {"not_implemented"}

    refused = run_grader("new", "layer_norm", "--course", str(tmp_path / "nowhere" / "course.yaml"), cwd=tmp_path)
    assert refused.returncode == 2 and "no such folder" in refused.stderr and not (tmp_path / "nowhere").exists()
