"""The wire format: exact round trips, and hostile bytes rejected (never unpickled).

Fuzzing of every field of every message a worker sends: tests/test_codec_fuzz.py.
"""
from __future__ import annotations

import json
import socket
import struct
import time

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from grader.sandbox import codec


def round_trip(value):
    a, b = socket.socketpair()
    with a, b:
        tensors: list = []
        codec.send_message(a, {"v": codec.encode_value(value, tensors)}, tensors)
        header, got = codec.recv_message(b, time.monotonic() + 5)
        return codec.decode_value(header["v"], got)


def send_raw(header: dict, payload: bytes = b""):
    a, b = socket.socketpair()
    with a, b:
        blob = json.dumps(header).encode()
        a.sendall(struct.pack(">I", len(blob)) + blob + payload)
        a.shutdown(socket.SHUT_WR)
        return codec.recv_message(b, time.monotonic() + 5)


@pytest.mark.parametrize("dtype", list(codec.DTYPES.values()))
def test_every_allowed_dtype_round_trips(dtype):
    """Does every whitelisted dtype come back bit for bit?"""
    t = (torch.randn(3, 4) * 10).to(dtype)
    got = round_trip(t)
    assert got.dtype == dtype and torch.equal(got, t)


def test_views_keep_their_layout():
    """Does a transposed view arrive as a view with the same strides?"""
    t = torch.randn(2, 3, 4).transpose(-2, -1)
    got = round_trip(t)
    assert torch.equal(got, t) and got.stride() == t.stride() and not got.is_contiguous()


def test_nested_values():
    """Do tuples, lists, dicts, None, numbers and strings survive; other objects only by name?"""
    value = (torch.zeros(2), [None, 1, 2.5, "x"], {"k": True}, torch.empty(0, 3), object())
    got = round_trip(value)
    assert torch.equal(got[0], value[0]) and got[1] == [None, 1, 2.5, "x"] and got[2] == {"k": True}
    assert got[3].shape == (0, 3) and isinstance(got[4], codec.Opaque) and "object" in got[4].type_name


@given(st.lists(st.integers(0, 5), min_size=0, max_size=4), st.sampled_from(["float32", "float64", "int64", "bool"]))
@settings(max_examples=40, deadline=None)
def test_any_shape_round_trips(shape, dtype):
    """Does any small shape of any dtype round trip exactly?"""
    t = (torch.randn(tuple(shape)) * 5).to(codec.DTYPES[dtype])
    assert torch.equal(round_trip(t), t)


@pytest.mark.parametrize("entry", [
    {"dtype": "object", "shape": [1], "perm": [0], "nbytes": 8},
    {"dtype": "float32", "shape": [4], "perm": [0], "nbytes": 8},
    {"dtype": "float32", "shape": [-1], "perm": [0], "nbytes": 4},
    {"dtype": "float32", "shape": [2, 2], "perm": [0, 0], "nbytes": 16},
    {"dtype": "float32", "shape": [2**40], "perm": [0], "nbytes": 2**42},
    {"dtype": "float32", "shape": "big", "perm": [0], "nbytes": 4},
    {"dtype": "float32", "shape": [3], "perm": [None, 0], "nbytes": 12},   # the red team's: a TypeError once
    {"dtype": "float32", "shape": [2, 2], "perm": [True, False], "nbytes": 16},
    {"dtype": ["float32"], "shape": [1], "perm": [0], "nbytes": 4},
    {"dtype": "float32", "shape": [True], "perm": [0], "nbytes": 4},
    {"dtype": "float32", "shape": [1], "perm": [0], "nbytes": 4.0},
    {"dtype": "uint8", "shape": [1], "perm": [0], "nbytes": True},
    {"dtype": "float32", "shape": [0, 2**30, 2**30], "perm": [0, 1, 2], "nbytes": 0},  # strides overflow
    {"dtype": "float32", "shape": [1], "perm": [0], "nbytes": 4, "device": "cuda:0x"},
    {"dtype": "float32", "shape": [1], "perm": [0], "nbytes": 4, "device": None},
    {"dtype": "float32", "shape": [1], "perm": [0], "nbytes": 4, "grad": 1},
    {"dtype": "int64", "shape": [1], "perm": [0], "nbytes": 8, "grad": True},
    {"dtype": "float32", "shape": [1], "perm": [0], "nbytes": 4, "extra": 0},
])
def test_forged_tensor_headers_are_rejected(entry):
    """Are bad dtypes, shapes, permutations, lengths, devices and grad flags (bools for ints
    included) refused before any data is read?"""
    entry = {"device": "cpu", "grad": False, **entry}
    with pytest.raises(codec.ProtocolError):
        send_raw({"v": {"t": "tensor", "i": 0}, "tensors": [entry]}, b"\x00" * 16)


