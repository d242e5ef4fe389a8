"""The warm self-check: ``check`` answered by a background process that already has torch
imported, the suites collected and a zygote ready.

    python -m grader check softmax        ---- request ---->   check server (one per course,
    or check("softmax") in a notebook      <---- reply -----    user, Python and device)
    (imports no torch)                                          grades the public tests with
                                                                grading.grade, as a cold check
                                                                does, then writes the report

The first check of a course runs in its own process (cold: about one torch import), then
starts a server for the next ones; the server exits after ``IDLE_SECONDS`` without a
request. Anything wrong on the way (no server yet, one still starting that dies, a broken
reply) makes the check run cold: a server can make a check faster, never change or break it.
The server runs the same grading code, sandbox and worker per check as a cold check; what
it keeps between checks is only what does not depend on the student's files.

The socket sits in a folder only this user can open (``$XDG_RUNTIME_DIR/attention-grader``
or ``<tmp>/attention-grader-<uid>``, mode 0700, checked before use). Its name is a hash of
what an answer depends on besides the student's files: the course file, the Python, the
device asked for, and the size and modification time of every engine, suite and solution
file; an edited suite or an upgraded grader gets a new server, never a stale answer.
``GRADER_CHECK_IDLE_SECONDS=0`` turns the servers off.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

IDLE_SECONDS = 600.0   # a server with no request for this long exits
REPLY_SECONDS = 900.0  # a check's whole grading (each call and the submission have their own limits)
START_SECONDS = 60.0   # a notebook check waits this long for a server it started
STALE_CHECK_SECONDS = 5.0  # an idle server checks this often that its files did not change
from ..locations import PACKAGE


def idle_seconds() -> float:
    try:
        return float(os.environ.get("GRADER_CHECK_IDLE_SECONDS", IDLE_SECONDS))
    except ValueError:
        return IDLE_SECONDS


# ---------------------------------------------------------------- what a check prints


@dataclass(frozen=True)
class Terminal:
    """Where a check's text goes: its width and whether (and how) it takes colours."""

    width: int
    tty: bool
    color_system: str | None

    @classmethod
    def of_stdout(cls) -> "Terminal":
        tty = sys.stdout.isatty()
        if not tty or "NO_COLOR" in os.environ or os.environ.get("TERM") == "dumb":
            return cls(os.get_terminal_size().columns if tty else 160, tty, None)
        colours = ("truecolor" if os.environ.get("COLORTERM") in ("truecolor", "24bit")
                   else "256" if "256" in os.environ.get("TERM", "") else "standard")
        return cls(os.get_terminal_size().columns, tty, colours)


def render_check(result, terminal: Terminal, report: Path | None) -> str:
    """The text of ``check``: each exercise's tests (``report.print_check``), and where the full
    report is written when something failed."""
    from rich.console import Console

    from ..outputs import terminal as terminal_report

    buffer = io.StringIO()
    console = Console(file=buffer, width=terminal.width, force_terminal=terminal.tty,
                      color_system=terminal.color_system, highlight=False)
    terminal_report.print_check(console, result)
    if report is not None:
        console.print(f"full report: {report}", highlight=False, markup=False)
    return buffer.getvalue()


def report_page(result, folder: Path) -> Path:
    """Where ``feedback_report.write_report`` writes this result's HTML page."""
    from ..feedback.student_report import report_name

    return folder / f"{report_name(result.submission)}.html"


# ---------------------------------------------------------------- the client side


