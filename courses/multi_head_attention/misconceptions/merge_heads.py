"""Classic mistakes of chapter 2, exercise 2: merge_heads(x), (..., num_heads, L, d_head) ->
(..., L, num_heads * d_head). Each function returns what the wrong merge returns."""
from torch import Tensor

from grader.misconceptions import Misconception


def reshape_without_transpose(x: Tensor) -> Tensor:
    *batch, num_heads, L, d_head = x.shape
    return x.reshape(*batch, L, num_heads * d_head)  # head 0's rows become the first positions


MISCONCEPTIONS = [
    Misconception(
        "reshape_without_transpose",
        "You reshaped (..., num_heads, L, d_head) straight to (..., L, d_model): the shape is right, but "
        "the first positions get head 0's rows, so positions mix. Swap the middle dims first, "
        ".transpose(-3, -2), then reshape (it copies the non-contiguous view).",
        reshape_without_transpose,
        r"\b(reshape|view)\("),
]
