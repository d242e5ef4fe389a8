"""Running test bodies without pytest's protocol (grader/run/direct.py): the same outcomes.

A class of right and wrong submissions is graded twice in one Python process each: once as
the grader does, once with every test forced through pytest's ``runtestprotocol``. Every
status, message, hint and score must be the same. A suite with tests the direct runner
must leave to pytest (another fixture, a skip marker, a class) still grades, and what a
test prints stays out of the grader's output, as pytest's capture keeps it.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, make_submission
from test_grading import ATTENTION_INLINE

GRADE_ALL = """
import json, sys
from pathlib import Path
import grader.run.direct
from grader.course.load import load_course
from grader.run.session import grade

if sys.argv[1] == "pytest":
    grader.run.direct.runs_directly = lambda item: False
course = load_course(Path(sys.argv[2]))
paths = [Path(p) for p in sys.argv[3:]]
print(json.dumps([r.to_dict() for r in grade(course, [(p.name, p) for p in paths])]))
"""

CLASS = {
    "correct": {},
    "unscaled": {"attention_scores": "def attention_scores(Q, K):\n    return Q @ K.transpose(-2, -1)\n"},
    "K_dot_T": {"attention_scores": "import math\n\ndef attention_scores(Q, K):\n    return Q @ K.T / math.sqrt(Q.size(-1))\n"},
    "softmax_dim_0": {"softmax": "import torch\n\ndef softmax(x, dim=-1):\n    e = torch.exp(x - x.max())\n"
                                 "    return e / e.sum(dim=0, keepdim=True)\n"},
    "mask_inverted": {"attention": ATTENTION_INLINE.replace("masked_fill(~mask", "masked_fill(mask")},
    "not_implemented": {"apply_weights": "def apply_attention_weights(weights, V):\n    raise NotImplementedError\n"},
    "forbidden": {"softmax": "import torch\n\ndef softmax(x, dim=-1):\n    return torch.softmax(x, dim)\n"},
}

EXTRA_TESTS = '''

def test_that_prints(student, reference, expect):
    x = torch.randn(4, 3)
    print("PRINTED BY A TEST")
    expect.close(student(x), reference(x))

def test_with_another_fixture(student, reference, expect, tmp_path):
    x = torch.randn(3, 4)
    (tmp_path / "note").write_text("pytest gives this fixture")
    expect.close(student(x), reference(x))


@pytest.mark.skip(reason="not this year")
def test_skipped(student):
    pass


class TestInAClass:
    def test_method(self, student, reference, expect):
        x = torch.randn(2, 5)
        expect.close(student(x), reference(x))
'''


def graded(how: str, course: Path, paths: list[Path]) -> list[dict]:
    proc = subprocess.run([sys.executable, "-c", GRADE_ALL, how, str(course), *map(str, paths)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "PRINTED BY A TEST" not in proc.stdout + proc.stderr  # as pytest captures it
    return json.loads(proc.stdout.splitlines()[-1])


def test_direct_runs_give_what_pytest_gives(tmp_path):
    """Is every outcome of a class the same with test bodies run directly and through pytest?"""
    paths = [make_submission(tmp_path / name, overrides) for name, overrides in CLASS.items()]
    direct = graded("direct", ROOT / "course.yaml", paths)
    through_pytest = graded("pytest", ROOT / "course.yaml", paths)
    assert direct == through_pytest
    statuses = {t["status"] for s in direct for e in s["exercises"] for t in e["tests"]}
    assert {"passed", "failed", "error", "not_implemented", "forbidden"} <= statuses
    assert any(t["hints"] for s in direct for e in s["exercises"] for t in e["tests"])


def test_tests_left_to_pytest_still_grade(tmp_path):
    """Do a test with another fixture, a skipped one and one in a class grade as pytest says?"""
    course = tmp_path / "course"
    course.mkdir()
    shutil.copy(ROOT / "course.yaml", course / "course.yaml")
    shutil.copytree(ROOT / "solutions", course / "solutions")
    shutil.copytree(ROOT / "grader" / "suites", course / "grader" / "suites")
    shutil.copytree(ROOT / "misconceptions", course / "misconceptions")
    suite = course / "grader" / "suites" / "test_softmax.py"
    suite.write_text(suite.read_text() + EXTRA_TESTS)
    paths = [make_submission(tmp_path / "correct"),
             make_submission(tmp_path / "sigmoid", {"softmax": "import torch\n\ndef softmax(x, dim=-1):\n"
                                                                "    return torch.sigmoid(x)\n"})]
    correct, sigmoid = graded("direct", course / "course.yaml", paths)
    assert graded("pytest", course / "course.yaml", paths) == [correct, sigmoid]
    softmax = {t["name"]: t["status"] for t in correct["exercises"][1]["tests"]}
    assert (softmax["test_with_another_fixture"], softmax["test_skipped"], softmax["test_method"],
            softmax["test_that_prints"]) == ("passed", "skipped", "passed", "passed")
    wrong = {t["name"]: t["status"] for t in sigmoid["exercises"][1]["tests"]}
    assert (wrong["test_with_another_fixture"], wrong["test_method"]) == ("failed", "failed")
