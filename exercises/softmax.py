"""Exercise 2: a numerically stable softmax.

Softmax turns a row of scores into weights that are positive and sum to 1:

    softmax(x)_i = exp(x_i) / sum_j exp(x_j)        (along the dimension ``dim``)

Computed literally, exp(1000.) is inf and the result is NaN. Because
exp(x_i - c) / sum_j exp(x_j - c) is the same for every constant c, subtract the maximum
along ``dim`` first (keep the dimension: ``x.amax(dim=dim, keepdim=True)``): the largest
exponent is then exp(0) = 1 and nothing overflows.

Shapes: x is any shape; the result has the same shape, and sums to 1 along ``dim``.

Calling a library softmax (torch.softmax, F.softmax, Tensor.softmax, nn.Softmax,
log_softmax, softmin and friends) is not allowed here: write it with exp, max and sum.
"""
from torch import Tensor


def softmax(x: Tensor, dim: int = -1) -> Tensor:
    """Return the softmax of ``x`` along ``dim``.

    >>> import torch
    >>> softmax(torch.tensor([1., 2., 3.]))
    tensor([0.0900, 0.2447, 0.6652])

    Large logits must not overflow: shifting every entry by the same amount (here 999)
    changes nothing.

    >>> softmax(torch.tensor([1000., 1001., 1002.]))
    tensor([0.0900, 0.2447, 0.6652])

    Keep the dtype and device of x, do not modify x in place, and stay differentiable.
    """
    raise NotImplementedError("softmax: subtract the max, exponentiate, normalise along dim")
