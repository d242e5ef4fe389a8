"""The command line: ``check`` (students), ``grade``, ``merge``, ``stats``, ``release`` and ``otter`` (instructors).

A thin layer: it parses options and calls the modules that do the work. Usage errors (a
missing path, a broken course.yaml, a bad option) end with one line on stderr and exit 2;
grading that completed exits 0 whatever the scores.
"""
from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
from pathlib import Path
from typing import NamedTuple

from .errors import UsageError
from .sandbox.client import Zygote

# The heavy modules (torch, pytest, rich) are imported inside the commands, after the
# zygote process has been started, so that both load torch at the same time.

FORMATS = ("table", "json", "csv", "gradescope")
CHECK_REPORT_DIR = "grader-report"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m grader", description="Sandboxed autograder for a course of coding exercises (the course is course.yaml).")
    parser.add_argument("--course", metavar="FILE", help="the course file (default: ./course.yaml)")
    common = argparse.ArgumentParser(add_help=False)  # --course is accepted after the command too
    common.add_argument("--course", metavar="FILE", default=argparse.SUPPRESS,
                        help="the course file (default: ./course.yaml, else this repository's)")
    commands = parser.add_subparsers(dest="command", required=True)

    check = commands.add_parser("check", parents=[common], help="student self-check of ./exercises (public tests only)")
    check.add_argument("ids", nargs="*", metavar="ID", help="exercises to check (default: all)")
    check.add_argument("--dir", help="the folder holding your exercise files, or your notebook or zip (default: "
                       "./exercises, or if there is none, the course's exercises folder)")
    check.add_argument("--device", choices=("cpu", "cuda", "auto"), help="grade on this device (default: course.yaml)")
    check.add_argument("--stop", action="store_true", help="stop this course's background check server and exit")

    grade = commands.add_parser("grade", parents=[common], help="grade submissions with every test (instructors)")
    grade.add_argument("paths", nargs="+", metavar="PATH", help="a submission (folder, .zip, .ipynb) or a folder of them")
    grade.add_argument("--format", choices=FORMATS, default="table")
    grade.add_argument("--out", metavar="PATH", help="write the report here (a folder for --format gradescope)")
    grade.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel grading slots (default: cores)")
    grade.add_argument("--results", metavar="FILE", help="the results file, one JSON line per graded submission "
                       "(default: OUT.jsonl, or grader-results.jsonl for a batch)")
    grade.add_argument("--resume", action="store_true", help="keep the results file's submissions; grade the rest")
    grade.add_argument("--shard", metavar="I/N", help="grade only the I-th of N stable slices (0 <= I < N)")
    grade.add_argument("--device", choices=("cpu", "cuda", "auto"), help="grade on this device (default: course.yaml)")
    grade.add_argument("--report-dir", metavar="DIR", help="also write one feedback report per submission (HTML, Markdown)")
    grade.add_argument("--audience", choices=("staff", "student"), default="staff",
                       help="student reports leave out what hidden tests saw (default: staff)")

    merge = commands.add_parser("merge", parents=[common], help="join the JSON reports (or results files) of shards")
    merge.add_argument("reports", nargs="+", metavar="FILE")
    merge.add_argument("--format", choices=("json", "csv"), default="json")
    merge.add_argument("--out", metavar="FILE")

    stats = commands.add_parser("stats", parents=[common], help="class statistics of a JSON report")
    stats.add_argument("report", metavar="FILE")
    stats.add_argument("--plot", metavar="PNG", help="also draw the score histogram into this PNG file")

    release = commands.add_parser("release", parents=[common], help="write the student bundle: stubs, public tests, "
                                  "notebook, README (no solutions, no hidden tests)")
    release.add_argument("--out", required=True, metavar="DIR", help="a new or empty folder")

    otter = commands.add_parser("otter", parents=[common], help="write an otter-grader assignment: autograder.zip for "
                                "Gradescope and the student folder (needs the lms extra)")
    otter.add_argument("--out", required=True, metavar="DIR", help="a new or empty folder")

    new = commands.add_parser("new", parents=[common], help="scaffold a new exercise: stub, reference, suite, "
                              "misconception module and its course.yaml entry (instructors)")
    new.add_argument("id", metavar="ID", help="the exercise id: a Python module name such as layer_norm")
    new.add_argument("--title", help="its title in reports (default: from the id)")
    new.add_argument("--points", type=float, default=1, help="its points in course.yaml (default: 1)")
    new.add_argument("--function", metavar="NAME", help="the function students write (default: the id)")
    return parser