def _runtime_folder() -> Path | None:
    """This user's private folder for check sockets (created 0700), or None when no folder
    can be trusted (another owner, or open to others)."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    folder = Path(base) / "attention-grader" if base else Path(tempfile.gettempdir()) / f"attention-grader-{os.geteuid()}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        info = folder.lstat()
    except OSError:
        return None
    private = info.st_uid == os.geteuid() and (info.st_mode & 0o077) == 0 and not folder.is_symlink()
    return folder if private else None


def _fingerprint(course_file: Path, device: str | None) -> str:
    """A hash of what a check's answer depends on, the student's files aside."""
    from ..course.load import load_course

    course = load_course(course_file, check_torch_names=False)
    files = sorted(PACKAGE.rglob("*.py")) + [course_file.resolve()]
    files += [course.suite_path(e) for e in course.exercises]
    files += sorted(course.paths.solutions.glob("*.py"))
    if course.paths.misconceptions is not None:
        files += sorted(course.paths.misconceptions.glob("*.py"))
    torch_spec = importlib.util.find_spec("torch")
    if torch_spec is not None and torch_spec.origin:
        files.append(Path(torch_spec.origin))
    # normpath: `../.venv/bin/python` keeps its ".." in sys.executable, and the server started
    # with that path may see it written otherwise (symlinks are kept: each venv is its own)
    python = os.path.normpath(sys.executable)
    digest = hashlib.sha256(f"{python}\0{course_file.resolve()}\0{device}".encode())
    for file in files:
        with contextlib.suppress(OSError):
            info = file.stat()
            digest.update(f"{file}\0{info.st_size}\0{info.st_mtime_ns}\0".encode())
    return digest.hexdigest()[:20]


def _socket_path(course_file: Path, device: str | None) -> Path | None:
    folder = _runtime_folder()
    return folder / f"check-{_fingerprint(course_file, device)}.sock" if folder is not None else None


def ask(course_file: Path, device: str | None, request: dict) -> dict | None:
    """The running server's reply to ``request``, or None when no server answered in full."""
    if idle_seconds() <= 0:
        return None
    path = _socket_path(course_file, device)
    if path is None or not path.exists():
        return None
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(REPLY_SECONDS)
            conn.connect(str(path))
            conn.sendall(json.dumps(request).encode() + b"\n")
            with conn.makefile("rb") as stream:
                reply = json.loads(stream.readline() or b"null")
    except (OSError, ValueError):
        return None
    return reply if isinstance(reply, dict) and "record" in reply else None


def start(course_file: Path, device: str | None, *, report: tuple[dict, Path] | None = None) -> None:
    """Start a server in the background (it exits at once if one is running), after it has
    written ``report`` (a result's record and the folder for its HTML page)."""
    command = [sys.executable, "-m", "grader.selfcheck.warm_server", str(course_file.resolve())]
    if device:
        command += ["--device", device]
    if report is not None:
        record, folder = report
        with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="grader-check-", delete=False) as file:
            json.dump(record, file)
        command += ["--report", file.name, str(folder.resolve())]
    if report is None and idle_seconds() <= 0:
        return
    subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True, cwd=os.getcwd())


def ask_or_start(course_file: Path, device: str | None, request: dict) -> dict | None:
    """``ask``, starting a server and waiting for it (up to START_SECONDS) when none runs."""
    reply = ask(course_file, device, request)
    if reply is not None or idle_seconds() <= 0 or _socket_path(course_file, device) is None:
        return reply
    start(course_file, device)
    deadline = time.monotonic() + START_SECONDS
    path = _socket_path(course_file, device)
    while time.monotonic() < deadline:
        if path.exists():
            return ask(course_file, device, request)
        time.sleep(0.05)
    return None


def stop(course_file: Path, device: str | None = None) -> bool:
    """Ask the course's server to exit; whether one was running."""
    path = _socket_path(course_file, device)
    if path is None or not path.exists():
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(10)
            conn.connect(str(path))
            conn.sendall(b'{"op": "stop"}\n')
            conn.recv(1)
    except OSError:
        return False
    return True


# ---------------------------------------------------------------- the server


def _requests(listener: socket.socket, pending: list, idle: float, still_current, when_ready=None):
    """Jobs for ``grading.grade``, one per request, until none comes for ``idle`` seconds, a
    ``stop``, or ``still_current()`` turns false (an engine, suite or course file changed:
    the answers would be stale). Each request's connection waits in ``pending`` for its reply."""
    from ..run.session import Job

    if when_ready is not None:  # the suites are collected: this runs before the first request is read
        when_ready()
    listener.settimeout(min(idle, STALE_CHECK_SECONDS))
    last = time.monotonic()
    while True:
        try:
            conn, _ = listener.accept()
        except socket.timeout:
            if time.monotonic() - last >= idle or not still_current():
                return
            continue
        except OSError:
            return
        last = time.monotonic()
        try:
            conn.settimeout(30)
            with conn.makefile("rb") as stream:
                request = json.loads(stream.readline())
            conn.settimeout(None)
            if request.get("op") == "stop":
                conn.close()
                return
            job = _job(request)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            conn.close()  # the client runs its check cold
            continue
        pending.append((conn, request, job))
        yield Job(request["name"], job, tuple(request.get("ids", ())))


def _job(request: dict) -> Path:
    """The path to grade: the folder asked for, or the notebook sent (``notebook_check``'s)."""
    if request.get("notebook") is None:
        return Path(request["folder"])
    folder = Path(tempfile.mkdtemp(prefix="grader-check-"))
    (folder / "notebook.ipynb").write_text(json.dumps(request["notebook"]), encoding="utf-8")
    return folder / "notebook.ipynb"


