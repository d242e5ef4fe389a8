def apply_attention_weights(weights, V):
    return weights @ V
