"""Classic mistakes of exercise 2, softmax(x, dim=-1), numerically stable.

Each function takes the student's inputs ``(x, dim=-1)`` and returns what the wrong code
returns, computed in the input's dtype so that it overflows exactly as the student's does.
"""
from torch import Tensor

from grader.misconceptions import AnyOf, Misconception


def _stable(x: Tensor, dim: int) -> Tensor:
    e = (x - x.amax(dim=dim, keepdim=True)).exp()
    return e / e.sum(dim=dim, keepdim=True)


def over_dim_0(x: Tensor, dim: int = -1) -> Tensor:
    return _stable(x, 0)


def always_last_dim(x: Tensor, dim: int = -1) -> Tensor:
    return _stable(x, -1)


def without_max(x: Tensor, dim: int = -1) -> Tensor:
    e = x.exp()  # inf above ~88 in float32, 0 below ~-103: inf/inf and 0/0 are NaN
    return e / e.sum(dim=dim, keepdim=True)


def global_max(x: Tensor, dim: int = -1) -> Tensor:
    e = (x - x.max()).exp()  # a slice far below the whole tensor's maximum underflows to 0/0
    return e / e.sum(dim=dim, keepdim=True)


def without_exp(x: Tensor, dim: int = -1) -> Tensor:
    return x / x.sum(dim=dim, keepdim=True)


def not_normalised(x: Tensor, dim: int = -1):
    # exp alone, with the maximum along dim, of the whole tensor, or none subtracted
    return AnyOf((x - x.amax(dim=dim, keepdim=True)).exp(), (x - x.max()).exp(), x.exp())


MISCONCEPTIONS = [
    Misconception(
        "over_dim_0",
        "Your softmax normalises along dimension 0 whatever dim says: pass dim=dim to both the maximum "
        "and the sum, x.amax(dim=dim, keepdim=True) and e.sum(dim=dim, keepdim=True).",
        over_dim_0,
        r"^(?!\s*def\b).*(dim\s*=\s*0\b|\b(sum|amax|max)\(\s*0\b)"),
    Misconception(
        "always_last_dim",
        "Your softmax always normalises along the last dimension and ignores its dim argument: pass "
        "dim=dim to both the maximum and the sum instead of -1.",
        always_last_dim,
        r"^(?!\s*def\b).*(dim\s*=\s*-1\b|\b(sum|amax|max)\(\s*-1\b)"),
    Misconception(
        "without_max",
        "exp(x) overflows to inf (and underflows to 0) for large logits, which gives NaN: subtract the "
        "maximum along dim first, x - x.amax(dim=dim, keepdim=True); the result is mathematically the same.",
        without_max,
        r"\bexp\(\s*\w+\s*\)|\b\w+\.exp\(\s*\)"),
    Misconception(
        "global_max",
        "You subtracted the maximum of the whole tensor, not the maximum along dim: a slice far below "
        "the overall maximum underflows to 0/0 = NaN. Use x.amax(dim=dim, keepdim=True).",
        global_max,
        r"\.(max|amax)\(\s*\)|\btorch\.(max|amax)\(\s*\w+\s*\)"),
    Misconception(
        "without_exp",
        "You divided x by its sum without taking exp first: softmax is exp(x) / exp(x).sum(dim), which "
        "keeps every weight positive (subtract the maximum before exp for stability).",
        without_exp,
        r"/\s*\(?\s*\w+\.sum\(|/\s*torch\.sum\("),
    Misconception(
        "not_normalised",
        "Your softmax takes exp but never divides by the sum, so a slice does not sum to 1: return "
        "e / e.sum(dim=dim, keepdim=True), with e = (x - x.amax(dim=dim, keepdim=True)).exp().",
        not_normalised,
        r"\bexp\("),
]
