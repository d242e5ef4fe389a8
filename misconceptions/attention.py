"""Classic mistakes of exercise 4, attention(Q, K, V, mask=None) -> (output, weights).

Shapes: Q (..., L_q, d_k), K (..., L_k, d_k), V (..., L_k, d_v); output (..., L_q, d_v),
weights (..., L_q, L_k). The mask is bool, broadcasts to (..., L_q, L_k), True = "may
attend"; a query with no key to attend to gets zero weights and a zero output.

Each function reproduces the student's wrong variant faithfully, down to how a fully
masked row comes out: with the docstring's line that zeroes blocked weights after the
softmax (zeros), or without it (NaN). Where students write both, it returns ``AnyOf``.
"""
import math

import torch
from torch import Tensor

from grader.misconceptions import AnyOf, Misconception

NEG_INF = float("-inf")


def _scores(Q: Tensor, K: Tensor, *, scaled: bool = True) -> Tensor:
    scores = Q @ K.transpose(-2, -1)  # (..., L_q, L_k)
    return scores / math.sqrt(Q.size(-1)) if scaled else scores


def _softmax(scores: Tensor) -> Tensor:
    """Stable softmax over the keys; a row of -inf gives NaN, as a student's softmax does."""
    e = (scores - scores.amax(dim=-1, keepdim=True)).exp()
    return e / e.sum(dim=-1, keepdim=True)


def _attend(scores: Tensor, V: Tensor, allowed: Tensor | None = None, *, fill: float = NEG_INF,
            zero_blocked: bool = True) -> tuple[Tensor, Tensor]:
    """(output, weights) with the keys where ``allowed`` is False set to ``fill`` before the
    softmax, and (``zero_blocked``) their weights set to 0 after it."""
    if allowed is not None:
        scores = scores.masked_fill(~allowed, fill)
    weights = _softmax(scores)
    if allowed is not None and zero_blocked:
        weights = weights.masked_fill(~allowed, 0.0)
    return weights @ V, weights  # (..., L_q, L_k) @ (..., L_k, d_v)


def _with_or_without_zeroing(scores: Tensor, V: Tensor, allowed: Tensor, *, fill: float = NEG_INF) -> AnyOf:
    return AnyOf(_attend(scores, V, allowed, fill=fill), _attend(scores, V, allowed, fill=fill, zero_blocked=False))


def weights_first(Q: Tensor, K: Tensor, V: Tensor, mask: Tensor | None = None):
    output, weights = _attend(_scores(Q, K), V, mask)
    return weights, output


def unscaled(Q: Tensor, K: Tensor, V: Tensor, mask: Tensor | None = None):
    return _attend(_scores(Q, K, scaled=False), V, mask)


def mask_inverted(Q: Tensor, K: Tensor, V: Tensor, mask: Tensor | None = None):
    if mask is None:
        return _attend(_scores(Q, K), V)
    return _with_or_without_zeroing(_scores(Q, K), V, ~mask)  # True taken as "blocked"


def masked_with_zero(Q: Tensor, K: Tensor, V: Tensor, mask: Tensor | None = None):
    if mask is None:
        return _attend(_scores(Q, K), V)
    return _with_or_without_zeroing(_scores(Q, K), V, mask, fill=0.0)


def masked_after_softmax(Q: Tensor, K: Tensor, V: Tensor, mask: Tensor | None = None):
    weights = _softmax(_scores(Q, K))
    if mask is not None:
        weights = weights.masked_fill(~mask, 0.0)  # weights * mask: the rows no longer sum to 1
    return weights @ V, weights


def causal_diagonal(mask: Tensor, L_q: int, L_k: int) -> int:
    """The k for which ``mask`` is ``ones(L_q, L_k).tril(k)`` in every batch (k = 0: query i
    sees keys 0..i); raises ValueError for a mask that is not causal."""
    if mask.dim() < 2:
        mask = mask.reshape((1,) * (2 - mask.dim()) + tuple(mask.shape))
    slices = torch.broadcast_to(mask, (*mask.shape[:-2], L_q, L_k)).reshape(-1, L_q, L_k)
    if not bool((slices == slices[0]).all()):
        raise ValueError("the mask differs between batches: not causal")
    ones = torch.ones(L_q, L_k, dtype=torch.bool, device=mask.device)
    for k in range(-(L_q - 1), L_k - 1):  # all False and all True are left out
        if torch.equal(slices[0].to(torch.bool), ones.tril(k)):
            return k
    raise ValueError("not a causal mask")


