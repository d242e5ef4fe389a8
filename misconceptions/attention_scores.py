"""Classic mistakes of exercise 1, attention_scores(Q, K) = Q @ K^T / sqrt(d_k).

Shapes: Q (..., L_q, d_k), K (..., L_k, d_k) -> scores (..., L_q, L_k). Each function
returns what the wrong code returns for the same inputs; it may raise when the mistake
cannot run on them (``Q @ K`` needs d_k == L_k), and then that call does not count.
"""
import math

from torch import Tensor

from grader.misconceptions import Misconception


def _product(Q: Tensor, K: Tensor) -> Tensor:
    # (..., L_q, d_k) @ (..., d_k, L_k) -> (..., L_q, L_k)
    return Q @ K.transpose(-2, -1)


def unscaled(Q: Tensor, K: Tensor) -> Tensor:
    return _product(Q, K)


def scaled_by_d_k(Q: Tensor, K: Tensor) -> Tensor:
    return _product(Q, K) / Q.size(-1)


def scaled_by_sqrt_L_k(Q: Tensor, K: Tensor) -> Tensor:
    return _product(Q, K) / math.sqrt(K.size(-2))  # the number of keys, not the feature size


def multiplied_by_sqrt_d_k(Q: Tensor, K: Tensor) -> Tensor:
    return _product(Q, K) * math.sqrt(Q.size(-1))


def K_dot_T(Q: Tensor, K: Tensor) -> Tensor:
    # K.T reverses *all* dims: (B, L_k, d_k) -> (d_k, L_k, B). Runs only when the shapes happen to fit.
    reversed_K = K.permute(*range(K.dim() - 1, -1, -1))
    return Q @ reversed_K / math.sqrt(Q.size(-1))


def K_not_transposed(Q: Tensor, K: Tensor) -> Tensor:
    # (..., L_q, d_k) @ (..., L_k, d_k): runs only when d_k == L_k
    return Q @ K / math.sqrt(Q.size(-1))


MISCONCEPTIONS = [
    Misconception(
        "unscaled",
        "Your scores are Q @ K^T without the scaling: divide them by sqrt(d_k), with d_k = Q.size(-1), "
        "so that their variance stays near 1 whatever d_k is.",
        unscaled,
        # a product on a line that divides by nothing
        r"^(?!.*(/|sqrt|\*\*|scale)).*(@|\bmatmul\(|\bbmm\(|\beinsum\()"),
    Misconception(
        "scaled_by_d_k",
        "You divided the scores by d_k instead of by its square root: use math.sqrt(Q.size(-1)) "
        "(or d_k ** 0.5).",
        scaled_by_d_k,
        r"^(?!.*(sqrt|\*\*)).*[^/]/(?!/)"),
    Misconception(
        "scaled_by_sqrt_L_k",
        "You scaled by the square root of a sequence length (the number of keys, K.size(-2)) instead of "
        "sqrt(d_k): d_k is the feature size, the last dimension, Q.size(-1).",
        scaled_by_sqrt_L_k,
        r"\.size\(\s*(-2|1)\s*\)|\.shape\[\s*(-2|1)\s*\]|sqrt\(\s*(len\(|L\b|L_k\b|seq)"),
    Misconception(
        "multiplied_by_sqrt_d_k",
        "You multiplied the scores by sqrt(d_k) instead of dividing by it: Q @ K^T / math.sqrt(Q.size(-1)) "
        "keeps their variance near 1, multiplying makes it d_k times larger still.",
        multiplied_by_sqrt_d_k,
        r"\*\s*(math\.|torch\.|np\.)?sqrt\(|\*\s*\(?\s*[\w.()\[\]-]+\s*\*\*\s*0?\.5"),
    Misconception(
        "K_dot_T",
        "K.T reverses all the dimensions of a batched K, (batch, L_k, d_k) -> (d_k, L_k, batch), which "
        "mixes the batches: transpose only the last two, K.transpose(-2, -1) (or K.mT).",
        K_dot_T,
        r"\.T\b|\.t\(\s*\)"),
    Misconception(
        "K_not_transposed",
        "You multiplied Q @ K without transposing K: each query must be dotted with each key, "
        "Q @ K.transpose(-2, -1), shape (..., L_q, d_k) @ (..., d_k, L_k).",
        K_not_transposed,
        r"@\s*\w+\b(?!\s*[.\[(])|matmul\(\s*\w+\s*,\s*\w+\s*\)"),
]
