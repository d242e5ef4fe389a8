"""Root in a container that refuses namespaces (no CAP_SYS_ADMIN, Docker's default, where an
LMS's autograder often runs): the workers go without their own root and namespaces, keep
the rest, and the class gets the scores it gets everywhere (it got 0 everywhere, every
worker failing to start, before)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("capsh"),
                                reason="needs root and capsh (libcap2-bin) to drop CAP_SYS_ADMIN")
CLASS = ROOT / "examples" / "submissions"


def grade(tmp_path, *prefix: str) -> dict:
    out = tmp_path / f"report{len(prefix)}.json"
    command = [sys.executable, "-m", "grader", "grade", str(CLASS), "--format", "json", "--out", str(out)]
    if prefix:
        command = [*prefix, "--", "-c", " ".join(map(str, command))]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text())


def test_without_cap_sys_admin_the_class_is_graded_as_anywhere(tmp_path):
    plain = grade(tmp_path)
    confined = grade(tmp_path, "capsh", "--drop=cap_sys_admin")
    scores = lambda document: {s["submission"]: s["score"] for s in document["submissions"]}  # noqa: E731
    assert scores(confined) == scores(plain)
    protections = confined["sandbox"]["protections"]
    assert not any("namespace" in p or "own read-only root" in p for p in protections)
    assert any(p.startswith("unprivileged uid") for p in protections)
    assert any(p.startswith("seccomp filter") for p in protections)


def test_a_machine_where_no_worker_can_start_ends_the_grade_in_one_line(tmp_path):
    """Root without CAP_SETUID (the sandbox's uid drop fails before any student code runs):
    every submission is "not graded", the report is still written, and the command ends
    non-zero with one line that says why, instead of handing out zeros as grades."""
    out = tmp_path / "report.json"
    command = f"{sys.executable} -m grader grade {CLASS} --format json --out {out}"
    proc = subprocess.run(["capsh", "--drop=cap_setuid,cap_setgid", "--", "-c", command], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1
    (line,) = [l for l in proc.stderr.splitlines() if l.startswith("error:")]  # noqa: E741
    assert "could not start a worker" in line and f"{len(list(CLASS.iterdir()))} of " in line
    document = json.loads(out.read_text())
    assert all(any(e.startswith("not graded:") for e in s["errors"]) for s in document["submissions"])
