"""The grading loop: one pytest session, one zygote, every submission.

pytest collects the suites once; then, for each submission, this plugin runs every
collected test against that submission's worker (pytest's ``pytest_runtest_protocol`` hook) and turns the
outcomes into a ``SubmissionResult``. Collection, fixtures' code and references are set up
once per batch, not once per submission.
"""
from __future__ import annotations

import os
import sys
import time
import traceback
from pathlib import Path
from typing import Callable, Iterable, NamedTuple

import pytest

from ..locations import PACKAGE
from ..course.load import Course
from ..errors import UsageError
from . import direct, verdict
from .replay import Memo
from .items import exercise_id, marker_points
from .state import SEED, STATE, GradingState
from .verdict import OUTCOME, Outcome
from ..outputs.results import CaseResult, ExerciseResult, SubmissionResult, allocate
from ..sandbox.client import Zygote
from .student import StudentCode
from ..intake.submission import load_submission


def hidden_paths(course: Course, submissions: list[Path]) -> list[str]:
    """What a worker must not see: the solutions, the suites, the misconceptions, and the
    submissions (or the batch folders holding them), unless a folder also holds the Python
    running the grader."""
    runtime = [Path(sys.prefix).resolve(), PACKAGE]
    # the course's misconceptions compute with correct code too
    candidates = {course.paths.solutions, course.paths.suites}
    if course.paths.misconceptions is not None:
        candidates.add(course.paths.misconceptions)
    for path in submissions:
        candidates.add(path.resolve().parent if path.resolve().parent != course.root else path.resolve())
    keep = [p for p in candidates if not any(r.is_relative_to(p.resolve()) for r in runtime)]
    return sorted(str(p) for p in keep if p.is_dir())


class Job(NamedTuple):
    """One submission to grade: its name in the report, its path, and the exercises to grade
    (empty: all). An exercise graded alone gets what it gets in a full grading: its tests run
    in the same session, with every exercise of the course known (blame needs the others)."""

    name: str
    path: Path
    ids: tuple[str, ...] = ()


class _BatchPlugin:
    def __init__(self, course: Course, submissions: Iterable[tuple], public_only: bool,
                 zygote: Zygote, on_result: Callable[[SubmissionResult], None], slot: int, hide: list[str],
                 recorder=None):
        self.state = GradingState(course, recorder)
        self.course = course
        self.submissions = submissions
        self.public_only = public_only
        self.zygote = zygote
        self.on_result = on_result
        self.slot = slot
        self.hide = hide
        self.collection_errors: list[str] = []
        self.memo = Memo()  # runs' calls and answers, to skip pytest when they repeat
        self.direct: dict[str, bool] = {}  # test id -> whether grader.run.direct can run it

    def pytest_configure(self, config: pytest.Config) -> None:
        config.stash[STATE] = self.state

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.collection_errors.append(f"{report.nodeid}: {str(report.longrepr).strip().splitlines()[-1]}")

    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        if self.public_only:
            items[:] = [i for i in items if i.get_closest_marker("hidden") is None]
        order = {e: n for n, e in enumerate(self.course.ids)}
        items.sort(key=lambda i: order.get(exercise_id(i.path), len(order)))  # stable: definition order within

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo) -> pytest.TestReport:
        """A bare report: the outcome is classified by the plugin's wrapper, and pytest's
        traceback formatting (tens of ms per failure) would be thrown away."""
        outcome = "passed" if call.excinfo is None else "failed"
        return pytest.TestReport(item.nodeid, item.location, {}, outcome, None if call.excinfo is None else "failed",
                          call.when, (), call.duration, call.start, call.stop)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool:
        if self.collection_errors:
            return True
        items = list(session.items)
        for job in self.submissions:
            job = Job(*job)
            chosen = [i for i in items if not job.ids or exercise_id(i.path) in job.ids]
            self.on_result(self._grade_one(job.name, job.path, chosen, job.ids))
        return True

    def _grade_one(self, name: str, path: Path, items: list[pytest.Item], ids: tuple[str, ...]) -> SubmissionResult:
        started = time.perf_counter()
        submission = load_submission(name, path)
        code = StudentCode(self.course, submission, self.zygote, slot=self.slot, hide=self.hide)
        self.state.current = code
        outcomes: list[Outcome] = []
        try:
            for index, item in enumerate(items):
                outcome = self.memo.replay(items, index, self.course.exercise(exercise_id(item.path)), code)
                if outcome is None:
                    outcome = self._run(item, code)
                outcomes.append(outcome)
            # every graded call is made: the failures' hints may now rerun calls (blame)
            outcomes = [verdict.explain(item, o) if o.failure is not None else o for item, o in zip(items, outcomes)]
            errors = code.errors()
            protections, printed = code.protections, code.printed()
        except Exception as exc:  # a bug of the grader's own: cost this submission only
            detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            outcomes = [Outcome("error", "the grader failed on this submission; tell your instructor.")] * len(items)
            errors = [*submission.errors, f"internal grader error: {detail}"]
            protections, printed = [], ""
        finally:
            code.close()
            self.state.current = None
        if code.start_failure:
            errors = [*errors, f"not graded: {code.start_failure} (the grading machine's problem, not the "
                      "submission's); grade it again once the machine is fixed."]
        result = self._result(name, items, outcomes, errors, ids)
        result.protections, result.printed, result.sandbox_failure = protections, printed, code.start_failure
        result.seconds = time.perf_counter() - started
        return result

    def _run(self, item: pytest.Item, code: StudentCode) -> Outcome:
        """Run one test (directly, or through pytest), and remember its calls if it passed."""
        code.recording = []
        try:
            if self._direct(item):
                outcome = direct.run(item, self.state, self.course.exercise(exercise_id(item.path)))
            else:
                outcome = self._run_with_pytest(item)
        finally:
            exchanges, code.recording = code.recording, None
            code.serve([])
        self.memo.learn(item, exchanges, outcome)
        return outcome

    def _direct(self, item: pytest.Item) -> bool:
        if item.nodeid not in self.direct:
            self.direct[item.nodeid] = direct.runs_directly(item)
        return self.direct[item.nodeid]

    @staticmethod
    def _run_with_pytest(item: pytest.Item) -> Outcome:
        """pytest's public per-test hook, as xdist calls it. ``nextitem=None``: everything the
        test set up is torn down after it, since the next test may be replayed or run
        directly, skipping pytest's set-up and teardown."""
        if OUTCOME in item.stash:
            del item.stash[OUTCOME]
        item.ihook.pytest_runtest_protocol(item=item, nextitem=None)
        return item.stash.get(OUTCOME, Outcome("error", "the test did not run."))

    def _result(self, name: str, items: list[pytest.Item], outcomes: list[Outcome], errors: list[str],
                ids: tuple[str, ...]) -> SubmissionResult:
        exercises = []
        for exercise in self.course.exercises:
            if ids and exercise.id not in ids:
                continue
            mine = [(i, o) for i, o in zip(items, outcomes) if exercise_id(i.path) == exercise.id]
            shares = allocate(exercise.points, [marker_points(i.get_closest_marker("points")) for i, _ in mine])
            tests = []
            for (item, outcome), share in zip(mine, shares):
                hidden = item.get_closest_marker("hidden") is not None
                seed = item.stash.get(SEED, None)
                message = outcome.message
                if outcome.status == "failed" and not hidden and seed is not None:
                    message += f" (seed {seed})"
                tests.append(CaseResult(item.name, share, outcome.status, hidden, message, list(outcome.hints), seed,
                                        list(outcome.figures)))
            exercises.append(ExerciseResult(exercise.id, exercise.title, exercise.points, tests))
        return SubmissionResult(name, exercises, errors)


