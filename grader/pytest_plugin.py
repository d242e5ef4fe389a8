"""The pytest side of the grader: markers, fixtures and outcome classification.

Suites (``grader/suites/test_<id>.py``) are plain pytest files. They get:

- ``student``: the student's function for the suite's exercise, running in the sandbox;
  ``student(...)`` returns the decoded result, ``student.call_keeping_inputs(...)`` also
  the inputs as the function left them, ``student.gradients(...)`` input gradients.
- ``reference``: the reference solution's function, in the grader (in a student release,
  which has no solutions/, its answers recorded in ``answers.pt``: ``grader/release/answer_book.py``).
- ``expect``: comparisons bound to the exercise's tolerances (``grader.testing.Expect``).
- every test is seeded with ``seed_for(course seed, "test_<id>.py::<test name>")``.

A test that fails on an ``AssertionError`` gets a hint naming the student's mistake when a
misconception of the exercise (``grader/misconceptions/<id>.py``) explains the results of
the calls it made: ``student`` records each successful call (inputs, decoded result).

Markers: ``@pytest.mark.points(n)`` weighs a test within its exercise (default 1),
``@pytest.mark.hidden`` keeps it out of the student's ``check``, and
``@pytest.mark.picture`` (or ``picture(part=i)``) asks for a heatmap when the test fails: its
last call's result (item ``i`` of a tuple) against the reference's for the same inputs.

Run by ``grader.run.session`` for whole batches, or directly (``pytest grader/suites``) to
grade ``./exercises`` with every test.
"""
from __future__ import annotations

import importlib.util
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import pytest
import torch

from .run import faults
from .course.load import Course, Exercise, load_course
from .misconceptions import Call, hint_for, misconceptions_for
from .run.student import StudentCode
from .testing import Expect, seed_for

if TYPE_CHECKING:
    from .release.answer_book import AnswerBook, Recorder


@dataclass
class Outcome:
    """How one test ended, in report terms."""

    status: str
    message: str = ""
    hints: tuple[str, ...] = ()
    figures: tuple = ()
    """(title, expected 2-D values, the student's), for the heatmaps of feedback reports; only
    for a failed test whose suite asks for a picture (``@pytest.mark.picture``)."""


STATE = pytest.StashKey["GradingState"]()
OUTCOME = pytest.StashKey[Outcome]()
SEED = pytest.StashKey[int]()
CALLS = pytest.StashKey[list[Call]]()  # the current test's successful calls of the student's function


class GradingState:
    """What the fixtures need: the course and the submission being graded right now.

    ``recorder``: set while a release records its answer book (grader/release/answer_book.py)."""

    def __init__(self, course: Course, recorder: "Recorder | None" = None):
        self.course = course
        self.current: StudentCode | None = None
        self.recorder = recorder
        self.references: dict[str, Callable] = {}
        self._book: "AnswerBook | None" = None

    @property
    def book(self) -> "AnswerBook":
        """A student release's recorded answers (``answers.pt``), loaded on first use."""
        if self._book is None:
            from .release.answer_book import AnswerBook

            self._book = AnswerBook.load(self.course.answers_path)
        return self._book

    def reference(self, exercise: Exercise) -> Callable:
        if exercise.id not in self.references:
            if self.course.uses_answer_book:  # a student release: no solutions/, their recorded answers
                self.references[exercise.id] = self.book.reference(exercise.id)
            else:
                function = getattr(_import_solution(self.course, exercise), exercise.function)
                if self.recorder is not None:
                    function = self.recorder.reference(exercise.id, function)
                self.references[exercise.id] = function
        return self.references[exercise.id]

    def misconceptions(self, exercise: Exercise) -> tuple:
        """The exercise's misconceptions: its module's (the course's own, in its misconceptions
        folder, else the engine's), or in a release, the recorded ones."""
        if self.course.uses_answer_book:
            return self.book.misconceptions(exercise.id)
        return misconceptions_for(exercise.id, self.course.paths.misconceptions)


def _import_solution(course: Course, exercise: Exercise):
    """Import ``<id>.py`` of the course's solutions folder as part of a ``solutions`` package
    rooted there (course.yaml ``paths: solutions``)."""
    if "solutions" not in sys.modules:
        package = course.paths.solutions
        if (package / "__init__.py").is_file():
            spec = importlib.util.spec_from_file_location("solutions", package / "__init__.py",
                                                          submodule_search_locations=[str(package)])
            module = importlib.util.module_from_spec(spec)
            sys.modules["solutions"] = module
            spec.loader.exec_module(module)
        else:  # a folder of files only
            import types

            module = types.ModuleType("solutions")
            module.__path__ = [str(package)]
            sys.modules["solutions"] = module
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


