def apply_attention_weights(weights, V):
    raise NotImplementedError
