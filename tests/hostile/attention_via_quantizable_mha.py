# Red team, 2026-12-02 (third round): torch.ao's MultiheadAttention, a subclass the ban did not name.
# nn.MultiheadAttention banned by name; torch.ao.nn.quantizable.MultiheadAttention is another class
import math
import torch
from torch.ao.nn.quantizable import MultiheadAttention as MHA


def attention(Q, K, V, mask=None):
    d, dv = Q.shape[-1], V.shape[-1]
    E = max(d, dv)
    lead = torch.broadcast_shapes(Q.shape[:-2], K.shape[:-2], V.shape[:-2])
    Lq, Lk = Q.shape[-2], K.shape[-2]
    q = Q.expand(*lead, Lq, d).reshape(-1, Lq, d) * (math.sqrt(E) / math.sqrt(d))
    k = K.expand(*lead, Lk, d).reshape(-1, Lk, d)
    v = V.expand(*lead, Lk, dv).reshape(-1, Lk, dv)
    q = torch.nn.functional.pad(q, (0, E - d))
    m = MHA(E, 1, bias=False, kdim=d, vdim=dv, batch_first=True, dtype=Q.dtype, device=Q.device)
    with torch.no_grad():
        m.linear_Q.weight.copy_(torch.eye(E, dtype=Q.dtype))
        m.linear_K.weight.copy_(torch.eye(E, d, dtype=Q.dtype))
        m.linear_V.weight.copy_(torch.eye(E, dv, dtype=Q.dtype))
        m.out_proj.weight.copy_(torch.eye(E, dtype=Q.dtype))
    am = None
    if mask is not None:
        am = ~mask.expand(*lead, Lq, Lk).reshape(-1, Lq, Lk)
    out, w = m(q, k, v, attn_mask=am, need_weights=True)
    out = out[..., :dv].reshape(*lead, Lq, dv)
    w = w.reshape(*lead, Lq, Lk)
    if mask is not None:
        full = mask.expand(*lead, Lq, Lk)
        w = w.masked_fill(~full, 0.0)
        out = out.masked_fill(~full.any(-1, keepdim=True), 0.0)
    return out, w
