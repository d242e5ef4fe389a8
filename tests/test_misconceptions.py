"""The misconception library: a failing test gets a hint naming the student's actual mistake.

A corpus of submissions, each the reference solutions with one exercise rewritten the way
a student gets it wrong, is graded once by the real CLI. Every misconception of the library
has its student (and some have a second one spelling the mistake differently); a few
mistakes the library does not know are there too, and must get no hint at all.
"""
from __future__ import annotations

import importlib
import json
import re
import shutil
from typing import NamedTuple

import nbformat
import pytest
import torch

from conftest import IDS, ROOT, by_name, grade_json, make_submission, run_grader, solution_sources
from grader.course.load import Tolerance, load_course
from grader.misconceptions import AnyOf, Call, Misconception, code_lines, hint_for, misconceptions_for

pytest_plugins = ["pytester"]

from test_grading import ATTENTION_INLINE  # noqa: E402 - attention written out in full, shared

CLEANUP = "    if mask is not None:\n        weights = weights.masked_fill(~mask, 0.0)\n"
assert CLEANUP in ATTENTION_INLINE


def attention_variant(*replacements: tuple[str, str]) -> str:
    text = ATTENTION_INLINE
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new)
    return text


# name -> (exercise, the misconception that names the mistake or None when the library
# does not know it, the exercise's source as the student wrote it)
CORPUS: dict[str, tuple[str, str | None, str]] = {
    # ---- attention_scores
    "scores_unscaled": ("attention_scores", "unscaled",
                        "def attention_scores(Q, K):\n    return Q @ K.transpose(-2, -1)\n"),
    "scores_by_d_k": ("attention_scores", "scaled_by_d_k",
                      "def attention_scores(Q, K):\n    d_k = Q.size(-1)\n    return Q @ K.transpose(-2, -1) / d_k\n"),
    "scores_by_sqrt_L_k": ("attention_scores", "scaled_by_sqrt_L_k",
                           "import math\n\n\ndef attention_scores(Q, K):\n    d_k = K.size(-2)  # the size\n"
                           "    return Q @ K.transpose(-2, -1) / math.sqrt(d_k)\n"),
    "scores_K_dot_T": ("attention_scores", "K_dot_T",
                       "import math\n\n\ndef attention_scores(Q, K):\n    return Q @ K.T / math.sqrt(Q.size(-1))\n"),
    "scores_K_not_transposed": ("attention_scores", "K_not_transposed",
                                "import math\nimport torch\n\n\ndef attention_scores(Q, K):\n"
                                "    return torch.matmul(Q, K) / math.sqrt(Q.size(-1))\n"),
    # other spellings: transpose(1, 2) fails on 2-D and 4-D inputs, size(1) is right on 2-D only
    "scores_unscaled_transpose_1_2": ("attention_scores", "unscaled",
                                      "import torch\n\n\ndef attention_scores(Q, K):\n"
                                      "    return torch.matmul(Q, K.transpose(1, 2))\n"),
    "scores_by_size_1": ("attention_scores", "scaled_by_sqrt_L_k",
                         "def attention_scores(Q, K):\n    return Q @ K.mT / K.size(1) ** 0.5\n"),
    "scores_by_d_k_mT": ("attention_scores", "scaled_by_d_k",
                         "def attention_scores(Q, K):\n    return (Q @ K.mT) / K.shape[-1]\n"),
    "scores_multiplied": ("attention_scores", "multiplied_by_sqrt_d_k",
                          "import math\n\n\ndef attention_scores(Q, K):\n"
                          "    return Q @ K.transpose(-2, -1) * math.sqrt(Q.size(-1))\n"),
    "scores_multiplied_power": ("attention_scores", "multiplied_by_sqrt_d_k",
                                "def attention_scores(Q, K):\n    scale = Q.shape[-1] ** 0.5\n"
                                "    return Q @ K.mT * scale\n"),
    "scores_negative_distance": ("attention_scores", None,  # a distance, not a dot product
                                 "import math\nimport torch\n\n\ndef attention_scores(Q, K):\n"
                                 "    return -torch.cdist(Q, K) / math.sqrt(Q.size(-1))\n"),
    # ---- softmax
    "softmax_over_dim_0": ("softmax", "over_dim_0",
                           "import torch\n\n\ndef softmax(x, dim=-1):\n"
                           "    e = torch.exp(x - x.amax(dim=0, keepdim=True))\n    return e / e.sum(dim=0, keepdim=True)\n"),
    "softmax_always_last_dim": ("softmax", "always_last_dim",
                                "def softmax(x, dim=-1):\n    e = (x - x.amax(-1, keepdim=True)).exp()\n"
                                "    return e / e.sum(-1, keepdim=True)\n"),
    "softmax_without_max": ("softmax", "without_max",
                            "import torch\n\n\ndef softmax(x, dim=-1):\n    e = torch.exp(x)\n"
                            "    return e / e.sum(dim=dim, keepdim=True)\n"),
    "softmax_global_max": ("softmax", "global_max",
                           "import torch\n\n\ndef softmax(x, dim=-1):\n    e = torch.exp(x - x.max())\n"
                           "    return e / e.sum(dim=dim, keepdim=True)\n"),
    "softmax_without_exp": ("softmax", "without_exp",
                            "def softmax(x, dim=-1):\n    return x / x.sum(dim=dim, keepdim=True)\n"),
    # other spellings (the first is test_grading.py's: a global max *and* dim 0)
    "softmax_dim_0_global_max": ("softmax", "over_dim_0",
                                 "import torch\n\ndef softmax(x, dim=-1):\n    e = torch.exp(x - x.max())\n"
                                 "    return e / e.sum(dim=0, keepdim=True)\n"),
    "softmax_without_max_one_line": ("softmax", "without_max",
                                     "import torch\n\n\ndef softmax(x, dim=-1):\n"
                                     "    return torch.exp(x) / torch.sum(torch.exp(x), dim=dim, keepdim=True)\n"),
    "softmax_not_normalised": ("softmax", "not_normalised",
                               "def softmax(x, dim=-1):\n    return (x - x.amax(dim=dim, keepdim=True)).exp()\n"),
    "softmax_not_normalised_no_max": ("softmax", "not_normalised",
                                      "import torch\n\n\ndef softmax(x, dim=-1):\n    return torch.exp(x)\n"),
    "softmax_sigmoid": ("softmax", None,  # squashes each entry on its own
                        "import torch\n\n\ndef softmax(x, dim=-1):\n    return torch.sigmoid(x)\n"),
    # ---- apply_weights
    "apply_V_at_weights": ("apply_weights", "V_at_weights",
                           "def apply_attention_weights(weights, V):\n    return V @ weights\n"),
    "apply_weights_transposed": ("apply_weights", "weights_transposed",
                                 "def apply_attention_weights(weights, V):\n    return weights.transpose(-2, -1) @ V\n"),
    # other spellings (the first is test_grading.py's)
    "apply_transposed_twice": ("apply_weights", "weights_transposed",
                               "def apply_attention_weights(weights, V):\n"
                               "    return (V.transpose(-2, -1) @ weights).transpose(-2, -1)\n"),
    "apply_einsum_transposed": ("apply_weights", "weights_transposed",
                                "import torch\n\n\ndef apply_attention_weights(weights, V):\n"
                                "    return torch.einsum('...qk,...qd->...kd', weights, V)\n"),
    "apply_hard_coded_lesson": ("apply_weights", "hard_coded_lesson",
                                "import torch\n\n\ndef apply_attention_weights(weights, V):\n"
                                "    return torch.tensor([[2.4, 3.4], [3.2, 4.2], [2.8, 3.8]])\n"),
    "apply_hard_coded_printed": ("apply_weights", "hard_coded_lesson",
                                 "import torch\n\n\ndef apply_attention_weights(weights, V):\n"
                                 "    # the lesson prints this\n"
                                 "    out = [[2.2, 3.2],\n           [2.8, 3.8],\n           [2.6, 3.6]]\n"
                                 "    return torch.tensor(out)\n"),
    # ---- attention
    "attention_weights_first": ("attention", "weights_first",
                                attention_variant(("return weights @ V, weights", "return weights, weights @ V"))),
    "attention_unscaled": ("attention", "unscaled",
                           attention_variant((" / math.sqrt(Q.size(-1))", ""))),
    "attention_mask_inverted": ("attention", "mask_inverted",
                                attention_variant(("masked_fill(~mask", "masked_fill(mask"))),
    "attention_masked_with_zero": ("attention", "masked_with_zero",
                                   attention_variant(('float("-inf")', "0.0"))),
    "attention_masked_after_softmax": ("attention", "masked_after_softmax", attention_variant(
        ('    if mask is not None:\n        scores = scores.masked_fill(~mask, float("-inf"))\n', ""),
        ("weights = weights.masked_fill(~mask, 0.0)", "weights = weights * mask"))),
    "attention_causal_off_by_one": ("attention", "causal_off_by_one", attention_variant(
        ('        scores = scores.masked_fill(~mask, float("-inf"))\n',
         "        L_q, L_k = scores.shape[-2:]\n"
         "        future = torch.ones(L_q, L_k, dtype=torch.bool).triu()  # the keys after query i\n"
         '        scores = scores.masked_fill(future, float("-inf"))\n'),
        ("weights.masked_fill(~mask, 0.0)", "weights.masked_fill(future, 0.0)"))),
    "attention_fully_masked_rows_nan": ("attention", "fully_masked_rows_nan", attention_variant((CLEANUP, ""))),
    # other spellings: the tutorials' "True = blocked" without the zeroing line, 0 without it,
    # a causal mask that lets each query see one key ahead, a tuple in parentheses
    "attention_mask_inverted_no_zeroing": ("attention", "mask_inverted",
                                           attention_variant((CLEANUP, ""), ("masked_fill(~mask", "masked_fill(mask"))),
    "attention_masked_with_zero_no_zeroing": ("attention", "masked_with_zero",
                                              attention_variant(('float("-inf")', "0"), (CLEANUP, ""))),
    "attention_causal_one_ahead": ("attention", "causal_off_by_one", attention_variant(
        ('        scores = scores.masked_fill(~mask, float("-inf"))\n',
         "        allowed = torch.ones(scores.shape[-2:], dtype=torch.bool).tril(diagonal=1)\n"
         '        scores = scores.masked_fill(~allowed, float("-inf"))\n'),
        ("weights.masked_fill(~mask, 0.0)", "weights.masked_fill(~allowed, 0.0)"))),
    "attention_weights_first_parenthesised": ("attention", "weights_first",
                                              attention_variant(("return weights @ V, weights",
                                                                 "return (weights, torch.matmul(weights, V))"))),
    "attention_mask_ignored": ("attention", "mask_ignored", attention_variant(
        ('    if mask is not None:\n        scores = scores.masked_fill(~mask, float("-inf"))\n', ""), (CLEANUP, ""))),
    "attention_finfo_min_no_zeroing": ("attention", "large_negative_fill",
                                       attention_variant(('float("-inf")', "torch.finfo(scores.dtype).min"), (CLEANUP, ""))),
    "attention_with_dropout": ("attention", None,  # copied from a transformer: random weights
                               attention_variant(("    return weights @ V, weights",
                                                  "    weights = torch.nn.functional.dropout(weights, p=0.1)\n"
                                                  "    return weights @ V, weights"))),
    "attention_minus_1e9_no_zeroing": ("attention", "large_negative_fill",
                                       attention_variant(('float("-inf")', "-1e9"), (CLEANUP, ""))),
}

