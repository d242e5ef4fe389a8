"""Replaying remembered test runs (grader/run/replay.py): faster, and never a different grade.

A batch remembers each test's calls and the student's answers when it passed or failed a
comparison; a later submission whose answers are bit for bit the same gets that outcome (and
hints of its own) without pytest running the test, and one whose answers differ anywhere gets
the test run in full, with exactly the calls a plain run makes. So every submission of a
batch must be graded exactly as it is alone.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import MAX_SCORE, ROOT, by_name, grade_json, make_submission

SOFTMAX_COUNTING = '''import torch

calls = 0


def softmax(x, dim=-1):
    global calls
    calls += 1
    e = torch.exp(x - x.amax(dim=dim, keepdim=True))
    out = e / e.sum(dim=dim, keepdim=True)
    {twist}
    return out
'''

ATTENTION_OVER_DIM_0 = '''import torch

from exercises.apply_weights import apply_attention_weights
from exercises.attention_scores import attention_scores


def attention(Q, K, V, mask=None):
    scores = attention_scores(Q, K)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    e = torch.exp(scores)
    weights = e / e.sum(dim=0, keepdim=True)
    if mask is not None:
        weights = weights.masked_fill(~mask, 0.0)
    return apply_attention_weights(weights, V), weights
'''

CLASS = {
    "a_correct": {},
    "b_correct_again": {},
    # right everywhere, computed another way (the bits may differ from the reference's)
    "c_correct_other_way": {"softmax": "import torch\n\n\ndef softmax(x, dim=-1):\n"
                                       "    z = x - x.max(dim=dim, keepdim=True).values\n"
                                       "    return torch.exp(z) / torch.exp(z).sum(dim=dim, keepdim=True)\n"},
    # wrong on its 12th to 14th calls only: a call more or less before them shifts the failures
    "d_stateful": {"softmax": SOFTMAX_COUNTING.format(twist="if 12 <= calls <= 14:\n        out = out * 1.5")},
    # hangs on its 9th call, in the middle of what a replay sends in one message
    "e_hangs_midway": {"softmax": SOFTMAX_COUNTING.format(twist="while calls == 9:\n        pass")},
    # right except where exp overflows
    "f_unstable": {"softmax": "import torch\n\n\ndef softmax(x, dim=-1):\n    e = torch.exp(x)\n"
                              "    return e / e.sum(dim=dim, keepdim=True)\n"},
    "g_correct_at_the_end": {},
    # the same wrong answers (so the same failed runs, remembered), each with hints of its own:
    # the unscaled scores' line quoted where each file has it...
    "h_unscaled": {"attention_scores": "def attention_scores(Q, K):\n    return Q @ K.transpose(-2, -1)\n"},
    "i_unscaled_elsewhere": {"attention_scores": "def attention_scores(Q, K):\n    # no scaling yet\n\n"
                                                 "    product = Q @ K.transpose(-2, -1)\n    return product\n"},
    # ... and attention's failures blamed on the softmax it calls, or on attention itself,
    # which computes the very same wrong softmax inline
    "j_softmax_over_dim_0": {"softmax": "import torch\n\n\ndef softmax(x, dim=-1):\n    e = torch.exp(x)\n"
                                        "    return e / e.sum(dim=0, keepdim=True)\n"},
    "k_attention_over_dim_0": {"attention": ATTENTION_OVER_DIM_0},
}


@pytest.fixture(scope="module")
def klass(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("replay_class")
    for name, overrides in CLASS.items():
        make_submission(root / name, overrides)
    return root


@pytest.fixture(scope="module")
def batch(klass, tmp_path_factory) -> dict[str, dict]:
    """The class graded in one slot, in name order: a_correct teaches the others."""
    return by_name(grade_json(tmp_path_factory.mktemp("batch"), klass, extra=("--jobs", "1")))


def without_name(submission: dict) -> dict:
    return {k: v for k, v in submission.items() if k != "submission"}


@pytest.mark.parametrize("name", ["c_correct_other_way", "d_stateful", "e_hangs_midway", "f_unstable",
                                  "g_correct_at_the_end", "i_unscaled_elsewhere", "k_attention_over_dim_0"])
def test_batch_grades_each_submission_as_alone(batch, klass, tmp_path, name):
    """Is a submission graded after others (whose runs it may replay) graded exactly as alone?"""
    alone = grade_json(tmp_path, klass / name)["submissions"][0]
    assert without_name(batch[name]) == without_name(alone)


def test_the_class_gets_the_grades_its_code_deserves(batch):
    """Do the planted behaviours show: full marks, the stateful calls failing, the hang?"""
    softmax = {name: next(e for e in s["exercises"] if e["id"] == "softmax") for name, s in batch.items()}
    for name in ("a_correct", "b_correct_again", "c_correct_other_way", "g_correct_at_the_end"):
        assert batch[name]["score"] == batch[name]["max_score"], name
    stateful = [t["status"] for t in softmax["d_stateful"]["tests"]]
    assert "failed" in stateful and stateful[-1] == "passed"  # wrong for three calls, then right again
    hang = [t["status"] for t in softmax["e_hangs_midway"]["tests"]]
    assert "timeout" in hang and hang[0] == "passed"
    assert any(t["status"] == "failed" for t in softmax["f_unstable"]["tests"])


def hints_of(submission: dict, exercise: str) -> list[str]:
    return [h for e in submission["exercises"] if e["id"] == exercise for t in e["tests"] for h in t["hints"]]


def test_a_remembered_failure_gets_the_hints_of_each_submission(batch):
    """Two submissions failing with the same answers: does each get its own line quoted, and
    its own blame (the softmax it calls, or none where attention itself is wrong)?"""
    def statuses(name, exercise):
        return [(t["name"], t["status"], t["message"]) for e in batch[name]["exercises"] if e["id"] == exercise
                for t in e["tests"]]

    assert statuses("h_unscaled", "attention_scores") == statuses("i_unscaled_elsewhere", "attention_scores")
    assert any("failed" in status for status in statuses("h_unscaled", "attention_scores"))
    assert any("(line 2: return Q @ K.transpose(-2, -1))" in h for h in hints_of(batch["h_unscaled"], "attention_scores"))
    assert any("(line 4: product = Q @ K.transpose(-2, -1))" in h
               for h in hints_of(batch["i_unscaled_elsewhere"], "attention_scores"))
    assert statuses("j_softmax_over_dim_0", "attention") == statuses("k_attention_over_dim_0", "attention")
    assert any("comes from your softmax" in h for h in hints_of(batch["j_softmax_over_dim_0"], "attention"))
    assert not any("comes from your softmax" in h for h in hints_of(batch["k_attention_over_dim_0"], "attention"))


COUNT_RUNS = """
import json, sys
from pathlib import Path
import grader.run.session as grading
from grader.course.load import load_course

