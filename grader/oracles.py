"""The public oracle: each exercise computed with torch's own functions.

A student release (``python -m grader release``) ships no ``solutions/``: its public tests
compare the student's functions with these instead. They run in the grader process only,
never in the student's worker, so the exercises' banned operations do not apply here. In
the course repository the reference solutions stay the reference; ``tests/test_release.py``
checks that both give the same verdicts.

Keyed by exercise id, as in ``course.yaml``; an exercise without an entry here needs
``solutions/<id>.py`` (``grader/course.py`` says so when a release lacks one).
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor


def attention_scores(Q: Tensor, K: Tensor) -> Tensor:
    """``Q K^T / sqrt(d_k)``: ``K.mT`` swaps the last two dimensions whatever the batch dims."""
    return torch.div(torch.matmul(Q, K.mT), math.sqrt(Q.shape[-1]))


def softmax(x: Tensor, dim: int = -1) -> Tensor:
    return torch.softmax(x, dim=dim)


def apply_attention_weights(weights: Tensor, V: Tensor) -> Tensor:
    return torch.matmul(weights, V)


def attention(Q: Tensor, K: Tensor, V: Tensor, mask: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """``(output, weights)``: the output from torch's fused kernel, the weights (which that
    kernel does not return) from torch's softmax. A query that may attend to no key gets
    zero weights and a zero output, the course's convention (and the kernel's)."""
    logits = attention_scores(Q, K)
    if mask is not None:
        logits = logits.masked_fill(mask.logical_not(), -math.inf)
    weights = torch.softmax(logits, dim=-1)
    output = F.scaled_dot_product_attention(Q, K, V, attn_mask=mask)
    if mask is not None:
        blind = mask.logical_not().all(dim=-1, keepdim=True)  # (..., L_q, 1): sees no key
        weights = torch.where(blind, torch.zeros_like(weights), weights)  # softmax of all -inf is NaN
        output = torch.where(blind, torch.zeros_like(output), output)
    return output, weights


ORACLES: dict[str, Callable] = {
    "attention_scores": attention_scores,
    "softmax": softmax,
    "apply_weights": apply_attention_weights,
    "attention": attention,
}
