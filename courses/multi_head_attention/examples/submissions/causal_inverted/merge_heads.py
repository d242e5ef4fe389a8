def merge_heads(x):
    *batch, h, L, d_head = x.shape
    return x.transpose(-3, -2).reshape(*batch, L, h * d_head)
