"""What the suites' fixtures give: the student's function (called in the sandbox), the
reference (on the exercise's device), the seed. Built here for pytest's fixtures and for the
direct run (grader/run/direct.py) alike."""
from __future__ import annotations

from typing import Any, Callable

import pytest
import torch

from ..course.load import Exercise
from ..misconceptions import Call
from ..testing import gradients, seed_for
from .state import CALLS, SEED, GradingState
from .student import StudentCode


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
    return ReferenceOnDevice(function, exercise.device)


class ReferenceOnDevice:
    """The reference run where the student's code runs: inputs moved to ``device``, results
    left there, gradients taken of the moved inputs (so they lie there too, as the student's do)."""

    def __init__(self, function: Callable, device: str):
        self.function, self.device = function, device

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.function(*on_device(args, self.device), **on_device(kwargs, self.device))

    def gradients(self, args: tuple, grad_outputs: list, **kwargs: Any) -> list:
        args, kwargs, grad_outputs = on_device((args, kwargs, grad_outputs), self.device)
        return gradients(self.function, args, grad_outputs, **kwargs)


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
