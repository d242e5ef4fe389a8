"""Grading a whole class: parallel slots, a results file that survives interruption, resume.

The parent process hands out submissions one at a time to ``jobs`` slot processes (forked
from it; each runs its own pytest session and grades with its own uid) and is the only
writer of the results file: one JSON line per submission, appended and flushed as soon as
it arrives. ``--resume`` reads that file and grades only what it lacks. A slot that dies
costs the submission it was grading (reported as an error), never the batch.
"""
from __future__ import annotations

import json
import os
import select
import signal
import socket
import sys
import time
import zlib
from pathlib import Path
from typing import Callable

from ..course.load import Course
from ..errors import UsageError
from ..outputs.results import SubmissionResult
from ..sandbox import harden
from ..sandbox.client import Zygote


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` (0 <= I < N) -> (I, N), or a UsageError saying how to write it."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        index, count = -1, 0
    if count < 1 or not 0 <= index < count:
        raise UsageError(f"--shard {text}: expected I/N with 0 <= I < N, such as 0/4 (the first of four shards).")
    return index, count


def in_shard(name: str, shard: tuple[int, int]) -> bool:
    """A stable assignment: the same name lands in the same shard on every machine and run."""
    index, count = shard
    return zlib.crc32(name.encode()) % count == index


class ResultsFile:
    """Append-only JSON lines, one per graded submission; tolerates a torn last line. Each
    line names the version of the course that graded it (``Course.version``): resuming with
    another course, or an edited one, is refused before anything is changed."""

    def __init__(self, path: Path, *, resume: bool, course_version: str):
        self.path = path
        self.course_version = course_version
        self.done: dict[str, SubmissionResult] = {}
        if resume and path.exists():
            good, other = 0, 0
            with path.open("rb") as f:
                for line in f:
                    try:
                        record = json.loads(line)
                        result = SubmissionResult.from_record(record)
                    except (ValueError, KeyError, TypeError):
                        break  # a line cut by the interruption: everything after it is redone
                    other += record.get("course", course_version) != course_version
                    self.done[result.submission] = result
                    good += len(line)
            if other:
                raise UsageError(f"{path}: {other} of its {len(self.done)} results were graded with another course, or "
                                 "another version of this one (its course file, suites, solutions or misconceptions "
                                 "changed since). Fix: grade without --resume to grade everything again with this "
                                 "course, or give --results a new file.")
            with path.open("r+b") as f:
                f.truncate(good)
        elif path.exists():
            path.unlink()
        path.parent.mkdir(parents=True, exist_ok=True)
        # Staff only (0600): it holds every student's printed output. Workers never see it
        # (their root holds no course, output or results folder), but other local users might.
        self.file = os.fdopen(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "a", encoding="utf-8")
        os.chmod(path, 0o600)  # a results file resumed from an older run keeps no wider mode

    def append(self, result: SubmissionResult) -> None:
        self.file.write(json.dumps({**result.to_record(), "course": self.course_version}) + "\n")
        self.file.flush()
        self.done[result.submission] = result

    def close(self) -> None:
        self.file.close()


def _slot_main(course: Course, link: Zygote, channel: socket.socket, slot: int, hide: list[str]) -> None:
    """A slot process: ask the parent for a job, grade it, send the result, repeat."""
    from .session import grade

    reader = channel.makefile("r", encoding="utf-8")

    def jobs():
        while True:
            channel.sendall(b'{"next": true}\n')
            job = json.loads(reader.readline() or "null")
            if not job:
                return
            yield job["name"], Path(job["path"])

    def send(result: SubmissionResult) -> None:
        channel.sendall((json.dumps(result.to_record()) + "\n").encode())

    grade(course, jobs(), on_result=send, zygote=link, slot=slot, hide=hide)


def grade_batch(course: Course, submissions: list[tuple[str, Path]], *, jobs: int, results: ResultsFile,
                zygote: Zygote, hide: list[str], progress: Callable[[SubmissionResult], None]) -> None:
    """Grade what ``results`` does not hold yet, with ``jobs`` parallel slots."""
    todo = [(n, p) for n, p in submissions if n not in results.done]
    jobs = max(1, min(jobs, len(todo)))
    if not todo:
        return

    def record(result: SubmissionResult) -> None:
        results.append(result)
        progress(result)

    if jobs == 1:
        from .session import grade

        grade(course, todo, on_result=record, zygote=zygote, slot=0, hide=hide)
        return

    links = [zygote.link() for _ in range(jobs)]
    parent = os.getpid()
    slots: dict[socket.socket, tuple[int, object]] = {}
    for slot, link in enumerate(links):
        ours, theirs = socket.socketpair()
        pid = os.fork()
        if pid == 0:  # the slot process
            # Ctrl-C is the parent's to handle (it kills the slots): a slot dying of it first
            # would have its submission recorded as lost, and --resume would not grade it again.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            harden.watch_parent(parent)
            ours.close()
            code = 0
            try:
                _slot_main(course, link, theirs, slot, hide)
            except BaseException:  # noqa: BLE001 - a broken slot must not run the parent's code
                code = 1
            finally:
                sys.stdout.flush()
                os._exit(code)
        theirs.close()
        link.control.close()
        slots[ours] = (pid, bytearray())

    pending = iter(todo)
    in_flight: dict[socket.socket, tuple[str, Path]] = {}
    try:
        while slots:
            ready, _, _ = select.select(list(slots), [], [])
            for channel in ready:
                pid, buffer = slots[channel]
                data = channel.recv(1 << 20)
                if not data:  # the slot died (or finished): a job in flight is lost, not the batch
                    os.waitpid(pid, 0)
                    if channel in in_flight:
                        name, _ = in_flight.pop(channel)
                        record(_lost(course, name))
                    del slots[channel]
                    channel.close()
                    continue
                buffer += data
                while b"\n" in buffer:
                    line, _, rest = bytes(buffer).partition(b"\n")
                    buffer[:] = rest
                    message = json.loads(line)
                    if "result" in message:
                        in_flight.pop(channel, None)
                        record(SubmissionResult.from_record(message))
                        continue
                    job = next(pending, None)
                    if job is None:
                        channel.sendall(b"null\n")
                    else:
                        in_flight[channel] = job
                        channel.sendall((json.dumps({"name": job[0], "path": str(job[1])}) + "\n").encode())
    finally:
        for channel, (pid, _) in slots.items():  # only after an error or an interruption
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
            channel.close()


def _lost(course: Course, name: str) -> SubmissionResult:
    """The result of a submission whose grading slot died: every exercise 0, said in words."""
    from ..outputs.results import CaseResult, ExerciseResult

    message = "the grader's slot died while grading this submission; grade it again with --resume."
    exercises = [ExerciseResult(e.id, e.title, e.points, [CaseResult("grading", e.points, "error", False, message)])
                 for e in course.exercises]
    return SubmissionResult(name, exercises, [f"internal grader error: {message}"])


def progress_printer(total: int, done: int, stream=sys.stderr) -> Callable[[SubmissionResult], None]:
    """Progress on stderr: a live bar on a terminal, plain lines otherwise (CI logs, pipes)."""
    start = time.monotonic()
    state = {"done": done, "graded": 0}
    if stream.isatty():
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        bar = Progress(TextColumn("grading"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("{task.fields[rate]:.1f}/s"), TimeRemainingColumn(), transient=True,
                       console=None)
        task = bar.add_task("grading", total=total, completed=done, rate=0.0)
        bar.start()

        def tick(result: SubmissionResult) -> None:
            state["done"] += 1
            state["graded"] += 1
            rate = state["graded"] / max(time.monotonic() - start, 1e-9)
            bar.update(task, completed=state["done"], rate=rate)
            if state["done"] >= total:
                bar.stop()
        return tick

    every = max(1, total // 20)

    def line(result: SubmissionResult) -> None:
        state["done"] += 1
        state["graded"] += 1
        if state["done"] % every == 0 or state["done"] == total:
            elapsed = time.monotonic() - start
            rate = state["graded"] / max(elapsed, 1e-9)
            eta = (total - state["done"]) / rate if rate else 0.0
            print(f"graded {state['done']}/{total}  {rate:.1f}/s  ETA {eta:.0f} s", file=stream, flush=True)
    return line
