"""Suite for exercise 4: attention(Q, K, V, mask=None) -> (output, weights).

The mask is bool and broadcasts to (..., L_q, L_k); True means "may attend". Masked keys get
weight exactly 0; a query with no key to attend to gets zero weights and a zero output.
"""
import pytest
import torch

from grader.testing import causal_mask, gradients, needs_grad, non_contiguous, padding_mask, randn

OUT_DIMS = ("query", "feature")
WEIGHT_DIMS = ("query", "key")
PAIR = "(output, weights)"  # what attention returns, as messages name it

# A failed test's report pictures the weights (item 1 of the pair) of its last call.
pytestmark = pytest.mark.picture(part=1, axes=("query", "key"))


def qkv(*batch: int, L_q: int = 4, L_k: int = 6, d_k: int = 8, d_v: int = 5, dtype=torch.float32):
    return randn(*batch, L_q, d_k, dtype=dtype), randn(*batch, L_k, d_k, dtype=dtype), randn(*batch, L_k, d_v, dtype=dtype)


def check_attention(student, reference, expect, Q, K, V, mask=None):
    """Compare the pair (output, weights) with the reference's; return the student's."""
    args = (Q, K, V) if mask is None else (Q, K, V, mask)
    output, weights = expect.pair(student(*args), what="attention", names=PAIR)
    want_output, want_weights = reference(*args)
    expect.close(weights, want_weights, what="the attention weights", dims=WEIGHT_DIMS)
    expect.close(output, want_output, what="the output", dims=OUT_DIMS)
    return output, weights


@pytest.mark.points(2)
def test_worked_example(student, reference, expect):
    """Does the docstring's example (two queries, three keys) give its output and weights?"""
    Q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    K = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    V = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    check_attention(student, reference, expect, Q, K, V)


@pytest.mark.parametrize("batch", [(), (2,), (2, 3)], ids=["no_batch", "one_batch_dim", "two_batch_dims"])
def test_no_mask_random_shapes(student, reference, expect, batch):
    """Without a mask, is attention right for any batch dims, L_q != L_k and d_k != d_v?"""
    check_attention(student, reference, expect, *qkv(*batch))


def test_returns_output_then_weights(student, reference, expect):
    """Is the pair in the order (output, weights), with shapes (..., L_q, d_v) and (..., L_q, L_k)?"""
    Q, K, V = qkv(2, L_q=3, L_k=5, d_k=4, d_v=7)
    output, weights = expect.pair(student(Q, K, V), what="attention", names=PAIR)
    assert isinstance(output, torch.Tensor) and output.shape == (2, 3, 7), (
        f"the first value returned should be the output, shape (2, 3, 7) = (..., L_q, d_v), "
        f"got {tuple(getattr(output, 'shape', ()))}. Return (output, weights) in that order.")
    assert isinstance(weights, torch.Tensor) and weights.shape == (2, 3, 5), (
        f"the second value returned should be the weights, shape (2, 3, 5) = (..., L_q, L_k), "
        f"got {tuple(getattr(weights, 'shape', ()))}.")
    want_output, want_weights = reference(Q, K, V)
    expect.close(weights, want_weights, what="the attention weights", dims=WEIGHT_DIMS)
    expect.close(output, want_output, what="the output", dims=OUT_DIMS)


@pytest.mark.points(2)
def test_causal_mask(student, reference, expect):
    """With a causal mask (query i sees keys 0..i), broadcast over the batch, is attention right?"""
    Q, K, V = qkv(2, L_q=5, L_k=5)
    check_attention(student, reference, expect, Q, K, V, causal_mask(5))


@pytest.mark.points(2)
def test_padding_mask(student, reference, expect):
    """With a padding mask of shape (batch, 1, L_k), do padded keys get weight exactly 0?"""
    Q, K, V = qkv(3, L_q=4, L_k=6)
    mask = padding_mask([6, 4, 2], 6)
    _, weights = check_attention(student, reference, expect, Q, K, V, mask)
    masked = ~mask.expand(3, 4, 6)
    assert bool((weights[masked] == 0).all()), (
        "masked keys should get weight exactly 0 (their score must be -inf before the softmax), "
        f"but the largest masked weight is {weights[masked].abs().max().item():.3g}.")


def test_broadcast_mask_over_heads(student, reference, expect):
    """Does a (batch, 1, 1, L_k) mask broadcast over heads and queries?"""
    Q, K, V = qkv(2, 3, L_q=4, L_k=5)
    mask = padding_mask([5, 3], 5)[:, None]  # (2, 1, 1, 5)
    check_attention(student, reference, expect, Q, K, V, mask)