NOTEBOOK = "unscaled_in_a_notebook.ipynb"
NOTEBOOK_SCORES = "import torch\n\n\ndef attention_scores(Q, K):\n    # no scaling yet\n    return torch.matmul(Q, K.transpose(-2, -1))\n"

# (exercise, misconception name) -> the misconception, for every exercise's library
LIBRARY = {(exercise, m.name): m for exercise in IDS for m in misconceptions_for(exercise, ROOT / "misconceptions")}


def sources_of(name: str) -> dict[str, str]:
    exercise, _, source = CORPUS[name]
    return dict(solution_sources(), **{"attention": ATTENTION_INLINE, exercise: source})


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> dict[str, dict]:
    """The whole corpus, a correct submission and a notebook, graded in one batch by the CLI."""
    root = tmp_path_factory.mktemp("corpus")
    for name in CORPUS:
        make_submission(root / name, sources_of(name))
    make_submission(root / "correct", {"attention": ATTENTION_INLINE})
    nb = nbformat.v4.new_notebook()
    cells = dict(solution_sources(), attention=ATTENTION_INLINE, attention_scores=NOTEBOOK_SCORES)
    nb.cells = [nbformat.v4.new_markdown_cell("# Attention")] + [nbformat.v4.new_code_cell(c) for c in cells.values()]
    nbformat.write(nb, root / NOTEBOOK)
    return by_name(grade_json(tmp_path_factory.mktemp("out"), root))


