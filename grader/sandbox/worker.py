"""What runs inside a forked worker: the only place where student code executes.

The grader sends an ``init`` message (the submission's sources or notebook cells and the
limits), then requests: ``run_cell``, ``load`` (import an exercise and find its function)
and ``call`` (call it on tensors; optionally return the inputs afterwards, or gradients).
Every answer is ``{"ok": true, ...}`` or ``{"ok": false, "error": {...}}``. The worker
compares nothing: it only computes and reports, so patching torch here changes no score.
"""
from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import linecache
import os
import socket
import sys
import traceback
import types
import warnings
from typing import Any

import torch

from . import codec, harden
from .vjp import vjp

PACKAGE = "exercises"
SKIPPED = {"ok": False, "error": {"kind": "skipped"}}  # a chained call not run (see Worker.serve)
BLOCKED_PACKAGES = ("solutions", "grader")


class StudentModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves the submission's files as ``exercises.<name>`` (and as top-level ``<name>``).

    ``from exercises.softmax import softmax`` therefore finds the student's own file, never
    the repository's stub or solution; ``solutions`` and ``grader`` cannot be imported.
    For a notebook, every ``exercises.<name>`` is the notebook's namespace.
    """

    def __init__(self, sources: dict[str, tuple[str, str]], notebook: types.ModuleType | None,
                 dead: "DeadExercises | None" = None):
        self.sources = sources  # module name -> (path shown in tracebacks, source text)
        self.notebook = notebook
        self.dead = dead or DeadExercises({})

    def find_spec(self, fullname, path=None, target=None):
        top = fullname.partition(".")[0]
        if top in BLOCKED_PACKAGES:
            raise ImportError(f"'{fullname}' is not available to submissions")
        if fullname == PACKAGE:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        name = fullname[len(PACKAGE) + 1:] if fullname.startswith(PACKAGE + ".") else fullname
        if "." in name:
            return None
        if name in self.sources or (self.notebook is not None and fullname != name):
            spec = importlib.machinery.ModuleSpec(fullname, self, origin=self.sources.get(name, ("notebook",))[0])
            spec.has_location = name in self.sources
            return spec
        return None

    def create_module(self, spec):
        name = spec.name.rpartition(".")[2]
        if self.notebook is not None and spec.name != PACKAGE and name not in self.sources:
            return self.notebook
        return None

    def exec_module(self, module):
        if module is self.notebook:
            return
        if module.__name__ == PACKAGE:
            module.__path__ = []
            return
        name = module.__name__.rpartition(".")[2]
        display, text = self.sources[name]
        module.__file__ = display
        if self.dead.at_import(name):  # its import hung or crashed: not run again
            module.__getattr__ = self.dead.stub(name)
            return
        remember_source(display, text)
        exec(compile(text, display, "exec", dont_inherit=True), module.__dict__)
        self.dead.replace(name, module.__dict__)


class DeadFunction(Exception):
    """Student code called the function of an exercise that hung, ran out of memory or
    crashed earlier in this submission (raised by its stand-in, see ``DeadExercises``)."""


class DeadExercises:
    """The exercises whose function hung, ran out of memory or crashed in an earlier worker of
    this submission: ``{id: [function, died at import]}`` from the grader's ``init``.

    Their function is replaced by a stand-in that raises at once, so an exercise that calls
    it (attention calling the student's softmax) fails in microseconds instead of costing
    its time limit again: a hang costs its time once per submission. A module whose import
    hung is not run again at all: any name taken from it raises.
    """

    def __init__(self, dead: dict):
        self.dead = {str(k): (str(v[0]), bool(v[1])) for k, v in dict(dead).items()}
        self.hit: str | None = None  # the dead exercise the current call reached, caught or not

    def at_import(self, exercise: str) -> bool:
        return exercise in self.dead and self.dead[exercise][1]

    def stub(self, exercise: str):
        def dead(*_args, **_kwargs):
            if self.hit is None:
                self.hit = exercise
            raise DeadFunction(f"{exercise} was stopped earlier in this submission")
        return dead

    def replace(self, exercise: str, namespace: dict) -> None:
        """Put the stand-in where ``namespace`` (a module's, or the notebook's) holds the
        function of ``exercise`` (every exercise, for a notebook, when ``exercise`` is None)."""
        for name, (function, _) in self.dead.items():
            if (exercise is None or name == exercise) and callable(namespace.get(function)):
                namespace[function] = self.stub(name)


def remember_source(display: str, text: str) -> None:
    """Let tracebacks quote the student's lines although no file exists on disk."""
    lines = text.splitlines(keepends=True)
    linecache.cache[display] = (len(text), None, lines, display)


class BannedKernel(Exception):
    """A banned aten operator was called (raised by its replacement at the dispatcher)."""

    def __init__(self, hit: dict):
        super().__init__(f"the operator aten.{hit['kernel']} is forbidden in this exercise")
        self.hit = hit


class KernelBans:
    """Banned aten operators replaced, in torch's dispatcher, by a kernel that raises.

    ``enforce(names)`` registers the replacement for every overload of each operator on every
    dispatch key that could run it (see ``KEYS``; newest registration wins, so the real kernel
    is unreachable by any route: ``torch.softmax``, ``nn.Softmax``, softmin, a distribution, a
    sparse or MKLDNN tensor...) and drops the previous set's (the real kernel comes back). It
    costs about 1 ms per change of set, nothing per operator call. The registrations live in
    the dispatcher and in this object,
    which student code reaches only through reflection, which the static scan forbids.
    """

    # Where a replacement goes: CPU and CUDA always, every other backend that has a kernel of
    # its own for the operator (an MKLDNN, sparse or nested tensor skips the CPU key), and the
    # composite keys, which serve every backend without a kernel of its own.
    KEYS = ("CPU", "CUDA")
    BACKENDS = ("MkldnnCPU", "SparseCPU", "SparseCUDA", "SparseCsrCPU", "SparseCsrCUDA", "NestedTensorCPU",
                "NestedTensorCUDA", "QuantizedCPU", "QuantizedCUDA", "MPS", "XPU")
    COMPOSITES = ("CompositeExplicitAutograd", "CompositeExplicitAutogradNonFunctional", "CompositeImplicitAutograd")

    def __init__(self, student_files: set[str]):
        self.student_files = student_files
        self.active: frozenset[str] = frozenset()
        self._library = None
        self.hit: dict | None = None

    def enforce(self, names: frozenset[str]) -> None:
        self.hit = None
        if names == self.active:
            return
        if self._library is not None:
            self._library._destroy()
            self._library = None
        if names:
            library = torch.library.Library("aten", "IMPL")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "overriding a previously registered kernel": that is the point
                for name in sorted(names):
                    for overload in getattr(torch.ops.aten, name).overloads():
                        qualified = name if overload == "default" else f"{name}.{overload}"
                        for key in self._keys(f"aten::{qualified}"):
                            library.impl(qualified, self._refusal(name), key)
            self._library = library
        self.active = names

    @classmethod
    def _keys(cls, operator: str) -> list[str]:
        has = torch._C._dispatch_has_kernel_for_dispatch_key
        return [*cls.KEYS, *(key for key in cls.BACKENDS + cls.COMPOSITES if has(operator, key))]

    def _refusal(self, name: str):
        def refuse(*_args, **_kwargs):
            hit = {"kind": "forbidden", "kernel": name}
            frames = [f for f in traceback.extract_stack() if f.filename in self.student_files]
            if frames:
                hit.update(file=frames[-1].filename, line=frames[-1].lineno, code=(frames[-1].line or "").strip()[:200])
            if self.hit is None:
                self.hit = hit  # caught by the student's code or not, the call used it
            raise BannedKernel(hit)
        return refuse


class Worker:
    def __init__(self, channel: socket.socket, init: dict):
        self.channel = channel
        self.student_files = set()
        notebook = None
        if init.get("notebook") is not None:
            notebook = types.ModuleType("__notebook__")
            notebook.__dict__["__name__"] = "__main__"
            # Cells are numbered from 1 in tracebacks, as in the grader's notes and hints.
            self.student_files.update(f"<cell {i + 1}>" for i, _ in enumerate(init["notebook"]))
        self.sources = {name: (path, text) for name, (path, text) in init.get("sources", {}).items()}
        self.student_files.update(path for path, _ in self.sources.values())
        self.notebook = notebook
        self.cells = init.get("notebook") or []
        self.dead = DeadExercises(init.get("dead") or {})
        sys.meta_path.insert(0, StudentModules(self.sources, notebook, self.dead))
        self.functions: dict[str, Any] = {}
        self.banned_kernels: dict[str, frozenset[str]] = {}
        self.bans = KernelBans(self.student_files)

    # ------------------------------------------------------------ requests

    def run_cell(self, request: dict, _tensors) -> dict:
        index = request["index"]
        name = f"<cell {index + 1}>"
        source = self.cells[index]
        remember_source(name, source)
        try:
            exec(compile(source, name, "exec", dont_inherit=True), self.notebook.__dict__)
        finally:
            self.dead.replace(None, self.notebook.__dict__)  # a cell defining a dead function
        return {"ok": True}

    def load(self, request: dict, _tensors) -> dict:
        exercise, function = request["exercise"], request["function"]
        self.banned_kernels[exercise] = frozenset(request.get("banned_kernels", ()))
        self.bans.enforce(self.banned_kernels[exercise])  # the module's own top-level code included
        if self.notebook is not None:
            namespace = self.notebook.__dict__
        else:
            namespace = importlib.import_module(f"{PACKAGE}.{exercise}").__dict__
        fn = namespace.get(function)
        if fn is None:
            names = [k for k, v in namespace.items() if callable(v) and not k.startswith("_")]
            return {"ok": False, "error": {"kind": "missing_function", "available": sorted(names)[:200]}}
        if not callable(fn):
            return {"ok": False, "error": {"kind": "not_callable", "type": type(fn).__name__}}
        self.functions[exercise] = fn
        return {"ok": True}

    def call(self, request: dict, tensors: list[torch.Tensor]) -> tuple[dict, list[torch.Tensor]]:
        exercise = request["exercise"]
        fn = self.functions[exercise]
        args = codec.decode_value(request["args"], tensors)
        kwargs = codec.decode_value(request["kwargs"], tensors)
        self.bans.enforce(self.banned_kernels.get(exercise, frozenset()))
        with self._substituted(exercise, request.get("substitute") or {}, request.get("question_elements")):
            result = fn(*args, **kwargs)
        if self.bans.hit is not None:
            return {"ok": False, "error": self.bans.hit}, []
        if self.dead.hit is not None:
            return {"ok": False, "error": {"kind": "dead", "exercise": self.dead.hit}}, []
        out: list[torch.Tensor] = []
        answer = {"ok": True, "value": codec.encode_value(result, out)}
        if request.get("return_inputs"):
            answer["inputs"] = codec.encode_value([list(args), kwargs], out)
        if request.get("grad_outputs") is not None:
            answer["grads"] = self._input_grads(result, codec.decode_value(request["grad_outputs"], tensors),
                                                [t for t in tensors if t.requires_grad], out)
        return answer, out

    @contextlib.contextmanager
    def _substituted(self, exercise: str, substitute: dict[str, str], question_elements: int | None):
        """During one call, let the student's code call the grader's reference instead of its
        own ``exercises.<id>.<function>`` for each ``{id: function}`` (the blame check).

        The names the student's module bound (``from exercises.softmax import softmax``) and
        the module attributes (``exercises.softmax.softmax``) are both swapped, then restored.
        """
        if not substitute:
            yield
            return
        caller = self.notebook.__dict__ if self.notebook is not None else sys.modules[f"{PACKAGE}.{exercise}"].__dict__
        swaps: list[tuple[dict, str, Any]] = []
        for other, function in substitute.items():
            module = self.notebook if self.notebook is not None else sys.modules.get(f"{PACKAGE}.{other}")
            own = getattr(module, function, None) if module is not None else None
            proxy = self._reference_proxy(other, question_elements)
            namespaces = [caller] + ([module.__dict__] if module is not None and module.__dict__ is not caller else [])
            for namespace in namespaces:
                for name, value in list(namespace.items()):
                    if value is own and own is not None or (namespace is not caller and name == function):
                        swaps.append((namespace, name, value))
                        namespace[name] = proxy
        try:
            yield
        finally:
            for namespace, name, value in reversed(swaps):
                namespace[name] = value

    def _reference_proxy(self, exercise: str, question_elements: int | None):
        """The stand-in for the student's ``exercise``: asks the grader. A question with more
        elements than ``question_elements`` (the grader would refuse it after reading it all)
        is refused here, before it travels."""
        def reference(*args, **kwargs):
            out: list[torch.Tensor] = []
            question = {"op": "callback", "exercise": exercise, "args": codec.encode_value(list(args), out),
                        "kwargs": codec.encode_value(dict(kwargs), out)}
            if question_elements is not None and sum(t.numel() for t in out) > question_elements:
                raise RuntimeError(f"the grader's reference {exercise} refused this call: inputs larger than the test's own")
            codec.send_message(self.channel, question, out)
            answer, tensors = codec.recv_message(self.channel)
            if "value" not in answer:
                raise RuntimeError(f"the grader's reference {exercise} refused this call: {answer.get('error')}")
            return codec.decode_value(answer["value"], tensors)
        return reference

    def _input_grads(self, result, grad_outputs, inputs, out) -> dict:
        outputs = list(result) if isinstance(result, (tuple, list)) else [result]
        pairs = [(o, g) for o, g in zip(outputs, grad_outputs) if g is not None]
        if not all(isinstance(o, torch.Tensor) and o.requires_grad for o, _ in pairs):
            raise NotDifferentiable()
        grads = vjp(pairs, inputs)
        return codec.encode_value(list(grads), out)

    # ------------------------------------------------------------ loop

    def serve(self) -> None:
        """Answer each request in turn, every one by the same path.

        A request marked ``chain`` (a number: the grader replaying remembered calls, several
        sent at once) carries the digest ``expect``ed of its answer: after an answer not as
        expected, the requests that follow in the same chain are not run (answered
        ``skipped``), so the worker never runs a call that a plain run would not have made.
        """
        chain, broken = None, False
        while True:
            try:
                request, tensors = codec.recv_message(self.channel)
            except codec.ProtocolError:
                return  # the grader went away
            if request.get("chain") != chain:
                chain, broken = request.get("chain"), False
            if chain is not None and broken:
                codec.send_message(self.channel, SKIPPED)
                continue
            digest = self._send(*self._handle(request, tensors))
            broken = chain is not None and digest.hex() != request.get("expect")

    def _handle(self, request: dict, tensors: list[torch.Tensor]) -> tuple[dict, list[torch.Tensor]]:
        handlers = {"run_cell": self.run_cell, "load": self.load, "call": self.call}
        self.dead.hit = None
        try:
            answer = handlers[request["op"]](request, tensors)
            return answer if isinstance(answer, tuple) else (answer, [])
        except BannedKernel as exc:
            return {"ok": False, "error": exc.hit}, []
        except BaseException as exc:  # noqa: BLE001 - student code may raise anything, SystemExit included
            if self.bans.hit is not None:  # a banned operator's refusal, wrapped in another error
                return {"ok": False, "error": self.bans.hit}, []
            if self.dead.hit is not None:  # a dead exercise's stand-in, wrapped in another error
                return {"ok": False, "error": {"kind": "dead", "exercise": self.dead.hit}}, []
            return {"ok": False, "error": self.describe(exc)}, []
        finally:
            _flush_output()  # what it printed reaches the grader before the answer does

    def _send(self, answer: dict, out: list[torch.Tensor]) -> bytes:
        try:
            return codec.send_message(self.channel, answer, out)
        except (TypeError, ValueError) as exc:  # an output codec cannot carry (complex dtype...)
            return codec.send_message(self.channel, {"ok": False, "error": {"kind": "bad_output", "message": str(exc)}})

    def describe(self, exc: BaseException) -> dict:
        """Turn a student exception into words: type, message, and the student's line."""
        if isinstance(exc, NotDifferentiable):
            return {"kind": "not_differentiable"}
        if isinstance(exc, SystemExit):
            kind = "exit"
        elif isinstance(exc, NotImplementedError):
            kind = "not_implemented"
        elif isinstance(exc, (ImportError, SyntaxError)) and not self._raised_in_student_code(exc):
            kind = "import_error"
        else:
            kind = "exception"
        error = {"kind": kind, "type": type(exc).__name__, "message": _safe_str(exc)}
        if isinstance(exc, ImportError) and getattr(exc, "name", None):
            error["module"] = str(exc.name)[:200]
        frame = self._student_frame(exc)
        if frame is not None:
            error.update(file=frame.filename, line=frame.lineno, code=(frame.line or "").strip()[:200])
        if isinstance(exc, SyntaxError) and exc.filename in self.student_files:
            error.update(file=exc.filename, line=exc.lineno, code=(exc.text or "").strip()[:200])
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename in self.student_files]
        error["traceback"] = "".join(traceback.format_list(frames[-5:]))[-codec.MAX_TEXT:]
        return error

    def _student_frame(self, exc: BaseException):
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename in self.student_files]
        return frames[-1] if frames else None

    def _raised_in_student_code(self, exc: BaseException) -> bool:
        frames = traceback.extract_tb(exc.__traceback__)
        return bool(frames) and frames[-1].filename in self.student_files


