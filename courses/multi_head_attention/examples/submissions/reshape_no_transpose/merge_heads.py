def merge_heads(x):
    *batch, h, L, d_head = x.shape
    return x.reshape(*batch, L, h * d_head)
