# Red team, 2026-12-02 (third round): a softmax from scaled_dot_product_attention with V = I, not banned in softmax then.
# softmax from the library's fused CPU attention kernel: softmax(x @ I) @ I
import torch
from torch.nn import functional as F


def softmax(x, dim=-1):
    xt = x.movedim(dim, -1).contiguous()
    n = xt.shape[-1]
    eye = torch.eye(n, dtype=x.dtype, device=x.device)[None, None]
    y = F.scaled_dot_product_attention(xt.reshape(1, 1, -1, n), eye, eye, scale=1.0)
    return y.reshape(xt.shape).movedim(-1, dim)