def results_of(submission: dict, exercise: str) -> list[dict]:
    return next(e for e in submission["exercises"] if e["id"] == exercise)["tests"]


def named(hint: str) -> tuple[str, str] | None:
    """(exercise, misconception) whose hint this is; None for a hint from elsewhere."""
    return next((key for key, m in LIBRARY.items() if hint.startswith(m.hint)), None)


def misconceptions_hinted(submission: dict) -> set[tuple[str, str]]:
    return {named(h) for e in submission["exercises"] for t in e["tests"] for h in t["hints"] if named(h)}


class Coverage(NamedTuple):
    failing: int      # exercises of the corpus that lose points (the planted one of each submission)
    targeted: int     # ... whose hints name exactly the planted mistake
    wrong: int        # ... with a hint naming another mistake
    failed_tests: int  # tests of those exercises with status "failed"
    hinted_tests: int  # ... whose hint names the planted mistake


def measure(corpus: dict[str, dict]) -> Coverage:
    """How well the hints name the planted mistakes, over the corpus."""
    failing = targeted = wrong = failed_tests = hinted_tests = 0
    for name, (exercise, expected, _) in CORPUS.items():
        tests = results_of(corpus[name], exercise)
        if all(t["status"] == "passed" for t in tests):
            continue
        failing += 1
        hinted = misconceptions_hinted(corpus[name])
        targeted += expected is not None and hinted == {(exercise, expected)}
        wrong += bool(hinted - {(exercise, expected)})
        for test in tests:
            if test["status"] == "failed":
                failed_tests += 1
                hinted_tests += any(named(h) == (exercise, expected) for h in test["hints"])
    return Coverage(failing, targeted, wrong, failed_tests, hinted_tests)


