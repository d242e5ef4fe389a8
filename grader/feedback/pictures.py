"""The heatmaps of a failed test: what its suite asked to draw (``@pytest.mark.picture``)."""
from __future__ import annotations

import math

import pytest

from ..run.items import NO_PICTURE, exercise_id, marker_picture
from ..run.state import CALLS, STATE


def failure_figures(item: pytest.Item) -> tuple:
    """For a failed test that asks for a picture (``@pytest.mark.picture``): its last call's
    result and the reference's for the same inputs (item ``part`` of a tuple result), as small
    2-D lists (the first matrix of the batch, at most 16 x 16; None where a value is NaN or
    infinite), and how to draw them: ``(title, expected, got, {"axes": [rows, columns]})``."""
    calls = item.stash.get(CALLS, None)
    state = item.config.stash.get(STATE, None)
    if not calls or state is None:
        return ()
    try:
        asked = marker_picture(item.get_closest_marker("picture"))
        if asked is NO_PICTURE:
            return ()
        part = asked.part
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
        expected_2d, got_2d = (_cells(m[:16, :16]) for m in matrices)
        return ((f"{exercise.id}: {item.name}", expected_2d, got_2d, {"axes": list(asked.axes)}),)
    except Exception:
        return ()  # a picture must never change a grade


def _cells(matrix) -> list[list[float | None]]:
    """A 2-D tensor as lists, with None for each value that is not finite (JSON has no NaN)."""
    return [[value if math.isfinite(value) else None for value in row] for row in matrix.tolist()]
