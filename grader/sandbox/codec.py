"""The wire format between the grader and a worker.

A message is ``u32 header length | JSON header | raw tensor bytes...``. The header holds a
value tree (``{"t": "tensor", "i": 0}``, ``{"t": "tuple", "items": [...]}``, ...) and a
``tensors`` table of ``{dtype, shape, perm, nbytes, device, grad}``. Nothing is ever
unpickled, and nothing a peer sends is trusted: every field of the tensor table (a
whitelisted dtype, shape, permutation, exact byte length, device, grad flag) and every node
of a value tree (its kind, exactly its fields, their types, sizes, depth, node count) is
checked, and the data is copied out into fresh tensors. ``check_answer`` then checks the
rest of what a worker may send the grader (its answers, questions and error reports).

Non-contiguous tensors (a transposed view, say) travel as their contiguous storage order
plus the permutation that restores the view, so a worker sees the same strides the test
built.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import socket
import struct
import time
from typing import Any, NamedTuple, NoReturn, Sequence

import torch

DTYPES: dict[str, torch.dtype] = {
    "float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32,
    "float64": torch.float64, "int8": torch.int8, "int16": torch.int16, "int32": torch.int32,
    "int64": torch.int64, "uint8": torch.uint8, "bool": torch.bool,
}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}
ITEMSIZE = {dtype: torch.empty((), dtype=dtype).element_size() for dtype in DTYPES.values()}

MAX_HEADER_BYTES = 4 << 20
MAX_PAYLOAD_BYTES = 256 << 20
MAX_TENSORS = 64
MAX_DIMS = 8
MAX_DEPTH = 4
MAX_ITEMS = 64
MAX_NODES = 4096  # in one value tree
MAX_TEXT = 4000
MAX_KEY = 200  # a dict key, a type name
MAX_INT_DIGITS = 400  # a longer int travels as an opaque value

_LENGTH = struct.Struct(">I")


class ProtocolError(Exception):
    """A message broke the wire format (garbage, forged header, oversize, bad dtype)."""


class PeerClosed(ProtocolError):
    """The other side closed the channel (the worker died)."""


class Timeout(Exception):
    """No complete message before the deadline."""


# ---------------------------------------------------------------- value trees


_INT_LIMIT = 10**MAX_INT_DIGITS
_BIG_INT = re.compile(rf"-?[0-9]{{1,{MAX_INT_DIGITS}}}")
_NON_FINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


class _TreeWriter:
    """Encodes one value; a container fits only while the tree stays within MAX_NODES nodes."""

    def __init__(self, tensors: list[torch.Tensor]):
        self.tensors = tensors
        self.nodes = 1  # the root's node, reserved

    def write(self, value: Any, depth: int) -> dict:
        if isinstance(value, torch.Tensor):
            self.tensors.append(value)
            return {"t": "tensor", "i": len(self.tensors) - 1}
        if value is None:
            return {"t": "none"}
        if isinstance(value, bool):
            return {"t": "bool", "v": value}
        # subclasses (an IntEnum, numpy's float64, torch.return_types) travel as their base type
        if isinstance(value, int) and abs(value) < _INT_LIMIT:
            return {"t": "int", "v": int(value) if abs(value) < 2**53 else str(int(value))}
        if isinstance(value, float):
            return {"t": "float", "v": float(value) if math.isfinite(value) else repr(float(value))}
        if isinstance(value, str):
            return {"t": "str", "v": str(value[:MAX_TEXT])}
        if isinstance(value, (tuple, list)) and self._fits(value, depth):
            kind = "tuple" if isinstance(value, tuple) else "list"
            return {"t": kind, "items": [self.write(v, depth + 1) for v in value]}
        if (isinstance(value, dict) and all(isinstance(k, str) and len(k) <= MAX_KEY for k in value)
                and self._fits(value, depth)):
            return {"t": "dict", "items": {k: self.write(v, depth + 1) for k, v in value.items()}}
        # Anything else is described, never transported: the grader only needs to say what it was.
        return {"t": "other", "type": f"{type(value).__module__}.{type(value).__qualname__}"[:MAX_KEY]}

    def _fits(self, container: tuple | list | dict, depth: int) -> bool:
        """Reserve the nodes of a container's items, if depth and the node budget allow them."""
        if depth >= MAX_DEPTH or len(container) > MAX_ITEMS or self.nodes + len(container) > MAX_NODES:
            return False
        self.nodes += len(container)
        return True


