"""The wire format between the grader and a worker.

A message is ``u32 header length | JSON header | raw tensor bytes...``. The header holds a
value tree (``{"t": "tensor", "i": 0}``, ``{"t": "tuple", "items": [...]}``, ...) and a
``tensors`` table of ``{dtype, shape, perm, nbytes, device, grad}``. Nothing is ever
unpickled: a worker's message is decoded with a dtype whitelist and checked shapes and
byte lengths, and its data is copied out into fresh tensors.

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
from typing import Any, Sequence

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
MAX_TEXT = 4000

_LENGTH = struct.Struct(">I")


class ProtocolError(Exception):
    """A message broke the wire format (garbage, forged header, oversize, bad dtype)."""


class PeerClosed(ProtocolError):
    """The other side closed the channel (the worker died)."""


class Timeout(Exception):
    """No complete message before the deadline."""


# ---------------------------------------------------------------- value trees


def encode_value(value: Any, tensors: list[torch.Tensor], depth: int = 0) -> dict:
    """Describe ``value`` as a JSON tree; tensors are appended to ``tensors``."""
    if isinstance(value, torch.Tensor):
        tensors.append(value)
        return {"t": "tensor", "i": len(tensors) - 1}
    if value is None:
        return {"t": "none"}
    if isinstance(value, bool):
        return {"t": "bool", "v": value}
    if isinstance(value, int):
        return {"t": "int", "v": value if abs(value) < 2**53 else str(value)}
    if isinstance(value, float):
        return {"t": "float", "v": value if math.isfinite(value) else repr(value)}
    if isinstance(value, str):
        return {"t": "str", "v": value[:MAX_TEXT]}
    if isinstance(value, (tuple, list)) and depth < MAX_DEPTH and len(value) <= MAX_ITEMS:
        return {"t": type(value).__name__, "items": [encode_value(v, tensors, depth + 1) for v in value]}
    if isinstance(value, dict) and depth < MAX_DEPTH and len(value) <= MAX_ITEMS and all(isinstance(k, str) for k in value):
        return {"t": "dict", "items": {k: encode_value(v, tensors, depth + 1) for k, v in value.items()}}
    # Anything else is described, never transported: the grader only needs to say what it was.
    return {"t": "other", "type": f"{type(value).__module__}.{type(value).__qualname__}"[:200]}


class Opaque:
    """A value a worker returned that cannot travel (a numpy array, a generator...)."""

    def __init__(self, type_name: str):
        self.type_name = type_name

    def __repr__(self) -> str:
        return f"<{self.type_name}>"


def decode_value(tree: Any, tensors: list[torch.Tensor], depth: int = 0) -> Any:
    """Rebuild a value from a (possibly hostile) tree; raises ProtocolError on anything odd."""
    if not isinstance(tree, dict) or depth > MAX_DEPTH + 1:
        raise ProtocolError("malformed value")
    kind = tree.get("t")
    if kind == "tensor":
        index = tree.get("i")
        if not isinstance(index, int) or not 0 <= index < len(tensors):
            raise ProtocolError("tensor index out of range")
        return tensors[index]
    if kind == "none":
        return None
    if kind in ("bool", "int", "float", "str"):
        v = tree.get("v")
        if kind == "int" and isinstance(v, str) and v.lstrip("-").isdigit() and len(v) < 400:
            return int(v)
        if kind == "float" and v in ("inf", "-inf", "nan"):
            return float(v)
        expected = {"bool": bool, "int": int, "float": (int, float), "str": str}[kind]
        if not isinstance(v, expected) or (kind != "bool" and isinstance(v, bool)):
            raise ProtocolError(f"malformed {kind}")
        return float(v) if kind == "float" else v[:MAX_TEXT] if kind == "str" else v
    if kind in ("tuple", "list"):
        items = tree.get("items")
        if not isinstance(items, list) or len(items) > MAX_ITEMS:
            raise ProtocolError("malformed sequence")
        seq = [decode_value(v, tensors, depth + 1) for v in items]
        return tuple(seq) if kind == "tuple" else seq
    if kind == "dict":
        items = tree.get("items")
        if not isinstance(items, dict) or len(items) > MAX_ITEMS:
            raise ProtocolError("malformed dict")
        return {str(k)[:200]: decode_value(v, tensors, depth + 1) for k, v in items.items()}
    if kind == "other":
        return Opaque(str(tree.get("type", "object"))[:200])
    raise ProtocolError(f"unknown value kind {kind!r}")


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


def _checked_entry(entry: Any) -> tuple[torch.dtype, list[int], list[int], int]:
    """Validate one tensor header from a peer: whitelisted dtype, sane shape, exact length."""
    if not isinstance(entry, dict):
        raise ProtocolError("malformed tensor header")
    dtype = DTYPES.get(entry.get("dtype"))
    shape, perm, nbytes = entry.get("shape"), entry.get("perm"), entry.get("nbytes")
    if dtype is None:
        raise ProtocolError(f"dtype {str(entry.get('dtype'))[:40]!r} is not allowed")
    if (not isinstance(shape, list) or len(shape) > MAX_DIMS
            or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**31 for s in shape)):
        raise ProtocolError("malformed tensor shape")
    if not isinstance(perm, list) or sorted(p for p in perm if isinstance(p, int)) != list(range(len(shape))):
        raise ProtocolError("malformed tensor permutation")
    itemsize = ITEMSIZE[dtype]
    if not isinstance(nbytes, int) or nbytes != math.prod(shape) * itemsize:
        raise ProtocolError("tensor byte length does not match its shape")
    return dtype, shape, perm, nbytes


_DEVICE = re.compile(r"^(cpu|cuda(:[0-9]{1,2})?)$")


def placement(device: Any) -> torch.device:
    """Where a received tensor goes: the CUDA device it was sent from when this process has
    one, else the CPU (the grader then sees the claimed device in ``header["devices"]``)."""
    if isinstance(device, str) and device.startswith("cuda") and _DEVICE.match(device) and torch.cuda.is_available():
        return torch.device(device)
    return torch.device("cpu")


def _build_tensor(dtype: torch.dtype, shape: list[int], perm: list[int], data: bytearray, grad: bool,
                  device: torch.device) -> torch.Tensor:
    if data:
        base = torch.frombuffer(data, dtype=torch.uint8).view(dtype).reshape(shape)
    else:
        base = torch.empty(shape, dtype=dtype)
    if device.type != "cpu":
        base = base.to(device)
    if grad and base.is_floating_point():
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
                 digest: "hashlib.blake2b | None" = None) -> tuple[dict, list[torch.Tensor]]:
    """Read one message; with a deadline (``time.monotonic()`` seconds) raise Timeout after it.

    ``digest`` (``hashlib.blake2b(digest_size=20)``) is fed the message's bytes as they came:
    its ``digest()`` then equals what ``send_message`` returned on the other side.
    """
    (length,) = _LENGTH.unpack(_recv_exact(sock, _LENGTH.size, deadline))
    if length > MAX_HEADER_BYTES:
        raise ProtocolError("message header too large")
    blob = _recv_exact(sock, length, deadline)
    if digest is not None:
        digest.update(blob)
    try:
        header = json.loads(blob)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise ProtocolError("message header is not JSON") from None
    if not isinstance(header, dict):
        raise ProtocolError("message header is not an object")
    entries = header.pop("tensors", [])
    if not isinstance(entries, list) or len(entries) > MAX_TENSORS:
        raise ProtocolError("malformed tensor table")
    checked = [_checked_entry(e) for e in entries]
    if sum(c[3] for c in checked) > MAX_PAYLOAD_BYTES:
        raise ProtocolError("message payload too large")
    tensors = []
    for (dtype, shape, perm, nbytes), entry in zip(checked, entries):
        data = _recv_exact(sock, nbytes, deadline)
        if digest is not None:
            digest.update(data)
        tensors.append(_build_tensor(dtype, shape, perm, data, entry.get("grad") is True, placement(entry.get("device"))))
    header["devices"] = [str(e.get("device", "cpu"))[:40] for e in entries]
    return header, tensors

