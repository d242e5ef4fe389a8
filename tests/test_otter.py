"""otter-grader and Gradescope: the real `otter run` of our autograder.zip gives our scores,
whatever the notebook patches, in Gradescope entries students can read; the student folder's
otter checks use our public tests."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

from conftest import IDS, ROOT, by_name, grade_json, run_grader
from test_release import WRONG_SOFTMAX, execute, fill, leaks, notebook_solutions

pytest.importorskip("otter", reason="the lms extra is not installed: pip install -e '.[lms]'")

from otter.nbmeta_config import NBMetadataConfig  # noqa: E402
from otter.test_files import GradingResults, create_test_file  # noqa: E402

from grader.course.load import load_course  # noqa: E402
from grader.lms.gradescope import UNIT, results_json  # noqa: E402
from grader.outputs.results import SubmissionResult  # noqa: E402

NOTEBOOK = "attention_step_by_step.ipynb"
COURSE = load_course(ROOT / "course.yaml")
UNSCALED = "def attention_scores(Q, K):\n    return Q @ K.transpose(-2, -1)\n"
# A student's broken notebook: a syntax error in the softmax cell, a cell that raises.
BROKEN_SOFTMAX = "def softmax(x, dim=-1)\n    return x\n"
BROKEN_CELLS = ("raise ValueError('a broken cell')",)
# Wrong code, then everything a notebook can patch in the kernel that otter executes: the
# comparisons, otter's test classes and scores, and finally the kernel itself. The static scan
# stops the first and the os._exit cell (not run); the otter imports are check lines, dropped;
# the last cell, plain builtins, ends the Python process (a C stack overflow: SIGSEGV).
TAMPERING = (
    "import torch\nfor name in ('allclose', 'equal'):\n    setattr(torch, name, lambda *a, **k: True)\n"
    "torch.testing.assert_close = lambda *a, **k: None\n",
    "from otter.test_files.abstract_test import TestCaseResult, TestFile\n"
    "from otter.test_files.exception_test import ExceptionTestFile\n"
    "def run(self, env):\n"
    "    self.test_case_results = [TestCaseResult(test_case=t, message='ok', passed=True) for t in self.test_cases]\n"
    "ExceptionTestFile.run = run\n"
    "TestFile.score = property(lambda self: self.possible)\n",
    "import os\nos._exit(0)\n",
    "depth = 1 << 14\nwhile True:\n    chain = iter([0])\n    for _ in range(depth):\n        chain = map(abs, chain)\n"
    "    next(chain)\n    depth *= 2\n",
)
GRADESCOPE_VISIBILITY = {"hidden", "after_due_date", "after_published", "visible"}


@pytest.fixture(scope="session")
def assignment(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("otter") / "assignment"
    proc = run_grader("otter", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="session")
def notebooks(assignment, tmp_path_factory) -> dict[str, Path]:
    """The student notebook filled in four ways, as students would hand it in."""
    folder = tmp_path_factory.mktemp("handed_in")
    student = assignment / "student" / NOTEBOOK
    wrong = notebook_solutions({"softmax": WRONG_SOFTMAX, "attention_scores": UNSCALED})
    return {"correct": fill(student, folder / "correct.ipynb", notebook_solutions()),
            "wrong": fill(student, folder / "wrong.ipynb", wrong),
            "tampering": fill(student, folder / "tampering.ipynb", wrong, extra_cells=TAMPERING),
            "broken": fill(student, folder / "broken.ipynb", notebook_solutions({"softmax": BROKEN_SOFTMAX}),
                           extra_cells=BROKEN_CELLS)}


@pytest.fixture(scope="session")
def graded(assignment, notebooks, tmp_path_factory) -> dict:
    """Each notebook through the real `otter run` (no Docker; all at once, to save time:
    docs/lms.md has the timing of one alone), and through our CLI (its JSON report, and its
    results file, from which ``--format gradescope`` writes results.json)."""
    runs = {}
    for name, notebook in notebooks.items():
        out = tmp_path_factory.mktemp(f"otter_{name}")
        command = [sys.executable, "-m", "otter", "run", "--no-logo", "-a", str(assignment / "autograder.zip"),
                   "-o", str(out), str(notebook)]
        runs[name] = (out, subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    folder = tmp_path_factory.mktemp("ours")
    ours = by_name(grade_json(folder, *notebooks.values(), extra=("--results", str(folder / "results.jsonl"))))
    records = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines() if line]
    results = {record["result"]["submission"]: SubmissionResult.from_record(record) for record in records}
    otter = {}
    for name, (out, proc) in runs.items():
        output, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, output[-3000:]
        otter[name] = json.loads((out / "results.json").read_text())
    return {"otter": otter, "ours": {name: ours[str(path)] for name, path in notebooks.items()},
            "results": {name: results[str(path)] for name, path in notebooks.items()}}


def entries(results: dict) -> dict[tuple[str, bool], dict]:
    """Gradescope's entries by (exercise id, hidden)."""
    found = {}
    for test in results["tests"]:
        exercise, kind = test["name"].split(": ")
        found[exercise, {"public tests": False, "hidden tests": True}[kind]] = test
    return found


