"""Suite for chapter 2, exercise 1: split_heads(x, num_heads) -> (..., num_heads, L, d_head)."""
import pytest
import torch

from grader.testing import gradients, needs_grad, non_contiguous, randn

DIMS = ("head", "position", "feature")


@pytest.mark.points(2)
def test_worked_example(student, reference, expect):
    """Does the docstring's example (two positions, d_model = 4, two heads) give its heads?"""
    x = torch.arange(8.0).reshape(2, 4)
    expect.close(student(x, 2), reference(x, 2), what="the heads", dims=DIMS)


@pytest.mark.parametrize("batch", [(), (2,), (2, 3)], ids=["no_batch", "one_batch_dim", "two_batch_dims"])
def test_random_shapes(student, reference, expect, batch):
    """For any batch dims, with L != num_heads, is each head its own slice of the features?"""
    x = randn(*batch, 5, 12)
    expect.close(student(x, 3), reference(x, 3), what="the heads", dims=DIMS)


def test_one_head(student, reference, expect):
    """With one head, is the result x with a head dimension of size 1 in front of the positions?"""
    x = randn(2, 4, 6)
    expect.close(student(x, 1), reference(x, 1), what="the heads", dims=DIMS)


def test_non_contiguous_input(student, reference, expect):
    """Does it work on a transposed view of x?"""
    x = non_contiguous(randn(2, 6, 8))
    expect.close(student(x, 4), reference(x, 4), what="the heads", dims=DIMS)


def test_input_is_not_modified(student, reference, expect):
    """Is the caller's x left as it was (and the result right)?"""
    x = randn(2, 3, 8)
    result, after, _ = student.call_keeping_inputs(x, 2)
    expect.unchanged([x], after[:1], ["x"])
    expect.close(result, reference(x, 2), what="the heads", dims=DIMS)


def test_gradients(student, reference, expect):
    """Do gradients flow back to x as in the reference?"""
    (x,) = needs_grad(randn(2, 3, 8, dtype=torch.float64))
    grad = randn(2, 2, 3, 4, dtype=torch.float64)
    (got,) = student.gradients((x, 2), [grad])
    (want,) = gradients(reference, (x, 2), [grad])
    expect.close(got, want, what="the gradient of x")


@pytest.mark.hidden
@pytest.mark.points(2)
def test_as_many_positions_as_heads(student, reference, expect):
    """With L = num_heads (where a reshape without transpose has the right shape), are the heads right?"""
    x = randn(3, 4, 8, dtype=torch.float64)
    expect.close(student(x, 4), reference(x, 4), what="the heads", dims=DIMS)


@pytest.mark.hidden
def test_float64_is_kept(student, reference, expect):
    """Are float64 inputs split into float64 heads?"""
    x = randn(2, 5, 6, dtype=torch.float64)
    expect.close(student(x, 2), reference(x, 2), what="the heads", dims=DIMS)
