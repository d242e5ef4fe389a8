"""The hostile corpus (tests/hostile/): each file replaces one exercise of a correct
submission (``<case>.helpers.py``, if present, goes beside it as ``helpers.py``).

The corpus is graded three times, once per layer of defence:

- with the course as it is (``policy`` of course.yaml): the static scan stops most attacks
  before any of their code runs (``forbidden``);
- with the scan off (``policy: {static_scan: false}``): the attack code runs, and only the
  sandbox (worker root, namespaces, uid, cgroups, rlimits, seccomp), the run-time kernel bans
  and the grader-side comparisons hold;
- the limit cases, with the scan off and tight limits (a small memory cap, a short budget).

For each: the grader survives, that exercise gets the right status and 0, the other
exercises keep full marks, the batch completes, nothing is left running, written or leaked.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, by_name, exercise_scores, grade_json, make_submission, max_scores, scan_off_course
from grader.sandbox import cgroups
from test_grading import ATTENTION_INLINE

HOSTILE = Path(__file__).resolve().parent / "hostile"
IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="the worker's own root, namespaces and cgroups need root")
HAS_CGROUPS = cgroups.available()  # root, and a memory and a pids controller this process may write to
needs_cgroups = pytest.mark.skipif(not HAS_CGROUPS, reason="no writable memory and pids cgroup controllers here")
MARK_NAME = "grader-hostile-mark"
SECRET = "grader-secret-token-8c1f"  # in the grader's environment while it grades the corpus
SCAN_ONLY = None  # contained by the static scan alone: with the scan off, the attack works by design

# case -> (the exercise it replaces, statuses with the course's policy, statuses with the scan off)
CASES = {
    "sys_exit": ("softmax", {"error"}, {"error"}),
    "os_exit": ("softmax", {"forbidden"}, {"crashed"}),
    "base_exception": ("softmax", {"error"}, {"error"}),
    "keyboard_interrupt": ("softmax", {"error"}, {"error"}),
    "loop_at_call": ("softmax", {"timeout"}, {"timeout"}),
    "loop_at_import": ("softmax", {"timeout"}, {"timeout"}),
    "sleep_forever": ("softmax", {"timeout"}, {"timeout"}),
    "tensor_memory_bomb": ("softmax", {"error", "memory"}, {"error", "memory"}),
    "list_memory_bomb": ("softmax", {"error", "memory", "timeout"}, {"error", "memory", "timeout"}),
    "print_flood": ("softmax", {"error"}, {"error"}),
    "fork_loop": ("softmax", {"forbidden"}, {"error"}),
    "setsid_daemon": ("softmax", {"forbidden"}, {"error"}),
    "kill_parent": ("softmax", {"forbidden"}, {"error"}),
    # Not root (a student's own laptop): a file the account can read can be read, by design.
    "read_solutions": ("softmax", {"forbidden"}, {"error"} if IS_ROOT else SCAN_ONLY),
    "read_hidden_tests": ("softmax", {"forbidden"}, {"error"}),
    "network": ("softmax", {"forbidden"}, {"error"}),
    "softmax_via_distribution": ("softmax", {"forbidden"}, {"forbidden"}),
    "softmax_via_string_lookup": ("softmax", {"forbidden"}, {"forbidden"}),
    "softmax_via_log_softmax": ("softmax", {"forbidden"}, {"forbidden"}),
    "sdpa_in_attention": ("attention", {"forbidden"}, {"forbidden"}),
    # red team, 2026-12-02
    "softmax_via_vars_lookup": ("softmax", {"forbidden"}, {"forbidden"}),
    "helper_module_softmax": ("softmax", {"forbidden"}, {"forbidden"}),
    "fake_unmodified_inputs": ("softmax", {"forbidden"}, SCAN_ONLY),
    "read_course_git": ("softmax", {"forbidden"}, {"error"}),
    "read_grader_environment": ("softmax", {"forbidden"}, {"error"}),
    "read_results_files": ("softmax", {"forbidden"}, {"error"}),
    "run_lock_channel": ("softmax", {"forbidden"}, {"error"}),
    "io_uring_socket": ("softmax", {"forbidden"}, {"error"}),
    "dumpable_again": ("softmax", {"forbidden"}, {"error"}),
    # red team, second round
    "softmax_via_attrgetter_gadget": ("softmax", {"forbidden"}, SCAN_ONLY),
    "softmax_via_sparse_tensor": ("softmax", {"forbidden"}, {"forbidden"}),
    "softmax_via_mkldnn_tensor": ("softmax", {"forbidden"}, {"forbidden"}),
    # red team, third round
    "softmax_via_fqn_gadget": ("softmax", {"forbidden"}, SCAN_ONLY),
    "softmax_via_dataclass_exec": ("softmax", {"forbidden"}, SCAN_ONLY),
    "softmax_via_sdpa": ("softmax", {"forbidden"}, {"forbidden"}),
    "attention_via_quantizable_mha": ("attention", {"forbidden"}, SCAN_ONLY),
}
# Graded too, with checks of their own below: they keep (some of) their points.
EXTRA = {"write_outside": "softmax", "rewrite_printed_output": "softmax"}
# With the scan off and tight limits (LIMITS): case -> (exercise, statuses)
LIMIT_CASES = {
    "shared_mmap_bomb": ("softmax", {"memory"} if HAS_CGROUPS else {"timeout", "error", "memory", "crashed"}),
    "slow_every_call": ("softmax", {"timeout", "passed"}),
}
LIMITS = {"memory_mb": 512, "time_limit": 8, "submission_seconds": 15}


def worker_processes(uids: set[int]) -> list[str]:
    """Processes still running as the run's sandbox uids, or the daemon a case tried to leave."""
    out = subprocess.run(["ps", "-eo", "uid=,stat=,args="], capture_output=True, text=True).stdout
    running = [line.split(None, 2) for line in out.splitlines() if "Z" not in line.split()[1]]  # zombies run nothing
    return [" ".join(p) for p in running if int(p[0]) in uids or "sleep 1234" in p[2]]


