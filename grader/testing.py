"""Helpers for suite authors: comparisons that explain themselves, inputs, gradients.

Step 4 of the grading path ("compare"): every check runs here, in the grader, on tensors
decoded from the worker. A failed check raises ``AssertionError`` with a message written
for the student: what was expected, what came back, where, and by how much.
"""
from __future__ import annotations

import zlib
from typing import Any, Callable, Sequence

import torch

from .compare.closeness import mismatches, tolerance_for
from .course.load import Tolerance
from .sandbox.codec import Opaque
from .sandbox.vjp import vjp


def describe(value: Any) -> str:
    """A short, student-facing description of a returned value."""
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}".replace("torch.", "")
    if isinstance(value, (tuple, list)):
        kind = "tuple" if isinstance(value, tuple) else "list"
        return f"a {kind} of {len(value)}: ({', '.join(describe(v) for v in value[:4])})"
    if value is None:
        return "None (did you forget to return?)"
    if isinstance(value, Opaque):
        return f"a {value.type_name}"
    return f"a {type(value).__name__} ({str(value)[:40]})"


def _shape_hint(got: tuple, expected: tuple) -> str:
    if len(got) == len(expected) and len(got) >= 2 and got[:-2] + (got[-1], got[-2]) == expected:
        return " Are the last two dimensions swapped?"
    if len(got) < len(expected) and expected[len(expected) - len(got):] == got:
        return " The leading batch dimensions are missing."
    if len(got) != len(expected):
        return f" It has {len(got)} dimensions instead of {len(expected)}."
    return ""


def _index_words(index: Sequence[int], dims: Sequence[str] | None, ndim: int) -> str:
    names = list(dims or ())[-ndim:] if ndim else []
    if not names:
        return "[" + ", ".join(map(str, index)) + "]"
    extra = ndim - len(names)  # leading batch dims: "batch 1", or "batch (1, 0)" for several
    words = [f"batch {index[0]}"] if extra == 1 else [f"batch ({', '.join(map(str, index[:extra]))})"] if extra else []
    return ", ".join(words + [f"{n} {i}" for n, i in zip(names, index[extra:])])


class Expect:
    """Checks bound to one exercise's tolerances (per dtype, from course.yaml)."""

    def __init__(self, tolerances: dict[str, Tolerance]):
        self.tolerances = tolerances

    def tolerance(self, dtype: torch.dtype) -> Tolerance:
        return tolerance_for(self.tolerances, dtype)

    def pair(self, got: Any, *, what: str = "your function", names: str = "(first, second)") -> tuple:
        """Check that a function returned a pair; ``names`` says which, as in ``"(output, weights)"``."""
        __tracebackhide__ = True
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            raise AssertionError(f"{what} should return a pair {names}, but returned {describe(got)}.")
        return tuple(got)

    def close(self, got: Any, expected: torch.Tensor, *, what: str = "the output",
              dims: Sequence[str] | None = None) -> None:
        """Check type, shape, dtype and values; ``dims`` names the last dimensions in messages."""
        __tracebackhide__ = True
        if not isinstance(got, torch.Tensor):
            raise AssertionError(f"{what} should be a tensor of shape {tuple(expected.shape)}, but is {describe(got)}.")
        if got.shape != expected.shape:
            raise AssertionError(f"{what} should have shape {tuple(expected.shape)}, but has shape "
                                 f"{tuple(got.shape)}.{_shape_hint(tuple(got.shape), tuple(expected.shape))}")
        if got.device != expected.device:
            raise AssertionError(f"{what} is on {got.device}, but the inputs were on {expected.device}: return "
                                 "tensors on the inputs' device (create new ones with device=Q.device, and do "
                                 "not call .cpu() or .numpy() on results).")
        if got.dtype != expected.dtype:
            raise AssertionError(f"{what} should keep the input dtype {expected.dtype}, but is {got.dtype}. "
                                 "Build results from the inputs instead of new float32 tensors.".replace("torch.", ""))
        wrong = mismatches(got, expected, self.tolerance(expected.dtype))  # the verdict, and the message's facts
        if not bool(wrong.any()):
            return
        got64, exp64 = got.detach().double().cpu(), expected.detach().double().cpu()
        nan = got64.isnan() & ~exp64.isnan()
        if bool(nan.any()):
            where = _index_words(nan.nonzero()[0].tolist(), dims, got.dim())
            raise AssertionError(f"{what}: NaN in {int(nan.sum())} of {got.numel()} places (first at {where}) "
                                 "where a number was expected.")  # "what" may be plural: no verb
        inf = got64.isinf() & ~exp64.isinf()
        if bool(inf.any()):
            where = _index_words(inf.nonzero()[0].tolist(), dims, got.dim())
            raise AssertionError(f"{what}: inf in {int(inf.sum())} places (first at {where}): an overflow?")
        error = torch.where(wrong, (got64 - exp64).abs(), torch.zeros_like(got64))
        worst = _unravel(int(error.argmax()), tuple(error.shape))
        raise AssertionError(
            f"{what}: {int(wrong.sum())} of {got.numel()} values differ from the expected ones. The largest "
            f"difference is at {_index_words(worst, dims, got.dim())}: expected {exp64[tuple(worst)].item():.6g}, "
            f"got {got64[tuple(worst)].item():.6g}.")

    def unchanged(self, before: Sequence[torch.Tensor], after: Sequence[Any], names: Sequence[str]) -> None:
        """Check that the caller's tensors came back exactly as they were sent.

        Advisory: the worker reports its inputs after the call, and only its own code could
        notice a write to them. Student code can change what it reports only by patching the
        worker, which needs the reflection the static scan forbids (docs/security.md)."""
        __tracebackhide__ = True
        if not isinstance(after, (tuple, list)) or len(after) < len(before):
            raise AssertionError(f"your function's inputs came back as {describe(after)}, not as the "
                                 f"{len(before)} tensors it was given.")
        for name, b, a in zip(names, before, after):
            if (not isinstance(a, torch.Tensor) or a.shape != b.shape or a.dtype != b.dtype
                    or not torch.equal(a.cpu(), b.cpu())):
                raise AssertionError(f"your function modified its input {name} in place. Work on new tensors "
                                     "(x = x - m, not x -= m or x.sub_(m)) so the caller's data stays intact.")


