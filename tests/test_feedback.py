"""Blame of earlier exercises, and the feedback reports (HTML with heatmaps, Markdown)."""
from __future__ import annotations

import json
import re

import pytest

from conftest import ROOT, by_name, exercise_scores, grade_json, make_submission, max_scores, run_grader
from test_course import course_copy, edit  # noqa: F401 - fixture

WRONG_SOFTMAX = "import torch\n\ndef softmax(x, dim=-1):\n    e = torch.exp(x)\n    return e / e.sum(dim=0, keepdim=True)\n"
UNSCALED = "def attention_scores(Q, K):\n    return Q @ K.transpose(-2, -1)\n"
# attention that builds on the student's own earlier exercises, as the stub suggests
ATTENTION_REUSING = '''from exercises.apply_weights import apply_attention_weights
from exercises.attention_scores import attention_scores
from exercises.softmax import softmax


def attention(Q, K, V, mask=None):
    scores = attention_scores(Q, K)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = softmax(scores, dim=-1)
    if mask is not None:
        weights = weights.masked_fill(~mask, 0.0)
    return apply_attention_weights(weights, V), weights
'''


def attention_hints(submission: dict) -> list[str]:
    return [h for e in submission["exercises"] if e["id"] == "attention" for t in e["tests"] for h in t["hints"]]


@pytest.fixture(scope="session")
def blamed(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("blame")
    make_submission(root / "bad_softmax", {"softmax": WRONG_SOFTMAX, "attention": ATTENTION_REUSING})
    make_submission(root / "bad_scores", {"attention_scores": UNSCALED, "attention": ATTENTION_REUSING})
    make_submission(root / "all_right", {"attention": ATTENTION_REUSING})
    return by_name(grade_json(tmp_path_factory.mktemp("out"), root, extra=("--report-dir", str(root.parent / "reports"))))


def test_blame_names_the_faulty_earlier_exercise(blamed):
    """When attention fails only because of the student's softmax, does the hint say so?"""
    hints = attention_hints(blamed["bad_softmax"])
    assert hints and all("comes from your softmax" in h for h in hints)
    hints = attention_hints(blamed["bad_scores"])
    assert hints and all("comes from your attention_scores" in h for h in hints)


def test_blame_is_feedback_only_by_default(blamed, reference_report):
    """Does attention still lose its points when the error is the softmax's (the default policy)?"""
    assert exercise_scores(blamed["bad_softmax"])["attention"] < max_scores(reference_report)["attention"]
    assert attention_hints(blamed["all_right"]) == []


def test_blame_can_earn_points_by_policy(course_copy, tmp_path, blamed):
    """With feedback.blame_earns_points, do the attention tests that pass with the reference
    softmax earn their points (those whose calls can be re-run: not the gradient test)?"""
    path = edit(course_copy, lambda d: d["feedback"].update(blame_earns_points=True))
    sub = make_submission(tmp_path / "bad_softmax", {"softmax": WRONG_SOFTMAX, "attention": ATTENTION_REUSING})
    out = tmp_path / "out"
    out.mkdir()
    (report,) = grade_json(out, sub, extra=("--course", str(path)))["submissions"]
    scores = exercise_scores(report)
    assert scores["attention"] > exercise_scores(blamed["bad_softmax"])["attention"]
    assert scores["softmax"] == exercise_scores(blamed["bad_softmax"])["softmax"] < 3
    attention = next(e for e in report["exercises"] if e["id"] == "attention")
    assert any("passed with the reference in place of your softmax" in t["message"] for t in attention["tests"])


def test_html_report_has_heatmaps_and_opens_offline(blamed, tmp_path_factory):
    """Is there an HTML report per submission, with embedded PNG heatmaps and nothing remote?"""
    reports = next(p for p in tmp_path_factory.getbasetemp().glob("blame*/../reports") if p.is_dir())
    page = (reports / "bad_softmax.html").read_text()
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert images and all(len(i) > 1000 for i in images)
    assert "http://" not in page and "https://" not in page
    assert "comes from your softmax" in page
    markdown = (reports / "bad_softmax.md").read_text()
    pngs = re.findall(r"\]\(([^)]+\.png)\)", markdown)
    assert pngs and all((reports / p).read_bytes()[:4] == b"\x89PNG" for p in pngs)
    assert "![" not in (reports / "all_right.md").read_text()  # no failure, no picture


def test_student_audience_hides_hidden_tests(tmp_path):
    """Do student reports leave out the messages and pictures of hidden tests?"""
    sub = make_submission(tmp_path / "bad", {"softmax": WRONG_SOFTMAX})
    for audience in ("staff", "student"):
        proc = run_grader("grade", str(sub), "--format", "json", "--out", str(tmp_path / f"{audience}.json"),
                          "--report-dir", str(tmp_path / audience), "--audience", audience)
        assert proc.returncode == 0, proc.stderr
    staff, student = ((tmp_path / a / "bad.md").read_text() for a in ("staff", "student"))
    hidden_line = next(l for l in staff.splitlines() if "(hidden)" in l and "failed" in l)
    assert "**failed**: softmax" in hidden_line  # staff see the message
    student_hidden = [l for l in student.splitlines() if "(hidden)" in l and "failed" in l]
    assert student_hidden and all("details are not shown" in l and "expected" not in l for l in student_hidden)


def test_check_points_to_its_report(tmp_path):
    """Does `check` print the failures and point to a report file it wrote?"""
    import shutil

    shutil.copytree(ROOT / "solutions", tmp_path / "exercises")
    (tmp_path / "exercises" / "softmax.py").write_text(WRONG_SOFTMAX)
    for item in ("course.yaml",):
        shutil.copy(ROOT / item, tmp_path / item)
    shutil.copytree(ROOT / "solutions", tmp_path / "solutions")
    shutil.copytree(ROOT / "grader" / "suites", tmp_path / "grader" / "suites")
    proc = run_grader("check", "softmax", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "hint:" in proc.stdout and "grader-report" in proc.stdout
    assert (tmp_path / "grader-report" / "exercises.html").is_file()
