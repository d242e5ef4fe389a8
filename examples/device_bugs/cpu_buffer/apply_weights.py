import torch


def apply_attention_weights(weights, V):
    # Bug on a GPU: the output buffer is created without device=..., so it lives on the CPU.
    out = torch.zeros(weights.shape[:-1] + V.shape[-1:], dtype=V.dtype)
    out += weights @ V
    return out
