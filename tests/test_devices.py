"""Grading devices: clear errors without a GPU, CUDA grading when there is one."""
from __future__ import annotations

import json

import pytest
import torch

from conftest import MAX_SCORE, ROOT, SOLUTIONS, exercise_scores, grade_json, run_grader
from test_course import course_copy, edit  # noqa: F401 - fixture

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the gpu runner)")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_device_cuda_without_gpu_is_one_clear_line():
    proc = run_grader("grade", str(SOLUTIONS), "--device", "cuda")
    assert proc.returncode == 2 and proc.stderr.startswith("error: --device cuda: no CUDA GPU")
    assert proc.stderr.strip().count("\n") == 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_course_asking_for_cuda_falls_back_and_says_so(course_copy, tmp_path):
    """A course.yaml that wants CUDA, graded on a CPU machine: graded, marked not verified on GPU."""
    path = edit(course_copy, lambda d: d["defaults"].update(device="cuda"))
    out = tmp_path / "r.json"
    proc = run_grader("--course", str(path), "grade", str(SOLUTIONS), "--format", "json", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "not verified on GPU" in proc.stderr
    document = json.loads(out.read_text())
    assert document["device"] == {"requested": "cuda", "used": "cpu", "verified_on_gpu": False}
    assert document["submissions"][0]["score"] == MAX_SCORE


def test_auto_and_cpu_are_recorded(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    document = grade_json(out, SOLUTIONS, extra=("--device", "auto"))
    assert document["device"]["requested"] == "auto"
    assert document["device"]["used"] == ("cuda" if torch.cuda.is_available() else "cpu")


@needs_cuda
def test_reference_full_marks_on_cuda(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    document = grade_json(out, SOLUTIONS, extra=("--device", "cuda"))
    assert document["device"]["verified_on_gpu"] is True
    assert document["submissions"][0]["score"] == document["submissions"][0]["max_score"]


@needs_cuda
def test_device_bugs_lose_exactly_their_exercise_on_cuda(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    bugs = {"cpu_mask": "attention", "cpu_output": "softmax", "cpu_buffer": "apply_weights"}
    document = grade_json(out, ROOT / "examples" / "device_bugs", extra=("--device", "cuda"))
    for submission in document["submissions"]:
        scores = exercise_scores(submission)
        wrong = bugs[submission["submission"]]
        assert scores[wrong] < {"attention": 3, "softmax": 3, "apply_weights": 2}[wrong]
        assert all(scores[i] == full for i, full in {"attention_scores": 2, "softmax": 3, "apply_weights": 2,
                                                      "attention": 3}.items() if i != wrong)
