"""Benchmark: the student's `check`, side by side with a bare `python -c "import torch"`.

Prints, median of ``--rounds`` runs each, measured in one run of this script:

- ``import torch``: the bare import (one process, nothing in parallel), the yardstick;
- cold check: ``python -m grader check`` with no check server (``GRADER_CHECK_IDLE_SECONDS=0``),
  on a correct folder and on one with two classic mistakes (its report is written after the
  check has printed and exited; the script waits for it before the next run);
- warm check: the same again while the course's check server runs (a student checking again
  within a few minutes); one exercise and all of them;
- in a running Jupyter kernel (nbclient, ``import grader`` in the first cell, then the
  student's code): ``check(ID)`` for each exercise, the first call and the next ones.

With ``--release DIR``, the shell figures are measured again in a student release built with
``python -m grader release`` into DIR, with a venv set up there as its README says (torch
from this machine's wheel), reused when present.

    python benchmarks/check_speed.py [--rounds 5] [--release /tmp/release]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IDS = ("attention_scores", "softmax", "apply_weights", "attention")
MISTAKES = {"attention_scores": "def attention_scores(Q, K):\n    return Q @ K.transpose(-2, -1)\n",
            "softmax": "import torch\n\ndef softmax(x, dim=-1):\n    e = torch.exp(x)\n    return e / e.sum(dim=dim, keepdim=True)\n"}


def wall(command: list[str], cwd: Path, env: dict) -> float:
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed: {proc.stderr[-2000:]}")
    return seconds


def servers_gone(course: Path, timeout: float = 120) -> None:
    """Wait until no check server (or report writer) of ``course`` runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if subprocess.run(["pgrep", "-f", f"grader.selfcheck.warm_server {course}"], capture_output=True).returncode != 0:
            return
        time.sleep(0.1)


def student_folders(base: Path, solutions: Path | None) -> dict[str, Path]:
    """A correct folder (the reference files, or the lesson's stubs filled from ``solutions``)
    and one with unscaled scores and an unstable softmax."""
    folders = {}
    for name, overrides in (("correct", {}), ("two mistakes", MISTAKES)):
        folder = base / name.replace(" ", "_") / "exercises"
        folder.mkdir(parents=True)
        for exercise in IDS:
            source = overrides.get(exercise) or (solutions / f"{exercise}.py").read_text()
            (folder / f"{exercise}.py").write_text(source)
        (folder / "__init__.py").write_text("")
        folders[name] = folder.parent
    return folders


def shell_figures(python: str, course: Path, folders: dict[str, Path], rounds: int, label: str) -> None:
    env = dict(os.environ)
    torch = statistics.median(wall([python, "-c", "import torch"], ROOT, env) for _ in range(rounds))
    print(f"\n{label}\n  import torch (bare)                 {torch:6.2f} s")
    cold_env = dict(env, GRADER_CHECK_IDLE_SECONDS="0")
    for name, folder in folders.items():
        times = []
        for _ in range(rounds):
            times.append(wall([python, "-m", "grader", "check", "--course", str(course)], folder, cold_env))
            servers_gone(course)
        cold = statistics.median(times)
        print(f"  cold check, {name:<13}          {cold:6.2f} s   {cold / torch:4.2f}x the torch import")
    warm_env = dict(env, GRADER_CHECK_IDLE_SECONDS="600")
    for name, folder in folders.items():
        wall([python, "-m", "grader", "check", "--course", str(course)], folder, warm_env)  # starts the server
        for ids in ((), ("softmax",)):
            wall([python, "-m", "grader", "check", "--course", str(course), *ids], folder, warm_env)  # ready
            times = [wall([python, "-m", "grader", "check", "--course", str(course), *ids], folder, warm_env)
                     for _ in range(rounds)]
            what = "one exercise" if ids else "all"
            print(f"  warm check, {name:<13} {what:<12} {statistics.median(times):6.2f} s")
    subprocess.run([python, "-c", f"from grader.selfcheck import warm_server as warm_check; from pathlib import Path; "
                    f"warm_check.stop(Path({str(course)!r}))"], cwd=ROOT, env=warm_env)


