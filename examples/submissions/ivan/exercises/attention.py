import torch

from exercises.attention_scores import attention_scores
from exercises.softmax import softmax
from exercises.apply_weights import apply_attention_weights


def attention(Q, K, V, mask=None):
    scores = attention_scores(Q, K)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = softmax(scores, dim=-1)
    if mask is not None:
        weights = weights.masked_fill(~mask, 0.0)
    return weights, apply_attention_weights(weights, V)