def _check(args: argparse.Namespace, zygote: None) -> int:
    """Answered by the course's warm check server when one runs (grader/selfcheck/warm_server.py), else
    graded here (cold), printed, and a server started for the next check."""
    from dataclasses import asdict

    from .selfcheck import warm_server
    from .course.load import default_course_path, load_course

    course_file = Path(args.course) if args.course else default_course_path()
    course = load_course(course_file, check_torch_names=False)  # the ids and paths; no torch import here
    if args.stop:
        stopped = warm_server.stop(course_file, args.device)
        print("check server stopped." if stopped else "no check server was running for this course.")
        return 0
    unknown = [i for i in args.ids if i not in course.ids]
    if unknown:
        close = difflib.get_close_matches(unknown[0], course.ids, n=1)
        suggestion = f" Did you mean {close[0]}?" if close else ""
        raise UsageError(f"no exercise named {unknown[0]!r}.{suggestion} Exercises: {', '.join(course.ids)}.")
    # ./exercises when there is one, else (with --course) the course's own (course.yaml paths: exercises)
    use_course = not args.dir and args.course and not Path("exercises").is_dir()
    folder = Path(args.dir) if args.dir else course.paths.exercises if use_course else Path("exercises")
    name = args.dir or (os.path.relpath(folder) if use_course else "exercises")
    handed_in = folder.is_file() and folder.suffix.lower() in (".ipynb", ".zip")  # what grade takes, checked alike
    if not folder.is_dir() and not handed_in:
        what = "not a folder, a notebook or a zip" if folder.exists() else "no such folder"
        raise UsageError(f"{folder}: {what}. Fix: run from the course folder, or pass --dir PATH (the folder "
                         "holding your exercise files, or your .ipynb or .zip).")
    terminal = warm_server.Terminal.of_stdout()
    request = {"name": name, "folder": str(folder.resolve()), "ids": list(args.ids), "cwd": os.getcwd(),
               "report_dir": str(Path(CHECK_REPORT_DIR).resolve()), "terminal": asdict(terminal)}
    reply = warm_server.ask(course_file, args.device, request)
    if reply is None:
        with Zygote() as zygote:
            from .run.session import Job, grade

            course, _ = _on_device(load_course(course_file), args.device)
            _warn_about_hints(course)
            (result,) = grade(course, [Job(name, folder, tuple(args.ids))], public_only=True, zygote=zygote)
        report = Path(CHECK_REPORT_DIR)  # after every check, all passing too: never an older failure left
        page = warm_server.report_page(result, report)
        sys.stdout.write(warm_server.render_check(result, terminal, page))
        sys.stdout.flush()
        # the report (pictures take a while) is written by the server it starts, after this exits
        warm_server.start(course_file, args.device, report=(result.to_record(), report))
    else:
        sys.stdout.write(reply["text"])
    return 0


def _results_path(args: argparse.Namespace, batch: bool) -> Path | None:
    """The results file: asked for, or kept for every batch (a lone submission needs none)."""
    if args.results:
        return Path(args.results)
    if not (batch or args.resume):
        return None
    if args.out:
        out = Path(args.out)
        return out / "results.jsonl" if args.format == "gradescope" else out.with_name(out.name + ".jsonl")
    return Path("grader-results.jsonl")


