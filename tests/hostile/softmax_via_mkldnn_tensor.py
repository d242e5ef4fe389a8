# Red team, 2026-12-02 (second round): nn.Softmax2d on an MKLDNN tensor reaches the MkldnnCPU
# kernel of aten._softmax, where the ban (then on the CPU and CUDA keys only) was not.
import torch


def softmax(x, dim=-1):
    moved = x.movedim(dim, -1)
    flat = moved.reshape(1, -1, moved.shape[-1]).transpose(0, 2).contiguous()  # (n, rows, 1): dim -3 is n
    out = torch.nn.Softmax2d()(flat.float().to_mkldnn()).to_dense().to(x.dtype)
    return out.transpose(0, 2).reshape(moved.shape).movedim(-1, dim)