ran = []
original = grading._BatchPlugin._run

def counting(self, item, code):
    ran.append([code.submission.name, item.nodeid])
    return original(self, item, code)

grading._BatchPlugin._run = counting
paths = [Path(p) for p in sys.argv[1:]]
results = grading.grade(load_course(Path("course.yaml")), [(p.name, p) for p in paths])
print(json.dumps({"ran": ran, "scores": [r.score for r in results],
                  "tests": sum(len(e.tests) for e in results[0].exercises)}))
"""


def test_identical_answers_skip_pytest(tmp_path):
    """Does a second submission answering like the first get its passes without pytest runs,
    and one with another softmax run only the tests its softmax reaches (softmax, attention)?"""
    paths = [make_submission(tmp_path / "one"), make_submission(tmp_path / "two"),
             make_submission(tmp_path / "three", CLASS["f_unstable"])]
    proc = subprocess.run([sys.executable, "-c", COUNT_RUNS, *map(str, paths)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    counted = json.loads(proc.stdout.splitlines()[-1])
    ran = counted["ran"]
    assert counted["scores"][:2] == [MAX_SCORE, MAX_SCORE] and counted["scores"][2] < MAX_SCORE
    assert sum(name == "one" for name, _ in ran) == counted["tests"]
    assert [nodeid for name, nodeid in ran if name == "two"] == []
    third = {nodeid.split("::")[0] for name, nodeid in ran if name == "three"}
    assert "grader/suites/test_softmax.py" in third
    assert third <= {"grader/suites/test_softmax.py", "grader/suites/test_attention.py"}