def encode_value(value: Any, tensors: list[torch.Tensor]) -> dict:
    """Describe ``value`` as a JSON tree; tensors are appended to ``tensors``."""
    return _TreeWriter(tensors).write(value, 0)


class Opaque:
    """A value a worker returned that cannot travel (a numpy array, a generator...)."""

    def __init__(self, type_name: str):
        self.type_name = type_name

    def __repr__(self) -> str:
        return f"<{self.type_name}>"


class _TreeReader:
    """Decodes one (possibly hostile) tree: every node is checked, its kind, exactly its
    fields, their types (as JSON gives them: a bool is no int) and sizes, the depth of
    containers and the number of nodes, as the writer makes them; anything odd is a
    ProtocolError."""

    def __init__(self, tensors: list[torch.Tensor]):
        self.tensors = tensors
        self.nodes = 0

    def read(self, tree: Any, depth: int) -> Any:
        self.nodes += 1
        if type(tree) is not dict or self.nodes > MAX_NODES:
            raise ProtocolError("malformed value")
        kind = tree.get("t")
        entry = self._READERS.get(kind) if type(kind) is str else None
        if entry is None:
            raise ProtocolError(f"unknown value kind {str(kind)[:40]!r}")
        field, read = entry  # every kind has one field besides "t", or none
        if len(tree) != (1 if field is None else 2) or (field is not None and field not in tree):
            raise ProtocolError(f"malformed {kind}")
        return read(self, tree.get(field), depth)

    def _tensor(self, index: Any, _depth: int) -> torch.Tensor:
        if type(index) is not int or not 0 <= index < len(self.tensors):
            raise ProtocolError("tensor index out of range")
        return self.tensors[index]

    def _none(self, _v: None, _depth: int) -> None:
        return None

    def _bool(self, v: Any, _depth: int) -> bool:
        if type(v) is not bool:
            raise ProtocolError("malformed bool")
        return v

    def _int(self, v: Any, _depth: int) -> int:
        if type(v) is str and _BIG_INT.fullmatch(v):
            return int(v)
        if type(v) is not int or abs(v) >= 2**53:
            raise ProtocolError("malformed int")
        return v

    def _float(self, v: Any, _depth: int) -> float:
        if type(v) is str and v in _NON_FINITE:
            return _NON_FINITE[v]
        if type(v) is not float or not math.isfinite(v):
            raise ProtocolError("malformed float")
        return v

    def _str(self, v: Any, _depth: int) -> str:
        if type(v) is not str or len(v) > MAX_TEXT:
            raise ProtocolError("malformed str")
        return v

    def _sequence(self, items: Any, depth: int) -> list:
        if type(items) is not list or len(items) > MAX_ITEMS or depth >= MAX_DEPTH:
            raise ProtocolError("malformed sequence")
        return [self.read(v, depth + 1) for v in items]

    def _tuple(self, items: Any, depth: int) -> tuple:
        return tuple(self._sequence(items, depth))

    def _dict(self, items: Any, depth: int) -> dict:
        if (type(items) is not dict or len(items) > MAX_ITEMS or depth >= MAX_DEPTH
                or not all(type(k) is str and len(k) <= MAX_KEY for k in items)):
            raise ProtocolError("malformed dict")
        return {k: self.read(v, depth + 1) for k, v in items.items()}

    def _other(self, type_name: Any, _depth: int) -> Opaque:
        if type(type_name) is not str or len(type_name) > MAX_KEY:
            raise ProtocolError("malformed other")
        return Opaque(type_name)

    _READERS = {"tensor": ("i", _tensor), "none": (None, _none), "bool": ("v", _bool), "int": ("v", _int),
                "float": ("v", _float), "str": ("v", _str), "list": ("items", _sequence),
                "tuple": ("items", _tuple), "dict": ("items", _dict), "other": ("type", _other)}