def write_corpus(root: Path, cases: dict[str, str], out: Path, mark_dir: Path) -> None:
    """The cases (name -> exercise replaced) as submission folders in ``root``, plus a correct
    one; ``out`` and ``mark_dir`` are the paths the cases aim at (the report's, a mark's)."""
    for case, exercise in cases.items():
        source = (HOSTILE / f"{case}.py").read_text()
        for key, value in {"{SOLUTIONS}": ROOT / "solutions", "{SUITES}": ROOT / "grader" / "suites",
                           "{MARK_DIR}": mark_dir, "{MARK_NAME}": MARK_NAME, "{COURSE}": ROOT, "{OUT_DIR}": out,
                           "{BATCH}": root}.items():
            source = source.replace(key, str(value))
        files = {"attention": ATTENTION_INLINE, exercise: source}
        helpers = HOSTILE / f"{case}.helpers.py"
        if helpers.exists():
            files["helpers"] = helpers.read_text()
        make_submission(root / case, files)
    make_submission(root / "zz_correct", {"attention": ATTENTION_INLINE})


def grade_corpus(factory, cases: dict[str, str], course: Path | None) -> dict:
    """Grade the cases (name -> exercise replaced) plus a correct submission, in one batch."""
    root = factory.mktemp("hostile")
    out = factory.mktemp("out")
    mark_dir = factory.mktemp("mark")
    write_corpus(root, cases, out, mark_dir)
    os.environ["GRADER_SECRET_TOKEN"] = SECRET
    try:
        document = grade_json(out, root, extra=("--course", str(course)) if course else ())
    finally:
        del os.environ["GRADER_SECRET_TOKEN"]
    marks = [p for p in (Path("/tmp") / MARK_NAME, Path("/var/tmp") / MARK_NAME, Path("/dev/shm") / MARK_NAME,
                         Path("/run/lock") / MARK_NAME, mark_dir / MARK_NAME) if p.exists()]
    uids = {int(word) for p in document["sandbox"]["protections"] for word in p.split() if word.isdigit() and int(word) >= 60000}
    records = [json.loads(line) for line in (out / "report.json.jsonl").read_text().splitlines()]
    return {"results": by_name(document), "document": document, "left_running": worker_processes(uids),
            "marks": marks, "printed": {r["result"]["submission"]: r.get("printed", "") for r in records}}


@pytest.fixture(scope="session")
def hostile(tmp_path_factory) -> dict:
    """The corpus under the course's own policy."""
    return grade_corpus(tmp_path_factory, {c: CASES[c][0] for c in CASES} | EXTRA, None)


@pytest.fixture(scope="session")
def sandbox_only(tmp_path_factory) -> dict:
    """The corpus with the static scan off: the sandbox alone."""
    course = scan_off_course(tmp_path_factory.mktemp("open-course"))
    cases = {c: CASES[c][0] for c in CASES if CASES[c][2] is not SCAN_ONLY} | EXTRA
    return grade_corpus(tmp_path_factory, cases, course)


@pytest.fixture(scope="session")
def limits(tmp_path_factory) -> dict:
    """The limit cases, scan off, with a small memory cap and a short time budget."""
    sandbox = {"memory_mb": LIMITS["memory_mb"], "submission_seconds": LIMITS["submission_seconds"]}
    course = scan_off_course(tmp_path_factory.mktemp("tight-course"), sandbox, LIMITS["time_limit"])
    return grade_corpus(tmp_path_factory, {c: e for c, (e, _) in LIMIT_CASES.items()}, course)