# ---------------------------------------------------------------- the corpus, graded


def test_every_misconception_has_a_student_in_the_corpus():
    """Is each misconception of the library planted by at least one corpus submission?"""
    planted = {(exercise, expected) for exercise, expected, _ in CORPUS.values() if expected}
    assert set(LIBRARY) - planted == set()
    assert planted - set(LIBRARY) == set(), "the corpus names a misconception the library does not have"


@pytest.mark.parametrize("key", list(LIBRARY), ids=[f"{e}.{n}" for e, n in LIBRARY])
def test_misconception_gets_its_own_hint_and_no_other(corpus, key):
    """Does each mistake, written as a student would, get its hint, and no other one?"""
    exercise, name = key
    for student, (planted_in, expected, _) in CORPUS.items():
        if (planted_in, expected) != key:
            continue
        submission = corpus[student]
        tests = results_of(submission, exercise)
        hinted = [t for t in tests if any(h.startswith(LIBRARY[key].hint) for h in t["hints"])]
        assert hinted, f"{student}: no test of {exercise} got the hint of {name}: {[t['message'] for t in tests]}"
        assert misconceptions_hinted(submission) == {key}, student
        for other in IDS:  # the mistake stays in its exercise
            if other != exercise:
                assert all(t["status"] == "passed" for t in results_of(submission, other)), (student, other)


@pytest.mark.parametrize("student", [n for n, (_, expected, _) in CORPUS.items() if expected is None])
def test_mistake_outside_the_library_gets_no_hint(corpus, student):
    """Does a mistake the library does not know fail without any misconception's hint?"""
    exercise = CORPUS[student][0]
    assert any(t["status"] == "failed" for t in results_of(corpus[student], exercise))
    assert misconceptions_hinted(corpus[student]) == set()


def test_correct_submission_gets_no_hint(corpus):
    """Do correct solutions pass everything with no hint at all?"""
    for exercise in corpus["correct"]["exercises"]:
        for test in exercise["tests"]:
            assert test["status"] == "passed" and test["hints"] == [], (exercise["id"], test["name"])


def test_hints_only_on_failed_tests(corpus):
    """Is a hint only ever attached to a failed test (never passed, error, timeout...)?"""
    statuses = set()
    for submission in corpus.values():
        for exercise in submission["exercises"]:
            for test in exercise["tests"]:
                statuses.add(test["status"])
                if test["hints"]:
                    assert test["status"] == "failed", (submission["submission"], test["name"], test["status"])
    assert {"passed", "failed", "error"} <= statuses  # the K.T student errors on most shapes


def test_hints_quote_only_the_students_own_line(corpus):
    """Is every hint the library's sentence plus, at most, a line of the student's own source?

    So a hidden test's inputs never show: no tensor, no shape, no number of the test."""
    quoted = 0
    for student, (exercise, expected, source) in CORPUS.items():
        lines = dict(code_lines(source))
        for test in results_of(corpus[student], exercise):
            for hint in test["hints"]:
                assert named(hint), (student, hint)  # only the library's hints are given here
                misconception = LIBRARY[named(hint)]
                rest = hint.removeprefix(misconception.hint)
                if rest:
                    match = re.fullmatch(r" \(line (\d+): (.*)\)", rest)
                    assert match and lines.get(int(match[1]), "").strip() == match[2], (student, hint)
                    assert re.search(misconception.code_pattern, match[2]), (student, hint)
                    quoted += 1
    assert quoted > 0


