"""Classic mistakes of chapter 2, exercise 3: multi_head_attention(Q, K, V, num_heads,
causal=False) -> (output (..., L_q, d_model), weights (..., num_heads, L_q, L_k)).

Each function reproduces the wrong variant: the heads split by a bare reshape, the scale of
the whole model, a causal mask on the wrong side of the diagonal or one diagonal off. A mask
that leaves a query no key gives NaN in a softmax; the student's code may or may not zero it,
hence ``AnyOf``."""
import math

import torch
from torch import Tensor

from grader.misconceptions import AnyOf, Misconception


def _split(x: Tensor, h: int, *, transpose: bool = True) -> Tensor:
    *batch, L, d_model = x.shape
    if not transpose:
        return x.reshape(*batch, h, L, d_model // h)
    return x.reshape(*batch, L, h, d_model // h).transpose(-3, -2)  # (..., h, L, d_head)


def _merge(x: Tensor, *, transpose: bool = True) -> Tensor:
    *batch, h, L, d_head = x.shape
    if not transpose:
        return x.reshape(*batch, L, h * d_head)
    return x.transpose(-3, -2).reshape(*batch, L, h * d_head)  # (..., L, d_model)


def _softmax(scores: Tensor) -> Tensor:
    """Softmax over the keys; a row of -inf gives NaN, as torch.softmax does."""
    e = (scores - scores.amax(dim=-1, keepdim=True)).exp()
    return e / e.sum(dim=-1, keepdim=True)


def _attend(Q, K, V, h, *, allowed=None, scale=None, transpose=True, zero_blocked=False):
    q, k, v = (_split(t, h, transpose=transpose) for t in (Q, K, V))
    scores = q @ k.transpose(-2, -1) / math.sqrt(scale or q.size(-1))  # (..., h, L_q, L_k)
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    weights = _softmax(scores)
    if allowed is not None and zero_blocked:
        weights = weights.masked_fill(~allowed, 0.0)
    return _merge(weights @ v, transpose=transpose), weights


def _causal(Q: Tensor, K: Tensor, diagonal: int = 0) -> Tensor:
    return torch.ones(Q.size(-2), K.size(-2), dtype=torch.bool, device=Q.device).tril(diagonal)


def heads_interleaved(Q, K, V, num_heads, causal=False):
    allowed = _causal(Q, K) if causal else None
    return _attend(Q, K, V, num_heads, allowed=allowed, transpose=False)


def scaled_by_d_model(Q, K, V, num_heads, causal=False):
    allowed = _causal(Q, K) if causal else None
    return _attend(Q, K, V, num_heads, allowed=allowed, scale=Q.size(-1))


def causal_inverted(Q, K, V, num_heads, causal=False):
    if not causal:
        raise ValueError("no mask: nothing to invert")
    # the future kept, the past blocked: triu(1) (a strict upper triangle) or ~tril(-1) (diagonal kept)
    sides = (~_causal(Q, K), ~_causal(Q, K, -1))
    return AnyOf(*(_attend(Q, K, V, num_heads, allowed=a, zero_blocked=z) for a in sides for z in (False, True)))


def causal_off_by_one(Q, K, V, num_heads, causal=False):
    if not causal:
        raise ValueError("no mask: nothing to be off by one")
    shifted = (_causal(Q, K, -1), _causal(Q, K, 1))  # the diagonal excluded, or one key too many
    return AnyOf(*(_attend(Q, K, V, num_heads, allowed=a, zero_blocked=z) for a in shifted for z in (False, True)))


def causal_ignored(Q, K, V, num_heads, causal=False):
    if not causal:
        raise ValueError("no mask: nothing to ignore")
    return _attend(Q, K, V, num_heads)


def weights_averaged(Q, K, V, num_heads, causal=False):
    output, weights = _attend(Q, K, V, num_heads, allowed=_causal(Q, K) if causal else None)
    return output, weights.mean(dim=-3)  # what nn.MultiheadAttention returns by default


MISCONCEPTIONS = [
    Misconception(
        "heads_interleaved",
        "Your heads mix positions: Q, K and V were reshaped straight to (..., num_heads, L, d_head) "
        "(and the output straight back). Reshape to (..., L, num_heads, d_head) and swap dims -3 and -2 "
        "(your split_heads), and the reverse to merge.",
        heads_interleaved,
        r"\b(reshape|view)\("),
    Misconception(
        "scaled_by_d_model",
        "You scaled the scores by sqrt(d_model), but each head is an attention of its own: divide by "
        "sqrt(d_head), d_head = d_model // num_heads (the size of q.size(-1) after the split).",
        scaled_by_d_model,
        r"sqrt|\*\*\s*0?\.5|\*\*\s*-\s*0?\.5"),
    Misconception(
        "causal_inverted",
        "Your causal mask is on the wrong side of the diagonal: a query may attend to keys at positions up "
        "to its own, so block the keys after it, j > i. torch.ones(L_q, L_k, dtype=torch.bool).tril() is "
        "True where attending is allowed; fill the scores where it is False with -inf.",
        causal_inverted,
        r"\b(tril|triu)\b"),
    Misconception(
        "causal_off_by_one",
        "Your causal mask is off by one diagonal: query i may attend to keys 0..i, itself included, which "
        "is tril() with diagonal=0 (triu(diagonal=1) is what to block).",
        causal_off_by_one,
        r"\b(tril|triu)\b"),
    Misconception(
        "causal_ignored",
        "With causal=True a query must not see the keys after it: set their scores to -inf before the "
        "softmax, where torch.ones(L_q, L_k, dtype=torch.bool).tril() is False.",
        causal_ignored,
        r"\bcausal\b"),
    Misconception(
        "weights_averaged",
        "Return the weights of every head, shape (..., num_heads, L_q, L_k), not their mean over the heads.",
        weights_averaged,
        r"\.mean\("),
]
