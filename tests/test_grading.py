"""End to end through `python -m grader grade`: right, wrong and misbehaving submissions."""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import FUNCTIONS, IDS, ROOT, by_name, exercise_scores, grade_json, make_submission, max_scores, scan_off_course

# attention written out in full, so that a mistake planted in another exercise cannot
# leak into it: each wrong implementation below must cost exactly its own exercise.
ATTENTION_INLINE = '''import math
import torch


def attention(Q, K, V, mask=None):
    scores = Q @ K.transpose(-2, -1) / math.sqrt(Q.size(-1))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    e = torch.exp(scores - scores.amax(dim=-1, keepdim=True))
    weights = e / e.sum(dim=-1, keepdim=True)
    if mask is not None:
        weights = weights.masked_fill(~mask, 0.0)
    return weights @ V, weights
'''

# name -> (the exercise that is wrong, {file: source})
WRONG = {
    "unscaled_scores": ("attention_scores", {"attention_scores": "def attention_scores(Q, K):\n    return Q @ K.transpose(-2, -1)\n"}),
    "K_dot_T_on_batches": ("attention_scores", {"attention_scores": "import math\n\ndef attention_scores(Q, K):\n    return Q @ K.T / math.sqrt(Q.size(-1))\n"}),
    "softmax_wrong_dim": ("softmax", {"softmax": "import torch\n\ndef softmax(x, dim=-1):\n    e = torch.exp(x - x.max())\n    return e / e.sum(dim=0, keepdim=True)\n"}),
    "unstable_softmax": ("softmax", {"softmax": "import torch\n\ndef softmax(x, dim=-1):\n    e = torch.exp(x)\n    return e / e.sum(dim=dim, keepdim=True)\n"}),
    "V_at_weights": ("apply_weights", {"apply_weights": "def apply_attention_weights(weights, V):\n    return (V.transpose(-2, -1) @ weights).transpose(-2, -1)\n"}),
    "hard_coded_lesson": ("apply_weights", {"apply_weights": "import torch\n\ndef apply_attention_weights(weights, V):\n    return torch.tensor([[2.4, 3.4], [3.2, 4.2], [2.8, 3.8]])\n"}),
    "mask_inverted": ("attention", {"attention": ATTENTION_INLINE.replace("masked_fill(~mask", "masked_fill(mask")}),
    "masked_with_zero": ("attention", {"attention": ATTENTION_INLINE.replace('float("-inf")', "0.0")}),
    "returns_weights_first": ("attention", {"attention": ATTENTION_INLINE.replace("return weights @ V, weights", "return weights, weights @ V")}),
}

# A C stack overflow with nothing but builtins (each map's next calls the one inside it, with
# no recursion check): the worker dies of SIGSEGV during the call, under the default policy.
# Deeper and deeper chains, so that it crashes within milliseconds at any usual stack size (8 MiB:
# about 60,000 maps).
STACK_OVERFLOW = """def softmax(x, dim=-1):
    depth = 1 << 14
    while True:
        chain = iter([x])
        for _ in range(depth):
            chain = map(abs, chain)
        next(chain)
        depth *= 2
"""

# name -> (the exercise that misbehaves, its source, the status of its tests): the other
# three must keep full marks. Graded with the course's policy: nothing here trips the scan.
MISBEHAVING = {
    "sys_exit": ("softmax", "def softmax(x, dim=-1):\n    raise SystemExit(0)\n", "error"),
    "segfault": ("softmax", STACK_OVERFLOW, "crashed"),
    "keyboard_interrupt": ("apply_weights", "def apply_attention_weights(weights, V):\n    raise KeyboardInterrupt\n", "error"),
    "infinite_loop": ("attention_scores", "def attention_scores(Q, K):\n    while True:\n        pass\n", "timeout"),
    "loop_at_import": ("apply_weights", "while True:\n    pass\n", "timeout"),
}
# The same, graded with the scan off (``policy: {static_scan: false}``): code the scan stops
# (import os) runs in the worker, so that only the sandbox holds.
MISBEHAVING_SCAN_OFF = {
    "os_exit": ("softmax", "import os\n\ndef softmax(x, dim=-1):\n    os._exit(0)\n", "crashed"),
}

PATCHING_ZEROS = {name: f'''import torch
import torch.testing

torch.allclose = lambda *a, **k: True
torch.equal = lambda *a, **k: True
torch.testing.assert_close = lambda *a, **k: None
torch.Tensor.__eq__ = lambda self, other: torch.ones((), dtype=torch.bool)


def {function}(*args, **kwargs):
    first = args[0]
    zeros = torch.zeros_like(first)
    return (zeros, zeros) if "{function}" == "attention" else zeros
''' for name, function in FUNCTIONS.items()}


