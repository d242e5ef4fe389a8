"""The pytest plugin itself: markers, points, seeds (tested with pytester)."""
from __future__ import annotations

import pytest

from grader.run.items import marker_points
from grader.outputs.results import allocate
from grader.testing import seed_for

pytest_plugins = ["pytester"]


def test_points_marker_parsing():
    """Is @pytest.mark.points(n) read as a positive weight, and anything else refused?"""
    assert marker_points(None) == 1.0
    assert marker_points(pytest.mark.points(2.5).mark) == 2.5
    for bad in (pytest.mark.points(0).mark, pytest.mark.points(-1).mark, pytest.mark.points("2").mark,
                pytest.mark.points().mark, pytest.mark.points(1, 2).mark):
        with pytest.raises(ValueError):
            marker_points(bad)


def test_allocate_splits_points_by_weight():
    """Do an exercise's points split between tests in proportion to their weights?"""
    shares = allocate(3, [2, 1, 1, 2])
    assert shares == [1.0, 0.5, 0.5, 1.0] and sum(shares) == 3


def test_seed_depends_on_course_seed_and_test():
    """Is each test's seed stable, and different per test and per course seed?"""
    assert seed_for(1, "test_a.py::t") == seed_for(1, "test_a.py::t")
    assert len({seed_for(1, "test_a.py::t"), seed_for(1, "test_a.py::u"), seed_for(2, "test_a.py::t")}) == 3


def test_markers_are_registered_for_strict_markers(pytester):
    """Do suites using points/hidden pass --strict-markers, and a typo fail it?"""
    pytester.makeconftest("pytest_plugins = ['grader.pytest_plugin']\n"
                          "def pytest_sessionstart(session):\n"
                          "    from grader.course.load import load_course\n"
                          "    from grader.run.state import STATE, GradingState\n"
                          "    session.config.stash[STATE] = GradingState(load_course())\n")
    pytester.makepyfile(test_ok="import pytest\n@pytest.mark.points(2)\n@pytest.mark.hidden\ndef test_x():\n    pass\n")
    pytester.makepyfile(test_typo="import pytest\n@pytest.mark.hiden\ndef test_y():\n    pass\n")
    result = pytester.runpytest("--strict-markers", "--continue-on-collection-errors", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*'hiden' not found in `markers`*"])