def _grade(args: argparse.Namespace, zygote: Zygote) -> int:
    from .run.batch import ResultsFile, grade_batch, in_shard, parse_shard, progress_printer
    from .course.load import load_course
    from .run.session import hidden_paths
    from .intake.submission import discover

    course, device = _on_device(load_course(args.course), args.device)
    _warn_about_hints(course)
    if args.jobs < 1:
        raise UsageError(f"--jobs {args.jobs}: give at least 1.")
    if device.used == "cuda":
        args.jobs = min(args.jobs, int(course.sandbox.gpu_slots))  # each worker has its own CUDA context
    submissions = discover(args.paths)
    if args.shard:
        shard = parse_shard(args.shard)
        submissions = [(n, p) for n, p in submissions if in_shard(n, shard)]
    if args.format == "gradescope" and len(submissions) > 1 and not args.out:
        raise UsageError("--format gradescope with several submissions needs --out DIR (one results.json each).")
    batch = len(submissions) > 1
    results_path = _results_path(args, batch)
    results = ResultsFile(results_path, resume=args.resume, course_version=course.version) if results_path else None
    in_memory: dict = {}

    class _Memory:  # the results file's interface, for a single submission graded without one
        done = in_memory

        def append(self, result):
            in_memory[result.submission] = result

    store = results or _Memory()
    total = len(submissions)
    done = sum(name in store.done for name, _ in submissions)  # a results file may hold others too
    progress = progress_printer(total, done) if batch else (lambda result: None)
    try:
        grade_batch(course, submissions, jobs=args.jobs, results=store, zygote=zygote,
                    hide=hidden_paths(course, [p for _, p in submissions]), progress=progress)
    except KeyboardInterrupt:
        if results_path is None:
            raise UsageError("interrupted: nothing was written.") from None
        finished = sum(name in store.done for name, _ in submissions)
        raise UsageError(f"interrupted: {finished} of {total} submissions graded and kept in {results_path}; "
                         "run the same command with --resume to grade the rest.") from None
    finally:
        if results:
            results.close()
    ordered = [store.done[n] for n, _ in submissions if n in store.done]
    _write(args, course, ordered, device.describe())
    if args.report_dir:
        from .feedback.class_index import write_class_index
        from .feedback.student_report import write_report

        for result in ordered:
            write_report(result, Path(args.report_dir), audience=args.audience)
        index = write_class_index(ordered, Path(args.report_dir), args.audience)
        print(f"feedback reports written to {args.report_dir}/ (one .html and one .md per submission; "
              f"class overview: {index})", file=sys.stderr)
    failed = [r for r in ordered if r.sandbox_failure]
    if failed:  # grading did not complete: say so in one line, and exit non-zero
        print(f"error: {failed[0].sandbox_failure}, for {len(failed)} of {len(ordered)} submissions (their results "
              "say \"not graded\"). Fix: check that this machine allows the sandbox (docs/security.md), then grade "
              "them again.", file=sys.stderr)
        return 1
    return 0


def _warn_about_hints(course) -> None:
    """One line on stderr for each misconception module that cannot give hints (grading goes on)."""
    from .misconceptions import library_problems

    for problem in library_problems(course):
        print(f"warning: {problem}. That exercise gets no misconception hints until the file is fixed "
              "(docs/authoring.md says how one is written).", file=sys.stderr)


def _on_device(course, requested: str | None):
    """Resolve the grading device; say so on stderr when CUDA was wanted but is not here."""
    from .course.devices import resolve_course

    course, device = resolve_course(course, requested)
    if device.requested != "cpu" and not device.verified_on_gpu and device.requested == "cuda":
        print("note: course.yaml asks for CUDA but this machine has no GPU: graded on the CPU; "
              "the results are marked \"not verified on GPU\".", file=sys.stderr)
    return course, device


