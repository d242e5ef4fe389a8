"""The command line: ``python -m grader check`` (students) and ``grade`` (instructors).

A thin layer: it parses options, then calls ``grader.grading.grade`` and ``grader.report``.
Usage errors (a missing path, a broken course.yaml) end with one line on stderr and exit 2;
grading that completed exits 0 whatever the scores.
"""
from __future__ import annotations

import argparse
import difflib
import os
import sys
from pathlib import Path

from .errors import UsageError
from .sandbox.client import Zygote

# The heavy modules (torch, pytest, rich) are imported inside the commands, after the
# zygote process has been started, so that both load torch at the same time.

FORMATS = ("table", "json")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m grader", description="Sandboxed autograder for the attention chapter.")
    parser.add_argument("--course", metavar="FILE", help="the course file (default: ./course.yaml)")
    common = argparse.ArgumentParser(add_help=False)  # --course is accepted after the command too
    common.add_argument("--course", metavar="FILE", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", required=True)

    check = commands.add_parser("check", parents=[common], help="student self-check of ./exercises (public tests only)")
    check.add_argument("ids", nargs="*", metavar="ID", help="exercises to check (default: all)")
    check.add_argument("--dir", default="exercises", help="the folder holding your exercise files (default: exercises)")

    grade_cmd = commands.add_parser("grade", parents=[common], help="grade submissions with every test (instructors)")
    grade_cmd.add_argument("paths", nargs="+", metavar="PATH", help="a submission (folder, .zip, .ipynb) or a folder of them")
    grade_cmd.add_argument("--format", choices=FORMATS, default="table")
    grade_cmd.add_argument("--out", metavar="FILE", help="write the report here instead of standard output")
    return parser


def _check(args: argparse.Namespace, zygote: Zygote) -> int:
    from . import report
    from .course import load_course
    from .grading import grade

    course = load_course(args.course)
    unknown = [i for i in args.ids if i not in course.ids]
    if unknown:
        close = difflib.get_close_matches(unknown[0], course.ids, n=1)
        suggestion = f" Did you mean {close[0]}?" if close else ""
        raise UsageError(f"no exercise named {unknown[0]!r}.{suggestion} Exercises: {', '.join(course.ids)}.")
    folder = Path(args.dir)
    if not folder.is_dir():
        raise UsageError(f"{folder}: no such folder. Fix: run from the course folder, or pass --dir PATH.")
    if args.ids:
        from dataclasses import replace
        course = replace(course, exercises=tuple(e for e in course.exercises if e.id in args.ids))
    (result,) = grade(course, [(str(folder), folder)], public_only=True, zygote=zygote)
    report.print_check(report.console(), result)
    return 0


def _grade(args: argparse.Namespace, zygote: Zygote) -> int:
    from . import report
    from .course import load_course
    from .grading import grade
    from .submission import discover

    course = load_course(args.course)
    submissions = discover(args.paths)
    results = grade(course, submissions, zygote=zygote)
    if args.format == "json":
        text = report.to_json(results)
        if args.out:
            report.write_atomically(args.out, text)
        else:
            sys.stdout.write(text)
    elif args.out:
        with open(os.devnull, "w") as sink:
            recorder = report.console(record=True, width=160, file=sink)
            report.print_grades(recorder, course, results)
        report.write_atomically(args.out, recorder.export_text())
    else:
        report.print_grades(report.console(), course, results)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    zygote = Zygote()
    try:
        with zygote:
            return {"check": _check, "grade": _grade}[args.command](args, zygote)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
