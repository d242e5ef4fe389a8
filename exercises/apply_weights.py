"""Exercise 3: apply the attention weights to the values.

After softmax, row i of the weights says how much query i takes from each key position.
The output for query i is the weighted average of the value rows:

    output = weights @ V

Shapes:
    weights (..., L_q, L_k)   each row sums to 1
    V       (..., L_k, d_v)   one value row per key position
    output  (..., L_q, d_v)

The lesson this chapter follows ("Applying Attention Weights") prints
[[2.2, 3.2], [2.8, 3.8], [2.6, 3.6]] for its example, but its own code computes the
numbers below; its manual calculation for position 0, [2.4, 3.4], agrees with the code.
"""
from torch import Tensor


def apply_attention_weights(weights: Tensor, V: Tensor) -> Tensor:
    """Return ``weights @ V``.

    The lesson's example: three positions, two value features.

    >>> import torch
    >>> weights = torch.tensor([[0.5, 0.3, 0.2],
    ...                         [0.1, 0.7, 0.2],
    ...                         [0.4, 0.3, 0.3]])
    >>> V = torch.tensor([[1., 2.],
    ...                   [3., 4.],
    ...                   [5., 6.]])
    >>> apply_attention_weights(weights, V)
    tensor([[2.4000, 3.4000],
            [3.2000, 4.2000],
            [2.8000, 3.8000]])

    Position 0: 0.5 * [1, 2] + 0.3 * [3, 4] + 0.2 * [5, 6] = [2.4, 3.4].

    Keep the dtype and device, do not modify the inputs, and stay differentiable.
    """
    raise NotImplementedError("apply_attention_weights: combine the value rows with the weights")
