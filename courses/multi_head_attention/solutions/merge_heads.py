"""Reference: merge the heads back into the model dimension."""
from torch import Tensor


def merge_heads(x: Tensor) -> Tensor:
    """(..., num_heads, L, d_head) -> (..., L, num_heads * d_head): the inverse of split_heads."""
    *batch, num_heads, L, d_head = x.shape
    x = x.transpose(-3, -2)  # (..., h, L, d_head) -> (..., L, h, d_head)
    return x.reshape(*batch, L, num_heads * d_head)  # -> (..., L, d_model); reshape copies a non-contiguous view
