"""The hostile corpus (tests/hostile/): each file replaces one exercise of a correct
submission. For each: the grader survives, that exercise gets the right status and 0, the
other exercises keep full marks, the batch completes, nothing is left running or written."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT, by_name, exercise_scores, grade_json, make_submission, max_scores
from test_grading import ATTENTION_INLINE

HOSTILE = Path(__file__).resolve().parent / "hostile"
IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="hiding files needs the mount namespace, which needs root")
MARK_NAME = "grader-hostile-mark"

# case -> (the exercise it replaces, the statuses it may get)
CASES = {
    "sys_exit": ("softmax", {"error"}),
    "os_exit": ("softmax", {"crashed"}),
    "base_exception": ("softmax", {"error"}),
    "keyboard_interrupt": ("softmax", {"error"}),
    "loop_at_call": ("softmax", {"timeout"}),
    "loop_at_import": ("softmax", {"timeout"}),
    "sleep_forever": ("softmax", {"timeout"}),
    "tensor_memory_bomb": ("softmax", {"error"}),
    "list_memory_bomb": ("softmax", {"error", "timeout", "crashed"}),
    "print_flood": ("softmax", {"error"}),
    "fork_loop": ("softmax", {"error"}),
    "setsid_daemon": ("softmax", {"error"}),
    "kill_parent": ("softmax", {"error"}),
    "read_solutions": ("softmax", {"error"}),
    "read_hidden_tests": ("softmax", {"error"}),
    "network": ("softmax", {"error"}),
    "softmax_via_distribution": ("softmax", {"forbidden"}),
    "softmax_via_string_lookup": ("softmax", {"forbidden"}),
    "softmax_via_log_softmax": ("softmax", {"forbidden"}),
    "sdpa_in_attention": ("attention", {"forbidden"}),
}


def worker_processes(uids: set[int]) -> list[str]:
    """Processes still running as the run's sandbox uids, or the daemon a case tried to leave."""
    out = subprocess.run(["ps", "-eo", "uid=,stat=,args="], capture_output=True, text=True).stdout
    running = [line.split(None, 2) for line in out.splitlines() if "Z" not in line.split()[1]]  # zombies run nothing
    return [" ".join(p) for p in running if int(p[0]) in uids or "sleep 1234" in p[2]]


@pytest.fixture(scope="session")
def hostile(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("hostile")
    mark_dir = tmp_path_factory.mktemp("mark")
    for case, (exercise, _) in {**CASES, "write_outside": ("softmax", set())}.items():
        source = (HOSTILE / f"{case}.py").read_text()
        source = (source.replace("{SOLUTIONS}", str(ROOT / "solutions")).replace("{SUITES}", str(ROOT / "grader" / "suites"))
                  .replace("{MARK_DIR}", str(mark_dir)).replace("{MARK_NAME}", MARK_NAME))
        make_submission(root / case, {"attention": ATTENTION_INLINE, exercise: source})
    make_submission(root / "zz_correct", {"attention": ATTENTION_INLINE})
    document = grade_json(tmp_path_factory.mktemp("out"), root)
    marks = [p for p in (Path("/tmp") / MARK_NAME, Path("/var/tmp") / MARK_NAME, Path("/dev/shm") / MARK_NAME,
                         mark_dir / MARK_NAME) if p.exists()]
    uids = {int(word) for p in document["sandbox"]["protections"] for word in p.split() if word.isdigit() and int(word) >= 60000}
    return {"results": by_name(document), "document": document, "left_running": worker_processes(uids), "marks": marks}


@pytest.mark.parametrize("case", [c for c in CASES if c not in ("read_solutions", "read_hidden_tests")])
def test_hostile_case_costs_only_its_exercise(hostile, reference_report, case):
    """Does the case get the right status and 0 there, and full marks everywhere else?"""
    exercise, statuses = CASES[case]
    submission = hostile["results"][case]
    scores, full = exercise_scores(submission), max_scores(reference_report)
    assert scores[exercise] == 0, submission
    assert {i: s for i, s in scores.items() if i != exercise} == {i: s for i, s in full.items() if i != exercise}
    got = {t["status"] for e in submission["exercises"] if e["id"] == exercise for t in e["tests"]}
    assert got <= statuses, got


@needs_root
@pytest.mark.parametrize("case", ["read_solutions", "read_hidden_tests"])
def test_solutions_and_hidden_tests_cannot_be_read(hostile, case):
    """Is reading solutions/ or the hidden tests impossible, and nothing of them leaked?"""
    submission = hostile["results"][case]
    assert exercise_scores(submission)["softmax"] == 0
    messages = " ".join(t["message"] for e in submission["exercises"] for t in e["tests"])
    assert "def test_" not in messages and "amax" not in messages
    assert "No such file" in messages or "Permission denied" in messages


def test_the_batch_completes_and_correct_work_keeps_full_marks(hostile, reference_report):
    """Does the whole batch finish, with the correct submission at full marks?"""
    assert len(hostile["results"]) == len(CASES) + 2
    assert hostile["results"]["zz_correct"]["score"] == reference_report["max_score"]


def test_nothing_is_left_running(hostile):
    """Is no process of any worker (a setsid daemon included) alive after grading?"""
    assert hostile["left_running"] == []


@needs_root
def test_nothing_is_written_outside_the_scratch_space(hostile):
    """Are files written to /tmp, /var/tmp, /dev/shm or elsewhere gone (or never written)?"""
    assert hostile["marks"] == []
    assert exercise_scores(hostile["results"]["write_outside"])["softmax"] == 3


def test_print_flood_is_cut_and_reported(hostile):
    """Are 50 MB of prints capped, kept out of the terminal, and reported?"""
    errors = hostile["results"]["print_flood"]["errors"]
    assert any("the rest was cut" in e for e in errors)


def test_reports_name_the_active_protections(hostile):
    """Does the report list the protections that were active?"""
    protections = " ".join(hostile["document"]["sandbox"]["protections"])
    assert "seccomp" in protections and "limits" in protections
    if IS_ROOT:
        assert "unprivileged uid" in protections and "network namespace" in protections
