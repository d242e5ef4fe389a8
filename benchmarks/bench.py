"""Benchmark: grade a generated class with the full hidden suite and the full sandbox.

Prints submissions per second, p50/p95 latency per submission, the peak memory of
the whole process tree, where the slots' time went by kind of submission (correct, wrong,
hostile), one submission graded from the shell beside a bare `import torch`, one student
`check`, and, on a few of the same submissions, the naive way (a fresh `python -m pytest`
process per submission) and otter-grader's `otter run` of the same notebook, with the ratios.

    python benchmarks/bench.py [--size 500] [--jobs 2] [--naive 4] [--otter 2]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
IDS = ("attention_scores", "softmax", "apply_weights", "attention")

# Correct, written the ways students write them (the results may differ in the last bits).
CORRECT = {
    "attention_scores": ["import math\nimport torch\n\ndef attention_scores(Q, K):\n"
                         "    return torch.matmul(Q, K.transpose(-2, -1)) / math.sqrt(K.shape[-1])\n",
                         "def attention_scores(Q, K):\n    return (Q @ K.mT) * Q.size(-1) ** -0.5\n"],
    "softmax": ["import torch\n\ndef softmax(x, dim=-1):\n    z = x - x.max(dim=dim, keepdim=True).values\n"
                "    e = torch.exp(z)\n    return e / torch.sum(e, dim=dim, keepdim=True)\n",
                "def softmax(x, dim=-1):\n    e = (x - x.amax(dim, keepdim=True)).exp()\n"
                "    return e * (1.0 / e.sum(dim, keepdim=True))\n"],
    "apply_weights": ["import torch\n\ndef apply_attention_weights(weights, V):\n    return torch.matmul(weights, V)\n"],
    "attention": [],
}
WRONG = {
    "attention_scores": ["def attention_scores(Q, K):\n    return Q @ K.transpose(-2, -1)\n",
                         "import math\n\ndef attention_scores(Q, K):\n    return Q @ K.transpose(-2, -1) / Q.size(-1)\n"],
    "softmax": ["import torch\n\ndef softmax(x, dim=-1):\n    e = torch.exp(x)\n    return e / e.sum(dim=dim, keepdim=True)\n",
                "import torch\n\ndef softmax(x, dim=-1):\n    e = torch.exp(x - x.max())\n    return e / e.sum(dim=0, keepdim=True)\n"],
    "apply_weights": ["def apply_attention_weights(weights, V):\n    return weights.transpose(-2, -1) @ V\n"],
    "attention": ["import math\nimport torch\n\ndef attention(Q, K, V, mask=None):\n"
                  "    s = Q @ K.transpose(-2, -1) / math.sqrt(Q.size(-1))\n"
                  "    if mask is not None:\n        s = s.masked_fill(mask, float('-inf'))\n"
                  "    w = torch.softmax(s, dim=-1)\n    return w @ V, w\n"],
}
# An infinite loop, a crash and a memory bomb, all allowed by the course's policy (so that the
# sandbox, not the static scan, stops them): the crash is a C stack overflow (SIGSEGV) from
# maps nested deeper and deeper, builtins only.
HOSTILE = {
    "softmax": ["def softmax(x, dim=-1):\n    while True:\n        pass\n",
                "def softmax(x, dim=-1):\n    depth = 1 << 14\n    while True:\n        chain = iter([x])\n"
                "        for _ in range(depth):\n            chain = map(abs, chain)\n        next(chain)\n"
                "        depth *= 2\n",
                "def softmax(x, dim=-1):\n    hog = []\n    while True:\n        hog.append([0] * 100_000)\n"],
}


def make_class(folder: Path, size: int, seed: int = 0) -> dict[str, str]:
    """About 60 % correct, 37 % with one or two classic mistakes, a few hostile ones; each
    correct exercise is the reference or one of the other correct spellings, at random.
    Returns each submission's kind: "correct", "wrong" or "hostile"."""
    rng = random.Random(seed)
    reference = {i: (ROOT / "solutions" / f"{i}.py").read_text() for i in IDS}
    kinds = {}
    for n in range(size):
        files = {i: rng.choice([reference[i], *CORRECT[i]]) for i in IDS}
        roll, kind = rng.random(), "correct"
        if roll < 0.03:
            files["softmax"], kind = rng.choice(HOSTILE["softmax"]), "hostile"
        elif roll < 0.40:
            for exercise in rng.sample(list(WRONG), rng.choice([1, 2])):
                files[exercise] = rng.choice(WRONG[exercise])
            kind = "wrong"
        target = folder / f"student{n:04d}"
        target.mkdir(parents=True)
        for name, text in files.items():
            (target / f"{name}.py").write_text(text)
        kinds[target.name] = kind
    return kinds


