"""The command line as students and instructors use it."""
from __future__ import annotations

import json
import shutil

from conftest import IDS, MAX_SCORE, ROOT, SOLUTIONS, run_grader


def test_check_on_untouched_stubs_is_friendly():
    """Does `check` on the stubs say "not implemented yet" per exercise, with no traceback?"""
    proc = run_grader("check")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("not implemented yet") == len(IDS)
    assert f"score so far (public tests): 0/{MAX_SCORE:g}" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


def test_check_runs_public_tests_only(tmp_path):
    """Does `check ID` run only that exercise's public tests on ./exercises?"""
    shutil.copytree(SOLUTIONS, tmp_path / "exercises")
    shutil.copy(ROOT / "course.yaml", tmp_path / "course.yaml")
    shutil.copytree(SOLUTIONS, tmp_path / "solutions")
    shutil.copytree(ROOT / "grader" / "suites", tmp_path / "grader" / "suites")
    shutil.copytree(ROOT / "misconceptions", tmp_path / "misconceptions")
    proc = run_grader("check", "softmax", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "softmax  3/3" in proc.stdout and "attention" not in proc.stdout
    assert "hidden" not in proc.stdout and "test_repeated_calls_with_new_values" not in proc.stdout


def test_check_dir_takes_a_handed_in_notebook_or_zip_too():
    """``check --dir`` on a notebook or a zip checks it as a folder is checked; a file of
    another kind is one line saying what --dir takes."""
    examples = ROOT / "examples" / "submissions"
    for handed_in in ("carol.ipynb", "bob.zip"):
        proc = run_grader("check", "--dir", str(examples / handed_in), "softmax")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith("softmax") and "score so far (public tests):" in proc.stdout
        assert "attention" not in proc.stdout
    proc = run_grader("check", "--dir", str(ROOT / "README.md"))
    assert proc.returncode == 2 and "not a folder, a notebook or a zip" in proc.stderr
    assert proc.stderr.strip().count("\n") == 0


def test_check_unknown_exercise_suggests():
    proc = run_grader("check", "sofmax")
    assert proc.returncode == 2 and proc.stderr.startswith("error:") and "Did you mean softmax?" in proc.stderr
    assert proc.stderr.strip().count("\n") == 0


def test_grade_missing_path_is_a_usage_error():
    proc = run_grader("grade", "no/such/dir")
    assert proc.returncode == 2 and "no/such/dir" in proc.stderr and proc.stderr.strip().count("\n") == 0


def test_grade_table_and_json_to_stdout(tmp_path):
    """Does `grade` print a gradebook table by default, and JSON with --format json?"""
    table = run_grader("grade", str(SOLUTIONS))
    assert table.returncode == 0 and "gradebook" in table.stdout and f"{MAX_SCORE:g}/{MAX_SCORE:g}" in table.stdout
    as_json = run_grader("grade", str(SOLUTIONS), "--format", "json")
    assert json.loads(as_json.stdout)["submissions"][0]["score"] == MAX_SCORE


def test_json_report_matches_the_contract(reference_report):
    """Are the report's keys and types exactly those of the contract?"""
    assert set(reference_report) == {"submission", "score", "max_score", "exercises", "errors"}
    assert isinstance(reference_report["errors"], list)
    for exercise in reference_report["exercises"]:
        assert set(exercise) == {"id", "score", "max_score", "tests"}
        for test in exercise["tests"]:
            assert set(test) == {"name", "score", "max_score", "status", "hidden", "message", "hints"}
            assert isinstance(test["hidden"], bool) and isinstance(test["hints"], list)
            assert isinstance(test["score"], (int, float)) and isinstance(test["message"], str)
    assert [e["id"] for e in reference_report["exercises"]] == list(IDS)
    assert any(t["hidden"] for e in reference_report["exercises"] for t in e["tests"])


def test_out_file_is_written_whole(tmp_path):
    """Does --out leave exactly the report, and no temporary files beside it?"""
    out = tmp_path / "report.json"
    proc = run_grader("grade", str(SOLUTIONS), "--format", "json", "--out", str(out))
    assert proc.returncode == 0 and proc.stdout == ""
    assert json.loads(out.read_text())["submissions"][0]["submission"] == str(SOLUTIONS)
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]
