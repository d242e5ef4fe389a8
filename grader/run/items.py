"""What a suite's test item says about itself: its exercise and its markers.

``test_<id>.py`` belongs to exercise ``<id>``; ``@pytest.mark.points(n)`` weighs a test within
its exercise; ``@pytest.mark.picture(part=i, axes=(rows, columns))`` asks for a heatmap when it fails."""
from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

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
DEFAULT_AXES = ("row", "column")


class PictureRequest(NamedTuple):
    """What ``@pytest.mark.picture`` asks to draw: item ``part`` of a tuple result (None: the
    whole result), its axes named ``axes`` (rows, columns)."""

    part: int | None = None
    axes: tuple[str, str] = DEFAULT_AXES


def marker_picture(marker: pytest.Mark | None) -> PictureRequest | bool:
    """``@pytest.mark.picture``, ``picture(part=1)``, ``picture(part=1, axes=("query", "key"))``
    as a ``PictureRequest``; ``NO_PICTURE`` without the marker."""
    if marker is None:
        return NO_PICTURE
    if marker.args or set(marker.kwargs) - {"part", "axes"}:
        raise ValueError(f"picture takes only part= and axes=, as in @pytest.mark.picture(part=1, axes=(\"query\", "
                         f"\"key\")); got {marker.args} {marker.kwargs}")
    part = marker.kwargs.get("part")
    if part is not None and (isinstance(part, bool) or not isinstance(part, int)):
        raise ValueError(f"picture's part must be the index of an item of the result, got {part!r}")
    axes = marker.kwargs.get("axes", DEFAULT_AXES)
    if not (isinstance(axes, (tuple, list)) and len(axes) == 2 and all(isinstance(a, str) and a for a in axes)):
        raise ValueError(f"picture's axes must name the rows and the columns, as in axes=(\"query\", \"key\"); got {axes!r}")
    return PictureRequest(part, (axes[0], axes[1]))