def kernel_figures(python: str, course_folder: Path, solutions: Path, rounds: int) -> None:
    """check(ID) in a real Jupyter kernel: the student's code typed in, then each exercise checked."""
    import nbformat
    from nbclient import NotebookClient

    cells = ["import time\nfrom grader import check\ntimes = {}",
             *[notebook_cell((solutions / f"{e}.py").read_text()) for e in IDS]]
    for e in IDS:
        cells.append(f"t = time.perf_counter(); r = check({e!r}); times.setdefault({e!r}, []).append("
                     f"time.perf_counter() - t)\n" * (rounds + 1))
    cells.append("import statistics\nfor e, t in times.items():\n"
                 "    print(f'{e} {t[0]:.3f} {statistics.median(t[1:]):.3f}')")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    env = dict(os.environ, GRADER_CHECK_IDLE_SECONDS="600")
    os.environ.update(env)
    client = NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(course_folder)}})
    with client.setup_kernel():
        for index, cell in enumerate(notebook.cells):
            client.execute_cell(cell, index)
            if index == len(IDS):
                time.sleep(5)  # the student reads on before checking: the server warms up meanwhile
    printed = "".join(o.get("text", "") for o in notebook.cells[-1].outputs)
    print("\nin a running Jupyter kernel (check(ID), torch already imported there)")
    for line in printed.split("\n"):
        if line.strip():
            exercise, first, rest = line.split()
            print(f"  check({exercise!r:<18}) first {float(first):5.2f} s, then {float(rest):5.2f} s (median of {rounds})")
    subprocess.run([python, "-c", "from grader.selfcheck import warm_server as warm_check; from pathlib import Path; "
                    f"warm_check.stop(Path({str(course_folder / 'course.yaml')!r}))"], cwd=ROOT, env=env)


def notebook_cell(source: str) -> str:
    """A solution file as a notebook cell: its functions are the notebook's globals, so no
    relative imports."""
    return "\n".join(line for line in source.splitlines() if not line.startswith("from ."))


def release_venv(folder: Path) -> str:
    """A student release in ``folder`` with its venv, set up as its README says."""
    python = folder / ".venv" / "bin" / "python"
    if not python.exists():
        if folder.exists():
            shutil.rmtree(folder)
        subprocess.run([sys.executable, "-m", "grader", "release", "--out", str(folder)], cwd=ROOT, check=True)
        subprocess.run([sys.executable, "-m", "venv", str(folder / ".venv")], check=True)
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*pip, "torch==2.13.0"], check=True)  # the README's CPU index is this machine's wheel
        subprocess.run([*pip, "-e", ".", "jupyter"], cwd=folder, check=True)
    return str(python)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--release", metavar="DIR", help="also measure in a student release (built there)")
    parser.add_argument("--no-kernel", action="store_true", help="skip the Jupyter kernel figures")
    args = parser.parse_args()
    print(f"check speed, {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, median of {args.rounds}")
    with tempfile.TemporaryDirectory(prefix="check-speed-") as tmp:
        folders = student_folders(Path(tmp), ROOT / "solutions")
        shell_figures(sys.executable, ROOT / "course.yaml", folders, args.rounds, "the project's venv, from the shell")
        if not args.no_kernel:
            kernel_figures(sys.executable, ROOT, ROOT / "solutions", args.rounds)
        if args.release:
            release = Path(args.release).resolve()
            python = release_venv(release)
            folders = student_folders(Path(tmp) / "release", ROOT / "solutions")
            shell_figures(python, release / "course.yaml", folders, args.rounds,
                          f"a student release ({release}), its own venv, from the shell")


if __name__ == "__main__":
    main()