NO_PICTURE = False


def marker_picture(marker: pytest.Mark | None) -> int | None | bool:
    """What ``@pytest.mark.picture`` asks to draw: ``None`` for the whole result, ``i`` for
    item ``i`` of a tuple result (``picture(part=1)``); ``NO_PICTURE`` without the marker."""
    if marker is None:
        return NO_PICTURE
    if marker.args or set(marker.kwargs) - {"part"}:
        raise ValueError(f"picture takes only part=, as in @pytest.mark.picture(part=1); got {marker.args} "
                         f"{marker.kwargs}")
    part = marker.kwargs.get("part")
    if part is not None and (isinstance(part, bool) or not isinstance(part, int)):
        raise ValueError(f"picture's part must be the index of an item of the result, got {part!r}")
    return part


def exercise_id(item_path: Path) -> str:
    return item_path.stem.removeprefix("test_")


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


def outcome_of(item: pytest.Item, exc: BaseException, when: str) -> Outcome:
    """The outcome of a test that raised ``exc`` in its ``when`` phase ("setup", "call")."""
    outcome = classify(exc)
    if when == "call" and outcome.status == "failed" and isinstance(exc, AssertionError):
        # failures only: passing tests pay nothing for any of this
        outcome.hints += misconception_hints(item)
        outcome.figures = failure_figures(item)
        outcome = blame_earlier_exercises(item, outcome)
    return outcome


def misconception_hints(item: pytest.Item) -> tuple[str, ...]:
    """The hint of the misconception that explains the failed test's calls, if one does."""
    calls = item.stash.get(CALLS, None)
    state = item.config.stash.get(STATE, None)
    if not calls or state is None or state.current is None:
        return ()
    try:
        exercise = state.course.exercise(exercise_id(item.path))
        hint = hint_for(state.misconceptions(exercise), calls, exercise_source(state.current, exercise.id),
                        exercise.tolerance, state.reference(exercise))
        return () if hint is None else (hint,)
    except Exception:
        return ()  # a broken misconception must never change a grade or hide the failure's message


def failure_figures(item: pytest.Item) -> tuple:
    """For a failed test that asks for a picture (``@pytest.mark.picture``): its last call's
    result and the reference's for the same inputs (item ``part`` of a tuple result), as small
    2-D lists (the first matrix of the batch, at most 16 x 16)."""
    calls = item.stash.get(CALLS, None)
    state = item.config.stash.get(STATE, None)
    if not calls or state is None:
        return ()
    try:
        part = marker_picture(item.get_closest_marker("picture"))
        if part is NO_PICTURE:
            return ()
        exercise = state.course.exercise(exercise_id(item.path))
        call = calls[-1]
        expected = state.reference(exercise)(*call.args, **call.kwargs)
        got = call.result
        if part is not None:
            expected, got = expected[part], got[part]
        matrices = [t.detach().double().cpu() for t in (expected, got)]
        if any(m.shape != matrices[0].shape for m in matrices) or matrices[0].dim() == 0:
            return ()
        matrices = [m.reshape(1, -1) if m.dim() == 1 else m.reshape(-1, *m.shape[-2:])[0] for m in matrices]
        expected_2d, got_2d = (m[:16, :16].nan_to_num(nan=-1.0).tolist() for m in matrices)
        return ((f"{exercise.id}: {item.name}", expected_2d, got_2d),)
    except Exception:
        return ()  # a picture must never change a grade


def blame_earlier_exercises(item: pytest.Item, outcome: Outcome) -> Outcome:
    """When an exercise that builds on earlier ones fails, find out whether the error comes
    from one of them: the same calls, with that exercise's reference in place of the student's."""
    calls = item.stash.get(CALLS, None)
    state = item.config.stash.get(STATE, None)
    if not calls or state is None or state.current is None:
        return outcome
    course = state.course
    exercise = course.exercise(exercise_id(item.path))
    if not exercise.uses or course.uses_answer_book:  # a release's book has no answers for the student's own values
        return outcome
    uses = [course.exercise(i) for i in exercise.uses]
    references = {e.id: state.reference(e) for e in uses}
    own_reference = state.reference(exercise)
    expect = Expect(dict(exercise.tolerance))

    def passes(call, value) -> bool:
        wanted = own_reference(*call.args, **call.kwargs)
        pairs = list(zip(value, wanted)) if isinstance(wanted, tuple) and isinstance(value, (tuple, list)) else [(value, wanted)]
        try:
            for got, want in pairs:
                expect.close(got, want)
        except AssertionError:
            return False
        return True

    try:
        culprits = state.current.blame(exercise, uses, calls, references, passes)
    except Exception:
        return outcome  # feedback only: never change a grade because of a failure here
    if not culprits:
        return outcome
    names = " and ".join(f"your {course.exercise(c).function}" for c in culprits)
    note = (f"Your {exercise.function} itself is right: with the reference in place of {names}, this test passes. "
            f"The error comes from {names}: fix that exercise first.")
    if course.blame_earns_points:
        return Outcome("passed", f"passed with the reference in place of {names} (course policy): {outcome.message}",
                       (note,), outcome.figures)
    # The blame replaces the misconception hints: those describe what this function's output
    # looks like, and the cause is elsewhere.
    return Outcome(outcome.status, outcome.message, (note,), outcome.figures)


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


