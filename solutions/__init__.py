"""Reference solutions. Never shipped to students; the grader compares against them."""
