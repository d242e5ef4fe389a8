"""The one place that turns how a test ended into a verdict: status, message, hints, pictures.

pytest's run (the plugin's ``pytest_runtest_makereport``) and the direct run
(grader/run/direct.py) both hand what a test raised to ``outcome_of``; a replayed test
(grader/run/replay.py) gets the outcome that its remembered run got here. A failed test's
hints (blame, else a misconception) come from ``explain``, once every test of the submission
has run (grader/run/session.py): blame reruns calls with references in place, in the worker
that earned the scores, which nothing graded may use after that."""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from ..feedback.pictures import failure_figures
from ..misconceptions import explaining, hint_text
from . import faults
from .blame import blamed_exercises
from .items import exercise_id
from .state import CALLS, STATE
from .student import StudentCode


_UNKNOWN = object()


@dataclass(eq=False)
class Failure:
    """A failed comparison's calls (the student's results recorded), and the misconception
    that explains them once it has been looked for: a function of the calls alone, so a
    remembered run (grader/run/replay.py) carries it to the next submission answering the same."""

    calls: list
    misconception: object = _UNKNOWN


@dataclass
class Outcome:
    """How one test ended, in report terms."""

    status: str
    message: str = ""
    hints: tuple[str, ...] = ()
    figures: tuple = ()
    """(title, expected 2-D values, the student's), for the heatmaps of feedback reports; only
    for a failed test whose suite asks for a picture (``@pytest.mark.picture``)."""
    failure: Failure | None = field(default=None, compare=False, repr=False)
    """Of a failed comparison whose hints are still to come (``explain``); else None."""


OUTCOME = pytest.StashKey[Outcome]()


def outcome_of(item: pytest.Item, exc: BaseException, when: str) -> Outcome:
    """The outcome of a test that raised ``exc`` in its ``when`` phase ("setup", "call")."""
    outcome = classify(exc)
    if when == "call" and outcome.status == "failed" and isinstance(exc, AssertionError):
        # failures only: passing tests pay nothing for any of this
        outcome.figures = failure_figures(item)
        outcome.failure = Failure(list(item.stash.get(CALLS, ())))
    return outcome


def explain(item: pytest.Item, outcome: Outcome) -> Outcome:
    """A failed test's outcome with its hints: the earlier exercises to blame, if the
    reference of one in place of the student's makes the test pass; else the misconception
    that explains its calls, if one does. Only once every test of the submission has run."""
    failure, outcome.failure = outcome.failure, None
    if failure is None or not failure.calls:
        return outcome
    culprits = blamed_exercises(item, failure.calls)
    if culprits:
        return _blamed(item, outcome, culprits)
    outcome.hints += misconception_hints(item, failure)
    return outcome


def _blamed(item: pytest.Item, outcome: Outcome, culprits: list[str]) -> Outcome:
    """A failure whose cause is the student's earlier exercises ``culprits``."""
    course = item.config.stash[STATE].course
    exercise = course.exercise(exercise_id(item.path))
    names = " and ".join(f"your {course.exercise(c).function}" for c in culprits)
    note = (f"Your {exercise.function} itself is right: with the reference in place of {names}, this test passes. "
            f"The error comes from {names}: fix that exercise first.")
    if course.blame_earns_points:
        return Outcome("passed", f"passed with the reference in place of {names} (course policy): {outcome.message}",
                       (note,), outcome.figures)
    # The blame stands instead of the misconception hints: those describe what this function's
    # output looks like, and the cause is elsewhere.
    return Outcome(outcome.status, outcome.message, (note,), outcome.figures)


def misconception_hints(item: pytest.Item, failure: Failure) -> tuple[str, ...]:
    """The hint of the misconception that explains the failed test's calls, if one does,
    quoting this student's line."""
    state = item.config.stash.get(STATE, None)
    if state is None or state.current is None:
        return ()
    try:
        exercise = state.course.exercise(exercise_id(item.path))
        if failure.misconception is _UNKNOWN:
            failure.misconception = explaining(state.misconceptions(exercise), failure.calls, exercise.tolerance,
                                               state.reference(exercise))
        if failure.misconception is None:
            return ()
        return (hint_text(failure.misconception, exercise_source(state.current, exercise.id)),)
    except Exception:
        return ()  # a broken misconception must never change a grade or hide the failure's message


def exercise_source(code: StudentCode, exercise_id: str) -> str | dict[str, str] | None:
    """Where the student's code for an exercise is: its file's text, or all of a notebook's
    cells, by the name messages give them (``cell [5]``)."""
    sub = code.submission
    if sub.notebook is not None:
        return {sub.cell_name(index): text for index, text in enumerate(sub.notebook) if text.strip()}
    source = code.submission.sources.get(exercise_id)
    return None if source is None else source.text


def classify(exc: BaseException) -> Outcome:
    """Map what a test raised to a status and a message for the student."""
    if isinstance(exc, faults.StudentFault):
        return Outcome(exc.status, exc.message, exc.hints)
    if isinstance(exc, AssertionError):
        text = str(exc)
        # A plain `assert x, "msg"` in a suite: keep the message, drop pytest's introspection.
        message = text.split("\nassert ")[0].strip() or "a check of your result failed."
        return Outcome("failed", message, tuple(getattr(exc, "hints", ())))
    if isinstance(exc, pytest.skip.Exception):
        return Outcome("skipped", str(exc))
    return Outcome("error", f"the grader could not check your result ({type(exc).__name__}: {str(exc)[:200]}). "
                            "Tell your instructor: this is a problem with the test, not necessarily your code.")
