"""The warm self-check (grader/selfcheck/warm_server.py): a check answered by the course's background
server says exactly what a cold check says, and a server that is missing, dead or stale
never changes or breaks a check."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, make_submission, wait_for_file
from grader.selfcheck import warm_server as warm_check
from grader.selfcheck.notebook import grade_cells
from test_grading import WRONG

SERVER_SECONDS = "300"  # idle time of the servers these tests start (each is stopped at the end)


def course_copy(folder: Path) -> Path:
    """A course of its own (a server per course file): the repo's content, linked."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("solutions", "exercises", "grader", "misconceptions"):
        (folder / name).symlink_to(ROOT / name)
    (folder / "course.yaml").write_text((ROOT / "course.yaml").read_text())
    return folder / "course.yaml"


def check(course: Path, cwd: Path, *args: str, warm: bool) -> subprocess.CompletedProcess:
    env = dict(os.environ, GRADER_CHECK_IDLE_SECONDS=SERVER_SECONDS if warm else "0")
    return subprocess.run([sys.executable, "-m", "grader", "check", "--course", str(course), *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=300)


def wait_for_server(course: Path) -> Path:
    path = warm_check._socket_path(course, None)
    assert wait_for_file(path), "no check server started"
    return path


def server_pid(course: Path) -> int:
    out = subprocess.run(["pgrep", "-f", f"grader.selfcheck.warm_server {course.resolve()}"], capture_output=True, text=True)
    return int(out.stdout.split()[0])


@pytest.fixture
def served(tmp_path, monkeypatch):
    """A course copy and a student folder (unscaled scores, unstable softmax), with a server
    started by a first, cold check; stopped at the end."""
    monkeypatch.setenv("GRADER_CHECK_IDLE_SECONDS", SERVER_SECONDS)
    course = course_copy(tmp_path / "course")
    student = make_submission(tmp_path / "student", {**WRONG["unscaled_scores"][1], **WRONG["unstable_softmax"][1]},
                              layout="exercises")
    first = check(course, student, warm=True)
    assert first.returncode == 0, first.stderr
    wait_for_server(course)
    yield course, student, first
    warm_check.stop(course)


@pytest.mark.parametrize("ids", [(), ("softmax",), ("attention",)])
def test_a_warm_check_prints_what_a_cold_one_prints(served, ids):
    course, student, _ = served
    cold = check(course, student, *ids, warm=False)
    warm = check(course, student, *ids, warm=True)
    assert warm.returncode == cold.returncode == 0, warm.stderr + cold.stderr
    assert "score so far" in cold.stdout and "hint:" in cold.stdout
    assert warm.stdout == cold.stdout
    assert wait_for_file(student / "grader-report" / "exercises.html")


def test_the_first_check_prints_what_a_cold_one_prints(served):
    course, student, first = served
    assert first.stdout == check(course, student, warm=False).stdout


def test_a_notebook_check_by_the_server_matches_the_separate_process(served, monkeypatch):
    course, _, _ = served
    cells = [(ROOT / "solutions" / "softmax.py").read_text(), WRONG["unscaled_scores"][1]["attention_scores"]]
    warm = grade_cells(cells, [], course)
    monkeypatch.setenv("GRADER_CHECK_IDLE_SECONDS", "0")
    cold = grade_cells(cells, [], course)
    verdicts = [[(t.name, t.status, t.message, t.hints) for t in e.tests] for e in cold.exercises]
    assert verdicts == [[(t.name, t.status, t.message, t.hints) for t in e.tests] for e in warm.exercises]
    assert warm.errors == cold.errors and warm.score == cold.score < warm.max_score


def test_a_dead_server_costs_nothing(served):
    """Killed (its socket left behind): the next check runs cold and prints the same."""
    course, student, first = served
    os.kill(server_pid(course), signal.SIGKILL)
    again = check(course, student, warm=True)
    assert again.returncode == 0 and again.stdout == first.stdout


def test_a_changed_course_gets_a_new_server(served):
    """An edited course.yaml: the old server does not answer, and exits on its own."""
    course, student, _ = served
    old = wait_for_server(course)
    course.write_text(course.read_text().replace("title:", "title: Changed -", 1))
    assert warm_check._socket_path(course, None) != old
    request = {"name": "x", "folder": str(student / "exercises"), "ids": [], "cwd": str(student)}
    assert warm_check.ask(course, None, request) is None
    deadline = time.monotonic() + 10 * warm_check.STALE_CHECK_SECONDS
    while old.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not old.exists()


def test_check_stop_ends_the_server(served):
    """``check --stop`` ends the course's server at once, and says when none was running."""
    course, student, _ = served
    pid = server_pid(course)
    stopped = check(course, student, "--stop", warm=True)
    assert stopped.returncode == 0 and stopped.stdout.strip() == "check server stopped."
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists() and "Z" not in _state(pid):
        time.sleep(0.1)
    assert not Path(f"/proc/{pid}").exists() or "Z" in _state(pid), "the check server still runs"
    again = check(course, student, "--stop", warm=True)
    assert again.returncode == 0 and again.stdout.strip() == "no check server was running for this course."


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][:1]
    except (OSError, IndexError):
        return "Z"


def test_the_interpreter_named_by_a_relative_path_finds_its_server(tmp_path, monkeypatch):
    """``../venv/bin/python -m grader check`` from a student's folder: the server it starts (whose
    Python sees its own path written otherwise) answers the next check, and --stop ends it."""
    monkeypatch.setenv("GRADER_CHECK_IDLE_SECONDS", SERVER_SECONDS)
    course = course_copy(tmp_path / "course")
    student = make_submission(tmp_path / "student", layout="exercises")
    python = os.path.relpath(sys.executable, student)
    assert ".." in python

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([python, "-m", "grader", "check", "--course", str(course), *args], cwd=student,
                              capture_output=True, text=True, timeout=300)

    try:
        assert run("softmax").returncode == 0
        wait_for_server(course)
        stopped = run("--stop")
        assert stopped.returncode == 0 and stopped.stdout.strip() == "check server stopped.", stopped.stdout
    finally:
        warm_check.stop(course)