class NotDifferentiable(Exception):
    """The student's output is not connected to the inputs in the autograd graph."""


def _flush_output() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:  # noqa: BLE001 - a broken pipe past the output limit, a replaced stream
            pass


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)[: codec.MAX_TEXT]
    except BaseException:  # noqa: BLE001 - a hostile __str__
        return "<unprintable>"


def prepare_device(plan: dict) -> list[str]:
    """Before the student's first byte. A course graded on CUDA (``gpu_memory_fraction`` in
    the plan): this worker's CUDA context, capped at that share of the GPU's memory (a tensor
    made at import time too), no TF32 (the reference in the grader runs without it, so
    tolerances mean the same on every GPU); a GPU that cannot be used here fails the
    worker's start, never the student. Graded on the CPU: no GPU visible at all."""
    if not harden.on_cuda(plan):
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # read by CUDA when (if ever) it initialises
        return ["no GPU visible"] if harden.gpu_machine() else []
    fraction = float(plan["gpu_memory_fraction"])
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.cuda.set_per_process_memory_fraction(fraction)  # creates the context
    return [f"GPU memory capped at {fraction:g} of the card"]


def main(channel_fd: int, output_fd: int, parent: int) -> None:
    """Entry point of a freshly forked worker; never returns.

    Reads the ``init`` message, hardens itself (``harden.apply``), prepares its device,
    answers with the list of active protections, then serves requests until the grader
    closes the channel.
    """
    try:
        os.setsid()  # own process group: the grader kills the whole group
        os.dup2(output_fd, 1)
        os.dup2(output_fd, 2)
        os.close(output_fd)
        channel = socket.socket(fileno=channel_fd)
        init, _ = codec.recv_message(channel)
        plan = init.get("sandbox", {})
        active, scratch = harden.apply(plan, keep_fds={0, 1, 2, channel_fd}, parent=parent)
        os.chdir(scratch)
        torch.set_num_threads(1)
        active += prepare_device(plan)
        codec.send_message(channel, {"ok": True, "protections": active})
        Worker(channel, init).serve()
    except BaseException as exc:  # noqa: BLE001 - report a failed start instead of vanishing
        try:
            traceback.print_exc()  # for staff, in the captured output
            codec.send_message(channel, {"ok": False, "error": {"kind": "start", "message": f"{type(exc).__name__}: {exc}"}})
        except BaseException:  # noqa: BLE001
            pass
    finally:
        os._exit(0)
