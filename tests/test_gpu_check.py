"""`make gpu-check`'s own checks, on the CPU: a GPU run depends on them being right, and CI has no GPU."""
from __future__ import annotations

import copy

from conftest import COURSE, ROOT, SOLUTIONS, exercise_scores, grade_json
from grader.run import gpu_check


def test_the_device_bug_table_names_each_submission_and_a_course_exercise():
    bugs = gpu_check.device_bugs()
    folders = {p.name for p in (ROOT / "examples" / "device_bugs").iterdir() if p.is_dir()}
    assert set(bugs) == folders and set(bugs.values()) <= set(COURSE.ids)


def test_differences_name_each_test_whose_status_or_score_changed(tmp_path):
    on_cpu = grade_json(tmp_path, SOLUTIONS)
    assert gpu_check.differences(on_cpu, on_cpu) == []
    changed = copy.deepcopy(on_cpu)
    test = changed["submissions"][0]["exercises"][1]["tests"][0]
    test.update(status="error", score=0.0, message="CUDA error")
    (only,) = gpu_check.differences(on_cpu, changed)
    assert only.startswith(f"{changed['submissions'][0]['submission']}/{COURSE.ids[1]}/{test['name']}: CPU passed")
    assert "vs CUDA error 0" in only


def test_the_memory_hog_loses_its_exercise_as_out_of_memory_and_nothing_else(tmp_path):
    """Here the hog's inputs are on the CPU, so the data cap (sandbox.memory_mb) stops it."""
    hogging = COURSE.exercises[-1]
    hog = gpu_check.memory_hog(tmp_path, hogging, 8 * int(COURSE.sandbox.memory_mb))
    full = exercise_scores(grade_json(tmp_path, SOLUTIONS)["submissions"][0])
    document = grade_json(tmp_path, hog)
    assert gpu_check.check_memory_share(document, hogging.id, full) == []
    assert exercise_scores(document["submissions"][0])[hogging.id] == 0
