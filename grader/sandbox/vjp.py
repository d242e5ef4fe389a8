"""Vector-Jacobian products without torch's costly first use of explicit output gradients."""
from __future__ import annotations

from typing import Sequence

import torch


def vjp(pairs: Sequence[tuple[torch.Tensor, torch.Tensor]], inputs: Sequence[torch.Tensor]) -> tuple:
    """The gradients of ``inputs`` (None where unused) for ``pairs`` of (output, its gradient):
    what ``torch.autograd.grad(outputs, inputs, grad_outputs, allow_unused=True)`` returns.

    Computed as the gradient of ``sum((output * grad).sum())``, whose backward hands each
    output exactly ``grad``: the same numbers, without the lazy import of sympy (about 1 s)
    that explicit ``grad_outputs`` trigger in torch on first use.
    """
    for index, (output, grad) in enumerate(pairs):
        if output.shape != grad.shape:
            raise RuntimeError(f"Mismatch in shape: grad_output[{index}] has a shape of {grad.shape} and "
                               f"output[{index}] has a shape of {output.shape}.")
    total = sum((output * grad.to(output.device, output.dtype)).sum() for output, grad in pairs)
    return torch.autograd.grad(total, list(inputs), allow_unused=True)
