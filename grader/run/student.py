"""The student's code as the tests see it: one object per submission, one proxy per exercise.

``StudentCode`` owns the submission's worker (forked from the zygote on first use, forked
again after a crash), checks each exercise once before running it (file present, readable,
parses, nothing forbidden), and turns every failure into a ``StudentFault`` with words.
An exercise whose call timed out or killed the worker is marked dead: its remaining tests
fail at once with the same status, so a hang costs its time limit once. What the worker
reports as an error is put in words by ``grader/run/worker_errors.py``.
"""
from __future__ import annotations

import ast
import difflib
import os
import shutil
import tempfile
import time
from typing import Any, NamedTuple

import torch

from . import faults
from ..course.load import Course, Exercise
from ..intake.allowlist import Violation, describe, exercise_violations, scan_notebook
from ..sandbox import cgroups, codec, harden
from ..sandbox.capture import OutputCapture
from ..sandbox.client import WorkerDied, WorkerProcess, WorkerTimeout, Zygote, claim_uid_block
from ..intake.submission import Submission
from .worker_errors import cell_error, describe_error, text_field

WORKER_START_SECONDS = 10.0
MAX_BLAME_QUESTIONS = 16  # reference calls the student's code may ask for in one blame rerun
MEMORY_GROWING = 0.25  # a worker that hung with this share of memory_mb in use: a memory fault
SLOT_WORKERS = 4  # workers a slot's pids cgroup makes room for (see _placement)
CGROUP_HEADROOM_BYTES = 256 << 20  # above RLIMIT_DATA: the worker's share of torch's pages, page tables


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
        plan.update(uid=claim_uid_block() + slot, processes=64, namespaces=harden.namespaces_allowed())
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
        self.output = OutputCapture(int(course.sandbox.output_kb * 1024))  # the workers' stdout and stderr
        self.scratch = tempfile.mkdtemp(prefix="grader-scratch-")
        self.plan = dict(sandbox_plan(course, slot, list(hide)), scratch=self.scratch)
        if "uid" in self.plan and not self.plan["namespaces"]:  # the worker's own uid works in it, in no root of its own
            os.chown(self.scratch, self.plan["uid"], self.plan["uid"])
        self.protections: list[str] = []
        self.checked: dict[str, faults.StudentFault | None] = {}   # exercise id -> gate result
        self.dead: dict[str, faults.StudentFault] = {}             # exercise id -> fault that killed it
        self.dead_at_import: set[str] = set()                      # ... when that was its import
        self.loaded: set[str] = set()
        self.served: list[tuple[bytes, Reply]] = []                # see serve()
        self.recording: list[Exchange] | None = None               # this test's calls, for grader.run.replay
        self.bad_cells: dict[int, str] = {}                        # notebook cell -> why it is skipped
        self.cell_errors: dict[int, str] = {}
        self.deadline: float | None = None                          # of the time budget, see _time_for()
        self.chains = 0                                             # pipelines sent, see exchange_path()
        self.cgroup: cgroups.Slot | None = None                     # the worker uid's cgroups (as root)
        self.oom_kills_before = 0                                   # the slot's OOM kills before this worker
        self.start_failure = ""                                     # see _not_started()

    # ------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """End the worker and anything it started; remove what it wrote."""
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
        written = self.output.size
        if written >= self.output.limit:
            notes.append(f"your code printed or wrote {written >> 10} KiB, the most allowed: the rest was cut, "
                         "and writing more raised an error. Remove debugging prints in loops.")
        return notes

    def printed(self, limit: int = 2000) -> str:
        """The start of what the student's code printed (for staff reports)."""
        return self.output.read(limit).decode("utf-8", "replace")

    def _start(self) -> WorkerProcess:
        if self.worker is not None and self.worker.alive:
            return self.worker
        self._stop_worker()
        self.loaded.clear()
        self.worker = self._spawn()
        return self.worker

    def _not_started(self, why: str) -> RuntimeError:
        """A worker that could not start. Before this submission's first worker started, none
        of its code has run anywhere: the machine's fault, and the submission is not graded
        (``start_failure``). Later, an earlier worker of its own may have caused it: the
        tests concerned are errors, as any grader failure."""
        if not self.protections:  # set by the first worker that started
            self.start_failure = why
        return RuntimeError(why)

    def _placement(self) -> dict:
        """How the zygote places a new worker (root only): its own PID namespace (where the
        machine allows namespaces), and the cgroups of its uid, with room for its data limit,
        its /tmp and /dev/shm and torch."""
        plan = self.plan
        if "uid" not in plan:
            return {"isolate": False}
        memory = plan["memory_bytes"] + 2 * plan["tmpfs_bytes"] + CGROUP_HEADROOM_BYTES
        # The slot's pids cgroup also holds killed workers the zygote has not reaped yet (a
        # zombie counts until reaped): room for a few, each capped by NPROC.
        return {"isolate": True, "pid_namespace": bool(plan.get("namespaces", True)), "uid": plan["uid"], "memory_bytes": memory,
                "processes": SLOT_WORKERS * plan["processes"]}

    def _spawn(self) -> WorkerProcess:
        """A new worker with the submission loaded (and its notebook cells run), hardened."""
        slot = self._slot()
        self.oom_kills_before = slot.oom_kills() if slot is not None else 0
        try:
            worker = self.zygote.fork(self.output.write_fd, self._placement())
        except RuntimeError as exc:  # the zygote could not fork it
            raise self._not_started(str(exc)) from None
        sources = {name: (f.path, f.text) for name, f in self.submission.sources.items()}
        try:
            hello, _ = worker.request({"sources": sources, "notebook": self.submission.notebook, "sandbox": self.plan,
                                       "dead": self._dead_functions()}, timeout=WORKER_START_SECONDS)
        except (WorkerTimeout, WorkerDied) as exc:
            raise self._not_started(f"the sandbox could not start a worker ({type(exc).__name__})") from None
        if not hello["ok"]:  # the fields of every answer are checked (codec.check_answer)
            worker.kill()
            raise self._not_started("the sandbox could not start a worker: "
                                    f"{text_field(hello['error'], 'message', 300, 'no reason given')}")
        self.protections = list(hello.get("protections", []))
        if self.submission.notebook is not None and self.course.policy.static_scan:  # a cell that breaks the policy never runs
            for index, why in scan_notebook(tuple(self.submission.notebook), self.course.policy,
                                            tuple(self.submission.cell_names)).skipped().items():
                self.bad_cells.setdefault(index, why)
        for index, cell in enumerate(self.submission.notebook or ()):
            if cell.strip() and index not in self.bad_cells:
                self._run_cell(worker, index)
                if not worker.alive:  # that cell hung or killed the worker: skip it from now on
                    return self._spawn()
        return worker

    def _dead_functions(self) -> dict[str, list]:
        """``{id: [function, died at import]}`` of the exercises that hung, ran out of memory or
        crashed: a new worker puts a stand-in that raises at once in their place
        (``worker.DeadExercises``), so calling them from another exercise costs nothing."""
        return {e.id: [e.function, e.id in self.dead_at_import]
                for e in self.course.exercises if isinstance(self.dead.get(e.id), LOST_FAULTS)}

    def _error_fault(self, exercise: Exercise, error: Any, op: str) -> faults.StudentFault:
        """The fault of an error the worker reported: ``dead`` (the student's code called the
        stand-in of an exercise lost earlier) gets that exercise's status, in words."""
        named = text_field(error, "exercise", 80) if text_field(error, "kind", 40) == "dead" else None
        other = next((e for e in self.course.exercises if e.id == named), None)
        if other is None or other.id not in self.dead:
            return describe_error(exercise, error, op, self.course.policy.allowed_imports, self._notebook())
        fault = self.dead[other.id]
        why = {faults.TimeoutFault: f"did not finish within {other.time_limit:g} s",
               faults.MemoryFault: "ran out of memory",
               faults.CrashFault: "ended the Python process"}.get(type(fault), "was stopped")
        when = "while being imported" if op == "load" else "during this call"
        return type(fault)(f"{exercise.function} called {other.function} {when}, and {other.function} {why} in an "
                           f"earlier test of this submission, so it was not run again. Fix {other.function} first.")

    def _run_cell(self, worker: WorkerProcess, index: int) -> None:
        """Run one notebook cell (again in every new worker: its time counts in the budget)."""
        timeout = min(max(e.time_limit for e in self.course.exercises), self._budget_left())
        cell = self.submission.cell_name(index)
        if timeout <= 0:
            self.bad_cells[index] = (f"{cell} was not run: the submission's time budget "
                                     f"({self.course.sandbox.submission_seconds:g} s) is spent.")
            return
        try:
            answer, _ = worker.request({"op": "run_cell", "index": index}, timeout=timeout)
        except WorkerTimeout:
            self.bad_cells[index] = f"{cell} ran past {timeout:g} s and was skipped."
            return
        except WorkerDied as died:
            self.bad_cells[index] = f"{cell} ended the Python process ({died.status}) and was skipped."
            return
        if not answer.get("ok"):
            self.cell_errors[index] = cell_error(answer.get("error"), index, self.submission)

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

    def _gradeable(self, exercise: Exercise) -> bool:
        """Whether ``exercise`` passes its gate and loads (checked now if its own tests have not
        run: an exercise checked alone blames as it does in a full check)."""
        try:
            self.prepare(exercise)
        except faults.StudentFault:
            return False
        return True

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
            ast.parse(source.text, filename=source.path)  # a syntax error is said here, in the student's words
        except SyntaxError as exc:
            code = (exc.text or "").strip()
            return faults.ErrorFault(f"{source.path} line {exc.lineno}: syntax error ({exc.msg})"
                                     + (f": {code}" if code else "") + ". Fix that line and save again.")
        except (ValueError, RecursionError, MemoryError) as exc:
            return faults.ErrorFault(f"{source.path} cannot be parsed as Python ({type(exc).__name__}).")
        if not self.course.policy.static_scan:
            return None
        sources = {name: (f.path, f.text) for name, f in sub.sources.items()}
        return _forbidden(exercise_violations(sources, exercise.id, exercise.banned, self.course.policy), source.path)

    def _gate_notebook(self, exercise: Exercise) -> faults.StudentFault | None:
        """Forbidden when the cell defining the function breaks the course's policy (it is not
        run: see ``_spawn``) or the definition uses a banned name; every such cell is noted."""
        if not self.course.policy.static_scan:
            return None
        scan = scan_notebook(tuple(self.submission.notebook or ()), self.course.policy,
                             tuple(self.submission.cell_names))
        for index, why in scan.skipped().items():
            self.bad_cells.setdefault(index, why)  # in errors(), even if no worker ever starts
        index = scan.defined_in.get(exercise.function)
        if index in scan.problems:
            cell = self.submission.cell_name(index)
            return faults.ForbiddenFault(f"{exercise.function} is defined in {cell}, which was not run: "
                                         f"{describe(scan.problems[index])} It scores 0 until that line is gone.")
        return _forbidden(scan.banned(exercise.function, exercise.banned))

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
        asked = _Asked(len(args), set(kwargs), return_inputs,
                       None if grad_outputs is None else sum(t.requires_grad for t in tensors))
        try:
            return _call_result(reply, asked)
        except codec.ProtocolError as exc:
            raise self._malformed(exercise, exc) from None

    def _malformed(self, exercise: Exercise, problem: codec.ProtocolError) -> faults.StudentFault:
        """An answer that does not fit the call: the worker broke the protocol, as if in the
        channel itself (it is killed, and the exercise is dead from then on)."""
        self.worker.kill()
        fault = self._lost_worker_fault(exercise, WorkerDied(self.worker.status or "unknown",
                                                             f"it broke the protocol ({problem})"))
        self.dead[exercise.id] = fault
        return fault

    def exchange(self, exercise: Exercise, request: dict, tensors: list) -> Reply:
        """Send one call to the worker: its answer, or the fault it ended in."""
        try:
            return self._exchange(exercise, request, tensors)
        except faults.StudentFault as fault:  # the submission's time budget is spent
            return _lost(fault)

    def exchange_path(self, exercise: Exercise, steps: list[tuple[dict, list, bytes]]) -> list[Reply]:
        """Send calls ``(request, tensors, expected answer digest)`` as ``chain``ed calls, several
        at once: the worker runs each by the very path a plain call takes, and after the first
        answer not as expected runs no more of that chain (``Worker.serve``); the replies end
        there. Chains of 1, 2, 4... calls: a submission answering as remembered costs a few
        round trips, one that differs early wastes few calls. A worker lost on a call marks the
        exercise dead only when the test that made that call gets the reply, as in a plain run."""
        replies: list[Reply] = []
        window = 1
        while len(replies) < len(steps):
            chain = steps[len(replies):len(replies) + window]
            got = self._exchange_chain(exercise, chain)
            replies += got
            if len(got) < len(chain) or got[-1].lost or got[-1].digest != chain[-1][2]:
                break
            window *= 2
        return replies

    def _exchange_chain(self, exercise: Exercise, steps: list[tuple[dict, list, bytes]]) -> list[Reply]:
        """One chain of ``exchange_path``: its replies up to the first unexpected one."""
        try:
            self._time_for(exercise)
        except faults.StudentFault as fault:  # the budget is spent: the test runs and says so
            return [_lost(fault)]
        worker = self._start()
        self.chains += 1
        chained = [(dict(request, chain=self.chains, expect=expect.hex()), tensors) for request, tensors, expect in steps]
        replies: list[Reply] = []
        stopped = out_of_memory = False
        try:
            for index, (answer, out, digest) in enumerate(worker.pipeline(chained, self._answer_time(exercise))):
                if stopped:
                    continue  # past the first unexpected answer: "skipped", read to keep the channel in step
                if not answer["ok"] and _out_of_memory(answer["error"]):
                    replies.append(_lost(self._memory_fault_words(exercise, answer["error"])))  # dead once used
                    stopped = out_of_memory = True
                    continue
                fault = None if answer["ok"] else self._error_fault(exercise, answer["error"], "call")
                replies.append(Reply(None if fault else answer, out, fault, digest))
                stopped = digest != steps[index][2]
        except (WorkerTimeout, WorkerDied) as exc:
            replies.append(_lost(self._lost_worker_fault(exercise, exc)))
        if out_of_memory:
            worker.kill()
        return replies

    def _answer_time(self, exercise: Exercise):
        """Seconds for the next answer of a pipeline: the time limit, within the budget (none
        left: no time, the worker is killed and the exercise's test reports the budget)."""
        def left() -> float:
            try:
                return self._time_for(exercise)
            except faults.StudentFault:
                return 0.0
        return left

    def _exchange(self, exercise: Exercise, request: dict, tensors: list) -> Reply:
        """One call to the worker: its answer, or its fault; a lost worker kills the exercise."""
        timeout = self._time_for(exercise)
        worker = self._start()
        try:
            answer, out = worker.request(request, tensors, timeout=timeout)
        except (WorkerTimeout, WorkerDied) as exc:
            return self._lose(exercise, self._lost_worker_fault(exercise, exc, request["op"]), request["op"])
        if not answer.get("ok") and _out_of_memory(answer.get("error")):
            worker.kill()  # as if its memory cgroup had killed it: the same fault, the same end
            return self._lose(exercise, self._memory_fault_words(exercise, answer.get("error")), request["op"])
        if not answer.get("ok"):
            fault = self._error_fault(exercise, answer.get("error") or {}, request["op"])
            return Reply(None, [], fault, worker.last_digest)
        return Reply(answer, out, None, worker.last_digest)

    def _lose(self, exercise: Exercise, fault: faults.StudentFault, op: str) -> Reply:
        """The exercise is dead from this call on (its worker hung, died or ran out of memory)."""
        self.dead[exercise.id] = fault
        if op == "load":
            self.dead_at_import.add(exercise.id)
        return _lost(fault)

    def _notebook(self) -> Submission | None:
        """The submission, when it is a notebook (its messages name cells, never a file)."""
        return self.submission if self.submission.notebook is not None else None

    def serve(self, replies: list[tuple[bytes, "Reply"]]) -> None:
        """Answer the next calls from ``replies``, ``(request fingerprint, reply)`` pairs that
        ``grader.run.replay`` already fetched from the worker, instead of asking it again."""
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

        Only once every call that earns a score has been made (``grader.run.verdict.explain``):
        the student's code sees reference answers here, in the submission's worker, and nothing
        of that may reach a graded call.
        """
        found = []
        try:
            if not self._gradeable(exercise):
                return []  # it died (or broke) in a later test: its worker holds a stand-in
            for other in uses:
                if not self._gradeable(other):
                    continue  # missing, forbidden or broken: its own tests say so
                if all(passes(call, self._rerun(exercise, call, {other.id: other.function}, references))
                       for call in calls):
                    found.append(other.id)
        except (WorkerTimeout, WorkerDied, faults.StudentFault, codec.ProtocolError, KeyError):
            if self.worker is not None:
                self.worker.kill()
        return found

    def _rerun(self, exercise: Exercise, call, substitute: dict[str, str], references: dict[str, Any]) -> Any:
        """One recorded call again, in the submission's worker, with ``substitute``'s references answering
        the student's calls of those exercises (``callback`` questions, answered here).

        The student's code picks the questions' inputs: each is refused (the student's code sees
        an error) past ``MAX_BLAME_QUESTIONS`` per call, or with more elements than the call's
        own inputs can make (all their elements times their longest dimension: every
        intermediate of an attention is that small), so the grader never computes more for a
        rerun than the test itself did. Time counts in the submission's budget."""
        tensors: list[torch.Tensor] = []
        args = codec.encode_value(list(call.args), tensors)
        kwargs = codec.encode_value(dict(call.kwargs), tensors)
        inputs = [t for t in tensors if isinstance(t, torch.Tensor)]
        most_elements = max(1, sum(t.numel() for t in inputs)) * max([1, *(max(t.shape, default=1) for t in inputs)])
        # The worker refuses a larger question before sending it; one that comes anyway (a worker
        # not ours) breaks the protocol before the grader reads its tensors.
        request = {"op": "call", "exercise": exercise.id, "args": args, "kwargs": kwargs,
                   "substitute": substitute, "question_elements": most_elements}
        asked = 0

        def answer(question: dict, received: list) -> tuple[dict, list]:
            nonlocal asked
            asked += 1
            function = references.get(question.get("exercise")) if substitute.get(question.get("exercise")) else None
            if function is None or asked > MAX_BLAME_QUESTIONS:
                return {"error": "refused"}, []
            if sum(t.numel() for t in received) > most_elements:
                return {"error": "inputs larger than the test's own"}, []
            try:
                value = function(*codec.decode_value(question.get("args"), received),
                                 **codec.decode_value(question.get("kwargs"), received))
                out: list[torch.Tensor] = []
                return {"value": codec.encode_value(value, out)}, out
            except Exception:  # noqa: BLE001 - inputs the reference cannot take: the student's code hears so
                return {"error": "the reference could not take these inputs"}, []

        reply, out = self._start().request(request, tensors, timeout=self._time_for(exercise), callback=answer,
                                           max_payload=most_elements * max(codec.ITEMSIZE.values()))
        if not reply.get("ok"):
            raise faults.ErrorFault("the run with a reference in place raised")
        return codec.decode_value(reply["value"], out)

    def _request(self, exercise: Exercise, request: dict, tensors: list) -> tuple[dict, list]:
        reply = self._exchange(exercise, request, tensors)
        if reply.fault is not None:
            raise reply.fault
        return reply.answer, reply.out

    # ------------------------------------------------------------ the submission's time budget

    def _time_for(self, exercise: Exercise) -> float:
        """Seconds the next call of ``exercise`` may take: its time limit, or what is left of
        the submission's budget (counted from its first worker); none left: a timeout fault."""
        left = self._budget_left()
        if left <= 0:
            raise self._budget_fault()
        return min(exercise.time_limit, left)

    def _budget_left(self) -> float:
        """Seconds left of the submission's budget, counted from its first worker or cell."""
        if self.deadline is None:
            self.deadline = time.monotonic() + self.course.sandbox.submission_seconds
        return self.deadline - time.monotonic()

    def _budget_fault(self) -> faults.TimeoutFault:
        return faults.TimeoutFault(
            f"not run: your submission used its whole time budget ({self.course.sandbox.submission_seconds:g} s for "
            "all its tests together). Make the slow function faster (no Python loops over elements).")

    # ------------------------------------------------------------ how a worker was lost

    def _lost_worker_fault(self, exercise: Exercise, exc: WorkerTimeout | WorkerDied,
                           op: str = "call") -> faults.StudentFault:
        """The fault of a call (``op``: or the import, "load") whose worker hung or died (the
        exercise is dead from then on)."""
        importing = op == "load" and self.submission.notebook is None
        name = f"importing {exercise.filename}" if importing else exercise.function
        memory = self._memory_fault(exercise, exc)
        if memory is not None:
            return memory
        if isinstance(exc, WorkerTimeout) and self.deadline is not None and time.monotonic() >= self.deadline:
            return self._budget_fault()
        if isinstance(exc, WorkerTimeout):
            what = ("a loop or a slow computation at the top level of the file, outside any function?" if importing
                    else "an infinite loop, or a very slow computation?")
            fault: faults.StudentFault = faults.TimeoutFault(
                f"{name} did not finish within {exercise.time_limit:g} s ({what}). "
                "The remaining tests of this exercise were not run.")
        else:
            how = {"exit 0": "exited (os._exit or a similar call?)"}.get(exc.status, f"ended ({exc.status})")
            fault = faults.CrashFault(f"the Python process {name if importing else f'running {name}'} {how}"
                                      f"{'' if importing else ' during this call'}"
                                      + (f": {exc.detail}" if exc.detail else "")
                                      + ". The remaining tests of this exercise were not run.")
        return fault

    def _memory_fault(self, exercise: Exercise, exc: WorkerTimeout | WorkerDied) -> faults.MemoryFault | None:
        """A worker killed by its memory cgroup, or one that hung holding over ``MEMORY_GROWING``
        of the memory allowed (a list growing until the time limit): out of memory."""
        slot = self._slot()
        if slot is None:
            return None
        limit = int(self.course.sandbox.memory_mb)
        killed = isinstance(exc, WorkerDied) and slot.oom_kills() > self.oom_kills_before
        growing = isinstance(exc, WorkerTimeout) and slot.peak_bytes() >= MEMORY_GROWING * limit * 2**20
        return self._memory_fault_words(exercise) if killed or growing else None

    def _memory_fault_words(self, exercise: Exercise, error: Any = None) -> faults.MemoryFault:
        """One fault for every way a function runs out of memory: its ``MemoryError``, its memory
        cgroup's kill, its time running out while it held over ``MEMORY_GROWING`` of the limit.
        Which of these comes first depends on the machine's speed and load; the grade must not.
        The GPU's memory (``error`` says so) has words of its own: its share is a fraction."""
        if error is not None and _out_of_gpu_memory(error):
            return faults.MemoryFault(
                f"{exercise.function} asked for more GPU memory than one worker may use "
                f"({self.course.sandbox.gpu_memory_fraction:g} of the GPU's) and was stopped. A huge intermediate "
                "result, or a tensor that keeps growing? The remaining tests of this exercise were not run.")
        limit = int(self.course.sandbox.memory_mb)
        return faults.MemoryFault(
            f"{exercise.function} ran out of memory (a worker may use {limit} MiB) and was stopped. A huge "
            "intermediate result, or a tensor or list that keeps growing? The remaining tests of this exercise "
            "were not run.")

    def _slot(self) -> "cgroups.Slot | None":
        if "uid" not in self.plan:
            return None
        if self.cgroup is None or not self.cgroup.dirs:  # the zygote creates them at the slot's first fork
            self.cgroup = cgroups.Slot.existing(int(self.plan["uid"]))
        return self.cgroup if self.cgroup.dirs else None