@pytest.mark.parametrize("tree", [
    {"t": "int", "v": "--5"}, {"t": "int", "v": "\u00b2"}, {"t": "int", "v": True}, {"t": "int", "v": 2**60},
    {"t": "int", "v": "9" * 401}, {"t": "float", "v": 1e999}, {"t": "float", "v": "1e5"}, {"t": "float", "v": 1},
    {"t": "str", "v": "x" * (codec.MAX_TEXT + 1)}, {"t": "bool", "v": 0}, {"t": "tensor", "i": True},
    {"t": "tensor", "i": 1}, {"t": ["tensor"]}, {"t": "none", "v": 1}, {"t": "other", "type": 3},
    {"t": "dict", "items": {"k" * 201: {"t": "none"}}}, {"t": "list", "items": [{"t": "none"}] * 65},
    {"t": "tuple", "items": {"a": {"t": "none"}}}, {"t": "max", "items": []},
    {"t": "list", "items": [{"t": "list", "items": [{"t": "list", "items": [{"t": "list", "items": [
        {"t": "list", "items": []}]}]}]}]},
])
def test_forged_value_trees_are_rejected(tree):
    """Is every value-tree node checked: its kind, exactly its fields, their types (a bool is
    no int), sizes, the depth?"""
    with pytest.raises(codec.ProtocolError):
        codec.decode_value(tree, [torch.zeros(1)])


@pytest.mark.parametrize("blob", [b'{"tensors": [], "v": NaN}', b'{"tensors": [], "v": ' + b"1" * 5000 + b"}",
                                  b"[" * 100000 + b"]" * 100000, b'{"v": 1}', b"\xff\xfe"])
def test_headers_that_are_not_strict_json_objects_are_rejected(blob):
    """Are NaN, integers past Python's digit limit, deep nesting, a missing tensor table and
    bad UTF-8 each a ProtocolError (not a ValueError or RecursionError)?"""
    a, b = socket.socketpair()
    with a, b, pytest.raises(codec.ProtocolError):
        a.sendall(struct.pack(">I", len(blob)) + blob)
        a.shutdown(socket.SHUT_WR)
        codec.recv_message(b, time.monotonic() + 5)


def test_odd_values_travel_as_their_base_types():
    """Do a tuple subclass (what torch.max returns), a float subclass, big ints and an
    over-long dict key arrive as a tuple, a float, ints and an opaque value?"""
    import numpy as np

    got = round_trip((torch.max(torch.ones(2, 3), dim=1), np.float64("inf"), 2**60, -(10**300), 10**500, {"k" * 300: 1}))
    assert type(got[0]) is tuple and torch.equal(got[0][0], torch.ones(2))
    assert got[1] == float("inf") and got[2:4] == (2**60, -(10**300))
    assert isinstance(got[4], codec.Opaque) and isinstance(got[5], codec.Opaque)


def test_a_value_past_the_node_budget_travels_as_opaque():
    """Does a value of more than MAX_NODES nodes arrive cut to opaque parts, not refused?"""
    def nodes(v) -> int:
        return 1 + sum(map(nodes, v)) if isinstance(v, list) else 1

    got = round_trip([[[None] * 64] * 64] * 3)
    assert got[0][0] == [None] * 64 and isinstance(got[2], codec.Opaque) and nodes(got) <= codec.MAX_NODES


@given(st.binary(max_size=200))
@settings(max_examples=100, deadline=None)
def test_garbage_never_crashes_the_decoder(data):
    """Does any byte string give a message or a ProtocolError, never another exception?"""
    a, b = socket.socketpair()
    with a, b:
        a.sendall(data)
        a.shutdown(socket.SHUT_WR)
        try:
            header, tensors = codec.recv_message(b, time.monotonic() + 2)
            codec.decode_value(header.get("v", {"t": "none"}), tensors)
        except codec.ProtocolError:
            pass


def test_a_pickle_is_just_garbage():
    """Is a pickle payload treated as bytes (rejected), never unpickled?"""
    import pickle

    payload = pickle.dumps(torch.zeros(2))
    a, b = socket.socketpair()
    with a, b:
        a.sendall(payload)
        a.shutdown(socket.SHUT_WR)
        with pytest.raises(codec.ProtocolError):
            codec.recv_message(b, time.monotonic() + 2)


def test_deadline():
    """Does a silent peer raise Timeout at the deadline?"""
    a, b = socket.socketpair()
    with a, b, pytest.raises(codec.Timeout):
        codec.recv_message(b, time.monotonic() + 0.2)


def test_a_payload_over_the_readers_limit_is_refused_unread():
    """Is a message whose tensors exceed the reader's own limit refused from its header alone
    (blame caps a worker's questions at the test's own input size)?"""
    a, b = socket.socketpair()
    with a, b:
        tensors: list = []
        codec.send_message(a, {"v": codec.encode_value(torch.zeros(64), tensors)}, tensors)
        with pytest.raises(codec.ProtocolError, match="too large"):
            codec.recv_message(b, time.monotonic() + 5, max_payload=64 * 4 - 1)
        assert len(b.recv(1 << 16, socket.MSG_PEEK)) == 64 * 4  # the tensor's bytes were left unread
