"""Blame runs the student's attention with the grader's reference softmax in place of theirs:
the student's code then asks the grader questions with inputs it chooses. Are they bounded?"""
from __future__ import annotations

from types import SimpleNamespace

import torch

from conftest import ROOT, make_submission
from grader.course.load import load_course
from grader.sandbox.client import Zygote
from grader.run.student import MAX_BLAME_QUESTIONS, StudentCode
from grader.intake.submission import load_submission
from solutions.softmax import softmax as reference_softmax

HUGE_QUESTIONS = (ROOT / "tests" / "hostile" / "blame_huge_inputs.py").read_text()
MANY_QUESTIONS = '''from exercises.softmax import softmax


def attention(Q, K, V, mask=None):
    scores = Q @ K.transpose(-2, -1)
    for _ in range(100):
        try:
            softmax(scores, dim=-1)
        except Exception:
            pass
    weights = softmax(scores, dim=-1)
    return weights @ V, weights
'''


def blame_questions(tmp_path, attention_source: str) -> tuple[list[int], list[str]]:
    """The sizes (elements) of every question the grader's reference answered during one
    blame rerun of a call on small inputs, and the culprits blame found."""
    folder = make_submission(tmp_path / "student", {"attention": attention_source})
    course = load_course(ROOT / "course.yaml")
    answered: list[int] = []

    def softmax(x, dim=-1):
        answered.append(x.numel())
        return reference_softmax(x, dim)

    Q, K, V = (torch.randn(2, 3, 4, dtype=torch.float64) for _ in range(3))
    call = SimpleNamespace(args=(Q, K, V), kwargs={})
    with Zygote() as zygote:
        code = StudentCode(course, load_submission("student", folder), zygote)
        try:
            found = code.blame(course.exercise("attention"), [course.exercise("softmax")], [call],
                               {"softmax": softmax}, lambda _call, _value: True)
        finally:
            code.close()
    return answered, found


def test_questions_larger_than_the_tests_own_inputs_are_refused(tmp_path):
    """Is a 128 MiB question refused while the question of the test's own size is answered?"""
    answered, found = blame_questions(tmp_path, HUGE_QUESTIONS)
    assert answered == [2 * 3 * 3]  # the scores of this call: (B, L_q, L_k)
    assert found == ["softmax"]


def test_a_rerun_gets_a_bounded_number_of_answers(tmp_path):
    """Does one rerun get at most MAX_BLAME_QUESTIONS answers, however many it asks?"""
    answered, found = blame_questions(tmp_path, MANY_QUESTIONS)
    assert len(answered) == MAX_BLAME_QUESTIONS
    assert found == []  # its last question was refused: the rerun raised, nothing is blamed
