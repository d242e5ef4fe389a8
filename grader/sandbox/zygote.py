"""The zygote: a fork server started as a fresh interpreter by the grader.

It imports torch (and what students commonly import), sets torch to one thread, drops the
repository from ``sys.path``, then forks one worker per request. It never imports a
solution, a suite or a hidden test, and never touches CUDA, so a worker finds nothing
secret in its memory and CUDA can still be initialised after the fork.

Control messages (SOCK_SEQPACKET, JSON): ``{"op": "fork", "isolate": bool, "pid_namespace": bool,
"uid": U, "memory_bytes": M, "processes": P}`` with two descriptors (the worker's channel and
the write end of its output pipe) -> ``{"pid": N}`` (as root with ``isolate``: the worker is in
its uid's memory and pids cgroups, and with ``pid_namespace`` process 1 of a new PID namespace); ``{"op": "reap", "pid": N}`` ->
``{"status": "exit 0" | "signal 9"}``; ``{"op": "release", "pid": N}`` (no answer): reap it
whenever it is gone, for a worker the grader killed and need not wait for; ``{"op": "link"}`` with one descriptor opens
another control link (one per parallel slot), served by a fork server of its own that moves
itself into its slot's cgroups once, so that each of its workers is born there; ``{"op": "sweep", "uid": U}`` (as root) kills every
process of that uid, a ``setsid()`` grandchild included -> ``{"swept": true}``. EOF on the
control socket: kill the workers, exit.
"""
from __future__ import annotations

import json
import os
import select
import signal
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import Callable

os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")  # an availability check must not init CUDA

import torch  # noqa: E402

torch.set_num_threads(1)  # before any op: a forked child of a multi-threaded torch hangs (libgomp)

# What students are likely to import, loaded here once instead of in every worker.
import collections, functools, itertools, math, numbers, random, re, string, typing, warnings  # noqa: E401,F401,E402
import numpy  # noqa: F401,E402
import torch.nn  # noqa: F401,E402
import torch.nn.functional  # noqa: F401,E402

try:  # the workers' seccomp filter; imported here once (~10 ms each time otherwise)
    import pyseccomp  # noqa: F401
except ImportError:
    pass

from . import cgroups, harden, worker  # noqa: E402
from .vjp import vjp  # noqa: E402


def _warm_up() -> None:
    """Run each kind of work once here, so no worker pays for torch's lazy set-up.

    Lazy set-up done once in the zygote is done for every forked worker. One thread only
    (see above), and nothing that initialises CUDA (see below).
    """
    x = torch.ones(2, 3, dtype=torch.float64, requires_grad=True)
    y = (x @ x.transpose(-2, -1) / 2.0).masked_fill(torch.eye(2, dtype=torch.bool), float("-inf"))
    y = (y - y.amax(dim=-1, keepdim=True)).exp()
    y = y / y.sum(dim=-1, keepdim=True)
    # The kernel bans too: torch.library imports modules lazily, and a worker should not pay.
    # Any operator will do (a course's own bans come with each call): one no exercise uses.
    bans = worker.KernelBans(set())
    bans.enforce(frozenset({"erfinv"}))
    try:
        torch.erfinv(y.detach() / 2)
    except worker.BannedKernel:
        pass
    bans.enforce(frozenset())
    # Autograd's first backward starts one engine thread per CUDA device, and so initialises
    # CUDA: with a GPU present, a worker forked after that can use neither CUDA ("CUDA error:
    # initialization error") nor autograd ("Unable to handle autograd's threading in
    # combination with fork-based multiprocessing"), measured on an H200. There, each worker
    # runs its own first backward (about 15 ms on the CPU). The GPU is looked for without
    # NVML: nothing of the GPU's is set up in the zygote for its workers to inherit.
    if not (torch.backends.cuda.is_built() and harden.gpu_machine()):
        vjp([(y, torch.ones_like(y))], [x])  # as workers compute gradients
    if torch.backends.mkldnn.is_available():  # oneDNN's lazy set-up, once (a layout a student may reach)
        torch.ones(1, 2, 1).to_mkldnn().to_dense()


def _forget_repository() -> None:
    """Remove path entries that would make ``solutions`` or the suites importable."""
    def secret(entry: str) -> bool:
        root = Path(entry or ".").resolve()
        return (root / "solutions").exists() or (root / "grader" / "suites").exists()
    sys.path[:] = [p for p in sys.path if not secret(p)]
    for name in list(sys.modules):
        if name.partition(".")[0] in ("solutions", "exercises") or name.startswith("grader.suites"):
            del sys.modules[name]


HEAVY_BYTES = 256 << 20


def _private_bytes(pid: int) -> int:
    """Resident memory of ``pid`` not shared with other processes (0 once it is gone)."""
    try:
        _size, resident, shared, *_ = map(int, Path(f"/proc/{pid}/statm").read_text().split())
    except (OSError, ValueError):
        return 0
    return (resident - shared) * os.sysconf("SC_PAGE_SIZE")


