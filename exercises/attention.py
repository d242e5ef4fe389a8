"""Exercise 4: the complete attention function.

Put the three pieces together:

    scores  = Q @ K^T / sqrt(d_k)          (..., L_q, L_k)
    weights = softmax(scores, dim=-1)      (..., L_q, L_k), each row sums to 1
    output  = weights @ V                  (..., L_q, d_v)

and return ``(output, weights)``, in that order.

The optional ``mask`` is a bool tensor that broadcasts to (..., L_q, L_k).
True means "query i may attend to key j" (the convention of
torch.nn.functional.scaled_dot_product_attention). A masked key must get weight exactly 0:
set its score to -inf before the softmax (``scores.masked_fill(~mask, float("-inf"))``).
If a query may attend to no key at all, its weights and its output are all zeros
(softmax of a row of -inf is NaN: replace those weights with 0).

You may reuse your earlier work:

    from exercises.attention_scores import attention_scores
    from exercises.softmax import softmax
    from exercises.apply_weights import apply_attention_weights

Calling scaled_dot_product_attention, nn.MultiheadAttention or their kin is not allowed.
"""
from typing import Optional, Tuple

from torch import Tensor


def attention(Q: Tensor, K: Tensor, V: Tensor, mask: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """Return ``(output, weights)`` of scaled dot-product attention.

    Two queries, three keys and values, d_k = 2:

    >>> import torch
    >>> Q = torch.tensor([[1., 0.], [0., 1.]])
    >>> K = torch.tensor([[1., 0.], [0., 1.], [1., 1.]])
    >>> V = torch.tensor([[1., 2.], [3., 4.], [5., 6.]])
    >>> output, weights = attention(Q, K, V)
    >>> weights
    tensor([[0.4011, 0.1978, 0.4011],
            [0.1978, 0.4011, 0.4011]])
    >>> output
    tensor([[3.0000, 4.0000],
            [3.4067, 4.4067]])

    With a mask, query 0 may see keys 0 and 1, query 1 only key 0:

    >>> mask = torch.tensor([[True, True, False],
    ...                      [True, False, False]])
    >>> output, weights = attention(Q, K, V, mask)
    >>> weights
    tensor([[0.6698, 0.3302, 0.0000],
            [1.0000, 0.0000, 0.0000]])
    >>> output
    tensor([[1.6605, 2.6605],
            [1.0000, 2.0000]])

    Keep the dtype and device of Q, do not modify any input, and stay differentiable.
    """
    raise NotImplementedError("attention: scores, then softmax (with the mask), then weights @ V")
