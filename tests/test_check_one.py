"""`check ID`: one exercise checked alone gets exactly what it gets in a full check.

Every wrong, misbehaving and hostile sample submission is checked once in full and once per
exercise (the same grading call as ``python -m grader check [ID]``: public tests, one
session); no test of any run may report a failure of the grader's own.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from conftest import ROOT, make_submission
from grader.course.load import load_course
from grader.run.session import Job, grade
from test_grading import ATTENTION_INLINE, MISBEHAVING, WRONG
from test_hostile import CASES, EXTRA, write_corpus

GRADER_FAILED = "the grader failed"
# Statuses whose message quotes a measurement (seconds, memory): compared by status alone.
MEASURED = {"timeout", "memory", "crashed"}


@pytest.fixture(scope="session")
def samples(tmp_path_factory) -> list[tuple[str, Path]]:
    """The sample class, the wrong and misbehaving spellings, and the hostile corpus."""
    root = tmp_path_factory.mktemp("samples")
    for name, (_, files) in WRONG.items():
        make_submission(root / name, {"attention": ATTENTION_INLINE, **files})
    # the reference attention, reusing this submission's own (unscaled) attention_scores
    make_submission(root / "unscaled_reused", {"attention_scores": WRONG["unscaled_scores"][1]["attention_scores"]})
    for name, (exercise, source, _) in MISBEHAVING.items():
        make_submission(root / name, {"attention": ATTENTION_INLINE, exercise: source})
    write_corpus(root / "hostile", {c: CASES[c][0] for c in CASES} | EXTRA, tmp_path_factory.mktemp("out"),
                 tmp_path_factory.mktemp("mark"))
    for sample in (ROOT / "examples" / "submissions").iterdir():
        (shutil.copytree if sample.is_dir() else shutil.copy)(sample, root / sample.name)
    folders = [p for p in sorted(root.iterdir()) if p.name != "hostile"] + sorted((root / "hostile").iterdir())
    return [(p.name, p) for p in folders]


@pytest.fixture(scope="session")
def checked(samples) -> dict:
    """Each sample checked in full and each exercise alone, in one grading session."""
    course = load_course(ROOT / "course.yaml")
    jobs = [Job(name, path) for name, path in samples]
    jobs += [Job(name, path, (exercise,)) for exercise in course.ids for name, path in samples]
    try:
        results = grade(course, jobs, public_only=True)
    finally:  # the suites were imported into this process: later tests collect files of the same names
        for exercise in course.exercises:
            sys.modules.pop(course.suite_path(exercise).stem, None)
    return {"course": course, "results": {(job.name, job.ids): result for job, result in zip(jobs, results)}}


def _verdicts(exercise) -> list[tuple]:
    return [(t.name, t.status, t.score) + (() if t.status in MEASURED else (t.message, tuple(t.hints)))
            for t in exercise.tests]


def test_no_run_reports_a_grader_failure(checked):
    for (name, ids), result in checked["results"].items():
        assert not any("internal grader error" in e for e in result.errors), (name, ids, result.errors)
        for exercise in result.exercises:
            failed = [t.name for t in exercise.tests if GRADER_FAILED in t.message]
            assert not failed, (name, ids, exercise.id, failed)


def test_an_exercise_alone_gets_what_it_gets_in_a_full_check(checked):
    """Same tests, statuses, scores, messages and hints (blame included): the sample with
    unscaled scores fails attention with a hint naming attention_scores either way."""
    results = checked["results"]
    for (name, ids), alone in results.items():
        if not ids:
            continue
        (exercise,) = alone.exercises
        assert exercise.id == ids[0]
        full = next(e for e in results[(name, ())].exercises if e.id == exercise.id)
        assert _verdicts(exercise) == _verdicts(full), (name, exercise.id)
    attention = results[("unscaled_reused", ("attention",))].exercises[0]
    assert any("attention_scores" in h for t in attention.tests for h in t.hints)


def test_only_the_exercise_asked_for_is_reported(checked):
    course = checked["course"]
    full = checked["results"][("zz_correct", ())]
    assert [e.id for e in full.exercises] == list(course.ids)
    assert full.score == full.max_score