def _status(wait_status: int) -> str:
    if os.WIFSIGNALED(wait_status):
        return f"signal {os.WTERMSIG(wait_status)}"
    return f"exit {os.waitstatus_to_exitcode(wait_status)}"


_reapers: dict[int, tuple[int, socket.socket]] = {}  # uid -> (pid, channel)


def _sweep(uid: int) -> None:
    """Kill every process of ``uid``, a ``setsid()`` grandchild included.

    One long-lived reaper per uid does it: a process running as that uid may signal -1,
    which reaches every process of the uid but itself. Keeping it alive saves a fork of
    this (large) process per submission.
    """
    if os.geteuid() != 0 or uid <= 0:
        return
    _start_reaper(uid)
    _, channel = _reapers[uid]
    channel.sendall(b"k")
    channel.recv(1)


def _start_reaper(uid: int) -> None:
    """The uid's reaper, forked now if not yet (a link server does it before it enters the
    slot's cgroups: a pids cgroup full of a fork bomb must not stop the reaper's fork)."""
    if os.geteuid() == 0 and uid > 0 and uid not in _reapers:
        ours, theirs = socket.socketpair()
        pid = os.fork()
        if pid == 0:
            # Only its channel: a descriptor of a worker being forked (a link server starts its
            # reaper then) held here would keep that worker's channel open after it died.
            harden.close_inherited_fds({0, 1, 2, theirs.fileno()})
            _reaper(uid, theirs)  # never returns
        theirs.close()
        _reapers[uid] = (pid, ours)


def _reaper(uid: int, channel: socket.socket) -> None:
    try:
        parent = os.getppid()
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        harden.watch_parent(parent)
        harden.no_new_privileges()
        while channel.recv(1):
            try:
                os.kill(-1, signal.SIGKILL)  # as uid: every process of uid but this one
            except ProcessLookupError:
                pass  # nothing left to kill
            channel.sendall(b"k")
    finally:
        os._exit(0)


_pid_namespaces: harden.PidNamespaces | None = None
_slots: dict[int, cgroups.Slot] = {}  # uid -> its cgroups
_link_server = False  # this process serves one slot's link, from inside the slot's cgroups
_inside: int | None = None  # the uid whose cgroups this link server is in


def _enter_slot(uid: int) -> None:
    """Move this link server into the slot's cgroups (once per uid, not once per worker)."""
    global _inside
    if _inside == uid:
        return
    if _inside is not None:
        _slots[_inside].leave()
        _inside = None
    _start_reaper(uid)  # from outside any slot's cgroups
    _slots[uid].enter()
    _inside = uid


def _first_for_the_oom_killer() -> None:
    """A worker is the first process the OOM killer picks, in its slot's memory cgroup (which
    also holds the slot's link server) and on the machine. Raising one's own score needs no
    privilege; lowering the server's would (CAP_SYS_RESOURCE, which a container may lack)."""
    try:
        Path("/proc/self/oom_score_adj").write_text("1000")
    except OSError:
        pass


def _fork_worker(request: dict, fds: list[int], link: socket.socket, on_full: Callable[[], None]) -> int:
    """Fork a worker on the descriptors ``fds`` (its channel, its output); as root, in a PID
    namespace of its own and in its slot's cgroups, both before it reads a byte of the
    submission (it waits for the grader's ``init``, sent only once this answers)."""
    global _pid_namespaces
    isolate = os.geteuid() == 0 and request.get("isolate", False)
    own_pids = isolate and request.get("pid_namespace", True)  # not where namespaces are refused
    if own_pids and _pid_namespaces is None:
        _pid_namespaces = harden.PidNamespaces()
    uid = int(request.get("uid") or 0)
    if isolate and uid and uid not in _slots:
        _slots[uid] = cgroups.Slot.create(uid, int(request["memory_bytes"]), int(request["processes"]))
    # A link server forks inside the slot's cgroups (the worker is born there); the zygote,
    # for its main link, moves each worker in after the fork.
    inside = bool(_link_server and isolate and uid and _slots[uid].dirs)
    if inside:
        _enter_slot(uid)
    me = os.getpid()
    try:
        if own_pids:
            _pid_namespaces.for_next_child()
        try:
            pid = os.fork()
        except BlockingIOError:
            if not inside:
                raise
            on_full()  # the pids cgroup full of killed workers not yet reaped: reap them, once
            pid = os.fork()
        if pid == 0:
            link.close()
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            _first_for_the_oom_killer()
            worker.main(fds[0], fds[1], parent=me)  # never returns
    finally:
        if own_pids:
            _pid_namespaces.restore()
        for fd in fds:
            os.close(fd)
    try:
        if inside:
            _slots[uid].reset_peak()
        elif isolate and uid:
            try:
                _slots[uid].join(pid)
            except OSError:  # the pids cgroup full of killed workers not yet reaped: reap them, once
                on_full()
                _slots[uid].join(pid)
    except BaseException:
        os.kill(pid, signal.SIGKILL)  # never let a worker run outside its limits
        os.waitpid(pid, 0)
        raise
    return pid