def _answer(pending: list, result) -> None:
    """Send a result to the check that asked for it, then write its report (off the check's time)."""
    conn, request, job = pending.pop(0)
    # a report after every check, all passing too: grader-report/ never shows an older failure
    folder = Path(request["report_dir"]) if request.get("report_dir") else None
    page = None
    if folder is not None:
        page = os.path.relpath(report_page(result, folder), request.get("cwd") or os.getcwd())
    terminal = Terminal(**request["terminal"]) if request.get("terminal") else Terminal(160, False, None)
    reply = {"record": result.to_record(), "text": render_check(result, terminal, page)}
    with contextlib.suppress(OSError):
        conn.sendall(json.dumps(reply).encode() + b"\n")
    conn.close()
    if request.get("notebook") is not None:
        import shutil

        shutil.rmtree(job.parent, ignore_errors=True)
    if folder is not None:
        _write_report_in_background(result, folder)


def _write_report_in_background(result, folder: Path) -> None:
    """Draw and write the report in a grandchild (init reaps it), so the next check need not
    wait for matplotlib. It only draws: no torch op runs after the fork. matplotlib is imported
    here once (after the first reply), not in every child."""
    from ..feedback.student_report import warm_up

    warm_up()
    child = os.fork()
    if child == 0:
        try:
            if os.fork() == 0:
                # not the server's sockets: its listener, its zygote's control link (a zygote
                # sees its server gone only once every copy of that link is closed)
                os.closerange(3, os.sysconf("SC_OPEN_MAX"))
                _write_report(result, folder)
        finally:
            os._exit(0)
    os.waitpid(child, 0)


def _write_report(result, folder: Path) -> None:
    from ..feedback.student_report import write_report

    with contextlib.suppress(Exception):  # a report that cannot be written costs the report only
        write_report(result, folder, audience="student")


def serve(course_file: Path, device: str | None, idle: float, when_ready=None) -> None:
    """Answer checks of this course until idle; one server per socket (an flock decides).
    ``when_ready()`` runs once the suites are collected, before the first request."""
    path = _socket_path(course_file, device)
    if path is None:
        return
    lock = open(path.with_suffix(".lock"), "a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return  # another server has it
    from ..sandbox.client import Zygote

    zygote = Zygote()  # first: it imports torch while this process does the same
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # a server that died left it
    listener.bind(str(path))
    bound = path.stat().st_ino
    listener.listen(8)
    try:
        from ..course.load import load_course
        from ..course.devices import resolve_course
        from ..run.session import grade, hidden_paths

        course, _ = resolve_course(load_course(course_file), device)
        pending: list = []

        def still_current() -> bool:
            try:
                return _socket_path(course_file, device) == path
            except Exception:  # noqa: BLE001 - the course file is gone or broken: stale
                return False

        with zygote:
            grade(course, _requests(listener, pending, idle, still_current, when_ready), public_only=True, zygote=zygote,
                  hide=hidden_paths(course, []), on_result=lambda result: _answer(pending, result))
    finally:
        with contextlib.suppress(OSError):
            if path.stat().st_ino == bound:  # still ours, not a newer server's
                path.unlink()
                path.with_suffix(".lock").unlink()
        listener.close()


def main(argv: list[str]) -> None:
    course_file, device, report = Path(argv[0]), None, None
    rest = argv[1:]
    while rest:
        if rest[0] == "--device":
            device, rest = rest[1], rest[2:]
        elif rest[0] == "--report":
            report, rest = (Path(rest[1]), Path(rest[2])), rest[3:]
        else:
            raise SystemExit(f"unknown option {rest[0]}")
    result = None
    if report is not None:
        from ..outputs.results import SubmissionResult

        record_file, folder = report
        try:
            result = SubmissionResult.from_record(json.loads(record_file.read_text(encoding="utf-8")))
        finally:
            record_file.unlink(missing_ok=True)
    drawn = []

    def draw() -> None:  # once the server is ready: until then a check waits for a start-up that has the cores
        if result is not None:
            _write_report_in_background(result, folder)
            drawn.append(True)

    try:
        if idle_seconds() > 0:
            serve(course_file, device, idle_seconds(), when_ready=draw)
    finally:
        if result is not None and not drawn:  # no server started here (servers off, one runs already, or it failed)
            _write_report(result, folder)


if __name__ == "__main__":
    main(sys.argv[1:])
    sys.stdout.flush()
    os._exit(0)  # skip torch's slow interpreter teardown