def tree_pss(root_pid: int) -> int:
    """Proportional set size of a process and all its descendants, in bytes."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    total, stack = 0, [root_pid]
    while stack:
        pid = stack.pop()
        stack.extend(children.get(pid, []))
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def memory_cgroup() -> tuple[Path, str] | None:
    """A new memory cgroup below ours and the file of its peak usage, where we may make one
    (root, cgroup v1's memory hierarchy or v2 with memory delegated); else None. Our cgroup's
    folder is found as the grader finds its own (``grader.sandbox.cgroups.home_dirs``)."""
    from grader.sandbox import cgroups

    if os.geteuid() != 0:
        return None
    home = cgroups.home_dirs()
    if "memory" in home:  # v1
        parent, peak = home["memory"], "memory.max_usage_in_bytes"
    else:
        parent, peak = home["unified"], "memory.peak"
        try:
            if "memory" not in (parent / "cgroup.subtree_control").read_text().split():
                return None
        except OSError:
            return None
    folder = parent / f"grader-bench-{os.getpid()}"
    try:
        folder.mkdir()
    except OSError:
        return None
    if not (folder / peak).exists():
        folder.rmdir()
        return None
    return folder, peak


def remove_cgroup(folder: Path) -> None:
    """Remove a cgroup made by ``memory_cgroup`` once its processes are gone (a grader's own
    slot cgroups below it are removed by the grader as it ends)."""
    for _ in range(50):
        try:
            folder.rmdir()
            return
        except OSError:
            time.sleep(0.1)


def run_timed(cmd: list[str], cwd: Path, env: dict | None = None) -> tuple[float, subprocess.CompletedProcess]:
    """Wall seconds of a command, nothing else running beside it."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    return time.perf_counter() - start, proc


def run_measured(cmd: list[str], cwd: Path, env: dict | None = None) -> tuple[float, int, str, subprocess.CompletedProcess]:
    """Wall seconds and peak memory of the whole process tree, and how that peak was taken.

    As root, the command runs in a memory cgroup of its own, whose peak the kernel keeps: no
    cost while it runs. Elsewhere its tree's PSS is sampled every 0.5 s; that sampling walks
    every mapping of every torch process and takes their memory locks, so it slows what it
    measures (about a quarter of the batch's throughput at 5 samples a second)."""
    group = memory_cgroup()
    if group is not None:
        folder, peak_file = group

        def enter() -> None:
            (folder / "cgroup.procs").write_text(str(os.getpid()))

        try:
            start = time.perf_counter()
            proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, preexec_fn=enter)
            wall = time.perf_counter() - start
            peak = int((folder / peak_file).read_text())
        finally:
            remove_cgroup(folder)
        return wall, peak, "memory charged to the tree's memory cgroup, its peak", proc
    start = time.perf_counter()
    popen = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    peak = [0]

    def sample() -> None:
        while popen.poll() is None:
            peak[0] = max(peak[0], tree_pss(popen.pid))
            time.sleep(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = popen.communicate()
    wall = time.perf_counter() - start
    sampler.join()
    return wall, peak[0], "PSS of the whole tree, sampled every 0.5 s", subprocess.CompletedProcess(cmd, popen.returncode, out, err)


def median_wall(cmd: list[str], cwd: Path, runs: int = 3, env: dict | None = None) -> float:
    walls = []
    for _ in range(runs):
        wall, proc = run_timed(cmd, cwd, env)
        if proc.returncode:
            sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
        walls.append(wall)
    return statistics.median(walls)


def notebook_of(submission: Path, notebook: Path, target: Path) -> Path:
    """The released notebook with each stub cell replaced by the submission's file (relative
    imports dropped: a notebook is one namespace), as a student would hand it in."""
    import re

    import nbformat

    functions = {"apply_weights": "apply_attention_weights"}
    nb = nbformat.read(notebook, as_version=4)
    for cell in nb.cells:
        for exercise in IDS:
            if cell.cell_type == "code" and f"def {functions.get(exercise, exercise)}(" in cell.source:
                cell.source = re.sub(r"^from \.\w+ import \w+\n", "", (submission / f"{exercise}.py").read_text(), flags=re.M)
    nbformat.write(nb, target)
    return target


def report_kinds(records: list[dict], kinds: dict[str, str], jobs: int) -> None:
    """Where the slots' time went, per kind; and what the hostile ones alone cost in wall time."""
    total = sum(r["seconds"] for r in records)
    print("  slot time by kind of submission:")
    for kind in ("correct", "wrong", "hostile"):
        seconds = [r["seconds"] for r in records if kinds.get(Path(r["result"]["submission"]).name) == kind]
        if seconds:
            print(f"    {kind:8} {len(seconds):4} submissions, {sum(seconds):6.1f} slot-s ({100 * sum(seconds) / total:.0f} %), "
                  f"p50 {1000 * percentile(seconds, 0.5):.0f} ms")
    hostile = sum(r["seconds"] for r in records if kinds.get(Path(r["result"]["submission"]).name) == "hostile")
    if hostile:
        print(f"  the hostile ones alone hold the {jobs} slots {hostile / jobs:.1f} s (a hang burns its whole time limit "
              f"of CPU, a memory bomb the time to fill memory_mb): at most {len(records) / (hostile / jobs):.0f} "
              f"submissions/s on this class, even if all else took no time")


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=500)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--naive", type=int, default=4, help="submissions graded the naive way, for the ratio")
    parser.add_argument("--otter", type=int, default=2, help="notebooks graded by `otter run` and by us, for the ratio")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="grader-bench-"))
    try:
        klass = work / "class"
        kinds = make_class(klass, args.size)
        out = work / "grades.json"
        wall, peak, how, proc = run_measured([PY, "-m", "grader", "grade", str(klass), "--jobs", str(args.jobs),
                                         "--format", "json", "--out", str(out), "--results", f"{out}.jsonl"], ROOT)
        if proc.returncode:
            sys.exit(proc.stderr)
        records = [json.loads(line) for line in Path(f"{out}.jsonl").read_text().splitlines()]
        latency = [r["seconds"] for r in records]
        document = json.loads(out.read_text())
        print(f"batch: {args.size} submissions, {args.jobs} slots, full hidden suite, sandbox: "
              f"{len(document['sandbox']['protections'])} protections")
        print(f"  wall {wall:.1f} s (start-up included) -> {args.size / wall:.1f} submissions/s")
        print(f"  steady state: {args.jobs * len(latency) / sum(latency):.1f} submissions/s "
              f"(from per-submission times)")
        print(f"  latency per submission: p50 {1000 * percentile(latency, 0.5):.0f} ms, "
              f"p95 {1000 * percentile(latency, 0.95):.0f} ms")
        print(f"  peak memory ({how}): {peak / 2**20:.0f} MiB")
        report_kinds(records, kinds, args.jobs)

        # One submission from the shell, against a bare torch import plus its own test time.
        one = next(r for r in records if kinds[Path(r["result"]["submission"]).name] == "correct")
        single = median_wall([PY, "-m", "grader", "grade", str(klass / one["result"]["submission"]), "--format", "json",
                              "--out", str(work / "one.json")], ROOT)
        bare = median_wall([PY, "-c", "import torch"], ROOT)
        print(f"one submission from the shell: {single:.2f} s (median of 3); `python -c \"import torch\"` {bare:.2f} s, "
              f"its tests {one['seconds']:.2f} s in the batch -> {single / (bare + one['seconds']):.2f}x of the two")

        student = work / "student"
        shutil.copytree(ROOT / "solutions", student / "exercises")
        for item in ("course.yaml", "solutions"):
            (shutil.copytree if (ROOT / item).is_dir() else shutil.copy)(ROOT / item, student / item)
        shutil.copytree(ROOT / "grader" / "suites", student / "grader" / "suites")
        cold = dict(os.environ, GRADER_CHECK_IDLE_SECONDS="0")  # no check server: benchmarks/check_speed.py has those
        checks = [run_measured([PY, "-m", "grader", "check"], student, cold) for _ in range(3)]
        print(f"check (cold): wall {statistics.median(c[0] for c in checks):.2f} s (median of 3, from the shell, "
              f"torch import included), peak memory {max(c[1] for c in checks) / 2**20:.0f} MiB")

        per_batch = wall / args.size
        if args.naive:
            naive = []
            for name in sorted(p.name for p in klass.iterdir())[: args.naive]:
                env = dict(os.environ, GRADER_SUBMISSION=str(klass / name))
                wall_one, proc = run_timed([PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
                                                  str(ROOT / "grader" / "suites")], ROOT, env)
                naive.append(wall_one)
            per_naive = statistics.median(naive)
            print(f"naive (a fresh `python -m pytest` per submission, {len(naive)} of them): "
                  f"{per_naive:.2f} s each -> {1 / per_naive:.2f} submissions/s")
            print(f"ratio: the batch grader is {per_naive / per_batch:.0f}x faster per submission")
        if args.otter:
            compare_with_otter(work, klass, args.otter, per_batch)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def compare_with_otter(work: Path, klass: Path, count: int, per_batch: float) -> None:
    """The same notebooks through otter-grader's `otter run` (our autograder.zip, no Docker)
    and through our `grade`, one process each."""
    otter = shutil.which("otter", path=str(Path(PY).parent))
    if otter is None:
        print("otter: not installed (pip install -e '.[lms]'), no comparison")
        return
    assignment = work / "otter"
    proc = subprocess.run([PY, "-m", "grader", "otter", "--out", str(assignment)], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(proc.stderr)
    student = next((assignment / "student").glob("*.ipynb"))
    names = sorted(p.name for p in klass.iterdir())[:count]
    notebooks = [notebook_of(klass / name, student, work / f"{name}.ipynb") for name in names]
    theirs, ours = [], []
    for notebook in notebooks:
        out = work / f"otter-{notebook.stem}"
        out.mkdir()
        wall, proc = run_timed([otter, "run", "--no-logo", "-a", str(assignment / "autograder.zip"),
                                      "-o", str(out), str(notebook)], work)
        if proc.returncode:
            sys.exit(proc.stdout[-2000:] + proc.stderr[-2000:])
        theirs.append(wall)
        wall, proc = run_timed([PY, "-m", "grader", "grade", str(notebook), "--format", "json",
                                      "--out", str(work / f"{notebook.stem}.json")], ROOT)
        ours.append(wall)
        their_score = sum(t["score"] for t in json.loads((out / "results.json").read_text())["tests"])
        our_score = json.loads((work / f"{notebook.stem}.json").read_text())["submissions"][0]["score"]
        if abs(their_score - our_score) > 1e-6:
            sys.exit(f"{notebook.name}: otter run gave {their_score}, our grade {our_score}")
    print(f"otter run of the same notebook ({len(notebooks)} of them, our autograder.zip, the same scores): "
          f"{statistics.median(theirs):.2f} s each; our grade of it from the shell {statistics.median(ours):.2f} s; "
          f"the batch grader is {statistics.median(theirs) / per_batch:.0f}x faster per submission than otter run")


if __name__ == "__main__":
    main()