@pytest.mark.parametrize("student, line", [
    ("scores_unscaled", "(line 2: return Q @ K.transpose(-2, -1))"),
    ("scores_by_sqrt_L_k", "(line 5: d_k = K.size(-2))"),
    ("scores_K_dot_T", "(line 5: return Q @ K.T / math.sqrt(Q.size(-1)))"),
    ("softmax_over_dim_0", "(line 5: e = torch.exp(x - x.amax(dim=0, keepdim=True)))"),
    ("apply_V_at_weights", "(line 2: return V @ weights)"),
    ("attention_mask_inverted", '(line 8: scores = scores.masked_fill(mask, float("-inf")))'),
    ("attention_causal_off_by_one", "(line 9: future = torch.ones(L_q, L_k, dtype=torch.bool).triu())"),
])
def test_hint_points_at_the_line(corpus, student, line):
    """Does the hint quote the line where the mistake sits (comments cut off)?"""
    exercise = CORPUS[student][0]
    hints = [h for t in results_of(corpus[student], exercise) for h in t["hints"]]
    assert hints and all(h.endswith(" " + line) for h in hints), hints


def test_notebook_hint_names_the_cell(corpus):
    """In a notebook, does the hint quote the line with its cell, named as Jupyter numbers it
    (saved without counts: Restart & Run All's number, Markdown cells not counted)?"""
    hints = {h for t in results_of(corpus[NOTEBOOK], "attention_scores") for h in t["hints"]}
    assert hints == {LIBRARY["attention_scores", "unscaled"].hint
                     + " (cell [1], line 6: return torch.matmul(Q, K.transpose(-2, -1)))"}


def test_hints_reach_hidden_tests(corpus):
    """Do hidden tests get hints too (instructors see them; they name no input)?"""
    tests = results_of(corpus["scores_by_d_k"], "attention_scores")
    assert any(t["hidden"] and t["hints"] for t in tests)


def test_hint_coverage_is_measured_and_documented(corpus):
    """Do the failing exercises of the corpus get the hint naming their mistake, none a wrong
    one, and does docs/authoring.md state the figures measured here?"""
    measured = measure(corpus)
    assert measured.failing == len(CORPUS)  # every planted mistake costs points
    assert measured.wrong == 0
    assert measured.targeted == sum(expected is not None for _, expected, _ in CORPUS.values())
    exercises = f"{measured.targeted} of {measured.failing} failing exercises ({100 * measured.targeted / measured.failing:.0f}%)"
    tests = f"{measured.hinted_tests} of {measured.failed_tests} failed tests ({100 * measured.hinted_tests / measured.failed_tests:.0f}%)"
    print(f"\nhint coverage: {exercises} get the hint naming their mistake, {measured.wrong} a wrong one; {tests}")
    docs = (ROOT / "docs" / "authoring.md").read_text()
    for figure in (f"**{exercises}**", f"**{tests}**", "**0 get a wrong hint**"):
        assert figure in docs, f"docs/authoring.md should state the measured hint coverage: {figure}"


# ---------------------------------------------------------------- the machinery, without the CLI

TOLERANCE = {"float32": Tolerance(rtol=1e-5, atol=1e-6), "float64": Tolerance(rtol=1e-9, atol=1e-10)}


def double(x):
    return x * 2


def plus_one(x):
    return x + 1


def needs_square(x):
    if x.shape[-1] != x.shape[-2]:
        raise RuntimeError("shapes do not fit")
    return x.transpose(-2, -1)


DOUBLED = Misconception("doubled", "You doubled x.", double, r"\* *2")
PLUS_ONE = Misconception("plus_one", "You added one.", plus_one)
TRANSPOSED = Misconception("transposed", "You transposed x.", needs_square)


def identity(x):
    return x


def calls_of(fn, *inputs) -> list[Call]:
    return [Call((x,), {}, fn(x)) for x in inputs]


def test_matches_within_tolerance_only():
    """Does a result within the dtype's tolerance match, and one just outside not?"""
    x = torch.randn(3, 4)
    near = double(x) * (1 + 1e-6)
    far = double(x) * (1 + 1e-3)
    assert hint_for([DOUBLED], [Call((x,), {}, near)], None, TOLERANCE, identity) == "You doubled x."
    assert hint_for([DOUBLED], [Call((x,), {}, far)], None, TOLERANCE, identity) is None
    assert hint_for([DOUBLED], [Call((x,), {}, double(x).double())], None, TOLERANCE, identity) is None  # dtype


def test_every_counted_call_must_match():
    """Does one call the misconception does not explain rule it out?"""
    x, y = torch.randn(3), torch.randn(3)
    calls = [Call((x,), {}, double(x)), Call((y,), {}, plus_one(y))]
    assert hint_for([DOUBLED, PLUS_ONE], calls, None, TOLERANCE, identity) is None


