"""What can go wrong with a student's function, as exceptions a test can raise.

Each carries the report status it stands for and a message in words a student understands.
The pytest plugin turns them into test results; suites never need to catch them.
"""
from __future__ import annotations


class StudentFault(Exception):
    status = "error"

    def __init__(self, message: str, hints: tuple[str, ...] = ()):
        super().__init__(message)
        self.message = message
        self.hints = tuple(hints)


class NotImplementedFault(StudentFault):
    """The function still raises NotImplementedError, or its file is missing."""

    status = "not_implemented"


class ErrorFault(StudentFault):
    """The student's code raised, failed to import, or lacks the function."""

    status = "error"


class ForbiddenFault(StudentFault):
    """The code uses an operation the exercise forbids."""

    status = "forbidden"


class TimeoutFault(StudentFault):
    """A call ran past the exercise's time limit; the worker was killed."""

    status = "timeout"


class MemoryFault(StudentFault):
    """The code used more memory than the sandbox allows; the worker was killed or ran out."""

    status = "memory"


class CrashFault(StudentFault):
    """The process running the student's code ended (os._exit, a signal, a crash)."""

    status = "crashed"


class WrongResultFault(StudentFault):
    """The code ran but what it returned cannot be right (not differentiable, odd dtype)."""

    status = "failed"
