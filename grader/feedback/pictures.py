"""The heatmaps of a failed test: what its suite asked to draw (``@pytest.mark.picture``)."""
from __future__ import annotations

import pytest

from ..run.items import NO_PICTURE, exercise_id, marker_picture
from ..run.state import CALLS, STATE


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