def test_a_misconception_equal_to_the_reference_gives_no_hint():
    """When the mistake gives the right answer on every call, is nothing hinted?"""
    zeros = torch.zeros(2, 3)
    assert hint_for([DOUBLED], calls_of(double, zeros), None, TOLERANCE, identity) is None
    assert hint_for([DOUBLED], calls_of(double, zeros, torch.tensor([1.0, 3.0])), None, TOLERANCE, identity) is not None


def test_calls_the_mistake_cannot_run_do_not_count():
    """Do calls where compute raises not count, and does a test with none counted get no hint?"""
    square, wide = torch.randn(3, 3), torch.randn(3, 5)
    mixed = [Call((wide,), {}, wide * 7), Call((square,), {}, square.T)]
    assert hint_for([TRANSPOSED], mixed, None, TOLERANCE, identity) == "You transposed x."
    assert hint_for([TRANSPOSED], mixed[:1], None, TOLERANCE, identity) is None


def test_first_matching_misconception_wins():
    """With two misconceptions explaining the calls, is only the first one's hint given?"""
    x = torch.tensor([1.0, 2.0])  # x * 2 == x + 1 only at 1
    calls = [Call((torch.tensor([1.0]),), {}, torch.tensor([2.0]))]
    assert hint_for([PLUS_ONE, DOUBLED], calls, None, TOLERANCE, identity) == "You added one."
    assert hint_for([DOUBLED, PLUS_ONE], calls, None, TOLERANCE, identity) == "You doubled x."
    assert hint_for([PLUS_ONE, DOUBLED], calls_of(double, x), None, TOLERANCE, identity) == "You doubled x."


def test_pairs_compare_item_by_item_and_any_of_matches_any():
    """Are (output, weights) pairs compared item by item, and AnyOf alternatives each tried?"""
    x = torch.randn(4)
    pair = Misconception("pair", "Pair.", lambda x: (x, x * 2))
    either = Misconception("either", "Either.", lambda x: AnyOf(x * 3, (x * 2, x)))
    assert hint_for([pair], [Call((x,), {}, (x, x * 2))], None, TOLERANCE, lambda x: (x, x)) == "Pair."
    assert hint_for([pair], [Call((x,), {}, (x, x * 3))], None, TOLERANCE, lambda x: (x, x)) is None
    assert hint_for([either], [Call((x,), {}, [x * 2, x])], None, TOLERANCE, identity) == "Either."
    assert hint_for([either], [Call((x,), {}, x * 3)], None, TOLERANCE, identity) == "Either."
    assert hint_for([either], [Call((x,), {}, x * 4)], None, TOLERANCE, identity) is None


def test_nan_and_inf_must_sit_in_the_same_places():
    """Does an overflowing mistake match only a result with NaN/inf exactly where it has them?"""
    x = torch.tensor([1.0, float("nan"), float("inf")])
    assert hint_for([DOUBLED], calls_of(double, x), None, TOLERANCE, identity) is not None
    other = torch.tensor([2.0, 0.0, float("inf")])
    assert hint_for([DOUBLED], [Call((x,), {}, other)], None, TOLERANCE, identity) is None


def test_quote_skips_comments_and_docstrings():
    """Is the quoted line real code, found past docstrings and comments, with its comment cut?"""
    source = '"""Module: y = x * 2."""\n\n\ndef f(x):\n    """Return x * 2,\n    doubled."""\n    # x * 2 here\n    return x * 2  # doubled\n'
    x = torch.randn(3)
    assert hint_for([DOUBLED], calls_of(double, x), source, TOLERANCE, identity) == "You doubled x. (line 8: return x * 2)"
    cells = ["", "import torch", "def f(x):\n    return x * 2"]
    assert hint_for([DOUBLED], calls_of(double, x), cells, TOLERANCE, identity) == "You doubled x. (cell [2], line 2: return x * 2)"
    assert hint_for([DOUBLED], calls_of(double, x), "def f(x):\n    return x + x\n", TOLERANCE, identity) == "You doubled x."


class FakeCode:
    """Stands in for StudentCode: answers calls from a function, raising what it raises."""

    def __init__(self, fn):
        self.fn = fn

    def prepare(self, exercise):
        pass

    def call(self, exercise, args, kwargs, **options):
        value = self.fn(*args, **kwargs)
        return {"value": value, "inputs": (list(args), dict(kwargs))}


