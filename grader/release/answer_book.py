"""The answer book: a student release's references, recorded, so that it holds no code
that solves an exercise.

A release ships no ``solutions/`` and no misconception modules (they compute with the
correct algorithm). When ``python -m grader release`` writes it, the public tests are run on
the reference solutions themselves, recording (``Recorder``):

- every call the tests make of the ``reference`` fixture, and every gradient they ask of it
  (``testing.gradients``), by a digest of its inputs;
- for every input the student's function is given, what the reference and each
  misconception of the exercise return for it (what hints and pictures compare with).

The book is ``answers.pt`` at the release's root (tensors, tuples, strings: read back with
``torch.load(weights_only=True)``, no pickled code). In the release, the ``reference``
fixture and the misconceptions answer from it (``AnswerBook``). The public tests' inputs
are seeded, so a student's check asks for exactly the inputs recorded; an input never
recorded (a blame rerun with the student's own intermediate values, say) raises
``NotRecorded``: a release's check gives no blame hint, and a test that would need such an
answer says it cannot be checked in the release.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Callable

import torch


class NotRecorded(LookupError):
    """The book has no answer for these inputs (they were not those of a public test)."""


def input_key(*parts: Any) -> str:
    """A digest of values (tensors by dtype, shape and bytes; containers walked; the rest by
    repr), the same for equal inputs whatever their strides or device."""
    digest = hashlib.sha256()

    def walk(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            tensor = value.detach().cpu().contiguous()
            digest.update(f"T{tensor.dtype}{tuple(tensor.shape)};".encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
        elif isinstance(value, (tuple, list)):
            digest.update(b"(" if isinstance(value, tuple) else b"[")
            for item in value:
                walk(item)
            digest.update(b")")
        elif isinstance(value, dict):
            digest.update(b"{")
            for key in sorted(value, key=repr):
                walk(key)
                walk(value[key])
            digest.update(b"}")
        else:
            digest.update(f"{type(value).__name__}:{value!r};".encode())

    for part in parts:
        walk(part)
    return digest.hexdigest()


def _stored(value: Any) -> Any:
    """``value`` as the book keeps it: detached CPU tensors; ``AnyOf`` as a marked tuple."""
    from ..misconceptions import AnyOf

    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, AnyOf):
        return ("any of", tuple(_stored(v) for v in value))
    if isinstance(value, (tuple, list)):
        items = [_stored(v) for v in value]
        return tuple(items) if isinstance(value, tuple) else items
    return value


def _restored(value: Any, device: torch.device | None) -> Any:
    from ..misconceptions import AnyOf

    if isinstance(value, torch.Tensor):
        return value.clone() if device is None else value.to(device)
    if isinstance(value, tuple) and len(value) == 2 and value[0] == "any of":
        return AnyOf(*(_restored(v, device) for v in value[1]))
    if isinstance(value, (tuple, list)):
        items = [_restored(v, device) for v in value]
        return tuple(items) if isinstance(value, tuple) else items
    return value


def _device_of(*values: Any) -> torch.device | None:
    for value in values:
        if isinstance(value, torch.Tensor):
            return value.device
        if isinstance(value, (tuple, list)):
            found = _device_of(*value)
            if found is not None:
                return found
        if isinstance(value, dict):
            found = _device_of(*value.values())
            if found is not None:
                return found
    return None


_MISSING = object()
RAISES = "raises"  # what the book keeps for a misconception that cannot run on an input


class AnswerBook:
    """Recorded answers: ``entries`` maps ``input_key(exercise id, kind, ...)`` to a value;
    ``misconceptions`` maps an exercise id to its misconceptions' data (name, hint, pattern)."""

    def __init__(self, entries: dict[str, Any] | None = None, misconceptions: dict[str, list] | None = None):
        self.entries = entries or {}
        self.misconception_data = misconceptions or {}

    @classmethod
    def load(cls, path: Path) -> "AnswerBook":
        data = torch.load(path, weights_only=True)
        return cls(data["entries"], data["misconceptions"])

    def save(self, path: Path) -> None:
        torch.save({"entries": self.entries, "misconceptions": self.misconception_data}, path)

    def answer(self, *key: Any) -> Any:
        found = self.entries.get(input_key(*key), _MISSING)
        if found is _MISSING:
            raise NotRecorded("the student release has no recorded answer for these inputs")
        return found

    def reference(self, exercise_id: str) -> "RecordedReference":
        return RecordedReference(self, exercise_id)

    def misconceptions(self, exercise_id: str) -> tuple:
        """The exercise's misconceptions, each computing from the book."""
        from ..misconceptions import Misconception

        def computed(name: str) -> Callable[..., Any]:
            def compute(*args: Any, **kwargs: Any) -> Any:
                value = self.answer(exercise_id, "misconception", name, args, kwargs)
                if isinstance(value, str) and value == RAISES:
                    raise NotRecorded(f"{name} cannot run on these inputs")
                return _restored(value, _device_of(args, kwargs))
            return compute

        return tuple(Misconception(m["name"], m["hint"], computed(m["name"]), m["code_pattern"])
                     for m in self.misconception_data.get(exercise_id, []))


class RecordedReference:
    """The ``reference`` fixture of a release: answers recorded inputs, raises on others."""

    def __init__(self, book: AnswerBook, exercise_id: str):
        self.book = book
        self.exercise_id = exercise_id

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _restored(self.book.answer(self.exercise_id, "call", args, kwargs), _device_of(args, kwargs))

    def gradients(self, args: tuple, grad_outputs: list, **kwargs: Any) -> list:
        key = (self.exercise_id, "gradients", args, grad_outputs, kwargs)
        return _restored(self.book.answer(*key), _device_of(args, kwargs))


class RecordingReference:
    """The real reference, writing each answer into the book being recorded."""

    def __init__(self, book: AnswerBook, exercise_id: str, function: Callable[..., Any]):
        self.book = book
        self.exercise_id = exercise_id
        self.function = function

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        value = self.function(*args, **kwargs)
        self.book.entries[input_key(self.exercise_id, "call", args, kwargs)] = _stored(value)
        return value

    def gradients(self, args: tuple, grad_outputs: list, **kwargs: Any) -> list:
        from ..testing import gradients

        value = gradients(self.function, args, grad_outputs, **kwargs)
        self.book.entries[input_key(self.exercise_id, "gradients", args, grad_outputs, kwargs)] = _stored(value)
        return value


class Recorder:
    """What a release's recording run keeps: the references' answers and, for each input the
    student's function was given, the reference's and every misconception's."""

    def __init__(self) -> None:
        self.book = AnswerBook()

    def reference(self, exercise_id: str, function: Callable[..., Any]) -> RecordingReference:
        return RecordingReference(self.book, exercise_id, function)

    def note_call(self, exercise_id: str, reference: Callable[..., Any], misconceptions: tuple,
                  args: tuple, kwargs: dict) -> None:
        """Record the answers a hint or a picture may ask for about this student call's inputs."""
        entries = self.book.entries
        with torch.no_grad():
            reference(*args, **kwargs)  # a RecordingReference: recorded on the way
            for misconception in misconceptions:
                try:
                    value = _stored(misconception.compute(*args, **kwargs))
                except Exception:  # noqa: BLE001 - it cannot run here, in the release too
                    value = RAISES
                entries[input_key(exercise_id, "misconception", misconception.name, args, kwargs)] = value
        self.book.misconception_data[exercise_id] = [
            {"name": m.name, "hint": m.hint, "code_pattern": m.code_pattern} for m in misconceptions]
