"""`make gpu-check`: one run on a GPU machine that checks grading on CUDA end to end.

1. the reference solutions score full marks on CUDA;
2. the sample class (examples/submissions) gets the same scores on CUDA as on the CPU;
3. each device-bug submission (examples/device_bugs) has full marks on the CPU and loses
   exactly its buggy exercise on CUDA;
and prints one summary line, with the time per submission on each device. Exits 1 if a
check fails, 2 if there is no GPU.

    python -m grader.run.gpu_check
"""
from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from ..locations import PACKAGE

ROOT = PACKAGE.parent
BUGS_FOLDER = ROOT / "examples" / "device_bugs"


def device_bugs(folder: Path = BUGS_FOLDER) -> dict[str, str]:
    """submission -> the exercise it loses on a GPU, from the course's table in the folder's
    README.md (rows ``| `cpu_mask` | attention | the bug |``)."""
    readme = folder / "README.md"
    text = readme.read_text(encoding="utf-8") if readme.is_file() else ""
    return dict(re.findall(r"^\|\s*`([^`]+)`\s*\|\s*([A-Za-z_][A-Za-z0-9_]*)\s*\|", text, flags=re.M))


def grade(path: Path, device: str, out_dir: Path) -> tuple[dict, list[float]]:
    out = out_dir / f"{path.name}-{device}.json"
    proc = subprocess.run([sys.executable, "-m", "grader", "grade", str(path), "--device", device, "--format", "json",
                           "--out", str(out), "--results", f"{out}.jsonl"], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"gpu-check: FAILED to grade {path} on {device}: {proc.stderr.strip()}")
    seconds = [json.loads(line)["seconds"] for line in Path(f"{out}.jsonl").read_text().splitlines()]
    return json.loads(out.read_text()), seconds


def exercise_scores(document: dict) -> dict[str, dict[str, float]]:
    return {s["submission"]: {e["id"]: e["score"] for e in s["exercises"]} for s in document["submissions"]}


def main() -> int:
    from ..course.devices import cuda_available

    if not cuda_available():
        print("gpu-check: no CUDA GPU on this machine; nothing to check (run it on a GPU runner).")
        return 2
    problems: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        reference, _ = grade(ROOT / "solutions", "cuda", out)
        (ref,) = reference["submissions"]
        if ref["score"] != ref["max_score"]:
            problems.append(f"reference scored {ref['score']}/{ref['max_score']} on CUDA")
        gpu = reference.get("device", {}).get("gpu", "unknown GPU")

        on_cpu, cpu_seconds = grade(ROOT / "examples" / "submissions", "cpu", out)
        on_gpu, gpu_seconds = grade(ROOT / "examples" / "submissions", "cuda", out)
        cpu_scores, gpu_scores = exercise_scores(on_cpu), exercise_scores(on_gpu)
        differing = [name for name in cpu_scores if cpu_scores[name] != gpu_scores.get(name)]
        problems += [f"{name}: CPU {cpu_scores[name]} vs CUDA {gpu_scores.get(name)}" for name in differing]

        bugs_cpu, _ = grade(BUGS_FOLDER, "cpu", out)
        bugs_gpu, _ = grade(BUGS_FOLDER, "cuda", out)
        caught = 0
        (full,) = exercise_scores(reference).values()
        bugs = device_bugs()
        for name, exercise in bugs.items():
            cpu, gpu_ = exercise_scores(bugs_cpu)[name], exercise_scores(bugs_gpu)[name]
            expected_gpu = {i: (0 if i == exercise else s) for i, s in full.items()}
            if cpu != full:
                problems.append(f"device bug {name} does not score full marks on the CPU: {cpu}")
            elif gpu_[exercise] >= full[exercise] or any(gpu_[i] != full[i] for i in full if i != exercise):
                problems.append(f"device bug {name}: expected to lose only {exercise} on CUDA, got {gpu_}")
            else:
                caught += 1
                if gpu_ != expected_gpu:
                    print(f"note: {name} kept {gpu_[exercise]} of {full[exercise]} points of {exercise} on CUDA")
    summary = (f"reference {ref['score']:g}/{ref['max_score']:g} on CUDA ({gpu}); sample class: "
               f"{len(cpu_scores) - len(differing)}/{len(cpu_scores)} same scores on CPU and CUDA; device bugs caught: "
               f"{caught}/{len(bugs)}; per submission: CUDA {statistics.median(gpu_seconds):.2f} s, "
               f"CPU {statistics.median(cpu_seconds):.2f} s (medians)")
    print(("gpu-check: OK | " if not problems else "gpu-check: FAILED | ") + summary)
    for problem in problems:
        print(f"  - {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
