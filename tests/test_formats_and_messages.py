"""The three submission formats grade alike; broken code gets a message that names the fix."""
from __future__ import annotations

import copy
import os
import zipfile
from pathlib import Path

import nbformat
import pytest

from conftest import ROOT, by_name, exercise_scores, grade_json, make_submission, scan_off_course, solution_sources
from grader.course.load import load_course
from grader.outputs.results import SubmissionResult
from grader.run.worker_errors import describe_error as _describe

NOTEBOOK_ATTENTION = solution_sources()["attention"].replace(
    "from .apply_weights import apply_attention_weights\nfrom .attention_scores import attention_scores\nfrom .softmax import softmax\n", "")

MISSING_MODULE = "import scipy_special_thing\n\ndef softmax(x, dim=-1):\n    return x\n"
WRONG_SOFTMAX = "import torch\n\ndef softmax(x, dim=-1):\n    e = torch.exp(x)\n    return e / e.sum(dim=dim, keepdim=True)\n"


def notebook(path: Path, sources: dict[str, str], extra_cells: tuple[str, ...] = ()) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# My attention"), nbformat.v4.new_code_cell("%load_ext autoreload\n!nvidia-smi")]
    nb.cells += [nbformat.v4.new_code_cell(c) for c in extra_cells]
    nb.cells += [nbformat.v4.new_code_cell(text) for text in sources.values()]
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="session")
def formats(tmp_path_factory) -> dict[str, dict]:
    root = tmp_path_factory.mktemp("formats")
    sources = dict(solution_sources(), softmax=WRONG_SOFTMAX)
    make_submission(root / "as_folder", {"softmax": WRONG_SOFTMAX})
    with zipfile.ZipFile(root / "as_zip.zip", "w") as archive:
        for name, text in sources.items():
            archive.writestr(f"wrapper/exercises/{name}.py", text)
    notebook(root / "as_notebook.ipynb", dict(sources, attention=NOTEBOOK_ATTENTION),
             extra_cells=("raise ValueError('a broken cell')", "import time\nwhile True:\n    time.sleep(0.01)"))
    # broken in words
    make_submission(root / "syntax_error", {"softmax": "def softmax(x, dim=-1)\n    return x\n"})
    make_submission(root / "misnamed_function", {"softmax": "def sofmax(x, dim=-1):\n    return x\n"})
    make_submission(root / "misnamed_file", {"attention": None, "atention": solution_sources()["attention"]})
    make_submission(root / "missing_module", {"softmax": MISSING_MODULE})
    make_submission(root / "raises", {"softmax": "def softmax(x, dim=-1):\n    raise ValueError('oops')\n"})
    (root / "latin1").mkdir()
    make_submission(root / "latin1", {})
    (root / "latin1" / "softmax.py").write_bytes("def softmax(x, dim=-1):\n    return x  # é\n".encode("latin-1"))
    snapshot = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    report = by_name(grade_json(tmp_path_factory.mktemp("out"), root))
    report["__files_after__"] = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    report["__files_before__"] = snapshot
    return report


def test_folder_zip_and_notebook_grade_alike(formats):
    """Does the same code score the same as a folder, a zip and a notebook?"""
    folder, archive, nb = (exercise_scores(formats[n]) for n in ("as_folder", "as_zip.zip", "as_notebook.ipynb"))
    assert folder == archive == nb
    assert folder["softmax"] < 3 and folder["attention_scores"] == 2


def test_notebook_cells_that_fail_are_reported_and_skipped(formats):
    """Do a raising cell and a hanging cell become errors while the other cells still run?"""
    errors = formats["as_notebook.ipynb"]["errors"]
    # named as Jupyter numbers them after Restart & Run All: the Markdown cell has no number
    assert any(e.startswith("cell [2] raised ValueError: a broken cell") for e in errors)
    assert any(e.startswith("cell [3] ran past") for e in errors)


def test_grading_writes_nothing_into_submissions(formats):
    """Does grading leave every submission file untouched, with no __pycache__?"""
    assert formats["__files_after__"] == formats["__files_before__"]
    assert not any("__pycache__" in str(p) for p in formats["__files_after__"])


def messages(formats, name: str, exercise: str) -> list[tuple[str, str]]:
    ex = next(e for e in formats[name]["exercises"] if e["id"] == exercise)
    return [(t["status"], t["message"]) for t in ex["tests"]]


def test_syntax_error_names_file_and_line(formats):
    status, message = messages(formats, "syntax_error", "softmax")[0]
    assert status == "error" and "softmax.py line 1" in message and "syntax error" in message


def test_misnamed_function_gets_did_you_mean(formats):
    status, message = messages(formats, "misnamed_function", "softmax")[0]
    assert status == "not_implemented" and "Did you mean sofmax?" in message


def test_misnamed_file_gets_did_you_mean(formats):
    status, message = messages(formats, "misnamed_file", "attention")[0]
    assert status == "not_implemented" and "atention.py" in message and "attention.py" in message


def test_import_not_allowed_names_the_module_and_the_fix(formats):
    """Does the scan stop an import the course does not allow, naming the file, the line, the
    module and what can be imported instead (the course's allowed_imports)?"""
    status, message = messages(formats, "missing_module", "softmax")[0]
    assert status == "forbidden" and "softmax.py line 1" in message and "scipy_special_thing" in message
    allowed = load_course(ROOT / "course.yaml").policy.allowed_imports
    assert f"Only {', '.join(allowed)} and your own exercise files can be imported" in message