LOST_FAULTS = (faults.TimeoutFault, faults.MemoryFault, faults.CrashFault)
OUT_OF_MEMORY = {"MemoryError", "OutOfMemoryError"}  # Python's, torch's; and torch's allocators' words:
# the CPU one's, and the CUDA one failing as it words a refusal (it asks NVML, which fails in
# the sandbox: "NVML_SUCCESS == ...nvmlInit_v2_() INTERNAL ASSERT FAILED at ...", on an H200)
ALLOCATOR_FAILED = ("can't allocate memory", "CUDACachingAllocator.cpp")
GPU_ALLOCATOR = ("CUDA out of memory", "CUDACachingAllocator.cpp")


def _out_of_memory(error: Any) -> bool:
    """Whether a worker's error report (untrusted: at worst a student loses their own exercise)
    says the student's code ran out of memory."""
    if text_field(error, "kind", 40) != "exception":
        return False
    message = text_field(error, "message", 300)
    return text_field(error, "type", 60) in OUT_OF_MEMORY or any(words in message for words in ALLOCATOR_FAILED)


def _out_of_gpu_memory(error: Any) -> bool:
    """... and that it was the GPU's memory (its share of it) that ran out."""
    return _out_of_memory(error) and any(words in text_field(error, "message", 300) for words in GPU_ALLOCATOR)


