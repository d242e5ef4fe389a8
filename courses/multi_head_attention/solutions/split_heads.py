"""Reference: split the model dimension into heads."""
from torch import Tensor


def split_heads(x: Tensor, num_heads: int) -> Tensor:
    """(..., L, d_model) -> (..., num_heads, L, d_model // num_heads)."""
    *batch, L, d_model = x.shape
    d_head = d_model // num_heads
    x = x.reshape(*batch, L, num_heads, d_head)  # (..., L, d_model) -> (..., L, h, d_head)
    return x.transpose(-3, -2)  # (..., L, h, d_head) -> (..., h, L, d_head)
