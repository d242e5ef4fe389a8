"""Benchmark on a GPU machine: `make bench`'s generated class graded on CUDA and on the CPU.

Prints, for each device: submissions per second (start-up included), p50/p95 latency per
submission; on CUDA also the GPU memory used at the peak (the whole card, above what was in
use before), the largest share one worker process held, how many worker processes held a
CUDA context, and what was left afterwards (grader processes, open CUDA contexts). The two
reports must agree test by test. GPU memory is read by ``nvidia-smi`` every 100 ms.

    python benchmarks/gpu_bench.py [--size 200] [--jobs 2] [--out DIR]
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import PY, ROOT, make_class, percentile, run_timed

sys.path.insert(0, str(ROOT))
from grader.run.gpu_check import differences, leftovers  # noqa: E402


class GpuMemory:
    """``nvidia-smi`` in loop mode while it lives: the card's used MiB, and each process's."""

    def __init__(self) -> None:
        self.card = subprocess.Popen(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits",
                                      "-lms", "100"], stdout=subprocess.PIPE, text=True)
        self.apps = subprocess.Popen(["nvidia-smi", "--query-compute-apps=pid,used_memory",
                                      "--format=csv,noheader,nounits", "-lms", "100"], stdout=subprocess.PIPE, text=True)

    def stop(self) -> tuple[list[int], dict[int, int]]:
        """The card's readings in order, and each process's peak (pid -> MiB)."""
        for proc in (self.card, self.apps):
            proc.terminate()
        card = [int(line) for line in self.card.communicate()[0].split() if line.isdigit()]
        peaks: dict[int, int] = {}
        for line in self.apps.communicate()[0].splitlines():
            fields = [f.strip() for f in line.split(",")]
            if len(fields) == 2 and fields[0].isdigit() and fields[1].isdigit():
                peaks[int(fields[0])] = max(peaks.get(int(fields[0]), 0), int(fields[1]))
        return card, peaks


def grade(klass: Path, device: str, jobs: int, out: Path) -> tuple[float, dict, list[float]]:
    report = out / f"class-{device}.json"
    wall, proc = run_timed([PY, "-m", "grader", "grade", str(klass), "--device", device, "--jobs", str(jobs),
                            "--format", "json", "--out", str(report), "--results", f"{report}.jsonl"], ROOT)
    if proc.returncode:
        sys.exit(f"gpu_bench: grading on {device} failed: {proc.stderr.strip()}")
    latency = [json.loads(line)["seconds"] for line in Path(f"{report}.jsonl").read_text().splitlines()]
    return wall, json.loads(report.read_text()), latency


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=2, help="slots (on CUDA capped by sandbox.gpu_slots)")
    parser.add_argument("--out", type=Path, help="keep the two reports and gpu-bench.json here")
    args = parser.parse_args()
    from grader.course.devices import cuda_available

    if not shutil.which("nvidia-smi") or not cuda_available():
        print("gpu bench: no CUDA GPU on this machine; nothing to measure (run it on a GPU runner).")
        return 2
    work = Path(tempfile.mkdtemp(prefix="grader-gpu-bench-"))
    out = args.out or work
    out.mkdir(parents=True, exist_ok=True)
    figures: dict = {"size": args.size, "jobs": args.jobs}
    try:
        kinds = make_class(work / "class", args.size)
        figures["kinds"] = {k: list(kinds.values()).count(k) for k in ("correct", "wrong", "hostile")}
        memory = GpuMemory()
        wall, on_gpu, latency = grade(work / "class", "cuda", args.jobs, out)
        card, per_process = memory.stop()
        figures["cuda"] = {"wall_s": round(wall, 1), "per_s": round(args.size / wall, 2),
                           "p50_ms": round(1000 * percentile(latency, 0.5)), "p95_ms": round(1000 * percentile(latency, 0.95)),
                           "gpu_memory_before_mib": card[0] if card else None,
                           "gpu_memory_peak_mib": max(card) - card[0] if card else None,
                           "worker_peak_mib": max(per_process.values(), default=None),
                           "processes_with_a_context": len(per_process)}
        figures["left_after_cuda"] = leftovers()
        c = figures["cuda"]
        print(f"gpu bench: {args.size} submissions ({figures['kinds']}), --jobs {args.jobs}, full hidden suite, full sandbox")
        print(f"  CUDA: {c['wall_s']} s -> {c['per_s']}/s, p50 {c['p50_ms']} ms, p95 {c['p95_ms']} ms; GPU memory at the "
              f"peak {c['gpu_memory_peak_mib']} MiB above the {c['gpu_memory_before_mib']} MiB in use before; one worker "
              f"at most {c['worker_peak_mib']} MiB; {c['processes_with_a_context']} processes held a CUDA context", flush=True)
        wall, on_cpu, latency = grade(work / "class", "cpu", args.jobs, out)
        figures["cpu"] = {"wall_s": round(wall, 1), "per_s": round(args.size / wall, 2),
                          "p50_ms": round(1000 * percentile(latency, 0.5)), "p95_ms": round(1000 * percentile(latency, 0.95))}
        figures["differences"] = differences(on_cpu, on_gpu)
        figures["device"] = on_gpu.get("device")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.out:
        (args.out / "gpu-bench.json").write_text(json.dumps(figures, indent=2) + "\n")
    p = figures["cpu"]
    print(f"  CPU:  {p['wall_s']} s -> {p['per_s']}/s, p50 {p['p50_ms']} ms, p95 {p['p95_ms']} ms")
    print(f"  same results test by test: {'yes' if not figures['differences'] else 'NO'}; left behind after CUDA: "
          f"{len(figures['left_after_cuda'])}")
    for line in figures["differences"][:20] + figures["left_after_cuda"]:
        print(f"    - {line}")
    return 1 if figures["differences"] or figures["left_after_cuda"] else 0


if __name__ == "__main__":
    sys.exit(main())
