"""Running a suite's test body directly, without pytest's per-test protocol.

pytest's per-test protocol costs a few milliseconds of the grader's time per test
(fixture requests, three hook phases, reports), paid for every test of every submission.
A test that asks only for the grader's own fixtures (``student``, ``reference``,
``expect``, ``exercise``, the autouse ``seed``) and its parameters, and carries no marker
but ``points``, ``hidden``, ``picture`` and ``parametrize`` (in a course whose pytest settings have no
``filterwarnings``), is run here instead: the same seeding,
the same fixture values (built by ``grader/run/fixture_values.py``, as for the plugin's
fixtures), the same verdict on what it raised (``grader/run/verdict.py``, hints and blame
included). Any other
test (another fixture, a ``skip`` marker, a method of a class) runs through pytest.
"""
from __future__ import annotations

import contextlib
import inspect
import io
import warnings

import pytest

from ..course.load import Exercise
from .fixture_values import reference_function, seed_test, student_function
from .state import CALLS, GradingState
from .verdict import Outcome, outcome_of
from ..testing import Expect

FIXTURES = {"student", "reference", "expect", "exercise", "seed"}
MARKERS = {"points", "hidden", "picture", "parametrize"}


def runs_directly(item: pytest.Item) -> bool:
    """Can ``run`` stand in for pytest's protocol for this test? Only public pytest API is
    read: the test's own arguments (its function's signature), its markers, its parameters,
    and the test module and conftest files, none of which may define a fixture of the
    grader's names (a name bound there at all sends the test to pytest)."""
    if not isinstance(item, pytest.Function) or item.cls is not None:
        return False
    if item.config.getini("filterwarnings"):
        return False  # the course's pytest settings turn warnings into something: pytest applies them
    if any(mark.name not in MARKERS for mark in item.iter_markers()):
        return False
    params = set(item.callspec.params) if hasattr(item, "callspec") else set()
    if not set(arguments_of(item)) <= FIXTURES | params:
        return False
    if set(item.fixturenames) - params - FIXTURES - {"request"}:  # request: asked for by the plugin's fixtures
        return False  # an autouse fixture of a conftest, say
    conftests = [p for p in item.config.pluginmanager.get_plugins()
                 if getattr(p, "__file__", "").endswith("conftest.py")]
    return not any(name in vars(module) for module in [item.module, *conftests] for name in FIXTURES)


ARGUMENTS = pytest.StashKey[tuple]()


def arguments_of(item: pytest.Function) -> tuple[str, ...]:
    """The names the test function takes (``def test_x(student, expect, dtype)``), read once
    per test: every submission of a batch runs it again."""
    if ARGUMENTS not in item.stash:
        item.stash[ARGUMENTS] = tuple(name for name, p in inspect.signature(item.function).parameters.items()
                                      if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
    return item.stash[ARGUMENTS]


def run(item: pytest.Function, state: GradingState, exercise: Exercise) -> Outcome:
    """The outcome of one test against the submission being graded (``state.current``)."""
    item.stash[CALLS] = []
    values = {"exercise": exercise}
    try:  # set-up, in pytest's order: the autouse seed first, then the arguments'
        values["seed"] = seed_test(state, item)
        for name in arguments_of(item):
            if name == "student":
                values[name] = student_function(state, exercise, item)
            elif name == "reference":
                values[name] = reference_function(state, exercise)
            elif name == "expect":
                values[name] = Expect(dict(exercise.tolerance))
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - as pytest's set-up phase catches
        return outcome_of(item, exc, "setup")
    params = item.callspec.params if hasattr(item, "callspec") else {}
    arguments = {name: params[name] if name in params else values[name] for name in arguments_of(item)}
    try:
        # as pytest captures them: a test's warnings and prints never reach the grader's output
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            item.obj(**arguments)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - pytest.skip and pytest.fail are BaseExceptions
        return outcome_of(item, exc, "call")
    return Outcome("passed")
