"""Benchmark: one class graded whole, then in shards one after another, then merged.

Generates the class of bench.py (``--size`` submissions), grades it in one run, then as
``--shards`` slices (``grade --shard I/N``, as N machines would), joins them with
``merge``, and prints the time of each step and whether the merged JSON report holds
exactly the submissions of the one run (and, if not, which submissions and fields differ).

    python benchmarks/shards.py [--size 5000] [--shards 4] [--jobs 2]
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import PY, ROOT, make_class


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return time.perf_counter() - start


def differences(whole: list[dict], merged: list[dict]) -> dict[str, list[str]]:
    """Submission name -> the top-level fields of its result that differ (exercise ids for
    the exercises that do)."""
    theirs = {s["submission"]: s for s in merged}
    found = {}
    for mine in whole:
        other = theirs.get(mine["submission"])
        if other is None:
            found[mine["submission"]] = ["missing from the merge"]
        elif other != mine:
            fields = [k for k in mine if k != "exercises" and mine[k] != other.get(k)]
            fields += [a["id"] for a, b in zip(mine["exercises"], other["exercises"]) if a != b]
            found[mine["submission"]] = fields
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=5000)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="grader-shards-"))
    try:
        klass = work / "class"
        make_class(klass, args.size)
        grade = [PY, "-m", "grader", "grade", str(klass), "--jobs", str(args.jobs), "--format", "json"]
        whole = timed([*grade, "--out", str(work / "whole.json")])
        print(f"one run: {args.size} submissions in {whole:.1f} s ({args.size / whole:.1f}/s)")
        parts = []
        for index in range(args.shards):
            out = work / f"shard{index}.json"
            seconds = timed([*grade, "--shard", f"{index}/{args.shards}", "--out", str(out)])
            count = len(json.loads(out.read_text())["submissions"])
            print(f"shard {index}/{args.shards}: {count} submissions in {seconds:.1f} s ({count / seconds:.1f}/s)")
            parts.append(str(out))
        merged = work / "merged.json"
        seconds = timed([PY, "-m", "grader", "merge", *parts, "--out", str(merged)])
        print(f"merge of {args.shards} reports: {seconds:.2f} s")
        one = json.loads((work / "whole.json").read_text())["submissions"]
        joined = json.loads(merged.read_text())["submissions"]
        found = differences(one, joined)
        if not found and len(one) == len(joined):
            print(f"the merged report's {len(joined)} submissions equal the one run's, field for field")
        else:
            print(f"{len(found)} of {len(one)} submissions differ ({len(joined)} in the merge):")
            for name, fields in sorted(found.items())[:20]:
                print(f"  {name}: {', '.join(fields)}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