def decode_value(tree: Any, tensors: list[torch.Tensor]) -> Any:
    """Rebuild a value from a (possibly hostile) tree; raises ProtocolError on anything odd."""
    return _TreeReader(tensors).read(tree, 0)


# ---------------------------------------------------------------- tensors


def _storage_order(t: torch.Tensor) -> list[int]:
    """The permutation that lists t's dimensions from the largest stride to the smallest."""
    return sorted(range(t.dim()), key=lambda d: (-t.stride(d), d))


def _tensor_entry(t: torch.Tensor) -> tuple[dict, memoryview]:
    grad = bool(t.requires_grad)
    t = t.detach()
    dtype = DTYPE_NAMES.get(t.dtype)
    if dtype is None:
        raise TypeError(f"tensors of dtype {t.dtype} cannot be sent")
    if t.device.type not in ("cpu", "cuda"):
        raise TypeError(f"tensors on {t.device} cannot be sent")
    if t.is_contiguous():
        perm, base = list(range(t.dim())), t
    else:
        perm = _storage_order(t)
        base = t.permute(perm).contiguous()  # a transposed view is already contiguous here
    if base.device.type != "cpu":
        base = base.cpu()
    raw = base.reshape(-1).view(torch.uint8).numpy() if base.numel() else b""
    entry = {"dtype": dtype, "shape": list(base.shape), "perm": perm, "nbytes": len(memoryview(raw).cast("B")),
             "device": str(t.device), "grad": grad}
    return entry, memoryview(raw).cast("B")


class _Entry(NamedTuple):
    """One tensor of a message, as its header announced it (checked)."""

    dtype: torch.dtype
    shape: list[int]
    perm: list[int]
    nbytes: int
    device: str
    grad: bool


_ENTRY_FIELDS = set(_Entry._fields)
_DEVICE = re.compile(r"(cpu|cuda(:[0-9]{1,2})?)")


def _checked_entry(entry: Any) -> _Entry:
    """Validate one tensor header from a peer: exactly its six fields, a whitelisted dtype, a
    sane shape, a true permutation of its dimensions, the exact byte length, a CPU or CUDA
    device and a bool grad flag (types as JSON gives them: a bool is no int)."""
    if type(entry) is not dict or entry.keys() != _ENTRY_FIELDS:
        raise ProtocolError("malformed tensor header")
    name, shape, perm, nbytes, device, grad = (entry[f] for f in _Entry._fields)
    dtype = DTYPES.get(name) if type(name) is str else None
    if dtype is None:
        raise ProtocolError(f"dtype {str(name)[:40]!r} is not allowed")
    if type(shape) is not list or len(shape) > MAX_DIMS or not all(type(s) is int and 0 <= s < 2**31 for s in shape):
        raise ProtocolError("malformed tensor shape")
    numel = math.prod(shape)
    if numel == 0 and math.prod(max(s, 1) for s in shape) > MAX_PAYLOAD_BYTES:
        raise ProtocolError("malformed tensor shape")  # an empty tensor whose strides overflow
    if type(perm) is not list or not all(type(p) is int for p in perm) or sorted(perm) != list(range(len(shape))):
        raise ProtocolError("malformed tensor permutation")
    if type(nbytes) is not int or nbytes != numel * ITEMSIZE[dtype]:
        raise ProtocolError("tensor byte length does not match its shape")
    if type(device) is not str or (device != "cpu" and not _DEVICE.fullmatch(device)):
        raise ProtocolError("malformed tensor device")
    if type(grad) is not bool or (grad and not dtype.is_floating_point):
        raise ProtocolError("malformed tensor grad flag")
    return _Entry(dtype, shape, perm, nbytes, device, grad)


def placement(device: str) -> torch.device:
    """Where a received tensor goes: the CUDA device it was sent from when this process has
    it, else the CPU (the grader then sees the claimed device in ``header["devices"]``)."""
    if device.startswith("cuda") and torch.cuda.is_available():
        place = torch.device(device)
        if place.index is None or place.index < torch.cuda.device_count():
            return place
    return torch.device("cpu")


