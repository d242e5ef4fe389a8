import torch


def softmax(x, dim=-1):
    # Bug on a GPU: the result is moved to the CPU "to be safe".
    e = torch.exp(x - x.amax(dim=dim, keepdim=True))
    return (e / e.sum(dim=dim, keepdim=True)).cpu()
