"""Reference: combine the values with the attention weights."""
from torch import Tensor


def apply_attention_weights(weights: Tensor, V: Tensor) -> Tensor:
    """Return ``weights @ V``: each output row is a weighted average of the rows of V."""
    # (..., L_q, L_k) @ (..., L_k, d_v) -> (..., L_q, d_v)
    return weights @ V
