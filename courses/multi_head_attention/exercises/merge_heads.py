"""Chapter 2, exercise 2: merge the heads back into the model dimension.

The inverse of split_heads: each head's output (L, d_head) goes back into its slice of the
features, head 0 in the first d_head features of every position, head 1 in the next ones:

    x                      (..., num_heads, L, d_head)
    swap the middle dims   (..., L, num_heads, d_head)
    reshape                (..., L, num_heads * d_head) = (..., L, d_model)

After the transpose the tensor is not contiguous: ``.view`` refuses it, ``.reshape`` copies
it (or call ``.contiguous()`` first). merge_heads(split_heads(x, h)) gives x back.
"""
from torch import Tensor


def merge_heads(x: Tensor) -> Tensor:
    """Return x of shape ``(..., num_heads, L, d_head)`` as ``(..., L, num_heads * d_head)``.

    Two heads, two positions, d_head = 2 (the output of split_heads' example):

    >>> import torch
    >>> x = torch.tensor([[[0., 1.], [4., 5.]],
    ...                   [[2., 3.], [6., 7.]]])
    >>> merge_heads(x)
    tensor([[0., 1., 2., 3.],
            [4., 5., 6., 7.]])

    Any leading batch dims are kept; do not modify x, and stay differentiable.
    """
    raise NotImplementedError("merge_heads: swap dims -3 and -2, then reshape to (..., L, num_heads * d_head)")
