"""The student release: what students get, and the answer book instead of solutions."""