# What the fixtures give, also for grader.run.direct, which runs test bodies without pytest's protocol.


def student_function(state: GradingState, exercise: Exercise, item: pytest.Item) -> "StudentFunction":
    code = state.current
    assert code is not None, "no submission is being graded"
    code.prepare(exercise)  # a missing, forbidden or broken exercise fails here, before any input is built
    on_call = None
    if state.recorder is not None:  # a release's recording run: what a hint may ask about these inputs
        reference, misconceptions = state.reference(exercise), state.misconceptions(exercise)

        def on_call(args: tuple, kwargs: dict) -> None:
            state.recorder.note_call(exercise.id, reference, misconceptions, args, kwargs)
    return StudentFunction(code, exercise, item.stash.setdefault(CALLS, []), on_call)


def reference_function(state: GradingState, exercise: Exercise) -> Callable:
    function = state.reference(exercise)
    if exercise.device == "cpu":
        return function
    return lambda *args, **kwargs: function(*on_device(args, exercise.device), **on_device(kwargs, exercise.device))


def seed_test(state: GradingState, item: pytest.Item) -> int:
    value = seed_for(state.course.seed, f"{item.path.name}::{item.name}")
    # The CPU generator only: torch.manual_seed also queues a seed for each lazy accelerator
    # module, formatting a stack trace every time (~1 ms per test).
    torch.default_generator.manual_seed(value)
    item.stash[SEED] = value
    return value


class StudentFunction:
    """Calls the student's function in the sandbox; results come back as grader-side tensors."""

    def __init__(self, code: StudentCode, exercise: Exercise, calls: list[Call] | None = None,
                 on_call: Callable[[tuple, dict], None] | None = None):
        self._code = code
        self.exercise = exercise
        self.calls: list[Call] = [] if calls is None else calls  # this test's successful calls, for the hints
        self._on_call = on_call

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        args, kwargs = on_device((args, kwargs), self.exercise.device)
        value = self._code.call(self.exercise, args, kwargs)["value"]
        self._record(args, kwargs, value)
        return value

    def call_keeping_inputs(self, *args: Any, **kwargs: Any) -> tuple[Any, list, dict]:
        """Result, plus the positional and keyword inputs as they were after the call."""
        args, kwargs = on_device((args, kwargs), self.exercise.device)
        answer = self._code.call(self.exercise, args, kwargs, return_inputs=True)
        self._record(args, kwargs, answer["value"])  # the inputs as sent: the worker works on copies
        after_args, after_kwargs = answer["inputs"]
        return answer["value"], after_args, after_kwargs

    def _record(self, args: tuple, kwargs: dict, value: Any) -> None:
        # Copies: a test may change its tensors after the call (a few microseconds per call).
        call = Call(_snapshot(args), _snapshot(kwargs), _snapshot(value))
        self.calls.append(call)
        if self._on_call is not None:
            self._on_call(call.args, call.kwargs)

    def gradients(self, args: tuple, grad_outputs: list, **kwargs: Any) -> list:
        """Gradients of the inputs in ``args`` that require grad, given output gradients."""
        args, kwargs, grad_outputs = on_device((args, kwargs, grad_outputs), self.exercise.device)
        return self._code.call(self.exercise, args, kwargs, grad_outputs=grad_outputs)["grads"]


def on_device(value: Any, device: str) -> Any:
    """``value`` with every tensor moved to ``device`` (tuples, lists, dicts walked). The move
    is differentiable: gradients of the moved tensors flow back to the test's own."""
    if device == "cpu":
        return value
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, (tuple, list)):
        items = [on_device(v, device) for v in value]
        return tuple(items) if isinstance(value, tuple) else items
    if isinstance(value, dict):
        return {k: on_device(v, device) for k, v in value.items()}
    return value


def _snapshot(value: Any) -> Any:
    """``value`` with every tensor replaced by a detached copy (tuples, lists, dicts walked)."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, (tuple, list)):
        items = [_snapshot(v) for v in value]
        return tuple(items) if isinstance(value, tuple) else items
    if isinstance(value, dict):
        return {k: _snapshot(v) for k, v in value.items()}
    return value


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
