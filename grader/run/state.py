"""The grading state a run's fixtures share: the course, the submission graded right now,
and the references (solutions imported, or a release's recorded answers)."""
from __future__ import annotations

import importlib.util
import sys
import types
from typing import TYPE_CHECKING, Callable

import pytest

from ..course.load import Course, Exercise
from ..misconceptions import Call, misconceptions_for
from .student import StudentCode

if TYPE_CHECKING:
    from ..release.answer_book import AnswerBook, Recorder

STATE = pytest.StashKey["GradingState"]()
SEED = pytest.StashKey[int]()
CALLS = pytest.StashKey[list[Call]]()  # the current test's successful calls of the student's function


class GradingState:
    """What the fixtures need: the course and the submission being graded right now.

    ``recorder``: set while a release records its answer book (grader/release/answer_book.py)."""

    def __init__(self, course: Course, recorder: "Recorder | None" = None):
        self.course = course
        self.current: StudentCode | None = None
        self.recorder = recorder
        self.references: dict[str, Callable] = {}
        self._book: "AnswerBook | None" = None
        self._libraries: dict[str, tuple] = {}  # exercise id -> its misconceptions, imported once

    @property
    def book(self) -> "AnswerBook":
        """A student release's recorded answers (``answers.pt``), loaded on first use."""
        if self._book is None:
            from ..release.answer_book import AnswerBook

            self._book = AnswerBook.load(self.course.answers_path)
        return self._book

    def reference(self, exercise: Exercise) -> Callable:
        if exercise.id not in self.references:
            if self.course.uses_answer_book:  # a student release: no solutions/, their recorded answers
                self.references[exercise.id] = self.book.reference(exercise.id)
            else:
                function = getattr(_import_solution(self.course, exercise), exercise.function)
                if self.recorder is not None:
                    function = self.recorder.reference(exercise.id, function)
                self.references[exercise.id] = function
        return self.references[exercise.id]

    def misconceptions(self, exercise: Exercise) -> tuple:
        """The exercise's misconceptions: its module's (the course's own, in its misconceptions
        folder, else the engine's), or in a release, the recorded ones."""
        if self.course.uses_answer_book:
            return self.book.misconceptions(exercise.id)
        if exercise.id not in self._libraries:
            try:
                self._libraries[exercise.id] = misconceptions_for(exercise.id, self.course.paths.misconceptions)
            except Exception:  # noqa: BLE001 - a broken module: no hints (said once, see library_problems)
                self._libraries[exercise.id] = ()
        return self._libraries[exercise.id]


def _import_solution(course: Course, exercise: Exercise):
    """Import ``<id>.py`` of the course's solutions folder as part of a ``solutions`` package
    rooted there (course.yaml ``paths: solutions``)."""
    if "solutions" not in sys.modules:
        package = course.paths.solutions
        if (package / "__init__.py").is_file():
            spec = importlib.util.spec_from_file_location("solutions", package / "__init__.py",
                                                          submodule_search_locations=[str(package)])
            module = importlib.util.module_from_spec(spec)
            sys.modules["solutions"] = module
            spec.loader.exec_module(module)
        else:  # a folder of files only
            module = types.ModuleType("solutions")
            module.__path__ = [str(package)]
            sys.modules["solutions"] = module
    return importlib.import_module(f"solutions.{exercise.id}")
