"""course.yaml: loaded into frozen objects, every mistake reported in one line."""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import CONTRACT_IDS, MAX_SCORE, ROOT, exercise_scores, grade_json, run_grader
from grader.course.load import CourseError, load_course


@pytest.fixture
def course_copy(tmp_path) -> Path:
    """A copy of the course (course.yaml, solutions/, grader/suites/) to break at will."""
    shutil.copy(ROOT / "course.yaml", tmp_path / "course.yaml")
    shutil.copytree(ROOT / "solutions", tmp_path / "solutions")
    shutil.copytree(ROOT / "grader" / "suites", tmp_path / "grader" / "suites")
    shutil.copytree(ROOT / "misconceptions", tmp_path / "misconceptions")
    return tmp_path


def edit(course_dir: Path, change) -> Path:
    path = course_dir / "course.yaml"
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_the_course_loads_frozen_in_order():
    """Is course.yaml loaded in its order into objects nobody can change?"""
    course = load_course(ROOT / "course.yaml")
    assert course.ids == tuple(e["id"] for e in yaml.safe_load((ROOT / "course.yaml").read_text())["exercises"])
    assert [i for i in course.ids if i in CONTRACT_IDS] == list(CONTRACT_IDS)  # the contract's four, in order
    assert course.exercise("apply_weights").function == "apply_attention_weights"
    assert course.max_score == sum(e.points for e in course.exercises)
    with pytest.raises(dataclasses.FrozenInstanceError):
        course.exercises[0].points = 100


@pytest.mark.parametrize("change, words", [
    (lambda d: d["exercises"][0].update(colour="red"), ["exercises[0]", "colour", "unknown key"]),
    (lambda d: d.update(extra=1), ["extra", "unknown key"]),
    (lambda d: d["exercises"][1].update(id="attention_scores"), ["duplicate id", "attention_scores"]),
    (lambda d: d["exercises"][2].update(points=0), ["points", "must be positive"]),
    (lambda d: d["exercises"][2].update(points=-1), ["points", "must be positive"]),
    (lambda d: d["exercises"][1]["banned"].append("torch.nn.functional.sofmax"), ["banned[", "torch.nn.functional.sofmax", "does not name"]),
    (lambda d: d["exercises"].append({"id": "multihead", "title": "MHA", "points": 2}), ["multihead", "does not exist"]),
    (lambda d: d["defaults"]["tolerance"].pop("float32"), ["defaults.tolerance", "float32"]),
    (lambda d: d.pop("exercises"), ["exercises", "missing"]),
    (lambda d: d["feedback"].update(hidden_tests="later"), ["feedback.hidden_tests", "'later'", "after_published"]),
])
def test_invalid_course_is_one_clear_line(course_copy, change, words):
    """Does each mistake in course.yaml give one line naming the file, the key and a fix?"""
    path = edit(course_copy, change)
    with pytest.raises(CourseError) as error:
        load_course(path)
    message = str(error.value)
    assert "\n" not in message and str(path) in message and "Fix:" in message
    for word in words:
        assert word in message


def test_yaml_syntax_error_names_the_line(tmp_path):
    """Is broken YAML reported with its line number?"""
    path = tmp_path / "course.yaml"
    path.write_text("title: x\nexercises:\n  - id: [unclosed\n")
    with pytest.raises(CourseError, match=r"line \d+"):
        load_course(path)


def test_broken_course_exits_non_zero_with_one_line(course_copy):
    """Does the CLI stop with exit code 2 and one line on stderr for a bad course.yaml?"""
    path = edit(course_copy, lambda d: d["exercises"][0].update(points="two"))
    proc = run_grader("--course", str(path), "grade", str(ROOT / "solutions"))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "points" in proc.stderr


def test_points_change_the_totals_everywhere(course_copy, tmp_path):
    """Does changing a point value in course.yaml change the exercise and submission totals?"""
    path = edit(course_copy, lambda d: d["exercises"][1].update(points=7))
    out = tmp_path / "out"
    out.mkdir()
    report = grade_json(out, ROOT / "solutions", extra=("--course", str(path)))["submissions"][0]
    assert exercise_scores(report)["softmax"] == 7
    softmax_points = load_course(ROOT / "course.yaml", check_torch_names=False).exercise("softmax").points
    assert report["max_score"] == report["score"] == MAX_SCORE - softmax_points + 7
    softmax = next(e for e in report["exercises"] if e["id"] == "softmax")
    assert abs(sum(t["max_score"] for t in softmax["tests"]) - 7) < 1e-3
