"""Suite for chapter 2, exercise 2: merge_heads(x) -> (..., L, num_heads * d_head)."""
import pytest
import torch

from grader.testing import gradients, needs_grad, non_contiguous, randn

DIMS = ("position", "feature")


@pytest.mark.points(2)
def test_worked_example(student, reference, expect):
    """Does the docstring's example (two heads, two positions, d_head = 2) give its rows back?"""
    x = torch.tensor([[[0.0, 1.0], [4.0, 5.0]], [[2.0, 3.0], [6.0, 7.0]]])
    expect.close(student(x), reference(x), what="the merged heads", dims=DIMS)


@pytest.mark.parametrize("batch", [(), (2,), (2, 3)], ids=["no_batch", "one_batch_dim", "two_batch_dims"])
def test_random_shapes(student, reference, expect, batch):
    """For any batch dims, with L != num_heads, does each head go back into its slice of the features?"""
    x = randn(*batch, 3, 5, 4)
    expect.close(student(x), reference(x), what="the merged heads", dims=DIMS)


def test_non_contiguous_input(student, reference, expect):
    """Does it work on a transposed view (what the attention of the heads may hand it)?"""
    x = non_contiguous(randn(2, 3, 4, 5))
    expect.close(student(x), reference(x), what="the merged heads", dims=DIMS)


def test_input_is_not_modified(student, reference, expect):
    """Is the caller's x left as it was (and the result right)?"""
    x = randn(2, 2, 3, 4)
    result, after, _ = student.call_keeping_inputs(x)
    expect.unchanged([x], after, ["x"])
    expect.close(result, reference(x), what="the merged heads", dims=DIMS)


def test_gradients(student, reference, expect):
    """Do gradients flow back to x as in the reference?"""
    (x,) = needs_grad(randn(2, 2, 3, 4, dtype=torch.float64))
    grad = randn(2, 3, 8, dtype=torch.float64)
    (got,) = student.gradients((x,), [grad])
    (want,) = gradients(reference, (x,), [grad])
    expect.close(got, want, what="the gradient of x")


@pytest.mark.hidden
@pytest.mark.points(2)
def test_as_many_positions_as_heads(student, reference, expect):
    """With L = num_heads (where a reshape without transpose has the right shape), are the rows right?"""
    x = randn(3, 4, 4, 2, dtype=torch.float64)
    expect.close(student(x), reference(x), what="the merged heads", dims=DIMS)
