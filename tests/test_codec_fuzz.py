"""Fuzzing what a worker can send (hypothesis): every field of every message, malformed.

At the codec, a message decodes to checked tensors and values or is refused with a
ProtocolError, nothing else. At the grader, a call answered with such a message ends as a
crash of that call (the worker killed, the exercise dead), or as the student's error when
the message still says one in valid words: never as an error of the grader's own.

The grader's side talks to a fake worker: a thread at the far end of a real socket that
answers the start and the load as a worker does and each call with the fuzzed bytes.
"""
from __future__ import annotations

import contextlib
import copy
import json
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grader.run import faults
from grader.course.load import load_course
from grader.sandbox import codec
from grader.sandbox.client import WorkerDied, WorkerProcess
from grader.run.student import StudentCode
from grader.run.worker_errors import describe_error as _describe
from grader.intake.submission import load_submission
from grader.testing import Expect

ROOT = Path(__file__).resolve().parent.parent
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---------------------------------------------------------------- values a field may be replaced by

HOSTILE = st.sampled_from([
    None, True, False, 0, 1, -1, 3, 2**31, 2**53, 2**63, 2**80, -2**80, 0.5, -0.0, 1e308, "", "x", "0", "-5",
    "--5", "\u00b2", "inf", "nan", "cpu", "cuda", "cuda:99", "meta", "float32", "object", "tensor", "tuple",
    [], [None], [None, 0], [0, None], [True, False], [0, 0], [1, 0], [[0]], [0.0], ["0"], [-1], [2**40],
    {}, {"t": "none"}, {"t": "tensor", "i": 0}, {"a": {"b": {"c": []}}},
])
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12)
ANY = HOSTILE | JSON


def encoded(header: dict, tensors: list[torch.Tensor] = ()) -> bytes:
    """The bytes ``send_message`` puts on the wire for this message."""
    a, b = socket.socketpair()
    with a, b:
        codec.send_message(a, header, list(tensors))
        a.shutdown(socket.SHUT_WR)
        return b"".join(iter(lambda: b.recv(1 << 16), b""))


def split(raw: bytes) -> tuple[dict, bytes]:
    """A message's JSON header as a document, and the tensor bytes after it."""
    (length,) = struct.unpack(">I", raw[:4])
    return json.loads(raw[4:4 + length]), raw[4 + length:]


def joined(header: dict, payload: bytes) -> bytes:
    blob = json.dumps(header).encode()
    return struct.pack(">I", len(blob)) + blob + payload


def question_of(*args) -> bytes:
    """A worker's question during a call: the reference of softmax, on ``args``."""
    tensors: list[torch.Tensor] = []
    header = {"op": "callback", "exercise": "softmax", "args": codec.encode_value(list(args), tensors),
              "kwargs": codec.encode_value({}, tensors)}
    return encoded(header, tensors)


def answer_of(value, **trees) -> bytes:
    """A worker's successful answer holding ``value`` (and other value trees, as ``inputs=...``)."""
    tensors: list[torch.Tensor] = []
    header = {"ok": True, "value": codec.encode_value(value, tensors)}
    header.update({key: codec.encode_value(tree, tensors) for key, tree in trees.items()})
    return encoded(header, tensors)


def paths(doc, prefix=()):
    """Every place in a JSON document (dict keys, list indices), outermost first."""
    yield prefix
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    for key, value in items:
        yield from paths(value, prefix + (key,))


@st.composite
def mutated(draw, raw: bytes) -> bytes:
    """``raw`` (a valid message) with one field replaced, removed or given a stray sibling."""
    doc, payload = split(raw)
    doc = copy.deepcopy(doc)
    path = draw(st.sampled_from(list(paths(doc))[1:]))
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    key, action = path[-1], draw(st.sampled_from(["replace", "remove", "extra"]))
    if action == "replace":
        parent[key] = draw(ANY)
    elif action == "remove":
        del parent[key]
    elif isinstance(parent[key], dict):
        parent[key][draw(st.text(max_size=6))] = draw(ANY)
    else:
        parent[key] = [parent[key], draw(ANY)]
    return joined(doc, payload)