def causal_off_by_one(Q: Tensor, K: Tensor, V: Tensor, mask: Tensor | None = None):
    if mask is None:
        raise ValueError("no mask: nothing to be off by one")
    L_q, L_k = Q.size(-2), K.size(-2)
    k = causal_diagonal(mask, L_q, L_k)
    scores = _scores(Q, K)
    shifted = [torch.ones(L_q, L_k, dtype=torch.bool, device=Q.device).tril(k + step) for step in (-1, 1)]
    return AnyOf(*(variant for allowed in shifted for variant in _with_or_without_zeroing(scores, V, allowed)))


def fully_masked_rows_nan(Q: Tensor, K: Tensor, V: Tensor, mask: Tensor | None = None):
    if mask is None:
        return _attend(_scores(Q, K), V)
    return _attend(_scores(Q, K), V, mask, zero_blocked=False)


def mask_ignored(Q: Tensor, K: Tensor, V: Tensor, mask: Tensor | None = None):
    if mask is None:
        raise ValueError("no mask: nothing to ignore")
    return _attend(_scores(Q, K), V)


def large_negative_fill(Q: Tensor, K: Tensor, V: Tensor, mask: Tensor | None = None):
    # -1e9 (or torch.finfo(dtype).min) for -inf, blocked weights left as they are: a query
    # whose keys are all masked has equal scores, hence uniform weights 1/L_k, not zeros
    if mask is None:
        return _attend(_scores(Q, K), V)
    return _attend(_scores(Q, K), V, mask, fill=-1e9, zero_blocked=False)


MISCONCEPTIONS = [
    Misconception(
        "weights_first",
        "You return (weights, output), but the order is (output, weights): return output, weights.",
        weights_first,
        r"^\s*return\b"),
    Misconception(
        "unscaled",
        "Your attention does not scale the scores: divide Q @ K^T by sqrt(d_k), with d_k = Q.size(-1), "
        "before the softmax (or reuse your attention_scores).",
        unscaled,
        r"^(?!.*(/|sqrt|\*\*|scale)).*(@|\bmatmul\(|\bbmm\(|\beinsum\()"),
    Misconception(
        "mask_inverted",
        "Your mask is inverted: True means the query may attend to that key, so block the keys where the "
        "mask is False, scores.masked_fill(~mask, float(\"-inf\")).",
        mask_inverted,
        r"masked_fill\(\s*mask\b(?!\s*==\s*(0|False))|where\(\s*mask\b[^,]*,[^,]*inf"),
    Misconception(
        "masked_with_zero",
        "A masked score set to 0 still gets a weight in the softmax, exp(0 - max) / sum: set masked scores "
        "to float(\"-inf\") instead, so their weight is exactly 0 and the other weights sum to 1.",
        masked_with_zero,
        r"masked_fill\([^,]*,\s*0(\.0*)?\s*\)|where\([^,]*,\s*0(\.0*)?\s*,"),
    Misconception(
        "masked_after_softmax",
        "You zeroed the masked weights after the softmax, so the remaining weights no longer sum to 1: "
        "set the masked scores to -inf before the softmax instead, scores.masked_fill(~mask, float(\"-inf\")).",
        masked_after_softmax,
        r"\*\s*~?\s*\(?\s*mask\b|\bmask(\.\w+\(\))?\s*\*|masked_fill\("),
    Misconception(
        "causal_off_by_one",
        "The causal mask you apply is off by one diagonal: query i may attend to keys 0..i, itself "
        "included, which is tril() with diagonal=0. Use the mask argument as given rather than building one.",
        causal_off_by_one,
        r"\b(tril|triu)\b"),
    Misconception(
        "fully_masked_rows_nan",
        "A query whose keys are all masked gets a row of -inf, which softmax turns into NaN (0/0): after "
        "the softmax set the masked weights to 0, weights.masked_fill(~mask, 0.0), so it gets zero weights "
        "and a zero output.",
        fully_masked_rows_nan),
    Misconception(
        "mask_ignored",
        "Your attention ignores the mask: before the softmax, set the scores of the keys where the mask is "
        "False to -inf, scores.masked_fill(~mask, float(\"-inf\")).",
        mask_ignored),
    Misconception(
        "large_negative_fill",
        "Filling masked scores with a large negative number (-1e9) instead of -inf gives a query whose keys "
        "are all masked equal scores, which softmax turns into uniform weights rather than zeros: after the "
        "softmax set the masked weights to 0, weights.masked_fill(~mask, 0.0).",
        large_negative_fill,
        r"-\s*1e\d+|-\s*\d{4,}|\bfinfo\("),
]
