"""Errors that end a command with one clear line on stderr and a non-zero exit code."""


class UsageError(Exception):
    """The user asked for something impossible (bad path, bad course file, bad option)."""

    exit_code = 2
