import math

import torch

from exercises.merge_heads import merge_heads
from exercises.split_heads import split_heads


def multi_head_attention(Q, K, V, num_heads, causal=False):
    q, k, v = split_heads(Q, num_heads), split_heads(K, num_heads), split_heads(V, num_heads)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    if causal:
        future = torch.triu(torch.ones(Q.size(-2), K.size(-2), dtype=torch.bool))
        scores = scores.masked_fill(future, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return merge_heads(weights @ v), weights