X = torch.randn(3, 4)
VIEW = torch.randn(4, 3, dtype=torch.float64).transpose(0, 1)  # travels with a non-identity perm
CALL_ANSWER = answer_of(X)
RICH_ANSWER = answer_of((VIEW, [1, 2.5, "s", None, True, 2**60, float("inf")], {"k": torch.ones(2, dtype=torch.int64)}))
INPUTS_ANSWER = answer_of(X, inputs=[[X], {}])
GRADS_ANSWER = answer_of(X, grads=[X])
ERROR_ANSWER = encoded({"ok": False, "error": {"kind": "exception", "type": "ValueError", "message": "no",
                                               "file": "softmax.py", "line": 3, "code": "raise ValueError('no')",
                                               "traceback": "..."}})
MISSING_ANSWER = encoded({"ok": False, "error": {"kind": "missing_function", "available": ["softmx", "helper"]}})
HELLO = encoded({"ok": True, "protections": ["limits: no core dumps"]})
OK = encoded({"ok": True})
END = encoded({"op": "end"})  # what a worker once sent after a path of calls: no answer now
QUESTION = question_of(X)
VALID = [CALL_ANSWER, RICH_ANSWER, INPUTS_ANSWER, GRADS_ANSWER, ERROR_ANSWER, MISSING_ANSWER, HELLO, OK, QUESTION]
MUTATED = st.sampled_from(VALID).flatmap(mutated)
ARBITRARY = st.builds(joined, st.dictionaries(
    st.sampled_from(["ok", "op", "value", "inputs", "grads", "error", "protections", "tensors", "devices", "x"]),
    ANY, max_size=5), st.binary(max_size=64))


# ---------------------------------------------------------------- the codec


def receive(raw: bytes) -> tuple[dict, list]:
    """``raw`` as a peer sent it, then closed its side: what recv_message makes of it."""
    a, b = socket.socketpair()
    with a, b:
        a.sendall(raw)
        a.shutdown(socket.SHUT_WR)
        return codec.recv_message(b, time.monotonic() + 2)


def decoded_or_refused(raw: bytes) -> None:
    """The property: a message is decoded to well-formed tensors, a checked answer and its
    values, or refused with a ProtocolError (PeerClosed: a length that announced more than
    came), at any of those steps."""
    try:
        header, tensors = receive(raw)
    except codec.ProtocolError:
        return
    assert len(header["devices"]) == len(tensors)
    for t in tensors:
        assert isinstance(t, torch.Tensor) and t.dtype in codec.DTYPES.values() and t.dim() <= codec.MAX_DIMS
    with contextlib.suppress(codec.ProtocolError):
        codec.check_answer(header, tensors)
        for key in codec.ANSWER_TREES & set(header):
            codec.decode_value(header[key], tensors)


@given(MUTATED)
@FUZZ
def test_a_mutated_message_is_decoded_or_refused(raw):
    """Does a valid message with any one field replaced, removed or doubled decode to checked
    tensors and values, or raise ProtocolError, and nothing else?"""
    decoded_or_refused(raw)


@given(ARBITRARY)
@FUZZ
def test_an_arbitrary_header_is_decoded_or_refused(raw):
    """Does any JSON header with the fields of a message, and any bytes after it, decode or
    raise ProtocolError, and nothing else?"""
    decoded_or_refused(raw)


TREE_KINDS = st.sampled_from(["tensor", "none", "bool", "int", "float", "str", "tuple", "list", "dict", "other", "x"])
TREES = st.recursive(
    st.fixed_dictionaries({"t": TREE_KINDS | ANY}, optional={"v": ANY, "i": ANY, "type": ANY, "items": ANY}),
    lambda inner: st.fixed_dictionaries({"t": TREE_KINDS, "items": st.lists(inner, max_size=3)
                                         | st.dictionaries(st.text(max_size=4), inner, max_size=3)}),
    max_leaves=10) | ANY


