"""Suite for chapter 2, exercise 3: multi_head_attention(Q, K, V, num_heads, causal=False)
-> (output (..., L_q, d_model), weights (..., num_heads, L_q, L_k)).

With causal=True, query i attends to keys 0..i (itself included)."""
import pytest
import torch

from grader.testing import gradients, needs_grad, non_contiguous, randn

OUT_DIMS = ("position", "feature")
WEIGHT_DIMS = ("head", "query", "key")
PAIR = "(output, weights)"

# A failed test's report pictures the weights (item 1 of the pair) of its last call.
pytestmark = pytest.mark.picture(part=1, axes=("query", "key"))


def qkv(*batch: int, L_q: int = 4, L_k: int = 6, d_model: int = 8, dtype=torch.float32):
    return (randn(*batch, L_q, d_model, dtype=dtype), randn(*batch, L_k, d_model, dtype=dtype),
            randn(*batch, L_k, d_model, dtype=dtype))


def check(student, reference, expect, Q, K, V, num_heads, **kwargs):
    """Compare the pair (output, weights) with the reference's; return the student's."""
    output, weights = expect.pair(student(Q, K, V, num_heads, **kwargs), what="multi_head_attention", names=PAIR)
    want_output, want_weights = reference(Q, K, V, num_heads, **kwargs)
    expect.close(weights, want_weights, what="the attention weights", dims=WEIGHT_DIMS)
    expect.close(output, want_output, what="the output", dims=OUT_DIMS)
    return output, weights


@pytest.mark.points(2)
def test_worked_example(student, reference, expect):
    """Does the docstring's example (three positions, d_model = 4, two heads) give its output and weights?"""
    X = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    check(student, reference, expect, X, X, X, 2)


@pytest.mark.points(2)
def test_worked_example_causal(student, reference, expect):
    """Does the docstring's causal example give its output and weights?"""
    X = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    check(student, reference, expect, X, X, X, 2, causal=True)


@pytest.mark.parametrize("batch", [(), (2,), (2, 3)], ids=["no_batch", "one_batch_dim", "two_batch_dims"])
def test_random_shapes(student, reference, expect, batch):
    """Without a mask, is it right for any batch dims and L_q != L_k?"""
    check(student, reference, expect, *qkv(*batch), 2)


def test_returns_output_then_weights(student, reference, expect):
    """Is the pair (output, weights), with shapes (..., L_q, d_model) and (..., num_heads, L_q, L_k)?"""
    Q, K, V = qkv(2, L_q=3, L_k=5, d_model=8)
    output, weights = expect.pair(student(Q, K, V, 4), what="multi_head_attention", names=PAIR)
    assert isinstance(output, torch.Tensor) and output.shape == (2, 3, 8), (
        "the first value returned should be the output, shape (2, 3, 8) = (..., L_q, d_model), "
        f"got {tuple(getattr(output, 'shape', ()))}. Return (output, weights) in that order.")
    assert isinstance(weights, torch.Tensor) and weights.shape == (2, 4, 3, 5), (
        "the second value returned should be the weights of every head, shape (2, 4, 3, 5) = "
        f"(..., num_heads, L_q, L_k), got {tuple(getattr(weights, 'shape', ()))}. Keep one matrix per head.")
    check(student, reference, expect, Q, K, V, 4)


@pytest.mark.points(2)
def test_causal(student, reference, expect):
    """With causal=True, does query i attend to keys 0..i only, in every head?"""
    Q, K, V = qkv(2, L_q=5, L_k=5)
    _, weights = check(student, reference, expect, Q, K, V, 2, causal=True)
    future = ~torch.ones(5, 5, dtype=torch.bool).tril()
    assert bool((weights[..., future] == 0).all()), (
        "a query should give weight exactly 0 to the keys after it (set their scores to -inf "
        "before the softmax).")


def test_one_head_is_attention(student, reference, expect):
    """With one head, is it chapter 1's attention, weights with a head dimension of 1?"""
    check(student, reference, expect, *qkv(2, L_q=3, L_k=3, d_model=4), 1, causal=True)


def test_gradients(student, reference, expect):
    """With a causal mask, do gradients reach Q, K and V as in the reference?"""
    Q, K, V = needs_grad(*qkv(2, L_q=4, L_k=4, dtype=torch.float64))
    grad_out, grad_weights = randn(2, 4, 8, dtype=torch.float64), randn(2, 2, 4, 4, dtype=torch.float64)
    got = student.gradients((Q, K, V, 2, True), [grad_out, grad_weights])
    want = gradients(reference, (Q, K, V, 2, True), [grad_out, grad_weights])
    for name, g, w in zip("QKV", got, want):
        expect.close(g, w, what=f"the gradient of {name}")


def test_non_contiguous_inputs(student, reference, expect):
    """Does it work on transposed views of Q, K and V?"""
    check(student, reference, expect, *(non_contiguous(t) for t in qkv(2)), 4)


def test_inputs_are_not_modified(student, reference, expect):
    """Are the caller's Q, K and V left as they were (and the result right)?"""
    Q, K, V = qkv(2, L_q=4, L_k=4)
    result, after, _ = student.call_keeping_inputs(Q, K, V, 2, True)
    expect.unchanged([Q, K, V], after[:3], ["Q", "K", "V"])
    output, weights = expect.pair(result, what="multi_head_attention", names=PAIR)
    want_output, want_weights = reference(Q, K, V, 2, True)
    expect.close(weights, want_weights, what="the attention weights", dims=WEIGHT_DIMS)
    expect.close(output, want_output, what="the output", dims=OUT_DIMS)


@pytest.mark.hidden
@pytest.mark.points(2)
def test_many_heads_causal(student, reference, expect):
    """Batch, 4 heads, L = num_heads and a causal mask, in float64?"""
    check(student, reference, expect, *qkv(2, L_q=4, L_k=4, d_model=16, dtype=torch.float64), 4, causal=True)


@pytest.mark.hidden
def test_causal_more_keys_than_queries(student, reference, expect):
    """Causal with L_q < L_k: does query i still see keys 0..i?"""
    check(student, reference, expect, *qkv(3, L_q=3, L_k=6, dtype=torch.float64), 2, causal=True)


@pytest.mark.hidden
def test_repeated_calls_with_new_values(student, reference, expect):
    """Does every call compute afresh (no cached or hard-coded results)?"""
    for _ in range(3):
        check(student, reference, expect, *qkv(L_q=2, L_k=3, d_model=4), 2)
