def attention(Q, K, V, mask=None):
    raise NotImplementedError
