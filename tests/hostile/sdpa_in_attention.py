import torch
import torch.nn.functional as F


def attention(Q, K, V, mask=None):
    d_k = Q.size(-1)
    weights = torch.softmax(Q @ K.transpose(-2, -1) / d_k ** 0.5, dim=-1)
    return F.scaled_dot_product_attention(Q, K, V, attn_mask=mask), weights
