"""Blame: when an exercise that builds on earlier ones fails, is the error in one of those?

The failed test's calls run again in the worker, with the reference of each earlier
exercise in place of the student's (``StudentCode.blame``); when the result then matches
the reference's (the one closeness rule, grader/compare/closeness.py), the earlier
exercise is named. Bounded by the submission's wall budget and by the test's own inputs."""
from __future__ import annotations

import pytest

from ..compare.closeness import is_close
from .items import exercise_id
from .state import STATE


def blamed_exercises(item: pytest.Item, calls: list) -> list[str]:
    """The ids of the earlier exercises whose reference, in place of the student's function,
    makes the failed test's ``calls`` right; [] when none does (or blame does not apply)."""
    state = item.config.stash.get(STATE, None)
    if not calls or state is None or state.current is None:
        return []
    course = state.course
    exercise = course.exercise(exercise_id(item.path))
    if not exercise.uses or course.uses_answer_book:  # a release's book has no answers for the student's own values
        return []
    uses = [course.exercise(i) for i in exercise.uses]
    references = {e.id: state.reference(e) for e in uses}
    own_reference = state.reference(exercise)
    expected: dict[int, object] = {}  # id of a call (``calls`` keeps it alive) -> the reference's answer

    def passes(call, value) -> bool:
        if id(call) not in expected:
            expected[id(call)] = own_reference(*call.args, **call.kwargs)
        return is_close(value, expected[id(call)], exercise.tolerance)

    try:
        return list(state.current.blame(exercise, uses, calls, references, passes))
    except Exception:
        return []  # feedback only: never change a grade because of a failure here
