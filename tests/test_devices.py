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


@needs_cuda
def test_the_sample_class_gets_the_same_results_on_cuda_test_by_test(tmp_path):
    """Status and score of every test, the float16 and bfloat16 cases included, as on the CPU."""
    from grader.run.gpu_check import differences

    reports = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / device
        out.mkdir()
        reports[device] = grade_json(out, ROOT / "examples" / "submissions", extra=("--device", device))
    assert reports["cuda"]["device"]["verified_on_gpu"] is True
    assert differences(reports["cpu"], reports["cuda"]) == []


@needs_cuda
def test_cuda_tensors_cross_the_socket_on_their_device():
    from test_codec import round_trip

    x = torch.randn(3, 4, 5, device="cuda").transpose(0, 2)  # a non-contiguous view
    got = round_trip(x)
    assert got.device == x.device and got.shape == x.shape and torch.equal(got, x)


def test_a_reference_on_another_device_gives_its_gradients_there():
    """The reference of a CUDA course runs where the student's code runs, and so do its
    gradients (on an H200 they mixed the test's CPU output gradients with CUDA outputs and
    every gradient test was a grader error). 'meta' stands in for CUDA on any machine."""
    from grader.run.fixture_values import ReferenceOnDevice
    from grader.testing import gradients

    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    grad_out = torch.randn(3, 4, dtype=torch.float64)
    reference = ReferenceOnDevice(lambda t: t.exp() * 2, "meta")
    (grad,) = gradients(reference, (x,), [grad_out])
    assert reference(x).device.type == "meta"
    assert grad.device.type == "meta" and grad.shape == x.shape


# A worker's error reports as seen on an H200 (torch 2.11.0+cu130), messages cut as the grader reads them.
NVML_FAILED_WHILE_REFUSING = ('NVML_SUCCESS == DriverAPI::get()->nvmlInit_v2_() INTERNAL ASSERT FAILED at '
                              '"/pytorch/c10/cuda/CUDACachingAllocator.cpp":1135, please report a bug to PyTorch. ')
CUDA_REFUSED = "CUDA out of memory. Tried to allocate 93132.26 GiB. GPU 0 has a total capacity of 139.80 GiB"


@pytest.mark.parametrize("kind, message, gpu", [
    ("RuntimeError", NVML_FAILED_WHILE_REFUSING, True), ("OutOfMemoryError", CUDA_REFUSED, True),
    ("MemoryError", "", False), ("RuntimeError", "mat1 and mat2 shapes cannot be multiplied (4x8 and 6x8)", None)])
def test_a_refused_gpu_allocation_is_out_of_gpu_memory(kind, message, gpu):
    """The CUDA allocator's refusal is out of memory, of the GPU's, even when torch fails to
    word it (NVML fails in the sandbox); other errors are not."""
    from grader.run.student import _out_of_gpu_memory, _out_of_memory

    error = {"kind": "exception", "type": kind, "message": message}
    assert _out_of_memory(error) is (gpu is not None)
    assert _out_of_gpu_memory(error) is bool(gpu)
