"""Reference: numerically stable softmax."""
from torch import Tensor


def softmax(x: Tensor, dim: int = -1) -> Tensor:
    """Return ``exp(x) / sum(exp(x))`` along ``dim``, without overflow."""
    # exp(x - c) / sum(exp(x - c)) is the same for every c. With c the maximum the
    # largest exponent is exp(0) = 1, so logits of 1e4 cannot overflow to inf.
    shifted = x - x.amax(dim=dim, keepdim=True).detach()  # same shape as x
    exp = shifted.exp()
    return exp / exp.sum(dim=dim, keepdim=True)