@given(TREES)
@FUZZ
def test_any_value_tree_is_decoded_or_refused(tree):
    """Does decode_value turn any JSON value into a value or a ProtocolError, nothing else?"""
    try:
        codec.decode_value(tree, [torch.zeros(2)])
    except codec.ProtocolError:
        pass


def test_a_null_in_a_permutation_is_refused():
    """Is the red team's header (shape [3], perm [null, 0]) a ProtocolError, not a TypeError?"""
    doc, payload = split(answer_of(torch.zeros(3)))
    doc["tensors"][0]["perm"] = [None, 0]
    with pytest.raises(codec.ProtocolError, match="permutation"):
        receive(joined(doc, payload))


# ---------------------------------------------------------------- the grader, with a fake worker


class FakeWorker(threading.Thread):
    """The far end of a worker's channel: answers the start message with ``hello``, a load
    with ok, and a call (or a path of calls) with ``answer``, raw bytes, then closes its side."""

    def __init__(self, channel: socket.socket, hello: bytes, answer: bytes):
        super().__init__(daemon=True)
        self.channel, self.hello, self.answer = channel, hello, answer

    def run(self) -> None:
        with contextlib.suppress(codec.ProtocolError, OSError), self.channel:
            while True:
                request, _ = codec.recv_message(self.channel)
                op = request.get("op")
                self.channel.sendall({None: self.hello, "load": OK}.get(op, self.answer))
                if op == "call":
                    self.channel.shutdown(socket.SHUT_WR)  # a message cut short ends here, not at a deadline


class FakeZygote:
    """Forks nothing: each "worker" is a sleeping process of its own session (what the
    grader kills) and a FakeWorker thread at the other end of its channel."""

    def __init__(self, answer: bytes, hello: bytes = HELLO):
        self.answer, self.hello = answer, hello
        self.children: dict[int, subprocess.Popen] = {}

    def fork(self, *_args, **_kwargs) -> WorkerProcess:
        ours, theirs = socket.socketpair()
        child = subprocess.Popen(["sleep", "30"], start_new_session=True)
        self.children[child.pid] = child
        FakeWorker(theirs, self.hello, self.answer).start()
        return WorkerProcess(self, child.pid, ours)

    def reap(self, pid: int) -> str:
        return f"exit {self.children.pop(pid).wait()}"

    def release(self, pid: int) -> None:
        self.reap(pid)

    def sweep(self, uid: int) -> None:
        pass


COURSE = load_course(ROOT / "course.yaml")
SOFTMAX = COURSE.exercise("softmax")
SUBMISSION = load_submission("solutions", ROOT / "solutions")


@contextlib.contextmanager
def student_code(answer: bytes, hello: bytes = HELLO):
    code = StudentCode(COURSE, SUBMISSION, FakeZygote(answer, hello))
    code.checked.update({e.id: None for e in COURSE.exercises})  # the static scan passed: answers are the subject here
    try:
        yield code
    finally:
        code.close()


def call_answered_with(answer: bytes, **options) -> dict | faults.StudentFault:
    """What ``StudentCode.call`` of softmax makes of ``answer``: its result, or its fault.
    Any other exception escapes: that is the bug these tests look for."""
    with student_code(answer) as code:
        try:
            result = code.call(SOFTMAX, (X.clone().requires_grad_(),), {}, **options)
        except faults.StudentFault as fault:
            assert not isinstance(fault, faults.CrashFault) or (not code.worker.alive and SOFTMAX.id in code.dead)
            assert set(code.dead) <= {SOFTMAX.id}  # the submission's other exercises lose nothing
            return fault
        assert code.worker.alive and not code.dead
        return result


CALL_OPTIONS = st.sampled_from([{}, {"return_inputs": True}, {"grad_outputs": [torch.ones(3, 4)]}])


@given(MUTATED, CALL_OPTIONS)
@FUZZ
def test_a_mutated_answer_is_a_fault_of_that_call(raw, options):
    """Is a call answered with any one field of a valid message replaced, removed or doubled
    a result or a StudentFault (a crash when the answer is malformed), never another error?"""
    call_answered_with(raw, **options)


