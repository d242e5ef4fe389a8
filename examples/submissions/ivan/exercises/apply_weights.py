def apply_attention_weights(weights, V):
    return (V.transpose(-2, -1) @ weights.transpose(-2, -1)).transpose(-2, -1)
