"""Reference: multi-head attention, built from split_heads and merge_heads."""
import math
from typing import Tuple

import torch
from torch import Tensor

from .merge_heads import merge_heads
from .split_heads import split_heads


def multi_head_attention(Q: Tensor, K: Tensor, V: Tensor, num_heads: int,
                         causal: bool = False) -> Tuple[Tensor, Tensor]:
    """Return ``(output, weights)``: output (..., L_q, d_model), weights (..., num_heads, L_q, L_k)."""
    L_q, L_k = Q.size(-2), K.size(-2)
    q, k, v = (split_heads(t, num_heads) for t in (Q, K, V))  # (..., h, L, d_head) each
    d_head = q.size(-1)  # the scale is per head: sqrt(d_head), not sqrt(d_model)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_head)  # (..., h, L_q, d_head) x (..., h, d_head, L_k) -> (..., h, L_q, L_k)
    if causal:
        # query i may attend to keys 0..i, itself included: on and below the diagonal
        allowed = torch.ones(L_q, L_k, dtype=torch.bool, device=Q.device).tril()
        scores = scores.masked_fill(~allowed, float("-inf"))
    weights = torch.softmax(scores, dim=-1)  # (..., h, L_q, L_k), rows sum to 1
    output = weights @ v  # (..., h, L_q, L_k) x (..., h, L_k, d_head) -> (..., h, L_q, d_head)
    return merge_heads(output), weights  # (..., L_q, d_model), (..., h, L_q, L_k)
