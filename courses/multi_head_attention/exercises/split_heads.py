"""Chapter 2, exercise 1: split the model dimension into heads.

Multi-head attention runs the attention of chapter 1 several times side by side, each time
on a slice of the features: with d_model = 8 and 2 heads, head 0 sees features 0..3 and
head 1 features 4..7 of *every* position. So each row of length d_model is cut into
num_heads consecutive pieces of d_head = d_model // num_heads, and the heads become a batch
dimension in front of the positions:

    x                      (..., L, d_model)
    reshape                (..., L, num_heads, d_head)      cut each row into pieces
    swap the middle dims   (..., num_heads, L, d_head)      one (L, d_head) matrix per head

A reshape straight to (..., num_heads, L, d_head) has the right shape but the wrong
content: it fills head 0 with the first rows of x, so the heads mix positions. Reshape
first, then transpose.
"""
from torch import Tensor


def split_heads(x: Tensor, num_heads: int) -> Tensor:
    """Return x as ``(..., num_heads, L, d_model // num_heads)``; ``num_heads`` divides d_model.

    Two positions, d_model = 4, two heads of d_head = 2:

    >>> import torch
    >>> x = torch.arange(8.).reshape(2, 4)
    >>> x
    tensor([[0., 1., 2., 3.],
            [4., 5., 6., 7.]])
    >>> split_heads(x, 2)
    tensor([[[0., 1.],
             [4., 5.]],
    <BLANKLINE>
            [[2., 3.],
             [6., 7.]]])

    Head 0 holds features 0..1 of both positions, head 1 features 2..3. Any leading batch
    dims are kept; do not modify x, and stay differentiable.
    """
    raise NotImplementedError("split_heads: reshape to (..., L, num_heads, d_head), then swap dims -3 and -2")