def _write(args: argparse.Namespace, course, results: list, device: dict) -> None:
    from .outputs import terminal

    if args.format == "json":
        from .run.batch import parse_shard

        about = {"title": course.title, "version": course.version}
        if args.shard:
            about["shard"] = "{}/{}".format(*parse_shard(args.shard))
        _emit(args.out, terminal.to_json(results, device, about))
    elif args.format == "csv":
        from .outputs.gradebook_csv import to_csv

        _emit(args.out, to_csv(course, results))
    elif args.format == "gradescope":
        from .outputs.gradebook_csv import student_id
        from .lms.gradescope import results_json

        if args.out:
            for result in results:
                terminal.write_atomically(Path(args.out) / student_id(result.submission) / "results.json",
                                        json.dumps(results_json(result, hidden_tests=course.hidden_tests), indent=2) + "\n")
        else:
            sys.stdout.write(json.dumps(results_json(results[0], hidden_tests=course.hidden_tests), indent=2) + "\n")
    else:
        from .feedback.stats import compute, print_stats

        def show(console) -> None:
            terminal.print_grades(console, course, results, device)
            if len(results) > 1:
                print_stats(console, compute(results))

        if args.out:
            with open(os.devnull, "w") as sink:
                recorder = terminal.console(record=True, width=160, file=sink)
                show(recorder)
            terminal.write_atomically(args.out, recorder.export_text())
        else:
            show(terminal.console())


def _emit(out: str | None, text: str) -> None:
    from .outputs import terminal

    if out:
        terminal.write_atomically(out, text)
        print(f"wrote {out}", file=sys.stderr)
    else:
        sys.stdout.write(text)


class Report(NamedTuple):
    """One report as read: its submissions' contract entries, its sandbox's protections, its
    device (None if it names none), the versions of the course that graded it and its shard
    ``(I, N)`` (empty and None where it does not say: a report of an older grader)."""

    path: str
    rows: list[dict]
    protections: list[str]
    device: dict | None
    versions: frozenset[str] = frozenset()
    shard: tuple[int, int] | None = None
    title: str | None = None


def _read_reports(paths: list[str]) -> list[Report]:
    """Contract JSON reports or results files (.jsonl), each read once; a file that is neither
    is a UsageError naming it."""
    reports = []
    for path in paths:
        file = Path(path)
        if not file.is_file():
            raise UsageError(f"{path}: no such file. Fix: give the --out file of a grade run.")
        shard, title = None, None
        try:
            if file.suffix == ".jsonl":
                records = [json.loads(line) for line in file.read_text().splitlines() if line]
                rows = [record["result"] for record in records]
                protections = next((r.get("protections") for r in records if r.get("protections")), [])
                device = None
                versions = frozenset(str(r["course"]) for r in records if "course" in r)
            else:
                document = json.loads(file.read_text())
                rows = document["submissions"]
                protections, device = document.get("sandbox", {}).get("protections", []), document.get("device")
                course = document.get("course") or {}
                versions = frozenset([str(course["version"])]) if "version" in course else frozenset()
                title = course.get("title")
                if "shard" in course:
                    from .run.batch import parse_shard

                    shard = parse_shard(str(course["shard"]))
            if not all(isinstance(row, dict) and isinstance(row["submission"], str) and isinstance(row["exercises"], list)
                       for row in rows):
                raise TypeError("a submission without its name or exercises")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise UsageError(f"{path}: not a grader report ({type(exc).__name__}: {exc}).") from None
        reports.append(Report(path, rows, list(protections), device, versions, shard, title))
    return reports


def _results_of(paths: list[str], reports: list[Report]) -> list:
    """The reports' submissions as results (for the CSV and the statistics)."""
    from .outputs.results import SubmissionResult

    try:
        return [SubmissionResult.from_record({"result": row, "protections": report.protections})
                for report in reports for row in report.rows]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UsageError(f"{', '.join(paths)}: not a grader report ({type(exc).__name__}: {exc}).") from None


def _merge(args: argparse.Namespace, zygote: Zygote) -> int:
    """Join shards: the submissions of every report, by name, as one report (a submission in
    several keeps its last entry)."""
    from .course.load import load_course
    from .outputs.terminal import report_text

    _given_course(args)
    reports = _read_reports(args.reports)
    _check_mergeable(reports)
    entries: dict[str, dict] = {}
    for report in reports:
        for row in report.rows:
            if row["submission"] in entries:
                print(f"warning: {row['submission']} appears in more than one report; keeping the last", file=sys.stderr)
            entries[row["submission"]] = row
    if args.format == "csv":
        from .outputs.gradebook_csv import to_csv

        merged = Report("merged", [entries[name] for name in sorted(entries)], [], None)
        _emit(args.out, to_csv(load_course(args.course), _results_of(args.reports, [merged])))
        return 0
    # JSON: the reports' own entries, untouched (rebuilding them would re-round their scores)
    document = {"submissions": [entries[name] for name in sorted(entries)],
                "sandbox": {"protections": next((r.protections for r in reports if r.protections), [])}}
    device = next((r.device for r in reports if r.device is not None), None)
    if device is not None:
        document["device"] = device
    versions = {v for r in reports for v in r.versions}
    if versions:  # one, or _check_mergeable refused them
        document["course"] = {"title": next((r.title for r in reports if r.title), None), "version": versions.pop()}
    _emit(args.out, report_text(document))
    return 0


