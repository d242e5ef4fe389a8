"""Comparing a student's result with the reference's: the one closeness rule."""
