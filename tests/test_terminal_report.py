"""The terminal's tables name every test as the JSON report does, parametrize ids included."""
from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from conftest import IDS, grade_json, make_submission
from grader.outputs import terminal as report
from grader.course.load import load_course
from grader.outputs.results import SubmissionResult
from grader.feedback.stats import compute, print_stats

WRONG_SOFTMAX = "import torch\n\ndef softmax(x, dim=-1):\n    e = torch.exp(x)\n    return e / e.sum(dim=0, keepdim=True)\n"


@pytest.fixture(scope="session")
def graded(tmp_path_factory) -> list[SubmissionResult]:
    """The reference and a wrong softmax, graded once with the real CLI."""
    root = tmp_path_factory.mktemp("terminal")
    make_submission(root / "subs" / "wrong", {"softmax": WRONG_SOFTMAX})
    make_submission(root / "subs" / "right")
    document = grade_json(root, root / "subs")
    return [SubmissionResult.from_record({"result": s}) for s in document["submissions"]]


def rendered(show) -> str:
    out = io.StringIO()
    show(Console(file=out, width=250, color_system=None))
    return out.getvalue()


def names(result: SubmissionResult) -> list[str]:
    return [t.name for e in result.exercises for t in e.tests]


def test_details_table_keeps_parametrize_ids(graded):
    """Does the one-submission table show test_dtype_is_kept[float32] and [float64], not twice
    test_dtype_is_kept (rich reads "[float32]" in a plain string as a style tag)?"""
    wrong = next(r for r in graded if r.submission.endswith("wrong"))
    text = rendered(lambda c: c.print(report.details(wrong)))
    with_ids = [n for n in names(wrong) if "[" in n]
    assert with_ids and {e.id for e in wrong.exercises} == set(IDS)
    lines = [line for line in text.splitlines() if "│" in line]
    for name in names(wrong):
        assert sum(f" {name} " in line or f" {name} (hidden) " in line for line in lines) == \
            sum(1 for e in wrong.exercises for t in e.tests if t.name == name)


def test_check_keeps_ids_and_gives_each_hint_once(graded):
    """Does the student's `check` view keep the ids, and give each hint once per exercise?"""
    wrong = next(r for r in graded if r.submission.endswith("wrong"))
    text = rendered(lambda c: report.print_check(c, wrong))
    for name in names(wrong):
        assert re.search(rf" {re.escape(name)}( \(\w[\w ]*\))?\n", text)  # a failed test: its status after it
    for exercise in wrong.exercises:
        for hint in {h for t in exercise.tests if t.status != "passed" for h in t.hints}:
            assert text.count(hint) == 1
    assert any(len([t for t in e.tests if t.hints]) > 1 for e in wrong.exercises)  # a hint given on several tests


def test_gradebook_and_stats_keep_names_with_brackets(graded):
    """Do a submission named with brackets and tests with ids survive the gradebook and the stats?"""
    from dataclasses import replace

    course = load_course(None)
    bracketed = [replace(r, submission=f"{r.submission}[late]") for r in graded]
    text = rendered(lambda c: report.print_grades(c, course, bracketed))
    assert all(r.submission in text for r in bracketed)
    stats = compute(graded)
    shown = rendered(lambda c: print_stats(c, stats, top=len(stats.failure_rates)))
    failing = [key for key, _, _ in stats.failure_rates]
    assert any("[" in k for k in failing) and all(k in shown for k in failing)


@pytest.mark.parametrize("where", ["line 6", "cell [3], line 3", "code cell 4, line 2", "cell 4, line 3"])
def test_split_hint_finds_the_quoted_line(where):
    """Is the student's quoted line told apart from the hint's sentence, in a file and in a
    notebook's cell however the cell is named (reports and stats group hints by the sentence)?"""
    from grader.feedback.stats import split_hint

    sentence = "Your mask is inverted: block the keys where the mask is False (use ~mask)."
    code = 'scores = scores.masked_fill(mask, float("-inf"))'
    assert split_hint(f"{sentence} ({where}: {code})") == (sentence, where, code)
    assert split_hint(sentence) == (sentence, None, None)
