"""Classic mistakes of exercise 3, apply_attention_weights(weights, V) = weights @ V.

Shapes: weights (..., L_q, L_k), V (..., L_k, d_v) -> output (..., L_q, d_v). A product in
the wrong order or of the wrong matrix only runs when the shapes happen to fit; when they
do not, ``compute`` raises and that call does not count.
"""
import torch
from torch import Tensor

from grader.misconceptions import AnyOf, Misconception


def V_at_weights(weights: Tensor, V: Tensor) -> Tensor:
    # (..., L_k, d_v) @ (..., L_q, L_k): runs only when d_v == L_q
    return V @ weights


def weights_transposed(weights: Tensor, V: Tensor) -> Tensor:
    # (..., L_k, L_q) @ (..., L_k, d_v): runs only when L_q == L_k
    return weights.transpose(-2, -1) @ V


# The lesson's example, output = attn_weights @ V: what its code computes, and what it prints.
LESSON_COMPUTED = [[2.4, 3.4], [3.2, 4.2], [2.8, 3.8]]
LESSON_PRINTED = [[2.2, 3.2], [2.8, 3.8], [2.6, 3.6]]


def hard_coded_lesson(weights: Tensor, V: Tensor):
    # the same (3, 2) tensor whatever the inputs, in the default dtype or the inputs' one
    return AnyOf(*(torch.tensor(rows, dtype=dtype) for rows in (LESSON_COMPUTED, LESSON_PRINTED)
                   for dtype in {torch.get_default_dtype(), V.dtype}))


MISCONCEPTIONS = [
    Misconception(
        "V_at_weights",
        "You computed V @ weights, but a matrix product depends on the order: each output row is a "
        "weighted sum of the rows of V, weights @ V, shape (..., L_q, L_k) @ (..., L_k, d_v).",
        V_at_weights,
        r"\b[Vv]\w*\s*@|matmul\(\s*[Vv]\w*\s*,"),
    Misconception(
        "weights_transposed",
        "You used the weights transposed: row i of the weights belongs to query i, so the output is "
        "weights @ V with the weights as given, (..., L_q, L_k) @ (..., L_k, d_v).",
        weights_transposed,
        r"transpose\(|\.mT\b|\.T\b|\.t\(\s*\)|permute\(|einsum\("),
    Misconception(
        "hard_coded_lesson",
        "Your function returns the lesson's example output whatever its inputs: compute it from the "
        "arguments, weights @ V, so that it works for any weights and values.",
        hard_coded_lesson,
        r"\btensor\(\s*\[|\[\s*\[\s*-?\d"),
]
