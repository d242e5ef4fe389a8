def split_heads(x, num_heads):
    *batch, L, d_model = x.shape
    return x.reshape(*batch, num_heads, L, d_model // num_heads)