# ---------------------------------------------------------------- inputs


def non_contiguous(t: torch.Tensor) -> torch.Tensor:
    """The same values in a transposed memory layout (what ``K.transpose(-2, -1)`` produces)."""
    return t.transpose(-2, -1).contiguous().transpose(-2, -1)


def causal_mask(L_q: int, L_k: int | None = None) -> torch.Tensor:
    """True on and below the diagonal: query i may attend to keys 0..i."""
    return torch.ones(L_q, L_k or L_q, dtype=torch.bool).tril()


def padding_mask(lengths: Sequence[int], L_k: int) -> torch.Tensor:
    """(batch, 1, L_k): key j of sequence b is real when j < lengths[b]."""
    return (torch.arange(L_k)[None, :] < torch.tensor(lengths)[:, None])[:, None, :]


def _unravel(flat: int, shape: tuple[int, ...]) -> list[int]:
    """The index of element ``flat`` of a row-major tensor of ``shape`` (torch.unravel_index
    costs 0.8 s on its first call in a process: it goes through torch's decompositions)."""
    index = []
    for size in reversed(shape):
        flat, position = divmod(flat, size)
        index.append(position)
    return index[::-1]


def gradients(fn: Callable, args: Sequence[Any], grad_outputs: Sequence[torch.Tensor | None], **kwargs) -> list:
    """Vector-Jacobian products of a local function: the grads of ``args`` that require grad.
    A reference that records or replays its answers (``grader/release/answer_book.py``) does its own."""
    if hasattr(fn, "gradients"):
        return fn.gradients(args, grad_outputs, **kwargs)
    inputs = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
    result = fn(*args, **kwargs)
    outputs = list(result) if isinstance(result, (tuple, list)) else [result]
    pairs = [(o, g) for o, g in zip(outputs, grad_outputs) if g is not None]
    return list(vjp(pairs, inputs))


def needs_grad(*tensors: torch.Tensor) -> list[torch.Tensor]:
    """Fresh leaf copies that require grad."""
    return [t.detach().clone().requires_grad_(True) for t in tensors]


def seed_for(base: int, test_id: str) -> int:
    """A stable 31-bit seed for one test: same course seed and test id, same inputs."""
    return zlib.crc32(f"{base}:{test_id}".encode()) & 0x7FFFFFFF


__all__ = ["Expect", "describe", "non_contiguous", "causal_mask", "padding_mask", "gradients", "needs_grad",
           "seed_for", "randn"]


def randn(*shape: int, dtype: torch.dtype = torch.float32, scale: float = 1.0) -> torch.Tensor:
    """Seeded normal inputs (each test is seeded from its id)."""
    return torch.randn(*shape, dtype=dtype) * scale