def units(points: float) -> int:
    """Points in Gradescope's units (0.0001), the CSV's rounding."""
    return round(points * UNIT)


def check_gradescope_shape(results: dict) -> None:
    """The fields and types of Gradescope's results.json specification."""
    assert isinstance(results["score"], (int, float))
    assert isinstance(results["tests"], list) and results["tests"]
    for test in results["tests"]:
        assert isinstance(test["name"], str) and isinstance(test.get("output", ""), str)
        assert test.get("visibility", "visible") in GRADESCOPE_VISIBILITY
        assert test.get("status", "passed") in ("passed", "failed")
        if "score" in test:
            assert isinstance(test["score"], (int, float)) and isinstance(test["max_score"], (int, float))
            assert 0 <= test["score"] <= test["max_score"] + 1e-9
    assert results.get("visibility", "visible") in GRADESCOPE_VISIBILITY


# ---------------------------------------------------------------- the zip


def test_the_zip_holds_what_gradescope_runs(assignment):
    """otter's scripts, our plugin in an installable course, a CPU torch, and the plugin configured?"""
    with zipfile.ZipFile(assignment / "autograder.zip") as archive:
        names = set(archive.namelist())
        environment = archive.read("environment.yml").decode()
        config = json.loads(archive.read("otter_config.json"))
    assert {"run_autograder", "setup.sh", "run_otter.py", "environment.yml", "otter_config.json"} <= names
    assert {f"tests/{i}.py" for i in IDS} <= names
    assert {"files/course/course.yaml", "files/course/pyproject.toml", "files/course/grader/lms/otter_plugin.py",
            "files/course/solutions/softmax.py", "files/course/grader/suites/test_softmax.py"} <= names
    assert "download.pytorch.org/whl/cpu" in environment and "torch==2.13.0+cpu" in environment
    assert "-e /autograder/source/files/course" in environment and "otter-grader[grading,plugins]==7.0.0" in environment
    assert config["plugins"] == [{"grader.lms.otter_plugin.GraderPlugin": {"hidden_tests": COURSE.hidden_tests,
                                                                       "course": "files/course/course.yaml"}}]
    assert config["points_possible"] == COURSE.max_score


def test_otter_tests_carry_our_points_and_hidden_flags(assignment, reference_report, tmp_path):
    """Read by otter itself, does each test file hold our suite's tests, points and hidden flags?"""
    with zipfile.ZipFile(assignment / "autograder.zip") as archive:
        archive.extractall(tmp_path)
    for exercise in reference_report["exercises"]:
        ours = [(t["name"], t["max_score"], t["hidden"]) for t in exercise["tests"]]
        for folder, public_only in ((tmp_path / "tests", False), (assignment / "student" / "tests", True)):
            test_file = create_test_file(str(folder / f"{exercise['id']}.py"), NBMetadataConfig())
            cases = [(c.name, round(c.points, 4), c.hidden) for c in test_file.test_cases]
            assert cases == [t for t in ours if not (public_only and t[2])]