def _build_tensor(dtype: torch.dtype, shape: list[int], perm: list[int], data: bytearray, grad: bool,
                  device: torch.device) -> torch.Tensor:
    if data:
        base = torch.frombuffer(data, dtype=torch.uint8).view(dtype).reshape(shape)
    else:
        base = torch.empty(shape, dtype=dtype)
    if device.type != "cpu":
        base = base.to(device)
    if grad:
        base.requires_grad_(True)
    if perm == sorted(perm):
        return base  # stored in its own order: a contiguous tensor
    inverse = [0] * len(perm)
    for i, p in enumerate(perm):
        inverse[p] = i
    return base.permute(inverse)


# ---------------------------------------------------------------- messages


def _encode(header: dict, tensors: Sequence[torch.Tensor]) -> tuple[bytes, list[memoryview], bytes]:
    """A message's JSON header, its tensors' raw bytes, and the digest of both."""
    entries, buffers = [], []
    for t in tensors:
        entry, raw = _tensor_entry(t)
        entries.append(entry)
        if len(raw):
            buffers.append(raw)
    blob = json.dumps(dict(header, tensors=entries), separators=(",", ":"), allow_nan=False).encode()
    if len(blob) > MAX_HEADER_BYTES:
        raise ValueError("message header too large")
    digest = hashlib.blake2b(blob, digest_size=20)
    for raw in buffers:
        digest.update(raw)
    return blob, buffers, digest.digest()


def send_message(sock: socket.socket, header: dict, tensors: list[torch.Tensor] = ()) -> bytes:
    """Send one message; returns its digest (see ``recv_message``)."""
    blob, buffers, digest = _encode(header, tensors)
    parts = [_LENGTH.pack(len(blob)) + blob, *buffers]
    if sum(len(p) for p in parts) <= 1 << 20:
        sock.sendall(b"".join(parts))  # small: one system call
    else:
        for part in parts:
            sock.sendall(part)
    return digest


def fingerprint(header: dict, tensors: Sequence[torch.Tensor] = ()) -> bytes:
    """The digest ``send_message`` would return for this message, without sending it: equal
    fingerprints mean the same header and bit-identical tensors (dtype, shape, storage
    order, device and grad flag included)."""
    return _encode(header, tensors)[2]


def _recv_exact(sock: socket.socket, n: int, deadline: float | None) -> bytearray:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Timeout()
            sock.settimeout(remaining)
        try:
            k = sock.recv_into(view[got:], n - got)
        except socket.timeout:
            raise Timeout() from None
        except (ConnectionResetError, BrokenPipeError):
            k = 0
        if k == 0:
            raise PeerClosed("the other side closed the channel")
        got += k
    return buf


def recv_message(sock: socket.socket, deadline: float | None = None,
                 digest: "hashlib.blake2b | None" = None,
                 max_payload: int = MAX_PAYLOAD_BYTES) -> tuple[dict, list[torch.Tensor]]:
    """Read one message; with a deadline (``time.monotonic()`` seconds) raise Timeout after it.
    A payload announced larger than ``max_payload`` bytes is refused before any of it is read.

    ``digest`` (``hashlib.blake2b(digest_size=20)``) is fed the message's bytes as they came:
    its ``digest()`` then equals what ``send_message`` returned on the other side.
    """
    (length,) = _LENGTH.unpack(_recv_exact(sock, _LENGTH.size, deadline))
    if length > MAX_HEADER_BYTES:
        raise ProtocolError("message header too large")
    blob = _recv_exact(sock, length, deadline)
    if digest is not None:
        digest.update(blob)
    header = _parse_header(blob)
    entries = header.pop("tensors")
    if not isinstance(entries, list) or len(entries) > MAX_TENSORS:
        raise ProtocolError("malformed tensor table")
    checked = [_checked_entry(e) for e in entries]
    if sum(c.nbytes for c in checked) > min(max_payload, MAX_PAYLOAD_BYTES):
        raise ProtocolError("message payload too large")
    tensors = []
    for entry in checked:
        data = _recv_exact(sock, entry.nbytes, deadline)
        if digest is not None:
            digest.update(data)
        tensors.append(_build_tensor(entry.dtype, entry.shape, entry.perm, data, entry.grad, placement(entry.device)))
    header["devices"] = [c.device for c in checked]
    return header, tensors


