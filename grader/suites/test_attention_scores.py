"""Suite for exercise 1: attention_scores(Q, K) = Q @ K^T / sqrt(d_k)."""
import pytest
import torch

from grader.testing import gradients, needs_grad, non_contiguous, randn

DIMS = ("query", "key")

# (leading batch dims, L_q, L_k, d_k): L_q != L_k and d_k != L everywhere, so a wrong
# transpose or a wrong scale cannot pass by accident.
SHAPES = {
    "no_batch": ((), 3, 5, 4),
    "one_batch_dim": ((2,), 5, 7, 8),
    "two_batch_dims": ((2, 3), 4, 6, 16),
}


@pytest.mark.points(2)
def test_worked_example(student, reference, expect):
    """Does the docstring's example (two queries, three keys, d_k = 4) give its scores?"""
    Q = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 2.0, 0.0, 2.0]])
    K = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 1.0, 0.0, -1.0], [2.0, 0.0, 0.0, 0.0]])
    expect.close(student(Q, K), reference(Q, K), what="the scores", dims=DIMS)


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_random_shapes(student, reference, expect, shape):
    """Are the scores right for any batch dims, with L_q != L_k?"""
    batch, L_q, L_k, d_k = shape
    Q, K = randn(*batch, L_q, d_k), randn(*batch, L_k, d_k)
    expect.close(student(Q, K), reference(Q, K), what="the scores", dims=DIMS)


def test_batch_equal_to_key_and_feature_sizes(student, reference, expect):
    """With batch = L_k = d_k = 4 (shapes where a wrong transpose still runs), are the scores right?"""
    Q, K = randn(4, 3, 4), randn(4, 4, 4)
    expect.close(student(Q, K), reference(Q, K), what="the scores", dims=DIMS)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16],
                         ids=["float32", "float64", "float16", "bfloat16"])
def test_dtype_is_kept(student, reference, expect, dtype):
    """Do float32 inputs give float32 scores, and float64 float64?"""
    Q, K = randn(2, 4, 8, dtype=dtype), randn(2, 6, 8, dtype=dtype)
    expect.close(student(Q, K), reference(Q, K), what="the scores", dims=DIMS)


def test_non_contiguous_inputs(student, reference, expect):
    """Does it work on transposed views (non-contiguous memory), as attention code produces?"""
    Q, K = non_contiguous(randn(2, 5, 8)), non_contiguous(randn(2, 7, 8))
    expect.close(student(Q, K), reference(Q, K), what="the scores", dims=DIMS)


def test_inputs_are_not_modified(student, reference, expect):
    """Are the caller's Q and K left as they were (and the scores right)?"""
    Q, K = randn(2, 4, 8), randn(2, 6, 8)
    scores, after, _ = student.call_keeping_inputs(Q, K)
    expect.unchanged([Q, K], after, ["Q", "K"])
    expect.close(scores, reference(Q, K), what="the scores", dims=DIMS)


def test_gradients(student, reference, expect):
    """Does the gradient flow back to Q and K as in the reference?"""
    Q, K = needs_grad(randn(2, 4, 8), randn(2, 6, 8))
    grad_scores = randn(2, 4, 6)
    got = student.gradients((Q, K), [grad_scores])
    want = gradients(reference, (Q, K), [grad_scores])
    expect.close(got[0], want[0], what="the gradient of Q")
    expect.close(got[1], want[1], what="the gradient of K")


@pytest.mark.hidden
def test_scale_uses_d_k(student, reference, expect):
    """Is the scale sqrt(d_k) (the feature size), not the sequence length or d_k itself?"""
    Q, K = randn(3, 9, 25, dtype=torch.float64), randn(3, 4, 25, dtype=torch.float64)
    expect.close(student(Q, K), reference(Q, K), what="the scores", dims=DIMS)


@pytest.mark.hidden
def test_large_values(student, reference, expect):
    """Are large inputs handled without loss (values around 1e3)?"""
    Q, K = randn(2, 5, 8, scale=1e3, dtype=torch.float64), randn(2, 3, 8, scale=1e3, dtype=torch.float64)
    expect.close(student(Q, K), reference(Q, K), what="the scores", dims=DIMS)


@pytest.mark.hidden
def test_repeated_calls_with_new_values(student, reference, expect):
    """Does every call compute afresh (no cached or hard-coded results)?"""
    for _ in range(3):
        Q, K = randn(2, 3, 4), randn(2, 3, 4)
        expect.close(student(Q, K), reference(Q, K), what="the scores", dims=DIMS)