def test_import_error_names_the_module(tmp_path):
    """With the scan off, so that the import runs in the worker: does a module that is not
    installed give an error naming the module and the line?"""
    course = scan_off_course(tmp_path / "course")
    sub = make_submission(tmp_path / "missing_module", {"softmax": MISSING_MODULE})
    (report,) = grade_json(tmp_path, sub, extra=("--course", str(course)))["submissions"]
    status, message = messages({"missing_module": report}, "missing_module", "softmax")[0]
    assert status == "error" and "'scipy_special_thing'" in message and "softmax.py line 1" in message


def test_import_error_text_names_the_course_policy():
    """Does the worker's import_error report name the module and the course's allowed imports
    (policy.allowed_imports, not a fixed list)?"""
    softmax = load_course(ROOT / "course.yaml").exercise("softmax")
    fault = _describe(softmax, {"kind": "import_error", "module": "scipy_special_thing"}, "load", ("torch", "math"))
    assert fault.status == "error" and "'scipy_special_thing'" in fault.message
    assert "Only torch, math and your own exercise files can be imported" in fault.message


def test_exception_names_the_line(formats):
    status, message = messages(formats, "raises", "softmax")[0]
    assert status == "error" and "ValueError: oops" in message and "line 2" in message


def test_non_utf8_source_explained(formats):
    status, message = messages(formats, "latin1", "softmax")[0]
    assert status == "error" and "not valid utf-8" in message and "UTF-8" in message
    assert exercise_scores(formats["latin1"])["apply_weights"] == 2


# ---------------------------------------------------------------- Gradescope's results.json


def test_gradescope_entries_add_up_to_the_total_whatever_passes(reference_report):
    """For any mix of passed and failed tests, do Gradescope's entries (each exercise's public and
    hidden tests) add up exactly to the report's total, each part of an exercise's points to its
    points, each score within 0.0001 of the exact one and never above its entry's maximum?"""
    import random

    from grader.lms.gradescope import UNIT, results_json

    course = load_course(ROOT / "course.yaml")
    base = SubmissionResult.from_record({"result": reference_report})
    rng, adjusted = random.Random(20261128), 0
    for _ in range(2000):
        result = copy.deepcopy(base)
        for exercise in result.exercises:
            for test in exercise.tests:
                test.status = "passed" if rng.random() < 0.5 else "failed"
        data = results_json(result, hidden_tests=course.hidden_tests)
        assert sum(round(t["score"] * UNIT) for t in data["tests"]) == round(data["score"] * UNIT)
        assert data["score"] == round(result.score, 4)
        for exercise in result.exercises:
            parts = [(t, [c for c in exercise.tests if c.hidden == hidden]) for t, hidden in
                     zip([t for t in data["tests"] if t["name"].startswith(f"{exercise.id}: ")], (False, True))]
            points = course.exercise(exercise.id).points
            assert sum(round(t["max_score"] * UNIT) for t, _ in parts) == round(points * UNIT)
            for entry, cases in parts:
                exact = sum(c.score for c in cases)
                assert abs(entry["score"] - exact) <= 1 / UNIT + 1e-9 and entry["score"] <= entry["max_score"]
                adjusted += round(entry["score"], 4) != round(exact, 4)
    assert adjusted  # some mixes need the largest-remainder step: rounding each entry alone misses


def test_csv_columns_add_up_to_the_total_whatever_passes(reference_report):
    """For any mix of passed and failed tests, do the CSV's exercise columns add up exactly to
    its total column, each within 0.0001 of the exact score?"""
    import csv
    import io
    import random

    from grader.outputs.gradebook_csv import to_csv
    from grader.outputs.results import UNIT

    course = load_course(ROOT / "course.yaml")
    base = SubmissionResult.from_record({"result": reference_report})
    rng, results = random.Random(20261202), []
    for _ in range(500):
        result = copy.deepcopy(base)
        for exercise in result.exercises:
            for test in exercise.tests:
                test.status = "passed" if rng.random() < 0.5 else "failed"
        results.append(result)
    rows = list(csv.DictReader(io.StringIO(to_csv(course, results))))
    for row, result in zip(rows, results):
        columns = [float(row[i]) for i in course.ids]
        assert sum(round(c * UNIT) for c in columns) == round(float(row["total"]) * UNIT)
        for value, exercise in zip(columns, result.exercises):
            assert abs(value - exercise.score) <= 1 / UNIT + 1e-9


def test_gradescope_visibility_follows_the_course_setting(reference_report):
    """Are public tests visible at once, and hidden tests as feedback.hidden_tests says?"""
    from grader.course.load import GRADESCOPE_VISIBILITY
    from grader.lms.gradescope import results_json

    result = SubmissionResult.from_record({"result": reference_report})
    for visibility in GRADESCOPE_VISIBILITY:
        tests = results_json(result, hidden_tests=visibility)["tests"]
        assert {t["visibility"] for t in tests if t["name"].endswith(": public tests")} == {"visible"}
        assert {t["visibility"] for t in tests if t["name"].endswith(": hidden tests")} == {visibility}


def test_the_worst_place_is_found_as_torch_finds_it():
    """Does the comparison's index of the largest difference match torch.unravel_index?"""
    import random

    import torch

    from grader.testing import _unravel

    rng = random.Random(7)
    for _ in range(200):
        shape = tuple(rng.randint(1, 5) for _ in range(rng.randint(0, 4)))
        flat = rng.randrange(max(1, torch.Size(shape).numel()))
        assert _unravel(flat, shape) == [int(i) for i in torch.unravel_index(torch.tensor(flat), shape)]