@given(ARBITRARY | st.binary(max_size=80), CALL_OPTIONS)
@FUZZ
def test_an_arbitrary_answer_is_a_fault_of_that_call(raw, options):
    """Is a call answered with any header, or any bytes at all, a result or a StudentFault?"""
    call_answered_with(raw, **options)


@pytest.mark.parametrize("shape, field, value", [
    ((3,), "perm", [None, 0]), ((2, 2), "perm", [True, False]), ((3,), "dtype", ["float32"]),
    ((1,), "dtype", "bool"), ((3,), "nbytes", True), ((3,), "device", 7), ((3,), "device", "cuda:999x"),
    ((3,), "grad", "yes"), ((3,), "shape", [3, None]), ((3,), "shape", [0, 2**30, 2**30]),
])
def test_a_forged_tensor_header_crashes_the_call(shape, field, value):
    """Does the red team's answer (shape [3], perm [null, 0]) and its kin crash that call,
    in words, instead of raising an internal grader error for every test?"""
    doc, payload = split(answer_of(torch.zeros(shape)))
    doc["tensors"][0][field] = value
    fault = call_answered_with(joined(doc, payload))
    assert isinstance(fault, faults.CrashFault) and fault.status == "crashed"
    assert "broke the protocol" in fault.message


GRAD = {"grad_outputs": [torch.ones(3, 4)]}
UNFIT = {
    "inputs_missing": (answer_of(X), {"return_inputs": True}),
    "fewer_inputs_than_sent": (answer_of(X, inputs=[[], {}]), {"return_inputs": True}),  # nothing to compare
    "inputs_not_a_list": (answer_of(X, inputs=[X, {}]), {"return_inputs": True}),
    "no_gradients": (answer_of(X, grads=[]), GRAD),
    "gradient_not_a_tensor": (answer_of(X, grads=["x"]), GRAD),
    "inputs_nobody_asked_for": (answer_of(X, inputs=[[X], {}]), {}),
    "no_value": (encoded({"ok": True}), {}),
    "ok_as_an_int": (encoded({"ok": 1, "value": {"t": "none"}}), {}),
    "failure_without_error": (encoded({"ok": False}), {}),
    "201_names": (encoded({"ok": False, "error": {"kind": "missing_function", "available": ["x" * 10] * 201}}), {}),
    "message_not_text": (encoded({"ok": False, "error": {"message": ["not", "text"]}}), {}),
    "line_a_dict": (encoded({"ok": False, "error": {"line": {"no": 1}, "file": "softmax.py"}}), {}),
    "end_instead_of_answer": (END, {}),
    "question_without_callback": (QUESTION, {}),
}


@pytest.mark.parametrize("answer, options", list(UNFIT.values()), ids=list(UNFIT))
def test_an_answer_that_does_not_fit_the_call_crashes_it(answer, options):
    """Is an answer that is well formed but not what the call asked for a crash of the call?"""
    fault = call_answered_with(answer, **options)
    assert isinstance(fault, faults.CrashFault), fault


def test_valid_answers_still_arrive():
    """Do the unmutated answers give the result, the inputs, the gradients and the error in words?"""
    assert torch.equal(call_answered_with(CALL_ANSWER)["value"], X)
    assert call_answered_with(INPUTS_ANSWER, return_inputs=True)["inputs"][0][0].shape == X.shape
    assert torch.equal(call_answered_with(GRADS_ANSWER, grad_outputs=[torch.ones(3, 4)])["grads"][0], X)
    error = call_answered_with(ERROR_ANSWER)
    assert isinstance(error, faults.ErrorFault) and "ValueError: no (softmax.py line 3" in error.message
    missing = call_answered_with(MISSING_ANSWER)
    assert isinstance(missing, faults.NotImplementedFault) and "Did you mean softmx?" in missing.message


def test_a_codec_bug_costs_the_worker_not_the_grader(monkeypatch):
    """Does an exception the decoder was never meant to raise still end as a crash of the call?"""
    def broken(header, tensors):
        raise TypeError("a bug")

    with student_code(CALL_ANSWER) as code:
        code.prepare(SOFTMAX)  # the worker started and loaded softmax with the real checks
        monkeypatch.setattr(codec, "check_answer", broken)
        with pytest.raises(faults.CrashFault, match="could not be read .TypeError"):
            code.call(SOFTMAX, (X,), {})
        assert not code.worker.alive


