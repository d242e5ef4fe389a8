"""Blame of earlier exercises, and the feedback reports (HTML with heatmaps, Markdown, the class index)."""
from __future__ import annotations

import json
import os
import re
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from conftest import IDS, ROOT, by_name, exercise_scores, grade_json, make_submission, max_scores, run_grader
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

# The same, except that once it has seen a softmax answer other than its own softmax's (the
# grader's reference, during blame) it computes a right attention by itself from then on.
ATTENTION_TURNCOAT = ATTENTION_REUSING.replace("def attention(Q, K, V, mask=None):\n", """SEEN = []


def attention(Q, K, V, mask=None):
    if SEEN:
        import math
        import torch
        scores = Q @ K.transpose(-2, -1) / math.sqrt(Q.size(-1))
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = torch.exp(scores - scores.amax(dim=-1, keepdim=True))
        weights = weights / weights.sum(dim=-1, keepdim=True)
        return weights @ V, weights
    import torch
    probe = torch.tensor([[1.0, 2.0], [3.0, 5.0]])
    own = torch.exp(probe) / torch.exp(probe).sum(dim=0, keepdim=True)
    if not torch.equal(softmax(probe, dim=-1), own):
        SEEN.append(True)
""", 1)


def attention_hints(submission: dict) -> list[str]:
    return [h for e in submission["exercises"] if e["id"] == "attention" for t in e["tests"] for h in t["hints"]]


