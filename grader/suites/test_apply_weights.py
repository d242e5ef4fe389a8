"""Suite for exercise 3: apply_attention_weights(weights, V) = weights @ V."""
import pytest
import torch

from grader.testing import gradients, needs_grad, non_contiguous, randn

DIMS = ("query", "feature")


def random_weights(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Rows that are positive and sum to 1, as softmax produces."""
    w = torch.rand(*shape, dtype=dtype) + 0.1
    return w / w.sum(dim=-1, keepdim=True)


@pytest.mark.points(2)
def test_lesson_example(student, reference, expect):
    """Does the lesson's example give [[2.4, 3.4], [3.2, 4.2], [2.8, 3.8]]?"""
    weights = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.7, 0.2], [0.4, 0.3, 0.3]])
    V = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    expect.close(student(weights, V), reference(weights, V), what="the output", dims=DIMS)


@pytest.mark.parametrize("shape", [((), 4, 6, 3), ((2,), 5, 7, 4), ((2, 3), 4, 6, 8)],
                         ids=["no_batch", "one_batch_dim", "two_batch_dims"])
def test_random_shapes(student, reference, expect, shape):
    """Is the output right for any batch dims, with L_q != L_k and d_v != L_k?"""
    batch, L_q, L_k, d_v = shape
    weights, V = random_weights(*batch, L_q, L_k), randn(*batch, L_k, d_v)
    expect.close(student(weights, V), reference(weights, V), what="the output", dims=DIMS)


def test_square_shapes(student, reference, expect):
    """With L_q = L_k = d_v = 4 (shapes where a product in the wrong order still runs), is the output right?"""
    weights, V = random_weights(2, 4, 4), randn(2, 4, 4)
    expect.close(student(weights, V), reference(weights, V), what="the output", dims=DIMS)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16],
                         ids=["float32", "float64", "float16", "bfloat16"])
def test_dtype_is_kept(student, reference, expect, dtype):
    """Is the input's dtype kept?"""
    weights, V = random_weights(2, 4, 5, dtype=dtype), randn(2, 5, 3, dtype=dtype)
    expect.close(student(weights, V), reference(weights, V), what="the output", dims=DIMS)


def test_non_contiguous_inputs(student, reference, expect):
    """Does it work on transposed views?"""
    weights, V = non_contiguous(random_weights(2, 4, 5)), non_contiguous(randn(2, 5, 3))
    expect.close(student(weights, V), reference(weights, V), what="the output", dims=DIMS)


def test_inputs_are_not_modified(student, reference, expect):
    """Are the caller's weights and V left as they were (and the output right)?"""
    weights, V = random_weights(2, 4, 5), randn(2, 5, 3)
    output, after, _ = student.call_keeping_inputs(weights, V)
    expect.unchanged([weights, V], after, ["weights", "V"])
    expect.close(output, reference(weights, V), what="the output", dims=DIMS)


def test_gradients(student, reference, expect):
    """Does the gradient flow back to the weights and to V as in the reference?"""
    weights, V = needs_grad(random_weights(2, 4, 5, dtype=torch.float64), randn(2, 5, 3, dtype=torch.float64))
    grad_out = randn(2, 4, 3, dtype=torch.float64)
    got = student.gradients((weights, V), [grad_out])
    want = gradients(reference, (weights, V), [grad_out])
    expect.close(got[0], want[0], what="the gradient of the weights")
    expect.close(got[1], want[1], what="the gradient of V")


@pytest.mark.hidden
def test_single_key(student, reference, expect):
    """With one key, is every output row that key's value?"""
    weights, V = torch.ones(3, 4, 1), randn(3, 1, 6)
    expect.close(student(weights, V), reference(weights, V), what="the output", dims=DIMS)


@pytest.mark.hidden
def test_repeated_calls_with_new_values(student, reference, expect):
    """Does every call compute afresh (no cached or hard-coded results)?"""
    for _ in range(3):
        weights, V = random_weights(3, 3), randn(3, 2)
        expect.close(student(weights, V), reference(weights, V), what="the output", dims=DIMS)
