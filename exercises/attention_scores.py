"""Exercise 1: attention scores.

Attention starts by asking, for every query, how well it matches every key. The match is a
dot product, scaled so that it does not grow with the vector size:

    scores = Q @ K^T / sqrt(d_k)        with d_k = Q.size(-1)

Shapes:
    Q       (..., L_q, d_k)   one row per query position
    K       (..., L_k, d_k)   one row per key position
    scores  (..., L_q, L_k)   scores[..., i, j]: how much query i matches key j

``...`` stands for any leading batch dimensions (none, a batch, or batch and heads), so
transpose only the last two dimensions of K: ``K.transpose(-2, -1)``, not ``K.T``.
"""
from torch import Tensor


def attention_scores(Q: Tensor, K: Tensor) -> Tensor:
    """Return the scaled dot-product scores ``Q @ K^T / sqrt(d_k)``.

    Worked example: two queries, three keys, d_k = 4, so we divide by sqrt(4) = 2.

    >>> import torch
    >>> Q = torch.tensor([[1., 0., 1., 0.],
    ...                   [0., 2., 0., 2.]])
    >>> K = torch.tensor([[1., 1., 1., 1.],
    ...                   [0., 1., 0., -1.],
    ...                   [2., 0., 0., 0.]])
    >>> attention_scores(Q, K)
    tensor([[1., 0., 1.],
            [2., 0., 0.]])

    Query 0 . key 0 = 1 + 0 + 1 + 0 = 2, divided by 2 gives 1.

    Keep the dtype and device of Q, do not modify Q or K in place, and use only
    differentiable tensor operations.
    """
    raise NotImplementedError("attention_scores: compute Q @ K^T / sqrt(d_k)")
