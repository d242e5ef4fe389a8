"""The otter-grader plugin that makes our grader the one that counts.

``autograder.zip`` (``grader/lms/otter_bridge.py``) names this plugin in its
``otter_config.json``. otter runs it in its grading process, which imports it from the
installed grader (otter cannot import a plugin that is only in the zip's ``files/``):

- ``before_execution``: grade the submitted notebook with our engine (``python -m grader
  grade``: the sandbox, every test, the course's points), before any student code has run;
  then hand otter an empty notebook to execute instead of the student's. So the student's
  code never runs in otter's kernel: it cannot patch otter's test classes or torch there,
  read the hidden tests, hang otter (which has no timeout) or end it with ``os._exit``.
- ``after_grading``: replace otter's results with ours, one otter test file per exercise
  and one test case per test (points and hidden flags from our suites and course.yaml),
  and set each exercise's score to ours. Then make the results a ``GraderResults``, whose
  Gradescope JSON is ``grader/lms/gradescope.py``'s, the one ``python -m grader grade --format
  gradescope`` writes: otter's own gives every test file one visibility (all ``hidden`` or
  all ``after_published``) and shows the public tests only as one text block without a
  score, so students would see nothing but the total.

If our grading fails, otter's placeholder tests stay: they fail, so the submission gets 0
and a visible note, never marks it has not earned; the details go to the autograder's
stdout, which only staff see.
"""
from __future__ import annotations

import copy
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
from otter.plugins import AbstractOtterPlugin
from otter.test_files import GradingResults, TestCase, TestCaseResult
from otter.test_files.exception_test import ExceptionTestFile

from ..locations import PACKAGE
from ..course.load import Course
from ..feedback import check_view
from .gradescope import results_json
from ..outputs.results import CaseResult, SubmissionResult

GRADE_SECONDS = 900  # the whole submission; each call of the student's code has its own limit


def course_file(submission_path: str | None = None, recorded: str | None = None) -> Path:
    """The course the autograder.zip carries: ``recorded`` (the plugin config's ``course``, a
    path inside the zip, written by grader/lms/otter_bridge.py) in the autograder's ``source/``
    folder, which otter and Gradescope unpack beside ``submission/`` (never a file from the
    submission's own folder). Without it (a zip written before), the course.yaml beside the
    installed grader package."""
    if recorded is not None and submission_path is not None:
        return Path(submission_path).resolve().parent.parent / "source" / recorded
    return PACKAGE.parent / "course.yaml"


def grade_submission(path: str, course: Path | None = None) -> SubmissionResult:
    """Our result for one submission, as ``python -m grader grade`` records it (unrounded)."""
    course = course if course is not None else course_file()
    with tempfile.TemporaryDirectory(prefix="grader-otter-") as folder:
        results = Path(folder) / "results.jsonl"
        proc = subprocess.run([sys.executable, "-m", "grader", "grade", path, "--course", str(course),
                               "--format", "json", "--out", str(Path(folder) / "report.json"),
                               "--results", str(results), "--jobs", "1"],
                              cwd=folder, capture_output=True, text=True, timeout=GRADE_SECONDS)
        if proc.returncode != 0 or not results.is_file():
            raise RuntimeError(f"python -m grader grade exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
        (record,) = [json.loads(line) for line in results.read_text(encoding="utf-8").splitlines() if line]
        return SubmissionResult.from_record(record)


def case_message(test: CaseResult) -> str:
    """What a student reads for one test case in Gradescope."""
    return check_view.as_text(check_view.case_lines(test), indent="")


class GraderResults(GradingResults):
    """otter's results of a submission our grader graded: otter writes ``gradescope`` (our
    results.json) as Gradescope's results, unless a plugin asked to hide everything."""

    gradescope: dict

    def to_gradescope_dict(self, ag_config) -> dict:
        output = copy.deepcopy(self.gradescope)
        if self.all_hidden:  # hide_everything(), as otter's own does it
            for test in output["tests"]:
                test["visibility"] = "hidden"
            output["stdout_visibility"] = "hidden"
        return output


class GraderPlugin(AbstractOtterPlugin):
    """Grades with the attention grader's sandbox and records its scores in otter's results.
    Its config in otter_config.json: ``hidden_tests``, course.yaml's ``feedback.hidden_tests``;
    ``course``, the course file inside the zip (``files/course/course.yaml``)."""

    result: SubmissionResult | None = None
    failure: str | None = None

    def before_execution(self, submission):
        try:
            self.result = grade_submission(self.submission_path,
                                           course_file(self.submission_path, self.plugin_config.get("course")))
        except Exception as exc:  # noqa: BLE001 - any failure leaves otter's failing placeholders
            self.failure = f"{type(exc).__name__}: {exc}"
        if isinstance(submission, str):  # a script submission: run an empty one
            return ""
        return nbformat.v4.new_notebook(metadata=submission.get("metadata", {}))

    def after_grading(self, results: GradingResults) -> None:
        if self.result is None:
            print(f"attention grader failed: {self.failure}")  # stdout: staff only
            results.set_output("The course's grader could not grade this submission, so it scores 0 for now. "
                               "Tell your instructor.")
            return
        results.clear_results()
        for exercise in self.result.exercises:
            cases = [TestCase(name=t.name, body=None, hidden=t.hidden, points=t.max_score,
                              success_message=None, failure_message=None) for t in exercise.tests]
            test_file = ExceptionTestFile(exercise.id, f"tests/{exercise.id}.py", cases, all_or_nothing=False)
            test_file.test_case_results = [TestCaseResult(test_case=case, message=case_message(t),
                                                          passed=t.status == "passed")
                                           for case, t in zip(cases, exercise.tests)]
            results.results[exercise.id] = test_file
            results.update_score(exercise.id, exercise.score)
        gradescope = results_json(self.result, hidden_tests=self.plugin_config.get("hidden_tests", Course.hidden_tests))
        results.set_output(gradescope["output"])
        results.__class__ = GraderResults  # the same object: otter writes results.json from it
        results.gradescope = gradescope