@pytest.fixture(scope="session")
def batch(tmp_path_factory) -> dict[str, dict]:
    """Every case below, graded by the CLI in two batches: one with the course's policy, one
    (MISBEHAVING_SCAN_OFF, patches_comparisons) with the static scan off."""
    root = tmp_path_factory.mktemp("batch")
    for name, (_, overrides) in WRONG.items():
        make_submission(root / name, dict(overrides, attention=overrides.get("attention", ATTENTION_INLINE)))
    for name, (exercise, source, _) in MISBEHAVING.items():
        make_submission(root / name, {exercise: source, "attention": ATTENTION_INLINE})
    make_submission(root / "correct_in_exercises_folder", layout="exercises")
    (root / "empty").mkdir()
    scan_off = tmp_path_factory.mktemp("batch_scan_off")
    for name, (exercise, source, _) in MISBEHAVING_SCAN_OFF.items():
        make_submission(scan_off / name, {exercise: source, "attention": ATTENTION_INLINE})
    make_submission(scan_off / "patches_comparisons", PATCHING_ZEROS)
    course = scan_off_course(tmp_path_factory.mktemp("course_scan_off"))
    return (by_name(grade_json(tmp_path_factory.mktemp("out"), root))
            | by_name(grade_json(tmp_path_factory.mktemp("out_scan_off"), scan_off, extra=("--course", str(course)))))


def test_reference_scores_full_marks(reference_report):
    """Do the reference solutions score every point of every exercise?"""
    assert reference_report["max_score"] > 0
    assert reference_report["score"] == reference_report["max_score"]
    for exercise in reference_report["exercises"]:
        assert all(t["status"] == "passed" for t in exercise["tests"]), exercise["id"]


def test_untouched_stubs_score_zero_not_implemented(tmp_path, reference_report):
    """Does the repository's exercises/ folder score 0, every test not_implemented, in words?"""
    report = grade_json(tmp_path, ROOT / "exercises")["submissions"][0]
    assert report["score"] == 0
    assert report["max_score"] == reference_report["max_score"]
    for exercise in report["exercises"]:
        for test in exercise["tests"]:
            assert test["status"] == "not_implemented"
            assert "not implemented yet" in test["message"] and "Traceback" not in test["message"]


@pytest.mark.parametrize("name", WRONG)
def test_wrong_implementation_loses_points_only_in_its_exercise(batch, reference_report, name):
    """Does each classic mistake cost points in its own exercise and nowhere else?"""
    wrong_exercise = WRONG[name][0]
    scores, full = exercise_scores(batch[name]), max_scores(reference_report)
    assert scores[wrong_exercise] < full[wrong_exercise]
    assert {i: s for i, s in scores.items() if i != wrong_exercise} == {i: s for i, s in full.items() if i != wrong_exercise}


@pytest.mark.parametrize("name", [*MISBEHAVING, *MISBEHAVING_SCAN_OFF])
def test_misbehaving_exercise_costs_only_itself(batch, reference_report, name):
    """Does SystemExit, a segfault, os._exit, KeyboardInterrupt or a hang cost only that exercise?"""
    exercise, _, status = (MISBEHAVING | MISBEHAVING_SCAN_OFF)[name]
    submission = batch[name]
    scores, full = exercise_scores(submission), max_scores(reference_report)
    assert scores[exercise] == 0
    assert {i: s for i, s in scores.items() if i != exercise} == {i: s for i, s in full.items() if i != exercise}
    statuses = {t["status"] for e in submission["exercises"] if e["id"] == exercise for t in e["tests"]}
    assert statuses == {status}


def test_patching_the_comparisons_changes_nothing(batch):
    """Graded with the scan off, so that its patching of torch.allclose, torch.equal and
    Tensor.__eq__ runs in the worker: does a submission that returns zeros still score 0
    (the comparisons run in the grader), every test failed, none stopped before running?"""
    submission = batch["patches_comparisons"]
    assert submission["score"] == 0
    assert {t["status"] for e in submission["exercises"] for t in e["tests"]} == {"failed"}


def test_exercises_subfolder_layout(batch, reference_report):
    """Is a folder with an exercises/ subfolder graded like the files at the top?"""
    assert batch["correct_in_exercises_folder"]["score"] == reference_report["max_score"]


def test_empty_submission_is_reported(batch, reference_report):
    """Is an empty folder one submission, scored 0 with an error in words?"""
    empty = batch["empty"]
    assert empty["score"] == 0 and empty["max_score"] == reference_report["max_score"]
    assert any("no exercise files" in e for e in empty["errors"])


def test_max_score_is_the_same_for_every_submission(batch, reference_report):
    """Is max_score the course's, whatever failed to import?"""
    assert {s["max_score"] for s in batch.values()} == {reference_report["max_score"]}
    tests_per_exercise = {e["id"]: len(e["tests"]) for e in reference_report["exercises"]}
    for submission in batch.values():
        assert {e["id"]: len(e["tests"]) for e in submission["exercises"]} == tests_per_exercise
