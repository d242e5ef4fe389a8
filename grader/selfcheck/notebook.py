"""``check("softmax")`` in a notebook: the public tests on the functions that notebook defines.

    from grader import check
    check("softmax")      # one exercise; check() checks every exercise

The notebook's code is the kernel's input history (every cell run so far, in order, as
typed; "cell [7]" in a note is ``In [7]``, as grading the handed-in notebook names it: see
``history_notebook``), with the self-check lines left out as the grader leaves them out of
a handed-in notebook (``grader.intake.submission.strip_self_checks``).
It is written as a temporary notebook and graded in a separate Python process with the
public tests only, as ``python -m grader check`` grades a folder: the notebook's own
Python, where torch may have been patched, compares nothing. The result shows as an HTML
table in Jupyter (``_repr_html_``) and as text elsewhere.

``public_test`` gives otter-grader's ``grader.check`` the same verdicts, one test at a time
(the student-side test files written by ``grader/lms/otter_bridge.py``).
"""
from __future__ import annotations

import difflib
import html
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..locations import PACKAGE
from ..course.load import default_course_path, load_course
from ..errors import UsageError
from ..feedback import check_view
from ..outputs.results import SubmissionResult

PACKAGE_ROOT = PACKAGE.parent  # on the grading process's PYTHONPATH
CHECK_SECONDS = 600  # the whole check; each call of the student's code has its own limit



def check(*ids: str, course: str | Path | None = None) -> "CheckResult":
    """Run the public tests of the exercises ``ids`` (all when none) on this notebook's functions."""
    course_file = Path(course) if course is not None else default_course_path()
    known = load_course(course_file).ids
    for exercise_id in ids:
        if exercise_id not in known:
            close = difflib.get_close_matches(exercise_id, known, n=1)
            suggestion = f" Did you mean {close[0]!r}?" if close else ""
            raise UsageError(f"no exercise named {exercise_id!r}.{suggestion} Exercises: {', '.join(known)}.")
    return CheckResult(grade_cells(notebook_cells(), list(ids), course_file))


def notebook_cells() -> list[str]:
    """The code run so far: IPython's raw input history (entry n is ``In [n]``), or the
    source file of a plain ``python script.py``."""
    try:
        from IPython import get_ipython
    except ImportError:
        shell = None
    else:
        shell = get_ipython()
    if shell is not None:
        return list(shell.history_manager.input_hist_raw[1:])  # entry 0 is an empty placeholder
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    if main_file and Path(main_file).is_file():
        return [Path(main_file).read_text(encoding="utf-8")]
    raise UsageError("check() looks for your functions in the notebook (or script) that calls it, "
                     "and found neither. Fix: call it from a Jupyter notebook.")


