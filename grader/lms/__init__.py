"""Gradescope's results.json and otter-grader's assignment and plugin."""
