"""What a suite's test item says about itself: its exercise and its markers.

``test_<id>.py`` belongs to exercise ``<id>``; ``@pytest.mark.points(n)`` weighs a test within
its exercise; ``@pytest.mark.picture(part=i)`` asks for a heatmap when it fails."""
from __future__ import annotations

import math
from pathlib import Path

import pytest


def exercise_id(item_path: Path) -> str:
    """``grader/suites/test_softmax.py`` -> ``softmax``."""
    return item_path.stem.removeprefix("test_")


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
