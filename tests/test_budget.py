"""A submission's time budget (course.yaml ``sandbox.submission_seconds``) covers everything
its code runs: calls (tests/test_hostile.py) and notebook cells, run again in every worker."""
from __future__ import annotations

import nbformat

from conftest import ROOT, grade_json, scan_off_course


def test_notebook_cells_count_in_the_budget(tmp_path):
    """Do slow cells stop at the budget, each cell past it reported as not run?"""
    notebook = nbformat.v4.new_notebook()
    reference = (ROOT / "solutions" / "softmax.py").read_text()
    notebook.cells = [nbformat.v4.new_code_cell(reference)]
    notebook.cells += [nbformat.v4.new_code_cell("import time\ntime.sleep(1.5)") for _ in range(8)]
    path = tmp_path / "slow.ipynb"
    nbformat.write(notebook, path)
    course = scan_off_course(tmp_path / "course", {"submission_seconds": 4})
    submission = grade_json(tmp_path, path, extra=("--course", str(course)))["submissions"][0]
    skipped = [e for e in submission["errors"] if "time budget" in e]
    assert skipped and skipped[-1].startswith("cell [9] was not run")  # In [9] after Restart & Run All
