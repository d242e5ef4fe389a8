"""The one closeness rule (grader/compare/closeness.py), as suites, misconceptions and blame use it."""
from __future__ import annotations

import math

import pytest
import torch

from grader.compare.closeness import is_close, mismatches
from grader.course.load import Tolerance
from grader.testing import Expect

LOOSE = {"float32": Tolerance(rtol=1e-3, atol=1e-3)}


@pytest.mark.parametrize("got, want, close", [
    ([1.0, 2.0], [1.0, 2.0005], True),                  # within rtol * |want| + atol
    ([1.0, 2.0], [1.0, 2.1], False),
    ([math.nan], [math.nan], True),                     # NaN matches NaN
    ([1.0], [math.nan], False),
    ([math.inf], [math.inf], True),
    ([-math.inf], [math.inf], False),
    ([1.0], [math.inf], False),                         # |1 - inf| <= rtol * inf, yet not close
    ([math.inf], [1.0], False),
])
def test_closeness_of_values(got, want, close):
    """Is each pair of values close exactly when the rule says, infinities and NaN included?"""
    got_t, want_t = torch.tensor(got), torch.tensor(want)
    assert is_close(got_t, want_t, LOOSE) is close
    assert bool(mismatches(got_t, want_t, LOOSE["float32"]).any()) is (not close)


def test_expect_close_and_is_close_agree():
    """Does a suite's expect.close fail exactly where the misconceptions' rule says 'not close'?"""
    expect = Expect(LOOSE)
    want = torch.tensor([0.5, math.inf, math.nan, 2.0])
    for got in (want.clone(), torch.tensor([0.5, 1.0, math.nan, 2.0]), torch.tensor([0.5, math.inf, 0.0, 2.0])):
        close = is_close(got, want, LOOSE)
        try:
            expect.close(got, want)
            passed = True
        except AssertionError:
            passed = False
        assert passed is close


def test_dtype_shape_and_structure_must_match():
    """Are another dtype, another shape, or a pair of another length never close?"""
    x = torch.ones(2, 3)
    assert not is_close(x.double(), x, LOOSE)
    assert not is_close(x.reshape(3, 2), x, LOOSE)
    assert is_close((x, x), (x, x), LOOSE) and not is_close((x,), (x, x), LOOSE)
    assert not is_close(torch.tensor([1, 2]), torch.tensor([1, 3]), LOOSE)  # integers: exact