def _refuse_constant(name: str) -> NoReturn:
    raise ProtocolError(f"message header holds {name}, which JSON does not have")


def _parse_header(blob: bytearray) -> dict:
    """A message's JSON header: an object with a ``tensors`` table (strict JSON: no NaN)."""
    try:
        header = json.loads(blob, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):  # bad JSON or UTF-8, an integer of over 4300 digits, deep nesting
        raise ProtocolError("message header is not JSON") from None
    if not isinstance(header, dict) or "tensors" not in header:
        raise ProtocolError("message header is not an object with a tensor table")
    return header


# ---------------------------------------------------------------- what a worker may say

# Each text field of a worker's error report, with its longest allowed length.
ERROR_TEXT = {"kind": 40, "type": MAX_TEXT, "message": MAX_TEXT, "module": MAX_KEY, "file": MAX_TEXT,
              "code": MAX_TEXT, "kernel": MAX_KEY, "traceback": MAX_TEXT, "exercise": MAX_KEY}
ERROR_FIELDS = {*ERROR_TEXT, "line", "available"}
ANSWER_TREES = {"value", "inputs", "grads"}
MAX_PROTECTIONS = 64
MAX_NAMES = 200  # names in a missing function's ``available`` list


def check_answer(header: dict, tensors: list[torch.Tensor]) -> None:
    """Check a message from a worker, field by field, against what a worker may send the
    grader: an answer ``{"ok": true, ...}`` or ``{"ok": false, "error": {...}}``, a question
    ``{"op": "callback", ...}`` during a call. Raises
    ProtocolError on any other field, type or size. ``recv_message`` checked the tensors;
    the value trees of an answer are checked node by node where they are decoded
    (``decode_value``), once."""
    fields = set(header) - {"devices"}  # devices: recv_message's own record of the tensor table
    op = header.get("op")
    if op == "callback" and fields == {"op", "exercise", "args", "kwargs"}:
        _check_question(header, tensors)
        return
    ok = header.get("ok")
    if "op" in header or not isinstance(ok, bool):
        raise ProtocolError("a message that is no answer or question")
    if ok:
        _check_success(header, fields)
    elif fields != {"ok", "error"}:
        raise ProtocolError("a failure without its error report alone")
    else:
        _check_error(header["error"])


def _check_question(header: dict, tensors: list[torch.Tensor]) -> None:
    """A worker's question during a call: which exercise's reference, on which arguments."""
    if not _is_text(header["exercise"], MAX_KEY):
        raise ProtocolError("malformed question")
    if not (isinstance(decode_value(header["args"], tensors), list)
            and isinstance(decode_value(header["kwargs"], tensors), dict)):
        raise ProtocolError("a question's arguments are not a list and a dict")


def _check_success(header: dict, fields: set[str]) -> None:
    """A successful answer: the protections of a started worker, the value trees of a call."""
    if not fields <= {"ok", "protections", *ANSWER_TREES}:
        raise ProtocolError("an answer with fields no answer has")
    protections = header.get("protections", [])
    if not (isinstance(protections, list) and len(protections) <= MAX_PROTECTIONS
            and all(_is_text(p, MAX_TEXT) for p in protections)):
        raise ProtocolError("malformed protections")
    if not all(type(header[key]) is dict for key in fields & ANSWER_TREES):
        raise ProtocolError("an answer whose value is no value tree")


def _check_error(error: Any) -> None:
    """An error report: known fields only, each of its type and size."""
    if not isinstance(error, dict) or not set(error) <= ERROR_FIELDS:
        raise ProtocolError("malformed error report")
    for key, limit in ERROR_TEXT.items():
        if key in error and not _is_text(error[key], limit):
            raise ProtocolError(f"malformed error {key}")
    line = error.get("line")
    if line is not None and not (type(line) is int and 0 <= line < 2**31):
        raise ProtocolError("malformed error line")
    available = error.get("available", [])
    if not (isinstance(available, list) and len(available) <= MAX_NAMES
            and all(_is_text(a, MAX_TEXT) for a in available)):
        raise ProtocolError("malformed error available")


def _is_text(value: Any, limit: int) -> bool:
    return type(value) is str and len(value) <= limit
