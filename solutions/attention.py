"""Reference: the complete attention function, built from the three earlier pieces."""
from typing import Optional, Tuple

from torch import Tensor

from .apply_weights import apply_attention_weights
from .attention_scores import attention_scores
from .softmax import softmax


def attention(Q: Tensor, K: Tensor, V: Tensor, mask: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """Return ``(output, weights)`` of scaled dot-product attention.

    ``mask`` is a bool tensor broadcastable to ``(..., L_q, L_k)``; True means "may attend".
    """
    scores = attention_scores(Q, K)  # (..., L_q, L_k)
    if mask is not None:
        # A masked key gets score -inf, hence exp(-inf) = 0 weight.
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = softmax(scores, dim=-1)  # (..., L_q, L_k), rows sum to 1
    if mask is not None:
        # A query whose keys are all masked has a row of -inf, and softmax gives NaN (0/0)
        # there. Zero weights, hence a zero output, is the convention of
        # torch.nn.functional.scaled_dot_product_attention.
        weights = weights.masked_fill(~mask, 0.0)
    output = apply_attention_weights(weights, V)  # (..., L_q, L_k) @ (..., L_k, d_v)
    return output, weights
