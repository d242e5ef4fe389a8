# Red team, 2026-12-02 (second round): torch.sparse.softmax, neither a banned name nor a banned
# kernel then (aten._sparse_softmax), with a hand-written backward: 10/10.
import torch


class _LibrarySoftmax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, dim):
        shifted = x - x.amax(dim=dim, keepdim=True) - 1.0  # every entry nonzero: to_sparse keeps it
        y = torch.sparse.softmax(shifted.to_sparse(), dim).to_dense()
        ctx.save_for_backward(y)
        ctx.dim = dim
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return y * (grad - (grad * y).sum(dim=ctx.dim, keepdim=True)), None


def softmax(x, dim=-1):
    return _LibrarySoftmax.apply(x, dim)