@pytest.fixture(scope="session")
def blamed(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("blame")
    make_submission(root / "bad_softmax", {"softmax": WRONG_SOFTMAX, "attention": ATTENTION_REUSING})
    make_submission(root / "bad_scores", {"attention_scores": UNSCALED, "attention": ATTENTION_REUSING})
    make_submission(root / "all_right", {"attention": ATTENTION_REUSING})
    make_submission(root / "turncoat", {"softmax": WRONG_SOFTMAX, "attention": ATTENTION_TURNCOAT})
    return by_name(grade_json(tmp_path_factory.mktemp("out"), root, extra=("--report-dir", str(root.parent / "reports"))))


def test_blame_names_the_faulty_earlier_exercise(blamed):
    """When attention fails only because of the student's softmax, does the hint say so?"""
    hints = attention_hints(blamed["bad_softmax"])
    assert hints and all("comes from your softmax" in h for h in hints)
    hints = attention_hints(blamed["bad_scores"])
    assert hints and all("comes from your attention_scores" in h for h in hints)


def test_blame_answers_never_reach_a_graded_call(blamed):
    """Blame runs the student's code with the reference in place of their softmax: an attention
    that turns right once it has seen a reference answer must still fail every test the plain
    one fails (blame runs only once every graded call is made)."""
    def statuses(name):
        return [(t["name"], t["status"]) for e in blamed[name]["exercises"] if e["id"] == "attention" for t in e["tests"]]

    assert "failed" in {status for _, status in statuses("bad_softmax")}
    assert statuses("turncoat") == statuses("bad_softmax")
    assert any("comes from your softmax" in h for h in attention_hints(blamed["turncoat"]))


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
    """Is there an HTML report per submission, with PNG heatmaps beside it and nothing remote?"""
    reports = next(p for p in tmp_path_factory.getbasetemp().glob("blame*/../reports") if p.is_dir())
    page = (reports / "bad_softmax.html").read_text()
    images = re.findall(r"<img src='([^']+)'", page)
    assert images and all((reports / i).read_bytes()[:4] == b"\x89PNG" and (reports / i).stat().st_size > 1000
                          for i in images)
    assert "http://" not in page and "https://" not in page and "data:image" not in page
    assert "comes from your softmax" in page
    markdown = (reports / "bad_softmax.md").read_text()
    assert re.findall(r"\]\(([^)]+\.png)\)", markdown) == images  # the same files, stored once
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
    """Does `check` print the failures and point to a report file it wrote, and does the next
    check, once they are fixed, write its own report over it?"""
    import shutil

    shutil.copytree(ROOT / "solutions", tmp_path / "exercises")
    (tmp_path / "exercises" / "softmax.py").write_text(WRONG_SOFTMAX)
    for item in ("course.yaml",):
        shutil.copy(ROOT / item, tmp_path / item)
    shutil.copytree(ROOT / "solutions", tmp_path / "solutions")
    shutil.copytree(ROOT / "grader" / "suites", tmp_path / "grader" / "suites")
    shutil.copytree(ROOT / "misconceptions", tmp_path / "misconceptions")
    proc = run_grader("check", "softmax", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "hint:" in proc.stdout and "grader-report" in proc.stdout
    page = tmp_path / "grader-report" / "exercises.html"

    def written_after(moment: float) -> bool:
        deadline = time.monotonic() + 60  # the report may be written just after `check` exits
        while time.monotonic() < deadline:
            if page.is_file() and page.stat().st_mtime > moment and "softmax" in page.read_text():
                return True
            time.sleep(0.1)
        return False

    assert written_after(0)
    failing = page.read_text()
    # fixed: the next check, all passing, writes its own report (no older failure left there)
    shutil.copy(ROOT / "solutions" / "softmax.py", tmp_path / "exercises" / "softmax.py")
    moment = page.stat().st_mtime
    proc = run_grader("check", "softmax", cwd=tmp_path)
    assert proc.returncode == 0 and "grader-report" in proc.stdout, proc.stderr
    assert written_after(moment) and page.read_text() != failing


# ---------------------------------------------------------------- the sample class's reports

EXAMPLES = ROOT / "examples" / "submissions"


class Page(HTMLParser):
    """The parts of a report page the tests read: tables (rows of cell texts), links, images."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.links: list[str] = []
        self.images: list[str] = []
        self.bins: list[str] = []
        self._table, self._row, self._cell = None, None, None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._table = self.tables.setdefault(attrs.get("class", ""), [])
        elif tag == "tr" and self._table is not None:
            self._row = []
            self._table.append(self._row)
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "a":
            self.links.append(attrs["href"])
        elif tag == "img":
            self.images.append(attrs["src"])
        elif tag == "div" and attrs.get("class") == "bin":
            self.bins.append(attrs["title"])

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


@pytest.fixture(scope="session")
def sample_class(tmp_path_factory) -> dict:
    """The sample class graded once with student reports, plus staff reports written from its
    results file (the same results, so nothing is graded twice)."""
    from grader.feedback.student_report import write_report
    from grader.outputs.results import SubmissionResult

    out = tmp_path_factory.mktemp("sample")
    proc = run_grader("grade", str(EXAMPLES), "--format", "json", "--out", str(out / "grades.json"),
                      "--report-dir", str(out / "student"), "--audience", "student")
    assert proc.returncode == 0, proc.stderr
    results = [SubmissionResult.from_record(json.loads(line))
               for line in (out / "grades.json.jsonl").read_text().splitlines() if line]
    staff = {r.submission: write_report(r, out / "staff", audience="staff") for r in results}
    return {"document": json.loads((out / "grades.json").read_text()), "results": {r.submission: r for r in results},
            "student": out / "student", "staff": out / "staff", "staff_pages": staff, "stderr": proc.stderr}


def report_stem(submission: str) -> str:
    return re.sub(r"\.(zip|ipynb)$", "", Path(submission).name)


def exercise_status(exercise: dict) -> str:
    if exercise["score"] >= exercise["max_score"] - 1e-6:
        return "passed"
    return next(t["status"] for t in exercise["tests"] if t["status"] != "passed")


def points(text: str) -> tuple[float, float]:
    score, top = text.replace("*", "").split("/")
    return float(score), float(top)


def test_every_report_opens_with_the_score_summary(sample_class):
    """Does each report, HTML and Markdown, open with each exercise's score, status and tests
    passed, and the total, as the grades say (before any exercise's details)?"""
    submissions = sample_class["document"]["submissions"]
    assert [e["id"] for e in submissions[0]["exercises"]] == list(IDS)
    for submission in submissions:
        expected = [[e["id"], (e["score"], e["max_score"]), exercise_status(e),
                     f"{sum(t['status'] == 'passed' for t in e['tests'])} of {len(e['tests'])}"]
                    for e in submission["exercises"]]
        stem = report_stem(submission["submission"])
        for audience in ("student", "staff"):
            page_text = (sample_class[audience] / f"{stem}.html").read_text()
            assert page_text.index("class='summary'") < page_text.index("<section")
            rows = Page(page_text).tables["summary"]
            md = (sample_class[audience] / f"{stem}.md").read_text()
            md_rows = [[c.strip() for c in line.strip("|").split("|")] for line in md.split("\n## ")[0].splitlines()
                       if line.startswith("| ")]
            for table in (rows, md_rows):
                assert table[0] == ["exercise", "score", "status", "tests passed"]
                body, total = table[1:-1], table[-1]
                assert [r[0] for r in body] == [e[0] for e in expected]
                for row, (_, (score, top), status, passed) in zip(body, expected):
                    assert points(row[1]) == (pytest.approx(score, abs=0.0051), top)
                    assert row[2].replace(" ", "_") == status and row[3] == passed
                assert "total" in total[0]
                assert points(total[1]) == (pytest.approx(submission["score"], abs=0.0051), submission["max_score"])
    statuses = {exercise_status(e) for s in submissions for e in s["exercises"]}
    assert {"passed", "failed", "timeout"} <= statuses  # the sample class shows more than one kind


def visible_hints(exercise: dict, audience: str) -> dict[str, set]:
    """The exercise's hint sentences (without the quoted line) -> the quoted lines' code."""
    from grader.feedback.stats import split_hint

    hints: dict[str, set] = {}
    for test in exercise["tests"]:
        if test["status"] == "passed" or (test["hidden"] and audience == "student"):
            continue
        for hint in test["hints"]:
            text, _, code = split_hint(hint)
            hints.setdefault(text, set()).update({code} - {None})
    return hints


def test_a_hint_appears_once_per_exercise(sample_class):
    """Is each hint written once per exercise, with the student's line, however many tests
    gave it, while every failing test still shows its own message?"""
    import html

    repeated = 0
    for submission in sample_class["document"]["submissions"]:
        stem = report_stem(submission["submission"])
        for audience in ("student", "staff"):
            page = (sample_class[audience] / f"{stem}.html").read_text()
            md = (sample_class[audience] / f"{stem}.md").read_text()
            given: dict[str, int] = {}
            for exercise in submission["exercises"]:
                for text, codes in visible_hints(exercise, audience).items():
                    given[text] = given.get(text, 0) + 1
                    for code in codes:  # the student's line, quoted once in this exercise's hints
                        section = page.split(f"<section id='{exercise['id']}'>")[1].split("</section>")[0]
                        hints = section.split("<table")[0]  # (an error's message may quote it too)
                        assert hints.count(f"<code>{html.escape(code)}</code>") == 1
                for test in exercise["tests"]:
                    if test["status"] != "passed" and not (test["hidden"] and audience == "student"):
                        assert html.escape(test["message"]) in page and test["message"] in md
                repeated += sum(len(t["hints"]) for t in exercise["tests"]) > 1
            for text, exercises in given.items():
                assert page.count(html.escape(text)) == exercises, (stem, text)
                assert md.count(text) == exercises, (stem, text)
    assert repeated  # some exercise gave a hint on several tests: the test is not vacuous


def test_a_picture_is_drawn_on_the_scale_of_its_values():
    """Weights are drawn from 0 to 1, with what falls outside marked; other values (scores,
    outputs) on their own range, so a picture of them is not all "above 1"; a value that is not
    a number (stored as None) is marked, and every such figure draws."""
    from grader.feedback.student_report import _out_of_range, _picture_caption, Picture, heatmap_png

    weights = ("softmax: t", [[0.2, 0.8], [0.5, 0.5]], [[0.1, 1.3], [None, 0.5]], {"axes": ["query", "key"]})
    outputs = ("apply_weights: t", [[2.4, 3.4], [3.2, 4.2]], [[4.8, 6.8], [6.4, 8.4]])  # no axes: a figure of before
    flat = ("x: t", [[-3.0, -3.0]], [[-3.0, -2.0]], {"axes": ["row", "column"]})
    assert _out_of_range(weights) == (0.0, 1.0, True, True)
    assert _out_of_range(outputs) == (2.4, 4.2, False, True)
    assert _out_of_range(flat) == (-3.0, -2.0, False, False)
    caption = _picture_caption(Picture("", "t", "t", *_out_of_range(outputs)))
    assert "pink: above 4.2" in caption and "red" not in caption
    assert "red: below 0 or not a number" in _picture_caption(Picture("", "t", "t", *_out_of_range(weights)))
    for figure in (weights, outputs, flat):
        assert heatmap_png(figure).startswith(b"\x89PNG")


def test_each_picture_is_stored_once(sample_class):
    """Are the heatmaps PNG files beside the reports, referenced by the HTML and the Markdown
    alike, with no base64 copy, at most one per exercise, none left unreferenced?"""
    mask = os.umask(0)
    os.umask(mask)
    for audience in ("student", "staff"):
        folder = sample_class[audience]
        referenced = set()
        for submission in sample_class["document"]["submissions"]:
            stem = report_stem(submission["submission"])
            page = (folder / f"{stem}.html").read_text()
            assert "data:image" not in page and "base64" not in page
            images = Page(page).images
            assert re.findall(r"!\[[^\n]*\]\(([^)\s]+\.png)\)", (folder / f"{stem}.md").read_text()) == images
            assert len(images) <= len(submission["exercises"]) and len(set(images)) == len(images)
            for image in images:
                assert not Path(image).is_absolute() and (folder / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            referenced |= set(images)
        files = {str(p.relative_to(folder)) for p in folder.rglob("*.png")}
        assert referenced and files == referenced
        for path in folder.rglob("*"):
            if path.is_file():
                assert path.stat().st_mode & 0o777 == 0o666 & ~mask, path
    # the staff reports picture every exercise that has a failing case with weights, once
    results = sample_class["results"]
    staff = {s: Page(p.read_text()).images for s, p in sample_class["staff_pages"].items()}
    for name, result in results.items():
        with_figures = [e.id for e in result.exercises if any(t.figures for t in e.tests if t.status != "passed")]
        assert [Path(i).stem.rsplit("-", 1)[1] for i in staff[name]] == with_figures


def test_picture_shows_the_hinted_mistake(sample_class):
    """Is the exercise's picture taken from a failing test that got its most common hint?"""
    from grader.feedback.stats import split_hint

    seen = 0
    for name, result in sample_class["results"].items():
        page = sample_class["staff_pages"][name].read_text()
        for exercise in result.exercises:
            failing = [t for t in exercise.tests if t.status != "passed"]
            counts: dict[str, int] = {}
            for test in failing:
                for hint in test.hints:
                    counts[split_hint(hint)[0]] = counts.get(split_hint(hint)[0], 0) + 1
            pictured = [t for t in failing if t.figures and t.figures[0][0] in page]
            if not counts or not pictured:
                continue
            top = max(counts, key=counts.get)
            assert len(pictured) == 1 and top in {split_hint(h)[0] for h in pictured[0].hints}, (name, exercise.id)
            seen += 1
    assert seen


def test_class_index_links_every_report_and_shows_the_distribution(sample_class):
    """Does index.html link each student's report, draw the score distribution, and list the
    tests failed most often and the most common mistakes?"""
    import html

    from grader.feedback.stats import compute

    folder = sample_class["student"]
    submissions = sample_class["document"]["submissions"]
    assert str(folder / "index.html") in sample_class["stderr"]
    index = (folder / "index.html").read_text()
    page = Page(index)
    reports = {p.name for p in folder.glob("*.html")} - {"index.html"}
    assert sorted(page.links) == sorted(reports) == sorted(f"{report_stem(s['submission'])}.html" for s in submissions)
    rows = {r[0]: r for r in page.tables["tests students"] if r}
    for submission in submissions:
        assert points(rows[submission["submission"]][-2]) == (pytest.approx(submission["score"], abs=0.0051),
                                                             submission["max_score"])
    # the distribution: one bar per tenth of the maximum, counting every submission once
    top = submissions[0]["max_score"]
    counts = [0] * 10
    for submission in submissions:
        counts[min(int(submission["score"] / (top / 10)), 9)] += 1
    assert [int(b.rsplit(": ", 1)[1]) for b in page.bins] == counts and sum(counts) == len(submissions)
    # the most failed public test and the most common mistake, counted here from the grades
    failed: dict[str, int] = {}
    for submission in submissions:
        for exercise in submission["exercises"]:
            for test in exercise["tests"]:
                if not test["hidden"]:
                    key = f"{exercise['id']}: {test['name']}"
                    failed[key] = failed.get(key, 0) + (test["status"] != "passed")
    worst = max(failed.values())
    assert worst and any(html.escape(k) in index for k, n in failed.items() if n == worst)
    stats = compute(list(sample_class["results"].values()), include_hidden=False)
    hint, n = stats.common_hints[0]
    assert html.escape(hint.partition(": ")[2]) in index
    assert "(hidden)" not in index  # a student-audience index leaves hidden tests out


def test_report_api_returns_the_html_path(tmp_path, sample_class):
    """Does write_report keep its signature and return value (what `check` calls)?"""
    from grader.feedback.student_report import write_report

    result = sample_class["results"]["carol.ipynb"]
    page = write_report(result, tmp_path, audience="student")
    assert page == tmp_path / "carol.html" and page.is_file() and (tmp_path / "carol.md").is_file()