def grade_cells(cells: list[str], ids: list[str], course_file: Path) -> SubmissionResult:
    """Grade ``cells`` as a notebook with the public tests of ``ids`` (all when empty): by the
    course's warm check server (``grader/selfcheck/warm_server.py``, started on first use), or when none
    can answer, in a separate process (``python -m grader.selfcheck.notebook``)."""
    from . import warm_server

    request = {"name": "notebook", "notebook": history_notebook(cells), "ids": list(ids), "cwd": os.getcwd()}
    reply = warm_server.ask_or_start(course_file, None, request)
    if reply is not None:
        return SubmissionResult.from_record(reply["record"])
    with tempfile.TemporaryDirectory(prefix="grader-check-") as folder:
        notebook, report = Path(folder) / "notebook.ipynb", Path(folder) / "result.json"
        notebook.write_text(json.dumps(request["notebook"]), encoding="utf-8")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")])))
        proc = subprocess.run([sys.executable, "-m", "grader.selfcheck.notebook", str(course_file.resolve()), str(notebook),
                               str(report), *ids], cwd=folder, env=env, capture_output=True, text=True,
                              timeout=CHECK_SECONDS)
        if proc.returncode != 0 or not report.is_file():
            raise RuntimeError(f"the grader could not run (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
        return SubmissionResult.from_record(json.loads(report.read_text(encoding="utf-8")))


def history_notebook(cells: list[str]) -> dict:
    """The kernel's history as a notebook (nbformat 4, as JSON: no nbformat import in the
    kernel): entry ``n`` (from 1) is a code cell saved with execution count ``n``, so every
    message names it ``cell [n]``, the ``In [n]`` Jupyter showed
    (``grader.intake.submission.cell_names``: the same rule as for a handed-in notebook)."""
    code = [{"cell_type": "code", "execution_count": n, "id": f"history-{n}", "metadata": {}, "outputs": [],
             "source": source} for n, source in enumerate(cells, 1)]
    return {"cells": code, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


_last: dict = {}  # public_test's last grading: the test cases of one grader.check share it


def public_test(exercise_id: str, test_name: str) -> None:
    """Raise AssertionError with the test's message (and hints) unless the public test
    ``test_name`` of ``exercise_id`` passes on the notebook's code as it is now."""
    cells = notebook_cells()
    key = (exercise_id, tuple(cells))
    if _last.get("key") != key:
        _last.update(key=key, result=grade_cells(cells, [exercise_id], default_course_path()))
    for exercise in _last["result"].exercises:
        for test in exercise.tests:
            if test.name == test_name:
                if test.status != "passed":
                    raise AssertionError(check_view.as_text(check_view.case_lines(test), indent=""))
                return
    raise AssertionError(f"the course has no public test {exercise_id}::{test_name}; ask for up-to-date test files.")


@dataclass
class CheckResult:
    """What ``check`` shows: each test's status, message and hints, and the public score."""

    result: SubmissionResult

    @property
    def score(self) -> float:
        return self.result.score

    @property
    def max_score(self) -> float:
        return self.result.max_score

    def _summary(self) -> str:
        return f"score so far (public tests): {self.score:.4g}/{self.max_score:g}"

    def _repr_html_(self) -> str:
        esc = html.escape
        rows = []
        for exercise in self.result.exercises:
            colour = check_view.COLOUR.get(exercise.status, check_view.FAILED_COLOUR)
            rows.append(f'<tr><th colspan="3" style="text-align:left;color:{colour}">{esc(exercise.id)} '
                        f'{exercise.score:.3g}/{exercise.max_score:g}</th></tr>')
            rows.append(check_view.as_html(check_view.exercise_lines(exercise.tests)))
        notes = "".join(f"<li>{esc(e)}</li>" for e in self.result.errors)
        return (f"<table>{''.join(rows)}</table>" + (f"<p>Notes:</p><ul>{notes}</ul>" if notes else "")
                + f"<p><b>{esc(self._summary())}</b></p>")

    def __repr__(self) -> str:
        lines = []
        for exercise in self.result.exercises:
            lines.append(f"{exercise.id}  {exercise.score:.3g}/{exercise.max_score:g}")
            lines.append(check_view.as_text(check_view.exercise_lines(exercise.tests)))
        lines += [f"note: {e}" for e in self.result.errors]
        return "\n".join([*lines, self._summary()])


def _main(course_file: str, notebook: str, report: str, *ids: str) -> None:
    """The grading process of ``grade_cells``: public tests only, the record as JSON."""
    from ..sandbox.client import Zygote

    with Zygote() as zygote:  # started first: it imports torch while this process does the same
        from ..run.session import Job, grade

        (result,) = grade(load_course(course_file), [Job("notebook", Path(notebook), ids)], public_only=True, zygote=zygote)
    Path(report).write_text(json.dumps(result.to_record()), encoding="utf-8")


if __name__ == "__main__":
    _main(*sys.argv[1:])
    sys.stdout.flush()
    os._exit(0)  # skip torch's slow interpreter teardown, as python -m grader does
