"""`make gpu-check`: one run on a GPU machine that checks grading on CUDA end to end.

1. the reference solutions score full marks on CUDA;
2. the sample class (examples/submissions) gets the same result on CUDA as on the CPU,
   test by test (status and score), the suites' float16 and bfloat16 cases included, so
   course.yaml's tolerances hold on the GPU's kernels as on the CPU's;
3. each device-bug submission (examples/device_bugs) scores full marks on the CPU and, on
   CUDA, loses only its buggy exercise, with advice about devices in a failing test's
   message or hints;
4. a worker that asks for more GPU memory than its share (``sandbox.gpu_memory_fraction``
   of the card: it asks for half of the rest beyond it, which the card itself could hold)
   gets ``memory`` for that exercise only;
5. nothing is left behind: no process of the grader's, no CUDA context on the GPU.

It prints one summary line and writes every report it graded, and ``gpu-check.json``
(the figures and problems), to ``--out`` when given. Exits 1 if a check fails, 2 if there
is no GPU.

    python -m grader.run.gpu_check [--out DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..course.load import Exercise
from ..locations import PACKAGE
from ..sandbox.client import UID_BLOCK, UID_BLOCKS, UID_START

ROOT = PACKAGE.parent
BUGS_FOLDER = ROOT / "examples" / "device_bugs"
CLASS_FOLDER = ROOT / "examples" / "submissions"


def device_bugs(folder: Path = BUGS_FOLDER) -> dict[str, str]:
    """submission -> the exercise it loses on a GPU, from the course's table in the folder's
    README.md (rows ``| `cpu_mask` | attention | the bug |``)."""
    readme = folder / "README.md"
    text = readme.read_text(encoding="utf-8") if readme.is_file() else ""
    return dict(re.findall(r"^\|\s*`([^`]+)`\s*\|\s*([A-Za-z_][A-Za-z0-9_]*)\s*\|", text, flags=re.M))


def grade(path: Path, device: str, out_dir: Path, name: str) -> tuple[dict, list[float]]:
    """Grade ``path`` with the CLI on ``device``; the JSON report and each submission's seconds."""
    out = out_dir / f"{name}-{device}.json"
    proc = subprocess.run([sys.executable, "-m", "grader", "grade", str(path), "--device", device, "--format", "json",
                           "--out", str(out), "--results", f"{out}.jsonl"], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"gpu-check: FAILED to grade {path} on {device}: {proc.stderr.strip()}")
    seconds = [json.loads(line)["seconds"] for line in Path(f"{out}.jsonl").read_text().splitlines()]
    Path(f"{out}.jsonl").unlink()
    return json.loads(out.read_text()), seconds


def exercise_scores(document: dict) -> dict[str, dict[str, float]]:
    return {s["submission"]: {e["id"]: e["score"] for e in s["exercises"]} for s in document["submissions"]}


def test_results(document: dict) -> dict[tuple[str, str, str], dict]:
    """(submission, exercise, test) -> that test's entry of the report."""
    return {(s["submission"], e["id"], t["name"]): t
            for s in document["submissions"] for e in s["exercises"] for t in e["tests"]}


def differences(on_cpu: dict, on_gpu: dict) -> list[str]:
    """Every test whose status or score differs between the two reports, in words."""
    cpu, gpu = test_results(on_cpu), test_results(on_gpu)
    problems = [f"{'/'.join(key)}: only in the {'CPU' if key in cpu else 'CUDA'} report"
                for key in sorted(cpu.keys() ^ gpu.keys())]
    for key in sorted(cpu.keys() & gpu.keys()):
        a, b = cpu[key], gpu[key]
        if (a["status"], a["score"]) != (b["status"], b["score"]):
            problems.append(f"{'/'.join(key)}: CPU {a['status']} {a['score']:g} ({a['message'][:160]!r}) vs "
                            f"CUDA {b['status']} {b['score']:g} ({b['message'][:160]!r})")
    return problems


def device_advice(document: dict, submission: str, exercise: str) -> bool:
    """Does a failing test of ``exercise`` tell ``submission`` about devices (message or hints)?"""
    for (name, ex, _), test in test_results(document).items():
        if name == submission and ex == exercise and test["status"] != "passed":
            if any("device" in text for text in [test["message"], *test["hints"]]):
                return True
    return False


def check_device_bugs(full: dict[str, float], bugs_cpu: dict, bugs_gpu: dict) -> tuple[int, list[str]]:
    """How many device bugs were caught as the folder's README says, and what went wrong."""
    caught, problems = 0, []
    for name, exercise in device_bugs().items():
        cpu, gpu = exercise_scores(bugs_cpu).get(name), exercise_scores(bugs_gpu).get(name)
        if cpu is None or gpu is None:
            problems.append(f"device bug {name}: not graded")
        elif cpu != full:
            problems.append(f"device bug {name} does not score full marks on the CPU: {cpu}")
        elif gpu[exercise] >= full[exercise] or any(gpu[i] != full[i] for i in full if i != exercise):
            problems.append(f"device bug {name}: expected to lose only {exercise} on CUDA, got {gpu}")
        elif not device_advice(bugs_gpu, name, exercise):
            problems.append(f"device bug {name}: no failing test of {exercise} says anything about devices")
        else:
            caught += 1
    return caught, problems


def gpu_memory_mib() -> int:
    """The GPU's memory, from nvidia-smi (the grader itself never initialises CUDA)."""
    from ..course.devices import nvidia_smi

    return int(nvidia_smi("--query-gpu=memory.total")[0])