def grade(course: Course, paths: Iterable[tuple], *, public_only: bool = False,
          on_result: Callable[[SubmissionResult], None] | None = None,
          zygote: Zygote | None = None, slot: int = 0, hide: list[str] | None = None,
          recorder=None) -> list[SubmissionResult]:
    """Grade submissions ``(name, path)`` or ``Job(name, path, ids)`` with the course's suites;
    results in input order.

    ``paths`` may be a lazy iterator (a parallel slot pulls its next job from it). Pass a
    ``zygote`` (or a link to one) started early to overlap its start-up with the caller's
    imports; ``slot`` picks the worker's uid; ``hide`` lists folders workers must not see
    (computed from ``paths`` when it is a list); ``recorder`` (``answer_book.Recorder``) records
    the references' answers, for a release.
    """
    if hide is None:
        paths = list(paths)
        hide = hidden_paths(course, [Job(*p).path for p in paths])
    results: list[SubmissionResult] = []

    def collect(result: SubmissionResult) -> None:
        results.append(result)
        if on_result is not None:
            on_result(result)

    sys.dont_write_bytecode = True  # never leave __pycache__ in a submission (or anywhere)
    # Only our plugin: third-party pytest plugins that other packages install (otter-grader
    # brings several) cost over a second at start-up and have no business in a grading run.
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    suites = [str(course.suite_path(e)) for e in course.exercises]
    with zygote or Zygote() as zygote:
        plugin = _BatchPlugin(course, paths, public_only, zygote, collect, slot, hide, recorder)
        args = [*suites, "--rootdir", str(course.root),
                "--strict-markers", "-p", "no:cacheprovider", "-p", "no:terminal", "-p", "no:randomly", "-p", "no:logging",
                # their clean-up runs gc.collect twice over torch's heap: 0.2 s per grading run
                "-p", "no:unraisableexception", "-p", "no:threadexception",
                # plain asserts: outcomes keep an assert's own message only (pytest_plugin.classify)
                "--assert=plain", "-o", "addopts=", "-W", "ignore::pytest.PytestAssertRewriteWarning"]
        code = pytest.main(args, plugins=[plugin])
    if code == pytest.ExitCode.INTERRUPTED:  # pytest caught a Ctrl-C: the caller says what was kept
        raise KeyboardInterrupt
    if plugin.collection_errors:
        message = "the grader's test suites could not be loaded: " + "; ".join(plugin.collection_errors)
        if "markers" in message and "configuration option" in message:  # the grader's pytest plugin is not loaded
            message += (f". Fix: put a conftest.py holding pytest_plugins = [\"grader.pytest_plugin\"] in "
                        f"{course.paths.suites} (copy the one of grader/suites).")
        raise UsageError(message)
    if code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED, pytest.ExitCode.NO_TESTS_COLLECTED) and not results:
        raise UsageError(f"pytest could not run the suites (exit code {int(code)}).")
    return results