def test_student_function_records_successful_calls_as_copies():
    """Does each successful call land in the record, with copies of inputs and result?"""
    from grader.run.fixture_values import StudentFunction

    def fn(x, scale=1.0):
        if scale == 0:
            raise ValueError("no")
        return (x * scale, x)

    student = StudentFunction(FakeCode(fn), load_course(ROOT / "course.yaml").exercise("softmax"))
    x = torch.ones(2)
    student(x, scale=2.0)
    with pytest.raises(ValueError):
        student(x, scale=0)
    student.call_keeping_inputs(x)
    x += 5  # the test changes its tensor afterwards: the record keeps what was sent
    assert len(student.calls) == 2
    (args, kwargs, result), second = student.calls
    assert torch.equal(args[0], torch.ones(2)) and kwargs == {"scale": 2.0}
    assert isinstance(result, tuple) and torch.equal(result[0], torch.full((2,), 2.0))
    assert torch.equal(second.args[0], torch.ones(2)) and torch.equal(second.result[1], torch.ones(2))


def test_record_is_reset_before_each_test():
    """Does each run of an item (once per submission in a batch) start with no calls?"""
    from types import SimpleNamespace

    from grader.pytest_plugin import pytest_runtest_setup
    from grader.run.state import CALLS

    item = SimpleNamespace(stash=pytest.Stash())
    item.stash[CALLS] = [Call((1,), {}, 2)]
    pytest_runtest_setup(item)
    assert item.stash[CALLS] == []


# A stand-in for StudentCode whose attention_scores forgets the scaling, and a conftest that
# writes each test's outcome (status, hints) to outcomes.jsonl.
HOOK_CONFTEST = '''
import json
import pytest
from grader.course.load import load_course
from grader.run.state import STATE, GradingState
from grader.run.verdict import OUTCOME, explain
from grader.intake.submission import SourceFile, Submission

pytest_plugins = ["grader.pytest_plugin"]
SOURCE = "def attention_scores(Q, K):\\n    return Q @ K.transpose(-2, -1)\\n"


class UnscaledCode:
    submission = Submission("fake", sources={"attention_scores": SourceFile("attention_scores.py", SOURCE)})

    def prepare(self, exercise):
        pass

    def call(self, exercise, args, kwargs, **options):
        Q, K = args
        return {"value": Q @ K.transpose(-2, -1)}


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session):
    state = GradingState(load_course(COURSE))
    state.current = UnscaledCode()
    session.config.stash[STATE] = state


def pytest_runtest_teardown(item):
    outcome = item.stash[OUTCOME]
    if outcome.failure is not None:  # a failure's hints, as the session adds them after the submission's tests
        outcome = explain(item, outcome)
    with open("outcomes.jsonl", "a") as out:
        out.write(json.dumps([item.name, outcome.status, list(outcome.hints)]) + "\\n")
'''

HOOK_SUITE = '''
import torch
from grader.run.faults import TimeoutFault


def test_wrong_result(student, reference, expect):
    Q, K = torch.randn(2, 3, 4), torch.randn(2, 5, 4)
    expect.close(student(Q, K), reference(Q, K), what="the scores")


def test_error_after_a_wrong_result(student, reference):
    student(torch.randn(2, 3, 4), torch.randn(2, 5, 4))
    raise RuntimeError("the test itself broke")


def test_timeout_after_a_wrong_result(student):
    student(torch.randn(2, 3, 4), torch.randn(2, 5, 4))
    raise TimeoutFault("too slow")


def test_passes_after_a_wrong_result(student):
    student(torch.randn(2, 3, 4), torch.randn(2, 5, 4))


def test_fails_without_calling(student):
    assert False, "nothing was called"
'''


def test_plugin_hints_failed_tests_only(pytester):
    """Through the plugin's hooks: is the hint attached to a failed comparison only, never to a
    test that errors, times out or passes after the same wrong call, nor to one with no call?"""
    pytester.makeconftest(HOOK_CONFTEST.replace("COURSE", repr(str(ROOT / "course.yaml"))))
    pytester.makepyfile(test_attention_scores=HOOK_SUITE)
    pytester.runpytest("-p", "no:cacheprovider")
    lines = (pytester.path / "outcomes.jsonl").read_text().splitlines()
    outcomes = {name: (status, hints) for name, status, hints in map(json.loads, lines)}
    unscaled = LIBRARY["attention_scores", "unscaled"].hint
    assert outcomes == {
        "test_wrong_result": ("failed", [unscaled + " (line 2: return Q @ K.transpose(-2, -1))"]),
        "test_error_after_a_wrong_result": ("error", []),
        "test_timeout_after_a_wrong_result": ("timeout", []),
        "test_passes_after_a_wrong_result": ("passed", []),
        "test_fails_without_calling": ("failed", []),
    }


