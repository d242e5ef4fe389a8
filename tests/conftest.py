"""Shared helpers: build submissions from the reference solutions, grade them with the CLI."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from grader.course.load import load_course

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = ROOT / "solutions"
# What the course file says (ids in order, function names, the total), so that the tests
# follow an exercise added with `python -m grader new` (no torch import here).
COURSE = load_course(ROOT / "course.yaml", check_torch_names=False)
IDS = COURSE.ids
FUNCTIONS = {e.id: e.function for e in COURSE.exercises}
MAX_SCORE = COURSE.max_score
# The four exercises of the contract (../shared/BRIEF.md), in their order.
CONTRACT_IDS = ("attention_scores", "softmax", "apply_weights", "attention")
# `check` runs cold in tests (no background check server left behind), unless a test starts
# one on purpose (tests/test_warm_check.py).
os.environ.setdefault("GRADER_CHECK_IDLE_SECONDS", "0")


def wait_for_file(path: Path, seconds: float = 120) -> bool:
    """Whether ``path`` appears within ``seconds``: `check` writes its report in the
    background, after it has printed."""
    deadline = time.monotonic() + seconds
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return path.exists()


def solution_sources() -> dict[str, str]:
    return {i: (SOLUTIONS / f"{i}.py").read_text() for i in IDS}


def make_submission(folder: Path, overrides: dict[str, str | None] | None = None, *, layout: str = "top") -> Path:
    """A submission folder holding the reference files, some replaced (None removes one)."""
    files = dict(solution_sources(), **(overrides or {}))
    code = folder / "exercises" if layout == "exercises" else folder
    code.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        if text is not None:
            (code / f"{name}.py").write_text(text)
    return folder


def scan_off_course(folder: Path, sandbox: dict[str, float] | None = None, time_limit: float | None = None) -> Path:
    """A course folder with the repo's exercises, solutions and suites and ``policy: {static_scan:
    false}``: code the scan would stop runs in the worker. ``sandbox`` overrides limits of
    course.yaml's ``sandbox:``, ``time_limit`` the default per-call limit. Returns its course.yaml."""
    (folder / "grader").mkdir(parents=True, exist_ok=True)
    for name in ("solutions", "exercises", "misconceptions"):
        (folder / name).symlink_to(ROOT / name)
    (folder / "grader" / "suites").symlink_to(ROOT / "grader" / "suites")
    course = yaml.safe_load((ROOT / "course.yaml").read_text())
    course["policy"] = {"static_scan": False}
    course["sandbox"].update(sandbox or {})
    if time_limit is not None:
        course["defaults"]["time_limit"] = time_limit
    (folder / "course.yaml").write_text(yaml.safe_dump(course, sort_keys=False))
    return folder / "course.yaml"


def run_grader(*args: str, cwd: Path = ROOT, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "grader", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def grade_json(out_dir: Path, *paths: Path | str, extra: tuple[str, ...] = ()) -> dict:
    """Grade with the real CLI (``--format json --out``) and return the JSON document."""
    out = Path(out_dir) / "report.json"
    proc = run_grader("grade", *map(str, paths), "--format", "json", "--out", str(out), *extra)
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text())


def otter_run(autograder_zip: Path, notebook: Path, out: Path) -> dict:
    """The real ``otter run`` of a handed-in notebook (no Docker): its results.json."""
    out.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([sys.executable, "-m", "otter", "run", "--no-logo", "-a", str(autograder_zip),
                           "-o", str(out), str(notebook)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    return json.loads((out / "results.json").read_text())


def by_name(document: dict) -> dict[str, dict]:
    return {s["submission"]: s for s in document["submissions"]}


def exercise_scores(submission: dict) -> dict[str, float]:
    return {e["id"]: e["score"] for e in submission["exercises"]}


def max_scores(submission: dict) -> dict[str, float]:
    return {e["id"]: e["max_score"] for e in submission["exercises"]}


@pytest.fixture(scope="session")
def reference_report(tmp_path_factory) -> dict:
    """The reference solutions graded once, as a submission."""
    return grade_json(tmp_path_factory.mktemp("reference"), SOLUTIONS)["submissions"][0]