def statuses(submission: dict, exercise: str) -> set[str]:
    return {t["status"] for e in submission["exercises"] if e["id"] == exercise for t in e["tests"]}


def messages(submission: dict) -> str:
    return " ".join([t["message"] for e in submission["exercises"] for t in e["tests"]] + submission["errors"])


def assert_costs_only_its_exercise(submission: dict, exercise: str, allowed: set[str], reference_report: dict) -> None:
    scores, full = exercise_scores(submission), max_scores(reference_report)
    assert scores[exercise] == 0, submission
    assert {i: s for i, s in scores.items() if i != exercise} == {i: s for i, s in full.items() if i != exercise}
    assert statuses(submission, exercise) <= allowed, statuses(submission, exercise)


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_case_costs_only_its_exercise(hostile, reference_report, case):
    """With the course's policy: does the case get the right status and 0 there, and full
    marks everywhere else?"""
    exercise, allowed, _ = CASES[case]
    assert_costs_only_its_exercise(hostile["results"][case], exercise, allowed, reference_report)


@pytest.mark.parametrize("case", [c for c in CASES if CASES[c][2] is not SCAN_ONLY])
def test_the_sandbox_alone_contains_the_case(sandbox_only, reference_report, case):
    """With the scan off, the attack's code runs: does the sandbox still give the right status
    and 0 there, and full marks everywhere else?"""
    exercise, _, allowed = CASES[case]
    assert_costs_only_its_exercise(sandbox_only["results"][case], exercise, allowed, reference_report)