def test_without_the_plugin_nothing_is_earned(assignment, tmp_path):
    """If our grading failed, would the placeholders give 0 and a note (never full marks)?"""
    from grader.lms.otter_plugin import GraderPlugin

    with zipfile.ZipFile(assignment / "autograder.zip") as archive:
        archive.extractall(tmp_path)
    files = [create_test_file(str(tmp_path / "tests" / f"{i}.py"), NBMetadataConfig()) for i in IDS]
    for test_file in files:
        test_file.run({})
    results = GradingResults(files)
    plugin = GraderPlugin(str(tmp_path / "x.ipynb"), {}, {})
    plugin.failure = "RuntimeError: no grader"
    plugin.after_grading(results)
    assert results.total == 0 and results.possible == pytest.approx(COURSE.max_score)
    assert "could not grade" in results.output


# ---------------------------------------------------------------- otter run, end to end


def test_otter_run_gives_our_scores(graded):
    """For a correct, a wrong, a tampering and a broken notebook, does `otter run` give our CLI's
    scores: two entries per exercise that add up to its points and its score, and entries that add
    up exactly to the total, our CLI's total (not 5.125000000000001)?"""
    for name, ours in graded["ours"].items():
        results = graded["otter"][name]
        found = entries(results)
        for exercise in ours["exercises"]:
            points = COURSE.exercise(exercise["id"]).points
            parts = [found[exercise["id"], hidden] for hidden in (False, True)]
            assert sum(units(p["max_score"]) for p in parts) == units(points) == units(exercise["max_score"])
            assert abs(sum(units(p["score"]) for p in parts) - units(exercise["score"])) <= 1, (name, exercise["id"])
            assert all(0 <= p["score"] <= p["max_score"] for p in parts)
        assert sum(units(t["score"]) for t in results["tests"]) == units(results["score"]) == units(ours["score"]), name
        assert results["score"] == round(results["score"], 4) == ours["score"]  # the CLI's 4 digits
        assert sum(units(t["max_score"]) for t in results["tests"]) == units(COURSE.max_score)
    scores = {name: ours["score"] for name, ours in graded["ours"].items()}
    assert scores["correct"] == COURSE.max_score and scores["wrong"] < COURSE.max_score
    assert scores["tampering"] == pytest.approx(scores["wrong"])  # the patches earned nothing
    assert scores["broken"] < COURSE.max_score - COURSE.exercise("softmax").points + 1e-9


def test_each_exercise_is_a_public_and_a_hidden_entry(graded):
    """Is each exercise two entries in course.yaml order, its public tests visible at once and its
    hidden tests with course.yaml's feedback.hidden_tests (after_published), each listing its tests?"""
    assert COURSE.hidden_tests == "after_published"  # the default, which course.yaml keeps
    for name, ours in graded["ours"].items():
        results = graded["otter"][name]
        names = [f"{i}: {kind} tests" for i in IDS for kind in ("public", "hidden")]
        assert [t["name"] for t in results["tests"]] == names
        assert results["stdout_visibility"] == "hidden" and results.get("visibility", "visible") == "visible"
        found = entries(results)
        for exercise in ours["exercises"]:
            for hidden in (False, True):
                entry = found[exercise["id"], hidden]
                tests = [t for t in exercise["tests"] if t["hidden"] == hidden]
                assert entry["visibility"] == (COURSE.hidden_tests if hidden else "visible")
                assert entry["status"] == ("passed" if all(t["status"] == "passed" for t in tests) else "failed")
                if tests[0]["status"] != "passed" and len({(t["status"], t["message"]) for t in tests}) == 1:
                    # every test failed the same way (not written yet, forbidden, broken): said once
                    assert entry["output"].count(tests[0]["message"]) == 1
                    continue
                listed = re.findall(r"^[✓✗·] (\S+)", entry["output"], flags=re.M)
                assert listed == [t["name"] for t in tests], (name, exercise["id"], hidden)