def _forbidden(violations: list[Violation], path: str | None = None) -> faults.StudentFault | None:
    """The fault of an exercise whose code breaks the rules: in its file ``path``, in a file it
    imports, or in its notebook definition."""
    if not violations:
        return None
    if path is not None and violations[0].file != path:
        return faults.ForbiddenFault(f"{describe(violations)} {path} imports that file (directly or through your "
                                     "other files), so this exercise scores 0 until that line is gone.")
    return faults.ForbiddenFault(f"{describe(violations)} It scores 0 until that line is gone.")


class _Asked(NamedTuple):
    """What a call asked the worker for, so its answer can be checked against it."""

    args: int
    """How many positional arguments it sent."""
    kwargs: set[str]
    inputs: bool
    """Whether it asked for the inputs after the call."""
    grads: int | None
    """How many gradients it asked for (one per input that requires grad); None: none."""


def _call_result(reply: Reply, asked: _Asked) -> dict:
    """The decoded ``{"value", "inputs"?, "grads"?}`` of a call's answer, checked against what
    the call asked for: exactly those fields, the inputs as ``[args, kwargs]`` as sent, one
    gradient (a tensor or None) per input that requires grad. Raises ProtocolError."""
    wanted = {"value"} | ({"inputs"} if asked.inputs else set()) | ({"grads"} if asked.grads is not None else set())
    if set(reply.answer) - {"ok", "devices"} != wanted:
        raise codec.ProtocolError("the answer does not hold what the call asked for")
    result = {key: codec.decode_value(reply.answer[key], reply.out) for key in wanted}
    if asked.inputs:
        inputs = result["inputs"]
        if not (isinstance(inputs, list) and len(inputs) == 2 and isinstance(inputs[0], list)
                and len(inputs[0]) == asked.args and isinstance(inputs[1], dict) and set(inputs[1]) == asked.kwargs):
            raise codec.ProtocolError("the inputs it returned are not the ones sent")
    if asked.grads is not None:
        grads = result["grads"]
        if not (isinstance(grads, list) and len(grads) == asked.grads
                and all(g is None or isinstance(g, torch.Tensor) for g in grads)):
            raise codec.ProtocolError("the gradients it returned are not one per input")
    return result