@given(MUTATED | ARBITRARY)
@FUZZ
def test_a_mutated_path_answer_is_a_reply_or_a_fault(raw):
    """Does a path of calls (grader.run.replay) answered with fuzzed bytes give replies, each an
    answer or a fault, never an exception?"""
    tensors: list[torch.Tensor] = []
    request = {"op": "call", "exercise": SOFTMAX.id, "args": codec.encode_value([X], tensors),
               "kwargs": codec.encode_value({}, tensors), "return_inputs": False, "grad_outputs": None}
    with student_code(raw) as code:
        code.prepare(SOFTMAX)
        replies = code.exchange_path(SOFTMAX, [(request, tensors, b"\0" * 20)])
    assert all((r.answer is None) != (r.fault is None) for r in replies)


@given(mutated(HELLO) | ARBITRARY)
@FUZZ
def test_a_mutated_hello_is_a_worker_that_did_not_start(raw):
    """Does a malformed first answer of a new worker say the sandbox could not start, and a
    well-formed one leave the protections as a list of text?"""
    with student_code(OK, hello=raw) as code:
        try:
            code.prepare(SOFTMAX)
        except RuntimeError as exc:
            assert "could not start a worker" in str(exc)
        else:
            assert all(isinstance(p, str) for p in code.protections)


def test_a_question_the_grader_cannot_answer_ends_the_worker():
    """Does a worker's question whose answer raises end that worker (its channel would be out of step)?"""
    zygote = FakeZygote(QUESTION)
    worker = zygote.fork()

    def unanswerable(question, tensors):
        raise KeyError(question["exercise"])

    with pytest.raises(WorkerDied) as died:
        worker.request({"op": "call"}, timeout=2, callback=unanswerable)
    assert "could not be answered (KeyError)" in died.value.detail and not worker.alive


ERROR_FIELDS = st.sampled_from(sorted(codec.ERROR_FIELDS | {"x"}))


@given(st.dictionaries(ERROR_FIELDS, ANY, max_size=6) | ANY, st.sampled_from(["load", "call"]))
@FUZZ
def test_describe_reads_any_error_report(error, op):
    """Does any error report, whatever its fields hold, give a fault with a message in words?"""
    fault = _describe(SOFTMAX, error, op)
    assert isinstance(fault, faults.StudentFault) and isinstance(fault.message, str) and len(fault.message) < 2000


# ---------------------------------------------------------------- the comparisons


def _tensor(spec: tuple) -> torch.Tensor:
    shape, dtype = spec
    return torch.zeros(shape, dtype=codec.DTYPES[dtype])


TENSORS = st.tuples(st.lists(st.integers(0, 3), max_size=3).map(tuple), st.sampled_from(sorted(codec.DTYPES))).map(_tensor)
DECODED = st.recursive(
    TENSORS | st.none() | st.booleans() | st.integers(-10**400, 10**400) | st.floats() | st.text(max_size=8)
    | st.builds(codec.Opaque, st.text(max_size=8)),
    lambda inner: st.lists(inner, max_size=3) | st.lists(inner, max_size=3).map(tuple)
    | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8)


@given(DECODED)
@FUZZ
def test_comparisons_fail_in_words_on_any_decoded_value(got):
    """Do close, pair and unchanged turn any value a worker can send (not a tensor, the wrong
    structure, an odd dtype) into a pass or an AssertionError, never a TypeError?"""
    expect = Expect(dict(SOFTMAX.tolerance))
    expected = torch.zeros(2, 3)
    checks = [lambda: expect.close(got, expected), lambda: expect.pair(got),
              lambda: expect.unchanged([expected], got, ["x"]), lambda: expect.unchanged([expected], [got], ["x"])]
    for check in checks:
        try:
            check()
        except AssertionError as exc:
            assert str(exc)