def test_otter_shows_our_messages_and_hints(graded):
    """Do students read, in the entry of each failed test, our explanation and every hint (and
    our CLI's notes on the notebook's cells: those the scan did not run, the one that ended the
    process, the one that raised)?"""
    hints = 0
    for name, ours in graded["ours"].items():
        found = entries(graded["otter"][name])
        for exercise in ours["exercises"]:
            for test in exercise["tests"]:
                output = found[exercise["id"], test["hidden"]]["output"]
                if test["status"] != "passed" and name != "tampering":  # under load, a time limit may differ
                    assert all(line in output for line in test["message"].splitlines())
                    assert all(f"hint: {h}" in output for h in test["hints"])
                    hints += len(test["hints"])
    assert hints >= 3  # the wrong notebook's unscaled scores and overflowing softmax, at least
    softmax = entries(graded["otter"]["wrong"])["softmax", False]["output"]
    assert "test_large_logits_do_not_overflow (failed)" in softmax and "NaN" in softmax
    assert all("test_large_negative_logits" not in t["output"]  # a hidden test, in no public entry
               for (_, hidden), t in entries(graded["otter"]["wrong"]).items() if not hidden)
    broken, ours = graded["otter"]["broken"]["output"], graded["ours"]["broken"]["errors"]
    assert ours and broken == "Notes on your submission:\n" + "\n".join(f"- {note}" for note in ours)
    notes, ours = graded["otter"]["tampering"]["output"], graded["ours"]["tampering"]["errors"]
    # The scan's notes are the same words in both; a cell that ended its process may end it
    # otherwise under load (a time limit), so for the others the same cells must be named.
    assert all(note in notes for note in ours if "The cell was not run." in note)
    assert _cells_noted(notes) == _cells_noted("\n".join(ours))
    assert any("imports os" in note and "The cell was not run." in note for note in ours)
    assert any(re.search(r"ended the Python process|ran past", note) for note in ours)


def _cells_noted(text: str) -> set[str]:
    return set(re.findall(r"(?:code )?cell \[?\d+\]?", text))  # named as grader.intake.submission.cell_names names them


def test_results_json_has_gradescope_shape(graded):
    """Do otter's results.json and ours (`grade --format gradescope`) follow Gradescope's
    specification, and are they the same entries?"""
    for name, otter in graded["otter"].items():
        check_gradescope_shape(otter)
        ours = results_json(graded["results"][name], hidden_tests=COURSE.hidden_tests)
        check_gradescope_shape(ours)
        fields = ("name", "score", "max_score", "status", "visibility") + (("output",) if name != "tampering" else ())
        assert [[t[f] for f in fields] for t in otter["tests"]] == [[t[f] for f in fields] for t in ours["tests"]]
        assert otter["score"] == ours["score"]


# ---------------------------------------------------------------- the student folder


def test_the_student_folder_is_a_clean_release(assignment):
    """Is the student folder free of solutions and hidden tests, with otter's check cells?"""
    student = assignment / "student"
    assert leaks(student) == []
    sources = [c.source for c in nbformat.read(student / NOTEBOOK, as_version=4).cells]
    assert all(f'grader.check("{i}")' in sources for i in IDS)
    assert any("grader = otter.Notebook(" in s for s in sources)


def test_grader_check_in_the_student_notebook_uses_our_public_tests(assignment, tmp_path):
    """In Jupyter, does otter's grader.check("softmax") show our public tests' verdicts and messages?"""
    student = tmp_path / "student"
    shutil.copytree(assignment / "student", student, ignore=shutil.ignore_patterns(".OTTER_LOG"))
    notebook = fill(student / NOTEBOOK, student / "mine.ipynb", {"softmax": WRONG_SOFTMAX})
    nb = nbformat.read(notebook, as_version=4)
    keep = ("grader = otter.Notebook(", "def softmax(", 'grader.check("softmax")')
    nb.cells = [c for c in nb.cells if any(k in c.source for k in keep)]
    nbformat.write(nb, notebook)
    executed = execute(notebook)
    (check_cell,) = [c for c in executed.cells if c.source == 'grader.check("softmax")']
    shown = "".join(str(o.get("data", {}).get("text/plain", "")) for o in check_cell.outputs)
    assert re.search(r"test_worked_example result:\s+✅ Test case passed", shown)
    assert re.search(r"test_large_logits_do_not_overflow result:\s+❌ Test case failed", shown) and "NaN" in shown
    assert "test_large_negative_logits" not in shown  # hidden: not in the student's tests
