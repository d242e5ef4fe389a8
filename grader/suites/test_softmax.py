"""Suite for exercise 2: softmax(x, dim=-1), numerically stable, no library softmax."""
import pytest
import torch

from grader.testing import gradients, needs_grad, non_contiguous, randn

# A failed test's report pictures the weights of its last call: the student's and the reference's.
pytestmark = pytest.mark.picture


@pytest.mark.points(2)
def test_worked_example(student, reference, expect):
    """Does softmax([1, 2, 3]) give the docstring's [0.0900, 0.2447, 0.6652]?"""
    x = torch.tensor([1.0, 2.0, 3.0])
    expect.close(student(x), reference(x), what="softmax([1, 2, 3])")


@pytest.mark.parametrize("shape", [(7,), (4, 6), (2, 3, 5)], ids=["1d", "2d", "3d"])
def test_last_dim_by_default(student, reference, expect, shape):
    """Without dim, is the softmax taken along the last dimension?"""
    x = randn(*shape)
    expect.close(student(x), reference(x), what="softmax(x)")


@pytest.mark.parametrize("dim", [0, 1, -2], ids=["dim0", "dim1", "dim-2"])
def test_other_dims(student, reference, expect, dim):
    """Is the dim argument respected (the result sums to 1 along dim, not elsewhere)?"""
    x = randn(3, 4, 5)
    expect.close(student(x, dim=dim), reference(x, dim=dim), what=f"softmax(x, dim={dim})")


@pytest.mark.points(2)
def test_large_logits_do_not_overflow(student, reference, expect):
    """Do logits around +-1e4 give finite weights (subtract the max before exp)?"""
    x = randn(4, 6, scale=1e4)
    expect.close(student(x), reference(x), what="softmax of logits around 1e4")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16],
                         ids=["float32", "float64", "float16", "bfloat16"])
def test_dtype_is_kept(student, reference, expect, dtype):
    """Is the input's dtype kept?"""
    x = randn(3, 5, dtype=dtype)
    expect.close(student(x), reference(x), what="softmax(x)")


def test_non_contiguous_input(student, reference, expect):
    """Does it work on a transposed view?"""
    x = non_contiguous(randn(2, 5, 6))
    expect.close(student(x), reference(x), what="softmax of a transposed view")


def test_shift_invariance(student, reference, expect):
    """Is softmax(x + c) = softmax(x) for a constant c along dim (the property stability relies on)?"""
    x = randn(4, 6, dtype=torch.float64)
    c = randn(4, 1, dtype=torch.float64, scale=50.0)
    base = student(x)
    expect.close(base, reference(x), what="softmax(x)")
    expect.close(student(x + c), base, what="softmax(x + c) compared with softmax(x)")


def test_input_is_not_modified(student, reference, expect):
    """Is the caller's x left as it was (and the result right)?"""
    x = randn(3, 5)
    result, after, _ = student.call_keeping_inputs(x)
    expect.unchanged([x], after, ["x"])
    expect.close(result, reference(x), what="softmax(x)")


def test_gradients(student, reference, expect):
    """Does the gradient flow back to x as in the reference?"""
    (x,) = needs_grad(randn(3, 5, dtype=torch.float64))
    grad_out = randn(3, 5, dtype=torch.float64)
    got = student.gradients((x,), [grad_out])
    expect.close(got[0], gradients(reference, (x,), [grad_out])[0], what="the gradient of x")


@pytest.mark.hidden
def test_large_negative_logits(student, reference, expect):
    """Do very negative logits (about -1e4, float64) still give weights that sum to 1?"""
    x = randn(3, 7, dtype=torch.float64, scale=10.0) - 1e4
    expect.close(student(x), reference(x), what="softmax of logits around -1e4")


@pytest.mark.hidden
def test_keyword_dim_on_4d(student, reference, expect):
    """Does dim work on batch-and-heads shaped input (dim=1 of 4)?"""
    x = randn(2, 3, 4, 5)
    expect.close(student(x, dim=1), reference(x, dim=1), what="softmax(x, dim=1)")


@pytest.mark.hidden
def test_repeated_calls_with_new_values(student, reference, expect):
    """Does every call compute afresh (no cached or hard-coded results)?"""
    for _ in range(3):
        x = randn(3)
        expect.close(student(x), reference(x), what="softmax(x)")
