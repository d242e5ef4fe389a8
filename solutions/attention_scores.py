"""Reference: scaled dot-product attention scores."""
import math

from torch import Tensor


def attention_scores(Q: Tensor, K: Tensor) -> Tensor:
    """Return ``Q @ K^T / sqrt(d_k)`` for any leading batch dimensions."""
    d_k = Q.size(-1)
    # (..., L_q, d_k) @ (..., d_k, L_k) -> (..., L_q, L_k)
    scores = Q @ K.transpose(-2, -1)
    # Dividing by sqrt(d_k) keeps the scores' variance near 1 whatever d_k is.
    return scores / math.sqrt(d_k)
