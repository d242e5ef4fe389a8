"""Classic mistakes of chapter 2, exercise 1: split_heads(x, num_heads), (..., L, d_model) ->
(..., num_heads, L, d_head). Each function returns what the wrong split returns."""
from torch import Tensor

from grader.misconceptions import Misconception


def reshape_without_transpose(x: Tensor, num_heads: int) -> Tensor:
    *batch, L, d_model = x.shape
    return x.reshape(*batch, num_heads, L, d_model // num_heads)  # right shape, rows dealt out to heads


def heads_after_positions(x: Tensor, num_heads: int) -> Tensor:
    *batch, L, d_model = x.shape
    return x.reshape(*batch, L, num_heads, d_model // num_heads)  # the transpose forgotten


MISCONCEPTIONS = [
    Misconception(
        "reshape_without_transpose",
        "You reshaped (..., L, d_model) straight to (..., num_heads, L, d_head): the shape is right, but "
        "head 0 gets the first rows of x, so the heads mix positions. Reshape to (..., L, num_heads, "
        "d_head) first, then swap the middle dims: .transpose(-3, -2).",
        reshape_without_transpose,
        r"\b(reshape|view)\("),
    Misconception(
        "heads_after_positions",
        "Your heads come after the positions, (..., L, num_heads, d_head): after the reshape, swap dims "
        "-3 and -2 so that each head is one (L, d_head) matrix, (..., num_heads, L, d_head).",
        heads_after_positions,
        r"\b(reshape|view)\("),
]
