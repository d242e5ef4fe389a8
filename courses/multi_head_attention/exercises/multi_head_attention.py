"""Chapter 2, exercise 3: multi-head attention.

This builds on chapter 1's attention(Q, K, V, mask): run it once per head. Split Q, K and V
into heads (exercise 1), compute scaled dot-product attention in every head at once (the
heads are just one more batch dimension), and merge the heads' outputs back (exercise 2):

    q, k, v = split_heads(Q, h), split_heads(K, h), split_heads(V, h)   (..., h, L, d_head)
    scores  = q @ k^T / sqrt(d_head)                                    (..., h, L_q, L_k)
    weights = softmax(scores, dim=-1)                                   (..., h, L_q, L_k)
    output  = merge_heads(weights @ v)                                  (..., L_q, d_model)

Return ``(output, weights)``, in that order. The scale is sqrt(d_head), the size of a head's
features, not sqrt(d_model): each head is an attention of its own.

With ``causal=True`` a query attends only to keys at positions up to its own, itself
included: query i sees keys 0..i. Block the others, j > i, by setting their scores to -inf
before the softmax; ``torch.ones(L_q, L_k, dtype=torch.bool).tril()`` is True exactly where
attending is allowed (on and below the diagonal).

You may reuse your own code: ``from exercises.split_heads import split_heads`` and
``from exercises.merge_heads import merge_heads``; chapter 1's attention is not part of this
chapter's files, so copy the lines of your own attention function you need into this one.
torch.softmax is allowed here. Calling scaled_dot_product_attention, nn.MultiheadAttention
or their kin is not.
"""
from typing import Tuple

from torch import Tensor


def multi_head_attention(Q: Tensor, K: Tensor, V: Tensor, num_heads: int,
                         causal: bool = False) -> Tuple[Tensor, Tensor]:
    """Return ``(output, weights)``: output (..., L_q, d_model), weights (..., num_heads, L_q, L_k).

    Q is (..., L_q, d_model), K and V are (..., L_k, d_model); num_heads divides d_model.
    Three positions, d_model = 4, two heads, the same input as queries, keys and values:

    >>> import torch
    >>> X = torch.tensor([[1., 0., 0., 1.], [0., 1., 1., 0.], [1., 1., 0., 0.]])
    >>> output, weights = multi_head_attention(X, X, X, 2)
    >>> weights.shape
    torch.Size([2, 3, 3])
    >>> weights[0]
    tensor([[0.4011, 0.1978, 0.4011],
            [0.1978, 0.4011, 0.4011],
            [0.2483, 0.2483, 0.5035]])
    >>> output
    tensor([[0.8022, 0.5989, 0.2483, 0.5035],
            [0.5989, 0.8022, 0.5035, 0.2483],
            [0.7517, 0.7517, 0.3333, 0.3333]])

    Causal: position 0 sees only itself, position 1 positions 0 and 1:

    >>> output, weights = multi_head_attention(X, X, X, 2, causal=True)
    >>> weights[1]
    tensor([[1.0000, 0.0000, 0.0000],
            [0.3302, 0.6698, 0.0000],
            [0.3333, 0.3333, 0.3333]])

    Keep the dtype and device of Q, do not modify any input, and stay differentiable.
    """
    raise NotImplementedError("multi_head_attention: split Q, K and V into heads, attend per head, merge the heads")
