import torch


def normalise(x, dim):
    return torch.softmax(x, dim)
