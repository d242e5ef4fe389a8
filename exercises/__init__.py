"""The attention chapter's exercises. Implement each function, then run
``python -m grader check`` from the repository root to see how you are doing."""
