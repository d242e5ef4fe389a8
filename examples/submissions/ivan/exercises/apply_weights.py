def apply_attention_weights(weights, V):
    return weights.transpose(-2, -1) @ V
