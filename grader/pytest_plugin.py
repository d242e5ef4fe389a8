"""The pytest side of the grader: markers, fixtures and outcome classification.

Suites (``grader/suites/test_<id>.py``) are plain pytest files. They get:

- ``student``: the student's function for the suite's exercise, running in the sandbox;
  ``student(...)`` returns the decoded result, ``student.call_keeping_inputs(...)`` also
  the inputs as the function left them, ``student.gradients(...)`` input gradients.
- ``reference``: the reference solution's function, in the grader.
- ``expect``: comparisons bound to the exercise's tolerances (``grader.testing.Expect``).
- every test is seeded with ``seed_for(course seed, "test_<id>.py::<test name>")``.

Markers: ``@pytest.mark.points(n)`` weighs a test within its exercise (default 1) and
``@pytest.mark.hidden`` keeps it out of the student's ``check``.

Run by ``grader.grading`` for whole batches, or directly (``pytest grader/suites``) to
grade ``./exercises`` with every test.
"""
from __future__ import annotations

import importlib.util
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

from . import faults
from .course import Course, Exercise, load_course
from .student import StudentCode
from .testing import Expect, seed_for


@dataclass
class Outcome:
    """How one test ended, in report terms."""

    status: str
    message: str = ""
    hints: tuple[str, ...] = ()


STATE = pytest.StashKey["GradingState"]()
OUTCOME = pytest.StashKey[Outcome]()
SEED = pytest.StashKey[int]()


class GradingState:
    """What the fixtures need: the course and the submission being graded right now."""

    def __init__(self, course: Course):
        self.course = course
        self.current: StudentCode | None = None
        self.references: dict[str, Callable] = {}

    def reference(self, exercise: Exercise) -> Callable:
        if exercise.id not in self.references:
            self.references[exercise.id] = getattr(_import_solution(self.course, exercise), exercise.function)
        return self.references[exercise.id]


def _import_solution(course: Course, exercise: Exercise):
    """Import ``solutions/<id>.py`` as part of a ``solutions`` package rooted in the course."""
    if "solutions" not in sys.modules:
        package = course.root / "solutions"
        spec = importlib.util.spec_from_file_location("solutions", package / "__init__.py",
                                                      submodule_search_locations=[str(package)])
        module = importlib.util.module_from_spec(spec)
        sys.modules["solutions"] = module
        spec.loader.exec_module(module)
    return importlib.import_module(f"solutions.{exercise.id}")


def marker_points(marker: pytest.Mark | None) -> float:
    """The weight given by ``@pytest.mark.points(n)``; 1 without the marker."""
    if marker is None:
        return 1.0
    if len(marker.args) != 1 or marker.kwargs:
        raise ValueError(f"points takes one number, as in @pytest.mark.points(2); got {marker.args} {marker.kwargs}")
    value = marker.args[0]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"points must be a positive number, got {value!r}")
    return float(value)


def exercise_id(item_path: Path) -> str:
    return item_path.stem.removeprefix("test_")


# ---------------------------------------------------------------- hooks


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "points(n): the test's weight within its exercise (default 1)")
    config.addinivalue_line("markers", "hidden: graded by instructors only; never run by the student's check")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        marker_points(item.get_closest_marker("points"))  # a bad marker is a collection error, early


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if call.when == "call" and call.excinfo is None:
        item.stash.setdefault(OUTCOME, Outcome("passed"))
    elif call.excinfo is not None and OUTCOME not in item.stash:
        item.stash[OUTCOME] = classify(call.excinfo.value)
    return report


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


# ---------------------------------------------------------------- fixtures


def _state(request: pytest.FixtureRequest) -> GradingState:
    return request.config.stash[STATE]


@pytest.fixture
def exercise(request: pytest.FixtureRequest) -> Exercise:
    return _state(request).course.exercise(exercise_id(request.path))


@pytest.fixture
def student(request: pytest.FixtureRequest, exercise: Exercise) -> "StudentFunction":
    code = _state(request).current
    assert code is not None, "no submission is being graded"
    code.prepare(exercise)  # a missing, forbidden or broken exercise fails here, before any input is built
    return StudentFunction(code, exercise)


@pytest.fixture
def reference(request: pytest.FixtureRequest, exercise: Exercise) -> Callable:
    return _state(request).reference(exercise)


@pytest.fixture
def expect(exercise: Exercise) -> Expect:
    return Expect(dict(exercise.tolerance))


@pytest.fixture(autouse=True)
def seed(request: pytest.FixtureRequest) -> int:
    value = seed_for(_state(request).course.seed, f"{request.path.name}::{request.node.name}")
    # The CPU generator only: torch.manual_seed also queues a seed for each lazy accelerator
    # module, formatting a stack trace every time (~1 ms per test).
    torch.default_generator.manual_seed(value)
    request.node.stash[SEED] = value
    return value


class StudentFunction:
    """Calls the student's function in the sandbox; results come back as grader-side tensors."""

    def __init__(self, code: StudentCode, exercise: Exercise):
        self._code = code
        self.exercise = exercise

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._code.call(self.exercise, args, kwargs)["value"]

    def call_keeping_inputs(self, *args: Any, **kwargs: Any) -> tuple[Any, list, dict]:
        """Result, plus the positional and keyword inputs as they were after the call."""
        answer = self._code.call(self.exercise, args, kwargs, return_inputs=True)
        after_args, after_kwargs = answer["inputs"]
        return answer["value"], after_args, after_kwargs

    def gradients(self, args: tuple, grad_outputs: list, **kwargs: Any) -> list:
        """Gradients of the inputs in ``args`` that require grad, given output gradients."""
        return self._code.call(self.exercise, args, kwargs, grad_outputs=grad_outputs)["grads"]


# ---------------------------------------------------------------- direct `pytest grader/suites`


def pytest_sessionstart(session: pytest.Session) -> None:
    """Run directly, the suites grade ./exercises; the batch engine sets its own state first."""
    config = session.config
    if STATE in config.stash:
        return
    from .sandbox.client import Zygote
    from .submission import load_submission

    course = load_course()
    state = GradingState(course)
    zygote = Zygote()
    state.current = StudentCode(course, load_submission("exercises", course.root / "exercises"), zygote)
    config.stash[STATE] = state
    config.add_cleanup(zygote.close)
    config.add_cleanup(state.current.close)