def test_library_is_well_formed():
    """Has every exercise a library with unique names, sentences as hints and valid patterns?"""
    course = load_course(ROOT / "course.yaml")
    for exercise in course.exercises:
        library = misconceptions_for(exercise.id, course)
        assert library, f"misconceptions/{exercise.id}.py has no MISCONCEPTIONS"
        assert len({m.name for m in library}) == len(library)
        for m in library:
            assert m.hint.endswith(".") and 20 < len(m.hint) < 400 and callable(m.compute), m.name
            if m.code_pattern is not None:
                re.compile(m.code_pattern)
    assert misconceptions_for("no_such_exercise", course) == () and misconceptions_for("../x", course) == ()
    assert misconceptions_for("softmax") == ()  # the engine holds no chapter's mistakes


def test_hint_for_uses_the_exercise_library():
    """Does the course's softmax library explain a softmax without exp, quoting the line?"""
    x = torch.rand(3, 4) + 0.5
    reference = importlib.import_module("solutions.softmax").softmax
    calls = [Call((x,), {"dim": 0}, x / x.sum(dim=0, keepdim=True))]
    library = misconceptions_for("softmax", ROOT / "misconceptions")
    hint = hint_for(library, calls, "def softmax(x, dim=-1):\n    return x / x.sum(dim=dim, keepdim=True)\n",
                    TOLERANCE, reference)
    assert hint == LIBRARY["softmax", "without_exp"].hint + " (line 2: return x / x.sum(dim=dim, keepdim=True))"
    assert hint_for(library, calls[:0], None, TOLERANCE, reference) is None


def test_an_all_zero_output_explains_nothing():
    """Is a call whose matching output is one number repeated (exp underflowing to zeros) not
    counted, so a mistake is hinted only where its output says something about the code?"""
    exp = Misconception("exp", "You returned exp(x).", torch.exp)
    very_negative = torch.full((3, 4), -1e4) + torch.randn(3, 4)
    sigmoid = [Call((very_negative,), {}, torch.sigmoid(very_negative))]  # all zeros, as exp(x) is
    assert hint_for([exp], sigmoid, None, TOLERANCE, identity) is None
    x = torch.randn(3, 4)
    assert hint_for([exp], sigmoid + calls_of(torch.exp, x), None, TOLERANCE, identity) == "You returned exp(x)."
    assert hint_for([exp], sigmoid + [Call((x,), {}, torch.sigmoid(x))], None, TOLERANCE, identity) is None


def test_a_broken_misconception_module_is_named_and_the_rest_still_hints(tmp_path):
    """A module that raises at import, one with a syntax error and one whose list holds no
    Misconception: grade still grades (exit 0), says each file and line once on stderr, and
    the other exercises keep their hints."""
    course = tmp_path / "course"
    shutil.copytree(ROOT, course, ignore=lambda folder, names: [n for n in names if n in (".venv", ".git", "examples")])
    (course / "misconceptions" / "softmax.py").write_text("MISCONCEPTIONS = [\n    1 / 0,\n]\n")
    (course / "misconceptions" / "apply_weights.py").write_text("def f(:\n")
    (course / "misconceptions" / "attention.py").write_text("MISCONCEPTIONS = ['unscaled']\n")
    student = make_submission(tmp_path / "student", {
        "attention_scores": "def attention_scores(Q, K):\n    return Q @ K.transpose(-2, -1)\n",
        "softmax": "import torch\n\ndef softmax(x, dim=-1):\n    e = torch.exp(x)\n    return e / e.sum(dim=0, keepdim=True)\n"})
    out = tmp_path / "report.json"
    proc = run_grader("grade", str(student), "--course", str(course / "course.yaml"), "--format", "json", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 3, proc.stderr
    assert any(f"{course / 'misconceptions' / 'softmax.py'} line 2: ZeroDivisionError" in w for w in warnings)
    assert any("apply_weights.py line 1: SyntaxError" in w for w in warnings)
    assert any("attention.py: MISCONCEPTIONS[0] is a str, not a Misconception" in w for w in warnings)
    (report,) = json.loads(out.read_text())["submissions"]
    hints = {e["id"]: [h for t in e["tests"] for h in t["hints"]] for e in report["exercises"]}
    assert any("without the scaling" in h for h in hints["attention_scores"])  # its module is fine
    apply_weights = next(e for e in report["exercises"] if e["id"] == "apply_weights")
    assert hints["softmax"] == [] and apply_weights["score"] == apply_weights["max_score"]
