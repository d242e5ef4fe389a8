"""The student's code as the tests see it: one object per submission, one proxy per exercise.

``StudentCode`` owns the submission's worker (forked from the zygote on first use, forked
again after a crash), checks each exercise once before running it (file present, readable,
parses, nothing forbidden), and turns every failure into a ``StudentFault`` with words.
An exercise whose call timed out or killed the worker is marked dead: its remaining tests
fail at once with the same status, so a hang costs its time limit once.
"""
from __future__ import annotations

import ast
import difflib
import os
import shutil
import tempfile
from typing import Any, NamedTuple

import torch

from . import faults
from .course import Course, Exercise
from .forbidden import Violation, scan_source
from .sandbox import codec
from .sandbox.client import WorkerDied, WorkerProcess, WorkerTimeout, Zygote, claim_uid_block
from .submission import Submission

WORKER_START_SECONDS = 10.0


class Reply(NamedTuple):
    """The worker's answer to one call (header and tensors), or the fault the call ended in."""

    answer: dict | None
    out: list
    fault: faults.StudentFault | None
    digest: bytes
    """Of the answer's bytes on the wire (``codec.recv_message``); for a worker that hung or
    died, of the fault's words."""
    lost: bool = False
    """The worker hung or died on this call: the exercise is dead once the reply is used."""


def _lost(fault: faults.StudentFault) -> Reply:
    return Reply(None, [], fault, codec.fingerprint({"fault": type(fault).__name__, "message": str(fault)}), True)


class Exchange(NamedTuple):
    """One call a test made: the request as sent (tensors copied) and the reply."""

    request: dict
    tensors: list
    reply: Reply


def sandbox_plan(course: Course, slot: int, hide: list[str]) -> dict:
    """What ``harden.apply`` does in a worker: limits from course.yaml, uid per slot."""
    limits = course.sandbox
    plan = {"memory_bytes": int(limits.memory_mb * 2**20), "cpu_seconds": int(limits.cpu_seconds),
            "file_bytes": int(limits.output_kb * 1024), "open_files": 64,
            "tmpfs_bytes": int(limits.tmpfs_mb * 2**20), "hide": hide}
    if os.geteuid() == 0:
        # NPROC counts the threads of a uid across processes: only meaningful for our own uid.
        plan.update(uid=claim_uid_block() + slot, processes=64)
    if any(e.device == "cuda" for e in course.exercises):
        # A CUDA context maps far more private memory than a CPU worker: keep the data cap
        # for runaway Python objects, but high enough for the driver. GPU memory itself is
        # capped per worker by set_per_process_memory_fraction.
        plan["memory_bytes"] = max(plan["memory_bytes"], 32 << 30)
        plan["gpu_memory_fraction"] = limits.gpu_memory_fraction
    return plan