def _check_mergeable(reports: list[Report]) -> None:
    """Reports of one course (one version of it), and of every shard of a sharded run: else a
    UsageError naming the files (a report that does not say is taken as it is)."""
    versions: dict[str, list[str]] = {}
    for report in reports:
        for version in report.versions:
            versions.setdefault(version, []).append(report.path)
    if len(versions) > 1:
        groups = "; ".join(f"{', '.join(paths)} (course version {version})" for version, paths in versions.items())
        raise UsageError(f"these reports were graded with different courses, or different versions of one: {groups}. "
                         "Fix: merge the reports of one course; grade the others again with the same course files.")
    shards = [r for r in reports if r.shard is not None]
    counts = {r.shard[1] for r in shards}
    if len(counts) > 1:
        raise UsageError("these reports are shards of different splits (" +
                         ", ".join(f"{r.path}: {r.shard[0]}/{r.shard[1]}" for r in shards) +
                         "). Fix: merge the shards of one run, all graded with the same --shard I/N count.")
    if shards:
        count = counts.pop()
        missing = sorted(set(range(count)) - {r.shard[0] for r in shards})
        if missing:
            raise UsageError(f"shard{'s' if len(missing) > 1 else ''} {', '.join(f'{i}/{count}' for i in missing)} "
                             f"missing: merge needs the report of every shard of the run (given: "
                             f"{', '.join(f'{r.path} ({r.shard[0]}/{count})' for r in shards)}).")


def _given_course(args: argparse.Namespace) -> None:
    """A command that needs no course still refuses a --course that names no course file."""
    from .course.load import load_course

    if args.course:
        load_course(args.course, check_torch_names=False)


def _stats(args: argparse.Namespace, zygote: Zygote) -> int:
    from .outputs import terminal
    from .feedback.stats import compute, plot, print_stats

    _given_course(args)

    stats = compute(_results_of([args.report], _read_reports([args.report])))
    print_stats(terminal.console(), stats)
    if args.plot:
        plot(stats, Path(args.plot))
        print(f"histogram written to {args.plot}")
    return 0


def _release(args: argparse.Namespace, zygote: Zygote) -> int:
    from .course.load import load_course
    from .release.bundle import write_release

    course = load_course(args.course)
    _warn_about_hints(course)
    notebook = write_release(course, Path(args.out))
    print(f"student release written to {args.out} (notebook: {notebook.name}); see its README.md")
    return 0


def _otter(args: argparse.Namespace, zygote: Zygote) -> int:
    from .course.load import load_course
    from .lms.otter_bridge import write_assignment

    course = load_course(args.course)
    _warn_about_hints(course)
    write_assignment(course, Path(args.out))
    print(f"otter assignment written to {args.out}: upload autograder.zip to Gradescope, give student/ to students")
    return 0


def _new(args: argparse.Namespace, zygote: None) -> int:
    from .course.scaffold import new_exercise, next_steps

    points = int(args.points) if float(args.points).is_integer() else args.points
    scaffold = new_exercise(args.id, course_file=args.course, title=args.title, points=points, function=args.function)
    sys.stdout.write(next_steps(scaffold))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    zygote = Zygote() if args.command == "grade" else None  # check starts one only if it grades here
    command = {"check": _check, "grade": _grade, "merge": _merge, "stats": _stats, "release": _release,
               "otter": _otter, "new": _new}[args.command]
    try:
        if zygote is None:
            return command(args, None)
        with zygote:
            return command(args, zygote)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
