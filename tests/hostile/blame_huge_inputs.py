# A wrong attention whose every call asks softmax for two 128 MiB inputs: during blame, that
# softmax is the grader's reference, computed in the grader (red team: grader at 5.8 GB).
import torch

from exercises.softmax import softmax


def attention(Q, K, V, mask=None):
    for _ in range(2):
        try:
            softmax(torch.zeros(4096, 8192, dtype=torch.float32))
        except Exception:
            pass
    scores = Q @ K.transpose(-2, -1)  # wrong: not divided by sqrt(d_k)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = softmax(scores, dim=-1)
    weights = torch.nan_to_num(weights)
    return weights @ V, weights
