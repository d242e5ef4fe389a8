"""The one rendering of tests for students (grader/feedback/check_view.py): what `check`, the
notebook, Gradescope and otter all show."""
from __future__ import annotations

from grader.feedback.check_view import as_html, as_rich, as_text, case_lines, exercise_lines
from grader.outputs.results import CaseResult


def case(name: str, status: str, message: str = "", hints=()) -> CaseResult:
    return CaseResult(name, 1.0, status, False, message, list(hints))


def test_each_failure_gets_its_message_and_each_hint_comes_once():
    """Does a failing test show its status and message, and a hint given by two tests appear once?"""
    tests = [case("test_a", "passed"), case("test_b[x]", "failed", "3 of 4 values differ", ["divide by sqrt(d_k)"]),
             case("test_c", "timeout", "took too long", ["divide by sqrt(d_k)"])]
    text = as_text(exercise_lines(tests))
    assert text.splitlines()[:3] == ["  ✓ test_a", "  ✗ test_b[x] (failed)", "      3 of 4 values differ"]
    assert "test_c (timeout)" in text and text.count("divide by sqrt(d_k)") == 1
    assert as_rich(exercise_lines(tests)).plain == text  # the terminal shows the same words
    assert "test_b[x]" in as_html(exercise_lines(tests))


def test_tests_that_all_fail_the_same_way_are_one_line():
    """Is an exercise not written yet one line, not the same sentence under every test?"""
    tests = [case(f"test_{n}", "not_implemented", "softmax is not implemented yet") for n in range(5)]
    assert as_text(exercise_lines(tests)) == "  · softmax is not implemented yet"


def test_html_escapes_what_students_wrote():
    """Is a message quoting the student's code escaped in the notebook's HTML?"""
    html = as_html(exercise_lines([case("test_a", "failed", "line 3: x <b>bold</b>", ["use <, not >"])]))
    assert "<b>bold" not in html and "&lt;b&gt;bold" in html and "use &lt;, not &gt;" in html


def test_one_case_is_its_status_message_and_hints():
    """Does one test alone (an otter test case) read 'status: message' then its hints?"""
    assert as_text(case_lines(case("t", "not_implemented", "write it", ["hint one"])), indent="") == \
        "not implemented: write it\nhint: hint one"
    assert as_text(case_lines(case("t", "passed")), indent="") == "passed"