@pytest.mark.points(2)
def test_fully_masked_row(student, reference, expect):
    """A query that may attend to no key: are its weights and its output all zeros (no NaN)?"""
    Q, K, V = qkv(2, L_q=4, L_k=5)
    mask = torch.rand(4, 5) > 0.3
    mask[:, 0] = True
    mask[2] = False  # query 2 sees nothing
    check_attention(student, reference, expect, Q, K, V, mask)


def test_mask_gradients(student, reference, expect):
    """With a causal mask, do gradients reach Q, K and V as in the reference?"""
    Q, K, V = needs_grad(*qkv(2, L_q=4, L_k=4, dtype=torch.float64))
    mask = causal_mask(4)
    grad_out, grad_weights = randn(2, 4, 5, dtype=torch.float64), randn(2, 4, 4, dtype=torch.float64)
    got = student.gradients((Q, K, V, mask), [grad_out, grad_weights])
    want = gradients(reference, (Q, K, V, mask), [grad_out, grad_weights])
    for name, g, w in zip("QKV", got, want):
        expect.close(g, w, what=f"the gradient of {name}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16],
                         ids=["float32", "float64", "float16", "bfloat16"])
def test_dtype_is_kept(student, reference, expect, dtype):
    """Are output and weights in the inputs' dtype?"""
    check_attention(student, reference, expect, *qkv(2, dtype=dtype))


def test_non_contiguous_inputs(student, reference, expect):
    """Does it work on transposed views of Q, K and V?"""
    Q, K, V = (non_contiguous(t) for t in qkv(2))
    check_attention(student, reference, expect, Q, K, V)


def test_inputs_are_not_modified(student, reference, expect):
    """Are the caller's Q, K, V and mask left as they were (and the result right)?"""
    Q, K, V = qkv(2)
    mask = causal_mask(4, 6)
    result, after, _ = student.call_keeping_inputs(Q, K, V, mask)
    expect.unchanged([Q, K, V, mask], after, ["Q", "K", "V", "mask"])
    output, weights = expect.pair(result, what="attention", names=PAIR)
    want_output, want_weights = reference(Q, K, V, mask)
    expect.close(weights, want_weights, what="the attention weights", dims=WEIGHT_DIMS)
    expect.close(output, want_output, what="the output", dims=OUT_DIMS)


def test_permuting_keys_with_values(student, reference, expect):
    """Does shuffling the keys together with their values leave the output unchanged?"""
    Q, K, V = qkv(2, dtype=torch.float64)
    order = torch.randperm(K.shape[-2])
    output, _ = check_attention(student, reference, expect, Q, K, V)
    shuffled, _ = expect.pair(student(Q, K[:, order], V[:, order]), what="attention", names=PAIR)
    expect.close(shuffled, output, what="the output after shuffling keys and values together", dims=OUT_DIMS)


def test_masked_value_is_ignored(student, reference, expect):
    """Does changing the value of a masked key change nothing?"""
    Q, K, V = qkv(2, dtype=torch.float64)
    mask = torch.ones(4, 6, dtype=torch.bool)
    mask[:, 3] = False
    output, _ = check_attention(student, reference, expect, Q, K, V, mask)
    V2 = V.clone()
    V2[:, 3] += 100.0
    changed, _ = expect.pair(student(Q, K, V2, mask), what="attention", names=PAIR)
    expect.close(changed, output, what="the output after changing a masked key's value", dims=OUT_DIMS)


@pytest.mark.hidden
@pytest.mark.points(2)
def test_heads_with_causal_mask(student, reference, expect):
    """Batch, heads and a causal mask with L_q != L_k (queries are the last keys)?"""
    Q, K, V = qkv(2, 4, L_q=3, L_k=7, d_k=16, d_v=6, dtype=torch.float64)
    mask = torch.ones(3, 7, dtype=torch.bool).tril(diagonal=4)
    check_attention(student, reference, expect, Q, K, V, mask)


@pytest.mark.hidden
def test_large_scores(student, reference, expect):
    """Do scores around 1e4 stay finite (a stable softmax inside)?"""
    Q, K, V = qkv(2, dtype=torch.float64)
    check_attention(student, reference, expect, Q * 300, K * 300, V)


@pytest.mark.hidden
def test_repeated_calls_with_new_values(student, reference, expect):
    """Does every call compute afresh (no cached or hard-coded results)?"""
    for _ in range(3):
        check_attention(student, reference, expect, *qkv(L_q=2, L_k=3, d_k=2, d_v=2))
