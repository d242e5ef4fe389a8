"""The exercises' docstrings: every number shown is what the reference computes."""
from __future__ import annotations

import doctest
import importlib
import inspect

import pytest

from conftest import FUNCTIONS, IDS


@pytest.mark.parametrize("exercise", IDS)
def test_docstring_examples_match_the_reference(exercise):
    """Run each stub's examples with the reference function in its place."""
    stub = importlib.import_module(f"exercises.{exercise}")
    reference = getattr(importlib.import_module(f"solutions.{exercise}"), FUNCTIONS[exercise])
    tests = [t for t in doctest.DocTestFinder().find(stub) if t.examples]
    assert tests, f"exercises/{exercise}.py shows no worked example"
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    for test in tests:
        test.globs[FUNCTIONS[exercise]] = reference
        runner.run(test)
    assert runner.failures == 0


@pytest.mark.parametrize("exercise", IDS)
def test_stubs_raise_not_implemented(exercise):
    """Does each stub raise NotImplementedError (not return None)?"""
    import torch

    stub = getattr(importlib.import_module(f"exercises.{exercise}"), FUNCTIONS[exercise])
    args = [p for p in inspect.signature(stub).parameters.values() if p.default is inspect.Parameter.empty]
    with pytest.raises(NotImplementedError):
        stub(*[torch.ones(2, 2)] * len(args))


def test_lesson_printout_correction_is_stated():
    """The lesson prints [[2.2, 3.2], ...] but its code computes [[2.4, 3.4], ...]: do we say so?"""
    text = importlib.import_module("exercises.apply_weights").__doc__
    assert "[[2.2, 3.2], [2.8, 3.8], [2.6, 3.6]]" in text and "[2.4, 3.4]" in text