class StudentCode:
    def __init__(self, course: Course, submission: Submission, zygote: Zygote, *, slot: int = 0,
                 hide: list[str] = ()):
        self.course = course
        self.submission = submission
        self.zygote = zygote
        self.worker: WorkerProcess | None = None
        self.output = tempfile.TemporaryFile()  # the worker's stdout and stderr
        self.scratch = tempfile.mkdtemp(prefix="grader-scratch-")
        self.plan = dict(sandbox_plan(course, slot, list(hide)), scratch=self.scratch)
        self.protections: list[str] = []
        self.blame_worker: WorkerProcess | None = None  # see blame(): never used for a score
        self.checked: dict[str, faults.StudentFault | None] = {}   # exercise id -> gate result
        self.dead: dict[str, faults.StudentFault] = {}             # exercise id -> fault that killed it
        self.loaded: set[str] = set()
        self.served: list[tuple[bytes, Reply]] = []                # see serve()
        self.recording: list[Exchange] | None = None               # this test's calls, for grader.replay
        self.bad_cells: dict[int, str] = {}                        # notebook cell -> why it is skipped
        self.cell_errors: dict[int, str] = {}

    # ------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """End the worker and anything it started; remove what it wrote."""
        if self.blame_worker is not None:
            self.blame_worker.kill(wait=False)
        self._stop_worker()
        self.output.close()
        shutil.rmtree(self.scratch, ignore_errors=True)

    def _stop_worker(self) -> None:
        if self.worker is not None:
            self.worker.kill(wait=False)  # how it ended is already known, or does not matter
            self.worker = None
            if "uid" in self.plan:
                self.zygote.sweep(self.plan["uid"])  # a setsid() grandchild escapes the group kill

    def errors(self) -> list[str]:
        """Problems of the submission as a whole (reading it, notebook cells, a flood of output)."""
        notes = list(self.submission.errors)
        for index in sorted(set(self.cell_errors) | set(self.bad_cells)):
            notes.append(self.bad_cells.get(index) or self.cell_errors[index])
        written = self.output.seek(0, os.SEEK_END)
        if written >= self.plan["file_bytes"]:
            notes.append(f"your code printed or wrote {written >> 10} KiB, the most allowed: the rest was cut, "
                         "and writing more raised an error. Remove debugging prints in loops.")
        return notes

    def printed(self, limit: int = 2000) -> str:
        """The start of what the student's code printed (for staff reports)."""
        self.output.seek(0)
        return self.output.read(limit).decode("utf-8", "replace")

    def _start(self) -> WorkerProcess:
        if self.worker is not None and self.worker.alive:
            return self.worker
        self._stop_worker()
        self.loaded.clear()
        self.worker = self._spawn()
        return self.worker

    def _spawn(self) -> WorkerProcess:
        """A new worker with the submission loaded (and its notebook cells run), hardened."""
        worker = self.zygote.fork(self.output)
        sources = {name: (f.path, f.text) for name, f in self.submission.sources.items()}
        try:
            hello, _ = worker.request({"sources": sources, "notebook": self.submission.notebook, "sandbox": self.plan},
                                      timeout=WORKER_START_SECONDS)
        except (WorkerTimeout, WorkerDied) as exc:
            raise RuntimeError(f"the sandbox could not start a worker ({type(exc).__name__})") from None
        if not hello.get("ok"):
            worker.kill()
            raise RuntimeError(f"the sandbox could not start a worker: {hello.get('error', {}).get('message')}")
        self.protections = [str(p) for p in hello.get("protections", [])]
        for index, cell in enumerate(self.submission.notebook or ()):
            if cell.strip() and index not in self.bad_cells:
                self._run_cell(worker, index)
                if not worker.alive:  # that cell hung or killed the worker: skip it from now on
                    return self._spawn()
        return worker

    def _run_cell(self, worker: WorkerProcess, index: int) -> None:
        limit = max(e.time_limit for e in self.course.exercises)
        try:
            answer, _ = worker.request({"op": "run_cell", "index": index}, timeout=limit)
        except WorkerTimeout:
            self.bad_cells[index] = f"notebook cell {index + 1} ran past {limit:g} s and was skipped."
            return
        except WorkerDied as died:
            self.bad_cells[index] = f"notebook cell {index + 1} ended the Python process ({died.status}) and was skipped."
            return
        if not answer.get("ok"):
            error = answer.get("error", {})
            self.cell_errors[index] = (f"notebook cell {index + 1} raised {error.get('type', 'an error')}: "
                                       f"{_clip(error.get('message', ''))} (the cells after it still ran).")

    # ------------------------------------------------------------ the gate, once per exercise

    def prepare(self, exercise: Exercise) -> None:
        """Raise the exercise's fault if it cannot be graded (missing, unreadable, forbidden, dead)."""
        if exercise.id not in self.checked:
            self.checked[exercise.id] = self._gate(exercise)
        fault = self.checked[exercise.id] or self.dead.get(exercise.id)
        if fault is not None:
            raise fault
        if exercise.id not in self.loaded:
            try:
                self._request(exercise, {"op": "load", "exercise": exercise.id, "function": exercise.function,
                                         "banned_kernels": list(exercise.banned_kernels)}, [])
            except faults.StudentFault as fault:
                self.checked[exercise.id] = fault  # an import that fails fails the same way every time
                raise
            self.loaded.add(exercise.id)

    def _gate(self, exercise: Exercise) -> faults.StudentFault | None:
        sub = self.submission
        if sub.notebook is not None:
            return self._gate_notebook(exercise)
        if exercise.id in sub.unreadable:
            return faults.ErrorFault(sub.unreadable[exercise.id])
        source = sub.sources.get(exercise.id)
        if source is None:
            message = f"{exercise.filename} is missing from your submission."
            close = difflib.get_close_matches(exercise.id, list(sub.sources), n=1, cutoff=0.6)
            if close:
                message += f" Did you mean to name {sub.sources[close[0]].path} {exercise.filename}?"
            return faults.NotImplementedFault(message)
        try:
            tree = ast.parse(source.text, filename=source.path)
        except SyntaxError as exc:
            code = (exc.text or "").strip()
            return faults.ErrorFault(f"{source.path} line {exc.lineno}: syntax error ({exc.msg})"
                                     + (f": {code}" if code else "") + ". Fix that line and save again.")
        except (ValueError, RecursionError, MemoryError) as exc:
            return faults.ErrorFault(f"{source.path} cannot be parsed as Python ({type(exc).__name__}).")
        return _forbidden(scan_source(tree, exercise.banned, source.path, source.text), exercise)

    def _gate_notebook(self, exercise: Exercise) -> faults.StudentFault | None:
        violations: list[Violation] = []
        trees = []
        for index, cell in enumerate(self.submission.notebook or ()):
            try:
                trees.append((index, ast.parse(cell)))
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                continue  # reported when the cell runs
        aliases = ast.Module(body=[node for _, t in trees for node in t.body], type_ignores=[])
        for index, tree in trees:
            for node in tree.body:
                if isinstance(node, ast.FunctionDef) and node.name == exercise.function:
                    scope = ast.Module(body=[*[n for n in aliases.body if isinstance(n, (ast.Import, ast.ImportFrom))], node],
                                       type_ignores=[])
                    violations += scan_source(scope, exercise.banned, f"cell {index + 1}", self.submission.notebook[index])
        return _forbidden(violations, exercise)

    # ------------------------------------------------------------ calls

    def call(self, exercise: Exercise, args: tuple, kwargs: dict, *, return_inputs: bool = False,
             grad_outputs: Any = None) -> dict:
        """Call the student's function in the worker; returns ``{"value", "inputs"?, "grads"?}``."""
        self.prepare(exercise)
        tensors: list[torch.Tensor] = []
        request = {"op": "call", "exercise": exercise.id,
                   "args": codec.encode_value(list(args), tensors),
                   "kwargs": codec.encode_value(dict(kwargs), tensors),
                   "return_inputs": return_inputs,
                   "grad_outputs": None if grad_outputs is None else codec.encode_value(grad_outputs, tensors)}
        reply = self._served_reply(request, tensors) or self.exchange(exercise, request, tensors)
        if self.recording is not None:
            self.recording.append(Exchange(request, [t.detach().clone().requires_grad_(t.requires_grad) for t in tensors], reply))
        if reply.lost:
            self.dead[exercise.id] = reply.fault
        if reply.fault is not None:
            raise reply.fault
        try:
            result = {key: codec.decode_value(reply.answer[key], reply.out)
                      for key in ("value", "inputs", "grads") if key in reply.answer}
        except codec.ProtocolError as exc:
            raise faults.CrashFault(f"your code's worker sent a malformed answer ({exc}).") from None
        return result

    def exchange(self, exercise: Exercise, request: dict, tensors: list) -> Reply:
        """Send one call to the worker: its answer, or the fault it ended in."""
        try:
            answer, out = self._request(exercise, request, tensors)
        except faults.StudentFault as fault:
            if self.worker.alive:  # the call raised: its answer says how
                return Reply(None, [], fault, self.worker.last_digest)
            return _lost(fault)
        return Reply(answer, out, None, self.worker.last_digest)

    def exchange_path(self, exercise: Exercise, steps: list[tuple[dict, list, bytes]]) -> list[Reply]:
        """Send several calls ``(request, tensors, expected answer digest)`` in one message; the
        worker answers them in order and stops after the first answer not as expected. Each
        answer has the exercise's time limit."""
        worker = self._start()
        header = {"op": "path", "exercise": exercise.id, "steps": []}
        tensors: list = []
        for request, step_tensors, expect in steps:
            step = {k: v for k, v in request.items() if k not in ("op", "exercise")}
            header["steps"].append(dict(step, offset=len(tensors), count=len(step_tensors), expect=expect.hex()))
            tensors += step_tensors
        replies: list[Reply] = []
        try:
            for answer, out, digest in worker.stream(header, tensors, timeout=exercise.time_limit, most=len(steps)):
                fault = None if answer.get("ok") else _describe(exercise, answer.get("error") or {}, "call")
                replies.append(Reply(None if fault else answer, out, fault, digest))
        except (WorkerTimeout, WorkerDied) as exc:
            # the exercise dies when the test that made this call gets the reply, not before
            replies.append(_lost(self._lost_worker_fault(exercise, exc)))
        return replies

    def serve(self, replies: list[tuple[bytes, "Reply"]]) -> None:
        """Answer the next calls from ``replies``, ``(request fingerprint, reply)`` pairs that
        ``grader.replay`` already fetched from the worker, instead of asking it again."""
        self.served = list(replies)

    def _served_reply(self, request: dict, tensors: list) -> "Reply | None":
        if not self.served:
            return None
        key, reply = self.served.pop(0)
        if key != codec.fingerprint(request, tensors):
            self.served.clear()  # the test asked something else than last time: ask the worker
            return None
        return reply

    # ------------------------------------------------------------ blame

    def blame(self, exercise: Exercise, uses: list[Exercise], calls: list, references: dict[str, Any],
              passes) -> list[str]:
        """Which of ``uses`` (earlier exercises) makes ``exercise`` fail: the ids whose reference,
        put in place of the student's own, makes every recorded call pass (``passes(call, value)``).

        It runs in a worker of its own, never the one that earns scores: the student's code
        sees reference answers there, so nothing of that run may reach a graded call.
        """
        found = []
        try:
            if self.blame_worker is None or not self.blame_worker.alive:
                self.blame_worker = self._spawn()
                answer, _ = self.blame_worker.request(
                    {"op": "load", "exercise": exercise.id, "function": exercise.function}, timeout=exercise.time_limit)
                if not answer.get("ok"):
                    return []
            for other in uses:
                if self.checked.get(other.id) is not None or other.id in self.dead:
                    continue  # missing, forbidden or broken: its own tests already say so
                if all(passes(call, self._rerun(exercise, call, {other.id: other.function}, references))
                       for call in calls):
                    found.append(other.id)
        except (WorkerTimeout, WorkerDied, faults.StudentFault, codec.ProtocolError, KeyError):
            if self.blame_worker is not None:
                self.blame_worker.kill()
        return found

    def _rerun(self, exercise: Exercise, call, substitute: dict[str, str], references: dict[str, Any]) -> Any:
        tensors: list[torch.Tensor] = []
        request = {"op": "call", "exercise": exercise.id, "args": codec.encode_value(list(call.args), tensors),
                   "kwargs": codec.encode_value(dict(call.kwargs), tensors), "substitute": substitute}

        def answer(question: dict, received: list) -> tuple[dict, list]:
            value = references[question["exercise"]](*codec.decode_value(question["args"], received),
                                                      **codec.decode_value(question["kwargs"], received))
            out: list[torch.Tensor] = []
            return {"value": codec.encode_value(value, out)}, out

        reply, out = self.blame_worker.request(request, tensors, timeout=exercise.time_limit, callback=answer)
        if not reply.get("ok"):
            raise faults.ErrorFault("the run with a reference in place raised")
        return codec.decode_value(reply["value"], out)

    def _request(self, exercise: Exercise, request: dict, tensors: list) -> tuple[dict, list]:
        worker = self._start()
        name = exercise.function
        try:
            answer, out = worker.request(request, tensors, timeout=exercise.time_limit)
        except (WorkerTimeout, WorkerDied) as exc:
            fault = self._lost_worker_fault(exercise, exc)
            self.dead[exercise.id] = fault
            raise fault from None
        if not answer.get("ok"):
            raise _describe(exercise, answer.get("error") or {}, request["op"])
        return answer, out

    @staticmethod
    def _lost_worker_fault(exercise: Exercise, exc: WorkerTimeout | WorkerDied) -> faults.StudentFault:
        """The fault of a call whose worker hung or died (the exercise is dead from then on)."""
        name = exercise.function
        if isinstance(exc, WorkerTimeout):
            fault: faults.StudentFault = faults.TimeoutFault(
                f"{name} did not finish within {exercise.time_limit:g} s (an infinite loop, or a very slow "
                "computation?). The remaining tests of this exercise were not run.")
        else:
            how = {"exit 0": "exited (os._exit or a similar call?)"}.get(exc.status, f"ended ({exc.status})")
            fault = faults.CrashFault(f"the Python process running {name} {how} during this call"
                                      + (f": {exc.detail}" if exc.detail else "")
                                      + ". The remaining tests of this exercise were not run.")
        return fault