HOG = """

import torch as _torch

_reference = {function}


def {function}(*args, **kwargs):  # the reference's answer, after asking for more GPU memory than a worker may have
    device = next(a.device for a in args if isinstance(a, _torch.Tensor))
    _hoard = _torch.empty({mib} * 2**20, dtype=_torch.uint8, device=device)
    return _reference(*args, **kwargs)
"""


def memory_hog(folder: Path, exercise: Exercise, mib: int) -> Path:
    """The reference solutions, but ``exercise``'s function first allocates ``mib`` MiB where its inputs are."""
    target = folder / "gpu_memory_hog"
    shutil.copytree(ROOT / "solutions", target)
    module = target / f"{exercise.id}.py"
    module.write_text(module.read_text() + HOG.format(function=exercise.function, mib=mib))
    return target


def check_memory_share(document: dict, exercise: str, full: dict[str, float]) -> list[str]:
    """Did the hog of ``exercise`` get ``memory`` there, and every other exercise its full marks?"""
    (scores,) = exercise_scores(document).values()
    statuses = {t["status"] for (_, ex, _), t in test_results(document).items() if ex == exercise}
    problems = []
    if "memory" not in statuses:
        problems.append(f"a worker allocating past its GPU share was not stopped as out of memory: {exercise}'s "
                        f"statuses {sorted(statuses)}")
    if any(scores[i] != full[i] for i in full if i != exercise):
        problems.append(f"the GPU memory hog lost points outside {exercise}: {scores}")
    return problems


def leftovers() -> list[str]:
    """Processes of the grader's still running (a zygote, a fork server, a worker's uid), and
    processes holding a CUDA context, after every grade has returned."""
    mine = {os.getpid(), os.getppid()}
    sandbox_uids = range(UID_START, UID_START + UID_BLOCK * UID_BLOCKS)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in mine:
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            uid = int(re.search(r"^Uid:\s+(\d+)", (entry / "status").read_text(), flags=re.M).group(1))
        except (OSError, AttributeError):
            continue
        if uid in sandbox_uids or "grader.sandbox" in command or "-m grader " in command:
            found.append(f"process {entry.name} (uid {uid}): {command[:120]}")
    from ..course.devices import nvidia_smi

    return found + [f"CUDA context still open: {line}" for line in nvidia_smi("--query-compute-apps=pid,used_memory")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grader.run.gpu_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="keep every report and gpu-check.json in this folder")
    args = parser.parse_args(argv)
    from ..course.devices import cuda_available, gpu_name
    from ..course.load import load_course

    if not cuda_available():
        print("gpu-check: no CUDA GPU on this machine; nothing to check (run it on a GPU runner).")
        return 2
    started = time.monotonic()
    problems: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        reference, _ = grade(ROOT / "solutions", "cuda", out, "reference")
        (ref,) = reference["submissions"]
        if ref["score"] != ref["max_score"]:
            problems.append(f"reference scored {ref['score']}/{ref['max_score']} on CUDA")
        (full,) = exercise_scores(reference).values()

        on_cpu, cpu_seconds = grade(CLASS_FOLDER, "cpu", out, "class")
        on_gpu, gpu_seconds = grade(CLASS_FOLDER, "cuda", out, "class")
        differing = differences(on_cpu, on_gpu)
        problems += differing
        tests = len(test_results(on_cpu))

        bugs_cpu, _ = grade(BUGS_FOLDER, "cpu", out, "device-bugs")
        bugs_gpu, _ = grade(BUGS_FOLDER, "cuda", out, "device-bugs")
        caught, bug_problems = check_device_bugs(full, bugs_cpu, bugs_gpu)
        problems += bug_problems

        # The course's last exercise hogs: no earlier exercise imports it.
        course = load_course(ROOT / "course.yaml")
        card, share, hogging = gpu_memory_mib(), course.sandbox.gpu_memory_fraction, course.exercises[-1]
        hog, _ = grade(memory_hog(Path(tmp), hogging, int(card * (1 + share) / 2)), "cuda", out, "gpu-memory-hog")
        share_problems = check_memory_share(hog, hogging.id, full)
        problems += share_problems
        left = leftovers()
        problems += left
    figures = {"gpu": gpu_name(), "gpu_memory_mib": card, "reference": f"{ref['score']:g}/{ref['max_score']:g}",
               "sample_class_tests": tests, "sample_class_tests_differing": len(differing),
               "device_bugs_caught": f"{caught}/{len(device_bugs())}",
               "seconds_per_submission": {"cuda": statistics.median(gpu_seconds), "cpu": statistics.median(cpu_seconds)},
               "leftovers": len(left), "seconds": round(time.monotonic() - started, 1), "problems": problems}
    if args.out:
        (args.out / "gpu-check.json").write_text(json.dumps(figures, indent=2) + "\n")
    summary = (f"reference {figures['reference']} on CUDA ({figures['gpu']}); sample class: "
               f"{tests - len(differing)}/{tests} tests the same on CPU and CUDA; device bugs caught: "
               f"{figures['device_bugs_caught']}; GPU memory share held: "
               f"{'yes' if not share_problems else 'NO'}; left behind: {len(left)}; per submission: "
               f"CUDA {statistics.median(gpu_seconds):.2f} s, CPU {statistics.median(cpu_seconds):.2f} s (medians)")
    print(("gpu-check: OK | " if not problems else "gpu-check: FAILED | ") + summary)
    for problem in problems:
        print(f"  - {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
