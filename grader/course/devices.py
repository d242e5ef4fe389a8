"""Which device a course is graded on, without initialising CUDA in the grader.

CUDA does not survive fork, and the grader forks its parallel slots (and its zygote must
never touch CUDA), so availability is asked of NVML (``PYTORCH_NVML_BASED_CUDA_CHECK``)
and the GPU's name of ``nvidia-smi``; only workers create CUDA contexts, after their fork.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

from ..errors import UsageError

CHOICES = ("cpu", "cuda", "auto")


def cuda_available() -> bool:
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    import torch

    return torch.cuda.is_available()


def nvidia_smi(query: str) -> list[str]:
    """The lines ``nvidia-smi`` prints for ``query`` (``--query-gpu=name``...), CSV without
    header or units; none without nvidia-smi or when it fails."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    try:
        out = subprocess.run([smi, query, "--format=csv,noheader,nounits"], capture_output=True, text=True,
                             timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def gpu_name() -> str:
    return (nvidia_smi("--query-gpu=name") or ["unknown GPU"])[0]


@dataclass(frozen=True)
class DevicePlan:
    """The device the grading runs on, and what a report says about it."""

    requested: str
    used: str          # "cpu" or "cuda"
    gpu: str | None = None

    @property
    def verified_on_gpu(self) -> bool:
        return self.used == "cuda"

    def describe(self) -> dict:
        info = {"requested": self.requested, "used": self.used, "verified_on_gpu": self.verified_on_gpu}
        if self.gpu:
            info.update(gpu=self.gpu, tf32=False)
        return info


def plan(requested: str, *, from_command_line: bool) -> DevicePlan:
    """Resolve cpu/cuda/auto. ``--device cuda`` without a GPU is a usage error; a course that
    asks for CUDA in course.yaml falls back to the CPU and its results say "not verified on GPU"."""
    if requested not in CHOICES:
        raise UsageError(f"device {requested!r}: use one of {', '.join(CHOICES)}.")
    if requested == "cpu":
        return DevicePlan("cpu", "cpu")
    if cuda_available():
        return DevicePlan(requested, "cuda", gpu_name())
    if requested == "cuda" and from_command_line:
        raise UsageError("--device cuda: no CUDA GPU is available on this machine. Fix: run on a GPU runner, "
                         "or use --device cpu (or auto).")
    return DevicePlan(requested, "cpu")


def resolve_course(course, requested: str | None):
    """The course with every exercise's device resolved to cpu or cuda, and the plan to report.

    ``requested`` is the command line's ``--device`` (it overrides course.yaml), or None.
    """
    from dataclasses import replace

    wanted = [requested] if requested else sorted({e.device for e in course.exercises}, key=CHOICES.index)
    # the most demanding request decides what the report says: cuda, then auto, then cpu
    strongest = "cuda" if "cuda" in wanted else "auto" if "auto" in wanted else "cpu"
    device_plan = plan(strongest, from_command_line=requested is not None)
    used = {d: plan(d, from_command_line=requested is not None).used if d != strongest else device_plan.used
            for d in wanted}
    exercises = tuple(replace(e, device=used[requested or e.device]) for e in course.exercises)
    return replace(course, exercises=exercises), device_plan