def _wait_for_released(released: dict[int, bool], children: set[int], *, heavy_only: bool = True) -> None:
    """Wait until killed workers are gone: the heavy ones before each fork (a memory bomb still
    tearing down would add its memory to the next one's), all of them when a slot's pids
    cgroup is full of them (a zombie counts until reaped)."""
    for pid in [p for p in released if released[p] or not heavy_only]:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        del released[pid]
        children.discard(pid)


_link_servers: set[int] = set()
LINK_SERVER_EXIT_SECONDS = 10.0


def _gone(pid: int) -> bool:
    """Whether the child ``pid`` has ended (and is reaped now), without waiting."""
    try:
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:
        return True


def _start_link_server(link: socket.socket, main_link: socket.socket) -> None:
    """Fork a server for a slot's new ``link``: it serves that link alone, until its EOF."""
    global _link_server
    zygote = os.getpid()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            main_link.close()
            for _pid, channel in _reapers.values():
                channel.close()  # the zygote's reapers; this server starts its own
            _reapers.clear()
            _slots.clear()
            _link_servers.clear()
            _link_server = True
            harden.watch_parent(zygote)  # a killed zygote takes its servers (and their workers) along
            serve(link)
        except BaseException:  # noqa: BLE001 - a broken server ends; its slot sees its link close
            traceback.print_exc()  # for staff, on the grader's stderr
            code = 1
        finally:
            os._exit(code)
    link.close()
    _link_servers.add(pid)


def _end_link_servers() -> None:
    """Wait for the link servers (each ends at its link's EOF), then kill any still there."""
    deadline = time.monotonic() + LINK_SERVER_EXIT_SECONDS
    while _link_servers and time.monotonic() < deadline:
        for pid in [p for p in _link_servers if _gone(p)]:
            _link_servers.discard(pid)
        if _link_servers:
            time.sleep(0.01)
    for pid in _link_servers:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    _link_servers.clear()


def serve(link: socket.socket) -> None:
    """Answer requests on the link until the grader closes it.

    In the zygote this is the main link; each parallel grading slot has a link of its own
    (``{"op": "link"}`` with one descriptor adds one), served by a forked copy of this loop
    (``_start_link_server``), so that slots never wait for each other's forks.
    """
    children: set[int] = set()
    released: dict[int, bool] = {}  # killed workers nobody waits for -> heavy; reaped here once gone
    try:
        while True:
            for pid in [p for p in released if _gone(p)]:
                del released[pid]
                children.discard(pid)
            if not select.select([link], [], [], 0.5 if released else None)[0]:
                continue
            try:
                data, fds, _flags, _addr = socket.recv_fds(link, 4096, 4)
            except OSError:
                data, fds = b"", []
            if not data:
                return
            request = json.loads(data)
            op = request["op"]
            if op == "link":
                _start_link_server(socket.socket(fileno=fds[0]), link)
                link.send(b'{"linked": true}')
            elif op == "fork":
                try:
                    _wait_for_released(released, children)
                    pid = _fork_worker(request, fds, link,
                                       lambda: _wait_for_released(released, children, heavy_only=False))
                except Exception as exc:  # noqa: BLE001 - say why, keep serving
                    link.send(json.dumps({"error": f"{type(exc).__name__}: {exc}"[:500]}).encode())
                    continue
                children.add(pid)
                link.send(json.dumps({"pid": pid}).encode())
            elif op == "reap":
                pid = request["pid"]
                try:
                    _, status = os.waitpid(pid, 0)
                    answer = _status(status)
                except ChildProcessError:
                    answer = "unknown"
                children.discard(pid)
                link.send(json.dumps({"status": answer}).encode())
            elif op == "release":  # no answer: the grader does not wait for it
                released[request["pid"]] = _private_bytes(request["pid"]) > HEAVY_BYTES
            elif op == "sweep":
                _sweep(int(request["uid"]))
                link.send(b'{"swept": true}')
    finally:
        for pid in children:
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
        for pid, channel in _reapers.values():
            channel.close()
            os.kill(pid, signal.SIGKILL)  # not only EOF: a worker forked before may hold the channel too
            os.waitpid(pid, 0)
        for pid in children:
            try:
                os.waitpid(pid, 0)  # a cgroup can be removed only once its processes are gone
            except ChildProcessError:
                pass
        if _inside is not None:
            try:
                _slots[_inside].leave()  # a cgroup holding this process cannot be removed
            except OSError:
                pass
        for slot in _slots.values():
            slot.remove()
        _end_link_servers()


def main() -> None:
    control = socket.socket(fileno=int(sys.argv[1]))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the grader's to handle
    harden.watch_parent(int(sys.argv[2]))  # a killed grader takes its zygote (and so its workers) along
    _forget_repository()
    harden.runtime_paths()  # what a worker's root holds: computed once, inherited by every fork
    _warm_up()
    os.chdir("/")
    try:
        control.send(b'{"ready": true}')
        serve(control)
    except OSError:
        pass  # the grader went away (it stopped early, or was interrupted)
    os._exit(0)  # skip interpreter teardown (torch's takes a few hundred ms)


if __name__ == "__main__":
    main()
