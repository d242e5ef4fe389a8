"""The pytest side of the grader: its markers, hooks and fixtures (what suites import is
in ``grader.testing``; what the fixtures give is built in ``grader/run/fixture_values.py``).

Suites (``grader/suites/test_<id>.py``) are plain pytest files. They get:

- ``student``: the student's function for the suite's exercise, running in the sandbox;
  ``student(...)`` returns the decoded result, ``student.call_keeping_inputs(...)`` also
  the inputs as the function left them, ``student.gradients(...)`` input gradients.
- ``reference``: the reference solution's function, in the grader (in a student release,
  which has no solutions/, its answers recorded in ``answers.pt``: ``grader/release/answer_book.py``).
- ``expect``: comparisons bound to the exercise's tolerances (``grader.testing.Expect``).
- every test is seeded with ``seed_for(course seed, "test_<id>.py::<test name>")``.

A test that fails on an ``AssertionError`` gets a hint naming the student's mistake when a
misconception of the exercise (the course's ``misconceptions/<id>.py``) explains the results of
the calls it made: ``student`` records each successful call (inputs, decoded result). How a
test ended becomes its verdict in one place, ``grader/run/verdict.py``.

Markers: ``@pytest.mark.points(n)`` weighs a test within its exercise (default 1),
``@pytest.mark.hidden`` keeps it out of the student's ``check``, and
``@pytest.mark.picture`` (or ``picture(part=i)``) asks for a heatmap when the test fails: its
last call's result (item ``i`` of a tuple) against the reference's for the same inputs.

Run by ``grader.run.session`` for whole batches, or directly (``pytest grader/suites``) to
grade ``./exercises`` with every test.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pytest

from .course.load import Exercise, load_course
from .run.fixture_values import StudentFunction, reference_function, seed_test, student_function
from .run.items import exercise_id, marker_picture, marker_points
from .run.state import CALLS, STATE, GradingState
from .run.student import StudentCode
from .run.verdict import OUTCOME, Outcome, outcome_of
from .testing import Expect


# ---------------------------------------------------------------- hooks


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "points(n): the test's weight within its exercise (default 1)")
    config.addinivalue_line("markers", "hidden: graded by instructors only; never run by the student's check")
    config.addinivalue_line("markers", "picture(part=None): on failure, a heatmap of the last call's result "
                                       "(item `part` of a tuple) against the reference's")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        marker_points(item.get_closest_marker("points"))  # a bad marker is a collection error, early
        marker_picture(item.get_closest_marker("picture"))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    item.stash[CALLS] = []  # before any fixture: an item runs once per submission of a batch


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if call.when == "call" and call.excinfo is None:
        item.stash.setdefault(OUTCOME, Outcome("passed"))
    elif call.excinfo is not None and OUTCOME not in item.stash:
        item.stash[OUTCOME] = outcome_of(item, call.excinfo.value, call.when)
    return report


# ---------------------------------------------------------------- fixtures


def _state(request: pytest.FixtureRequest) -> GradingState:
    return request.config.stash[STATE]


@pytest.fixture
def exercise(request: pytest.FixtureRequest) -> Exercise:
    return _state(request).course.exercise(exercise_id(request.path))


@pytest.fixture
def student(request: pytest.FixtureRequest, exercise: Exercise) -> "StudentFunction":
    return student_function(_state(request), exercise, request.node)


@pytest.fixture
def reference(request: pytest.FixtureRequest, exercise: Exercise) -> Callable:
    return reference_function(_state(request), exercise)


@pytest.fixture
def expect(exercise: Exercise) -> Expect:
    return Expect(dict(exercise.tolerance))


@pytest.fixture(autouse=True)
def seed(request: pytest.FixtureRequest) -> int:
    return seed_test(_state(request), request.node)


# ---------------------------------------------------------------- direct `pytest grader/suites`


def pytest_sessionstart(session: pytest.Session) -> None:
    """Run directly, the suites grade ./exercises; the batch engine sets its own state first."""
    config = session.config
    if STATE in config.stash:
        return
    from .sandbox.client import Zygote
    from .intake.submission import load_submission

    course = load_course()
    state = GradingState(course)
    zygote = Zygote()
    path = Path(os.environ.get("GRADER_SUBMISSION", course.root / "exercises"))  # the benchmark's naive way
    state.current = StudentCode(course, load_submission(path.name, path), zygote)
    config.stash[STATE] = state
    config.add_cleanup(zygote.close)
    config.add_cleanup(state.current.close)
