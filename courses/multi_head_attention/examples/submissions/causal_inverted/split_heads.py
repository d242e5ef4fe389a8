def split_heads(x, num_heads):
    *batch, L, d_model = x.shape
    x = x.reshape(*batch, L, num_heads, d_model // num_heads)
    return x.transpose(-3, -2)