def test_a_memory_bomb_is_told_as_memory_in_words_that_do_not_depend_on_load(hostile):
    """Is a list growing without end reported as memory (not as an infinite loop), in words
    that hold no figure but the course's limits? How far memory grows before the time limit
    depends on the machine's load, and the same submission must get the same grade."""
    submission = hostile["results"]["list_memory_bomb"]
    text = " ".join(t["message"] for e in submission["exercises"] if e["id"] == "softmax" for t in e["tests"])
    limit = yaml.safe_load((ROOT / "course.yaml").read_text())["sandbox"]["memory_mb"]
    assert "memory" in text and "infinite loop" not in text, text
    assert set(re.findall(r"(\d+) MiB", text)) <= {str(limit), str(limit // 4)}, text
    if HAS_CGROUPS:  # a MemoryError, the cgroup's kill and a timeout while growing: one status, one message
        assert statuses(submission, "softmax") == {"memory"}
        assert len({t["message"] for e in submission["exercises"] if e["id"] == "softmax" for t in e["tests"]}) == 1


def test_the_scan_names_the_line_and_the_fix(hostile):
    """Is a lookup by name refused by the scan with the file, the line and what to write instead?"""
    text = messages(hostile["results"]["softmax_via_string_lookup"])
    assert "softmax.py line 6" in text and "getattr" in text


def test_a_helper_file_is_scanned_too(hostile):
    """Is a library softmax hidden in a helper module of the submission found by the scan?"""
    assert "helpers.py" in messages(hostile["results"]["helper_module_softmax"])


def test_a_banned_kernel_is_refused_at_the_dispatcher(sandbox_only):
    """With the scan off and the worker's Python objects patched, is a library softmax fetched
    by a string lookup still refused, by the kernel that replaced it in torch's dispatcher?"""
    for case, kernel in (("softmax_via_vars_lookup", "_softmax"), ("helper_module_softmax", "_softmax"),
                         ("softmax_via_sparse_tensor", "_sparse_softmax"), ("softmax_via_mkldnn_tensor", "_softmax")):
        assert f"aten.{kernel} " in messages(sandbox_only["results"][case])


@pytest.mark.parametrize("case, module", [("softmax_via_attrgetter_gadget", "torch.autograd.profiler_util"),
                                          ("softmax_via_fqn_gadget", "torch.ao"),
                                          ("softmax_via_dataclass_exec", "dataclasses")])
def test_reflective_helpers_of_allowed_modules_are_refused(hostile, case, module):
    """Are the helpers that gave reflection past the scan (operator.attrgetter re-exported by a
    torch module, a getattr over a dotted name, dataclasses' code generation) refused by name?"""
    assert f"imports {module}, which graded code may not" in messages(hostile["results"][case])


@needs_root
@pytest.mark.parametrize("case", ["read_solutions", "read_hidden_tests", "read_course_git"])
def test_the_course_cannot_be_read(sandbox_only, case):
    """Are the solutions, the hidden tests and the course's .git (its packs hold both) absent
    from the worker's file system, and nothing of them leaked?"""
    text = messages(sandbox_only["results"][case])
    assert "def test_" not in text and "amax" not in text and "ref: refs/" not in text
    assert "No such file" in text


@needs_root
def test_other_results_and_outputs_cannot_be_read(sandbox_only):
    """Does a worker find no results file, report or other student's submission anywhere?"""
    text = messages(sandbox_only["results"]["read_results_files"])
    assert "results: []" in text
    assert "zz_correct" not in text


def test_the_grader_environment_does_not_reach_the_worker(sandbox_only):
    """Is a secret in the grader's environment absent from everything the worker can read (its
    environment, /proc), and (as root) is no other process visible?"""
    text = messages(sandbox_only["results"]["read_grader_environment"])
    assert "processes=" in text  # the case ran to its report
    assert SECRET not in text
    if IS_ROOT:
        assert "processes=1 " in text


@needs_root
def test_no_host_folder_is_writable(sandbox_only):
    """Is /run/lock (world-writable on the host) absent, and so no channel between workers?"""
    assert "No such file" in messages(sandbox_only["results"]["run_lock_channel"])
    assert not (Path("/run/lock") / MARK_NAME).exists()


@pytest.mark.parametrize("case", ["io_uring_socket", "dumpable_again"])
def test_seccomp_denies_io_uring_and_dumpable(sandbox_only, case):
    """Are io_uring (whose kernel threads opened sockets past the socket rule) and making
    the worker dumpable again refused (EPERM)?"""
    assert "errno 1" in messages(sandbox_only["results"][case])


def test_the_printed_output_is_what_the_grader_captured(sandbox_only):
    """Does staff's record of what a worker printed keep what it printed first, whatever the
    worker then does to its stdout (truncate, pwrite)?"""
    printed = sandbox_only["printed"]["rewrite_printed_output"]
    assert printed.startswith(f"{MARK_NAME}-printed-first")
    assert "forged output" not in printed


@needs_cgroups
def test_a_shared_mapping_is_stopped_by_the_memory_cgroup(limits):
    """Is a shared anonymous mapping (which RLIMIT_DATA does not count) stopped at the memory
    cgroup's limit, and reported as memory?"""
    submission = limits["results"]["shared_mmap_bomb"]
    assert statuses(submission, "softmax") <= LIMIT_CASES["shared_mmap_bomb"][1]
    assert "ran out of memory" in messages(submission)
    assert exercise_scores(submission)["attention"] == 3


def test_a_hang_at_import_is_said_to_be_the_files_and_one_in_a_call_the_functions(hostile):
    """A loop at the top level of softmax.py is the file's import that did not finish, not the
    function's call; a loop inside the function is the function's."""
    assert "importing softmax.py did not finish within" in messages(hostile["results"]["loop_at_import"])
    at_call = messages(hostile["results"]["loop_at_call"])
    assert "softmax did not finish within" in at_call and "importing" not in at_call


def test_a_submission_cannot_use_more_than_its_time_budget(limits):
    """Does a submission whose every call takes just under the per-call limit stop at its
    time budget, the remaining tests failing with that reason, its other exercises kept?"""
    submission = limits["results"]["slow_every_call"]
    assert statuses(submission, "softmax") <= LIMIT_CASES["slow_every_call"][1]
    assert "time budget" in messages(submission)


def test_the_batch_completes_and_correct_work_keeps_full_marks(hostile, sandbox_only, reference_report):
    """Does every batch finish, with the correct submission at full marks?"""
    assert len(hostile["results"]) == len(CASES) + len(EXTRA) + 1
    for run in (hostile, sandbox_only):
        assert run["results"]["zz_correct"]["score"] == reference_report["max_score"]


def test_nothing_is_left_running(sandbox_only):
    """Is no process of any worker (a setsid daemon included) alive after grading?"""
    assert sandbox_only["left_running"] == []


@needs_root
def test_nothing_is_written_outside_the_scratch_space(sandbox_only):
    """Are files written to /tmp, /var/tmp, /dev/shm or elsewhere gone (or never written)?"""
    assert sandbox_only["marks"] == []
    assert exercise_scores(sandbox_only["results"]["write_outside"])["softmax"] == 3


def test_print_flood_is_cut_and_reported(sandbox_only):
    """Are 50 MB of prints capped, kept out of the terminal, and reported?"""
    errors = sandbox_only["results"]["print_flood"]["errors"]
    assert any("the rest was cut" in e for e in errors)


def test_reports_name_the_active_protections(sandbox_only):
    """Does the report list the protections that were active?"""
    protections = " ".join(sandbox_only["document"]["sandbox"]["protections"])
    assert "seccomp" in protections and "limits" in protections
    if IS_ROOT:
        for name in ("unprivileged uid", "network namespace", "PID namespace", "own read-only root"):
            assert name in protections
    assert ("cgroups" in protections) == HAS_CGROUPS