def _forbidden(violations: list[Violation], exercise: Exercise) -> faults.StudentFault | None:
    if not violations:
        return None
    first = violations[0]
    more = f" (and {len(violations) - 1} more)" if len(violations) > 1 else ""
    return faults.ForbiddenFault(
        f"{first.file} line {first.line} {first.what}: {first.code}{more}. "
        f"This exercise is about writing it yourself, so it scores 0 until that call is gone.")


def _clip(text: Any, limit: int = 300) -> str:
    text = str(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(exercise: Exercise, error: dict, op: str) -> faults.StudentFault:
    """Words for an error the worker reported (its fields are untrusted text)."""
    kind = error.get("kind")
    name = exercise.function
    where = ""
    if error.get("file"):
        where = f" ({_clip(error['file'], 80)} line {error.get('line')}"
        where += f": {_clip(error['code'], 120)})" if error.get("code") else ")"
    raised = f"{_clip(error.get('type', 'Exception'), 60)}: {_clip(error.get('message', ''))}"
    if kind == "missing_function":
        available = [str(a) for a in error.get("available", [])][:200]
        message = f"{exercise.filename} defines no function named {name}."
        close = difflib.get_close_matches(name, available, n=1, cutoff=0.6)
        if close:
            message += f" Did you mean {close[0]}? Rename it to {name}."
        return faults.NotImplementedFault(message)
    if kind == "not_callable":
        return faults.ErrorFault(f"{name} in {exercise.filename} is a {_clip(error.get('type'), 40)}, not a function.")
    if kind == "not_implemented":
        return faults.NotImplementedFault(f"{name} is not implemented yet: it raises NotImplementedError{where}.")
    if kind == "import_error":
        module = error.get("module")
        missing = f" the module {_clip(module, 60)!r} is not available" if module else f" {raised}"
        return faults.ErrorFault(f"importing {exercise.filename} failed:{missing}{where}. "
                                 "Only torch, numpy, the standard library and your own exercise files can be imported.")
    if kind == "exit":
        return faults.ErrorFault(f"your code called sys.exit() or raised SystemExit{where}. Return a value instead.")
    if kind == "not_differentiable":
        return faults.WrongResultFault(
            f"the output of {name} is not connected to its inputs in autograd, so no gradient flows back. "
            "Avoid .detach(), .item(), .numpy(), torch.tensor(...) of results, and in-place tricks on the inputs.")
    if kind == "forbidden":
        return faults.ForbiddenFault(
            f"{name} ran the operator aten.{_clip(error.get('kernel'), 60)}{where}, which this exercise forbids "
            "(a library softmax or attention, reached through whatever route). It scores 0 until that call is gone.")
    if kind == "bad_output":
        return faults.WrongResultFault(f"{name} returned something that cannot be checked: {_clip(error.get('message'))}.")
    when = "while being imported" if op == "load" else "during this call"
    hints = ()
    if "same device" in str(error.get("message", "")):
        hints = ("A tensor your code created is on a different device from the inputs: create new tensors on the "
                 "inputs' device, e.g. torch.ones(L, L, dtype=torch.bool, device=Q.device), or mask.to(Q.device).",)
    return faults.ErrorFault(f"{name} raised {raised}{where} {when}.", hints)
