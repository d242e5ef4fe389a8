"""The one closeness rule: when a student's tensor counts as the reference's.

Suites' ``expect.close`` (grader/testing.py), misconception matching and blame all ask
here, so a result that one of them calls right, the others call right too. As in torch's
``assert_close``, one mismatch mask gives both the verdict and, in ``expect.close``, the
message (how many values differ, and where the worst one is).

A value matches within the course's tolerance for the expected dtype (course.yaml
``tolerance``: ``{"float32": Tolerance(rtol, atol)}``; a dtype not listed, integers and
bools must be exact): ``|got - want| <= atol + rtol * |want|``, compared in float64;
NaN matches NaN, and an infinity only the same infinity.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from ..course.load import Tolerance

EXACT = Tolerance(rtol=0.0, atol=0.0)


def tolerance_for(tolerances: Mapping[str, Tolerance], dtype: torch.dtype) -> Tolerance:
    """The course's tolerance for ``dtype`` (``torch.float32`` -> ``tolerances["float32"]``)."""
    return tolerances.get(str(dtype).removeprefix("torch."), EXACT)


def mismatches(got: torch.Tensor, want: torch.Tensor, tolerance: Tolerance) -> torch.Tensor:
    """A bool mask of ``want``'s shape, True where ``got`` is not close to ``want``.
    Both tensors must have the same shape; ``got`` may sit on another device."""
    got64, want64 = got.detach().double().cpu(), want.detach().double().cpu()
    equal = (got64 == want64) | (got64.isnan() & want64.isnan())  # also equal infinities
    # as in torch.isclose: an infinity is near only itself (|1 - inf| <= rtol * inf holds)
    near = ((got64 - want64).abs() <= tolerance.atol + tolerance.rtol * want64.abs()) & want64.isfinite()
    return ~(equal | near)


def is_close(got: Any, want: Any, tolerances: Mapping[str, Tolerance]) -> bool:
    """``got`` matches ``want``: tensors of the same shape and dtype within the tolerance,
    tuples and lists item by item, anything else by equality of the same type."""
    if isinstance(want, torch.Tensor):
        if not isinstance(got, torch.Tensor) or got.shape != want.shape or got.dtype != want.dtype:
            return False
        return not bool(mismatches(got, want, tolerance_for(tolerances, want.dtype)).any())
    if isinstance(want, (tuple, list)):
        return (isinstance(got, (tuple, list)) and len(got) == len(want)
                and all(is_close(g, w, tolerances) for g, w in zip(got, want)))
    try:
        return type(got) is type(want) and bool(got == want)
    except Exception:
        return False


__all__ = ["EXACT", "tolerance_for", "mismatches", "is_close"]
