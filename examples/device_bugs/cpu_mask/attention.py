import math

import torch


def attention(Q, K, V, mask=None):
    scores = Q @ K.transpose(-2, -1) / math.sqrt(Q.size(-1))
    if mask is not None:
        # Bug on a GPU: the keep-mask is rebuilt on the CPU (no device=...), so masked_fill
        # mixes a CPU mask with CUDA scores. On the CPU everything is fine.
        keep = torch.zeros(mask.shape, dtype=torch.bool)
        keep[mask.cpu()] = True
        scores = scores.masked_fill(~keep, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    if mask is not None:
        weights = weights.masked_fill(~keep, 0.0)
    return weights @ V, weights
