"""Grading a class: parallel slots, resume after a kill, shards and merge, CSV, Gradescope, stats."""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import IDS, ROOT, run_grader
from test_course import course_copy, edit  # noqa: F401 - fixture
from grader.sandbox import cgroups

EXAMPLES = ROOT / "examples" / "submissions"
FAST = ["alice", "bob.zip", "carol.ipynb", "dave", "erin", "frank", "grace", "ivan"]  # heidi (a hang) is slow


@pytest.fixture(scope="session")
def klass(tmp_path_factory) -> Path:
    """A class of 16: the sample submissions (minus the slow hang), each twice under a new name."""
    root = tmp_path_factory.mktemp("class")
    for copy in ("a", "b"):
        for name in FAST:
            source = EXAMPLES / name
            target = root / f"{copy}_{name}"
            (shutil.copytree if source.is_dir() else shutil.copy)(source, target)
    return root


def grade(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    proc = run_grader("grade", *args, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="session")
def clean(klass, tmp_path_factory) -> dict:
    """The whole class graded in one uninterrupted run with two slots."""
    out = tmp_path_factory.mktemp("clean") / "grades.json"
    proc = grade(str(klass), "--jobs", "2", "--format", "json", "--out", str(out))
    return {"document": json.loads(out.read_text()), "stderr": proc.stderr, "results": out.with_name("grades.json.jsonl")}


def scores(document: dict) -> dict[str, dict]:
    """Everything but the submission's path, by name (a batch child is named after itself)."""
    return {s["submission"]: {k: v for k, v in s.items() if k != "submission"} for s in document["submissions"]}


@pytest.mark.skipif(not cgroups.available(), reason="no writable memory and pids cgroup controllers here")
def test_two_slots_run_their_workers_in_cgroups_and_leave_none(klass, tmp_path):
    """With two slots (each a fork server in its slot's cgroups), does every worker report the
    cgroup limits among its protections, and is no slot cgroup left once the grade is over?"""
    def slot_cgroups() -> set[Path]:
        return {p for home in cgroups.home_dirs().values() for p in (home / cgroups.GROUP).glob("uid-*")}

    before = slot_cgroups()  # another grader running on this machine may hold some
    out = tmp_path / "two.json"
    grade(str(klass / "a_alice"), str(klass / "a_dave"), "--jobs", "2", "--format", "json", "--out", str(out),
          "--results", str(tmp_path / "two.jsonl"))
    records = [json.loads(line) for line in (tmp_path / "two.jsonl").read_text().splitlines()]
    assert len(records) == 2
    for record in records:
        assert any("cgroups" in line for line in record["protections"]), record["protections"]
    assert slot_cgroups() <= before


def test_batch_equals_one_by_one(clean, klass, tmp_path):
    """Does a parallel batch give each submission exactly what grading it alone gives?"""
    batch = scores(clean["document"])
    for name in ("a_alice", "a_bob.zip", "a_carol.ipynb", "a_grace"):
        out = tmp_path / f"{name}.json"
        grade(str(klass / name), "--format", "json", "--out", str(out))
        (alone,) = json.loads(out.read_text())["submissions"]
        assert batch[name] == {k: v for k, v in alone.items() if k != "submission"}, name


def test_results_file_has_one_line_per_submission(clean):
    """Is every submission in the results file exactly once?"""
    names = [json.loads(line)["result"]["submission"] for line in clean["results"].read_text().splitlines()]
    assert sorted(names) == sorted(scores(clean["document"])) and len(names) == len(set(names)) == 16


def test_killed_batch_resumes_without_losing_or_regrading(clean, klass, tmp_path):
    """A batch killed midway, then resumed: same final results, nothing graded twice or lost."""
    out = tmp_path / "grades.json"
    results = tmp_path / "grades.json.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "grader", "grade", str(klass), "--jobs", "1", "--format", "json",
                             "--out", str(out)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not results.exists() or len(results.read_text().splitlines()) < 4):
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = results.read_text().splitlines()
    assert 4 <= len(before) < 16 and not out.exists()
    grade(str(klass), "--jobs", "2", "--format", "json", "--out", str(out), "--resume")
    after = results.read_text().splitlines()
    assert after[: len(before)] == before  # what was done is kept, not redone
    names = [json.loads(line)["result"]["submission"] for line in after]
    assert len(names) == len(set(names)) == 16
    assert scores(json.loads(out.read_text())) == scores(clean["document"])


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_ctrl_c_keeps_what_is_done_writes_no_gradebook_and_says_how_to_resume(clean, klass, tmp_path, jobs):
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) midway: a non-zero
    exit and one line saying what is kept and how to go on, no gradebook with a part of the
    class in it, no submission recorded as lost; then --resume grades exactly the rest."""
    out = tmp_path / "grades.csv"
    results = tmp_path / "grades.csv.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "grader", "grade", str(klass), "--jobs", jobs, "--format", "csv",
                             "--out", str(out)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not results.exists() or len(results.read_text().splitlines()) < 3):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    kept = results.read_text().splitlines()
    assert proc.returncode == 2 and 3 <= len(kept) < 16, (proc.returncode, len(kept), stderr)
    assert f"interrupted: {len(kept)} of 16 submissions graded" in stderr and "--resume" in stderr
    assert not out.exists()
    assert not any("slot died" in line for line in kept)
    grade(str(klass), "--jobs", jobs, "--format", "json", "--out", str(tmp_path / "all.json"), "--results",
          str(results), "--resume")
    assert scores(json.loads((tmp_path / "all.json").read_text())) == scores(clean["document"])


def test_shards_merged_equal_the_whole(clean, klass, tmp_path):
    """Do the shards of a class cover it exactly once, and merge into the unsharded result?"""
    parts = []
    for index in range(3):
        out = tmp_path / f"shard{index}.json"
        grade(str(klass), "--shard", f"{index}/3", "--format", "json", "--out", str(out))
        parts.append(out)
    names = [s["submission"] for p in parts for s in json.loads(p.read_text())["submissions"]]
    assert sorted(names) == sorted(scores(clean["document"])) and len(names) == len(set(names))
    merged = tmp_path / "merged.json"
    proc = run_grader("merge", *map(str, parts), "--out", str(merged))
    assert proc.returncode == 0, proc.stderr
    document = json.loads(merged.read_text())
    assert document["submissions"] == clean["document"]["submissions"]
    assert document["device"] == clean["document"]["device"]
    assert document["sandbox"]["protections"]  # which uid each shard used may differ


def test_merge_refuses_what_is_not_a_report_and_writes_nothing(clean, tmp_path):
    """A file that is not a grader report is named, with the fix, and no merged file appears."""
    good = tmp_path / "good.json"
    good.write_text(json.dumps(clean["document"]))
    for text in ('{"results": []}', '{"submissions": [{"score": 1}]}', "not json"):
        bad = tmp_path / "bad.json"
        bad.write_text(text)
        merged = tmp_path / "merged.json"
        proc = run_grader("merge", str(good), str(bad), "--out", str(merged))
        assert proc.returncode == 2 and f"{bad}: not a grader report" in proc.stderr, (text, proc.stderr)
        assert not merged.exists() and "Traceback" not in proc.stderr


def test_merge_refuses_a_missing_shard_and_reports_of_another_course(clean, klass, tmp_path, course_copy):
    """Two of three shards, or a report graded with an edited course beside this one's: one
    line naming the files and the fix, and nothing written."""
    shards = []
    for index in (0, 2):
        shards.append(tmp_path / f"shard{index}.json")
        grade(str(klass), "--shard", f"{index}/3", "--format", "json", "--out", str(shards[-1]))
    merged = tmp_path / "merged.json"
    proc = run_grader("merge", *map(str, shards), "--out", str(merged))
    assert proc.returncode == 2 and "shard 1/3 missing" in proc.stderr and str(shards[0]) in proc.stderr, proc.stderr
    assert not merged.exists()

    edited = edit(course_copy, lambda d: d["exercises"][0].update(points=d["exercises"][0]["points"] + 1))
    other = tmp_path / "other.json"
    grade(str(klass / "a_alice"), "--course", str(edited), "--format", "json", "--out", str(other))
    whole = tmp_path / "whole.json"
    whole.write_text(json.dumps(clean["document"]))
    proc = run_grader("merge", str(whole), str(other), "--out", str(merged))
    assert proc.returncode == 2 and "different courses, or different versions of one" in proc.stderr, proc.stderr
    assert str(whole) in proc.stderr and str(other) in proc.stderr and not merged.exists()


def test_resume_refuses_results_of_another_version_of_the_course(klass, tmp_path, course_copy):
    """--resume after the course was edited (points, a suite...): refused with the fix, the
    results file left as it was; without --resume everything is graded again."""
    out, results = tmp_path / "grades.json", tmp_path / "grades.json.jsonl"
    course = course_copy / "course.yaml"
    grade(str(klass / "a_alice"), str(klass / "a_dave"), "--course", str(course), "--format", "json", "--out", str(out))
    before = results.read_bytes()
    edit(course_copy, lambda d: d["exercises"][0].update(points=d["exercises"][0]["points"] + 1))
    proc = run_grader("grade", str(klass / "a_alice"), str(klass / "a_dave"), str(klass / "a_erin"), "--course",
                      str(course), "--format", "json", "--out", str(out), "--resume")
    assert proc.returncode == 2 and "2 of its 2 results were graded with another course" in proc.stderr, proc.stderr
    assert "grade without --resume" in proc.stderr and results.read_bytes() == before
    grade(str(klass / "a_alice"), str(klass / "a_dave"), "--course", str(course), "--format", "json", "--out", str(out))
    assert json.loads(out.read_text())["submissions"][0]["max_score"] == 11


def test_bad_shard_is_a_usage_error(klass):
    proc = run_grader("grade", str(klass), "--shard", "3/3")
    assert proc.returncode == 2 and "--shard" in proc.stderr


def test_csv_gradebook(clean, klass, tmp_path):
    """Does the CSV open as a table: student, one column per exercise in order, total, status?"""
    out = tmp_path / "grades.csv"
    grade(str(klass), "--format", "csv", "--out", str(out))
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert list(rows[0]) == ["student", *IDS, "total", "max_score", "status"]
    by_student = {r["student"]: r for r in rows}
    assert set(by_student) == {n.removesuffix(".zip").removesuffix(".ipynb") for n in scores(clean["document"])}
    for name, submission in scores(clean["document"]).items():
        row = by_student[name.removesuffix(".zip").removesuffix(".ipynb")]
        assert float(row["total"]) == pytest.approx(submission["score"])
        assert (row["status"] == "complete") == (submission["score"] == submission["max_score"])


def test_progress_is_plain_lines_when_not_a_terminal(clean):
    """Without a terminal, is progress a few plain lines with count, rate and ETA?"""
    lines = [l for l in clean["stderr"].splitlines() if l.startswith("graded ")]
    assert lines and lines[-1].startswith("graded 16/16") and "/s" in lines[-1] and "ETA" in lines[-1]
    assert "\r" not in clean["stderr"] and "\x1b[" not in clean["stderr"]


def test_gradescope_results_json(klass, tmp_path, clean):
    """Does --format gradescope write one results.json per student in Gradescope's shape: two
    entries per exercise (public tests visible, hidden tests after publication) that add up
    exactly to the report's total?"""
    from grader.course.load import load_course

    course = load_course(ROOT / "course.yaml")
    grade(str(klass / "a_bob.zip"), str(klass / "a_alice"), "--format", "gradescope", "--out", str(tmp_path / "gs"))
    for name in ("a_bob", "a_alice"):
        data = json.loads((tmp_path / "gs" / name / "results.json").read_text())
        expected = scores(clean["document"])["a_bob.zip" if name == "a_bob" else name]
        assert data["score"] == expected["score"]
        assert round(sum(t["score"] for t in data["tests"]) * 10_000) == round(expected["score"] * 10_000)
        names = [f"{i}: {kind} tests" for i in course.ids for kind in ("public", "hidden")]
        assert [t["name"] for t in data["tests"]] == names
        for test in data["tests"]:
            assert set(test) == {"name", "score", "max_score", "status", "output", "visibility"}
            assert test["status"] in ("passed", "failed")
            assert test["visibility"] == (course.hidden_tests if test["name"].endswith("hidden tests") else "visible")


def test_stats_and_histogram(clean, tmp_path):
    """Does `stats` summarise the class and draw a PNG histogram?"""
    report = tmp_path / "grades.json"
    report.write_text(json.dumps(clean["document"]))
    plot = tmp_path / "scores.png"
    proc = run_grader("stats", str(report), "--plot", str(plot))
    assert proc.returncode == 0, proc.stderr
    assert "16 submissions" in proc.stdout and "tests failed most often" in proc.stdout
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
