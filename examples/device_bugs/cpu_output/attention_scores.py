import math
import torch


def attention_scores(Q, K):
    d_k = Q.size(-1)
    return Q @ K.transpose(-2, -1) / math.sqrt(d_k)
