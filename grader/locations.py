"""Where the engine's own files are.

A module of its own, not ``grader/__init__.py``: run from a course folder laid out like the
attention course (``grader/suites/`` beside ``course.yaml``), ``python -m grader`` finds that
folder first and ``grader`` becomes a namespace package whose ``__init__`` never runs."""
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent  # the engine's folder: what a release and an otter zip carry
