"""The grader's side of the sandbox: start the zygote, fork workers, talk with deadlines.

Anything a worker does wrong (hangs past its deadline, dies, sends garbage) surfaces here
as one exception and the worker's whole process group is killed and reaped.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

if TYPE_CHECKING:  # this module stays free of torch so the zygote can start before torch loads here
    import torch

ZYGOTE_START_SECONDS = 120.0
INLINE_SEND_BYTES = 64 << 10  # a pipeline this small is written at once, well within a socket buffer (~208 KiB)
INLINE_HEADER_BYTES = 4 << 10  # a request header at most, for that estimate
UID_START, UID_BLOCK, UID_BLOCKS = 60000, 64, 64
_claimed: list = []  # the lock file of this process's block, held open while it runs


def claim_uid_block() -> int:
    """The first uid of a block of 64 that no other grader on this machine is using.

    Workers of parallel slot n run as (block start + n), and after each submission every
    process of that uid is killed: two graders running at once must never share a uid.
    A lock file per block (flock, released when this process ends) makes the claim.
    """
    import fcntl
    import tempfile

    if _claimed:
        return _claimed[0][1]
    for block in range(UID_BLOCKS):
        path = Path(tempfile.gettempdir()) / f".attention-grader-uids-{block}.lock"
        handle = open(path, "a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        _claimed.append((handle, UID_START + block * UID_BLOCK))
        return _claimed[0][1]
    raise RuntimeError(f"all {UID_BLOCKS} blocks of sandbox uids are in use by other graders on this machine")


# What of the grader's environment the zygote (and so every worker) inherits: what torch and
# the C libraries read, nothing else. A token or a path in the grader's environment stays there.
ENVIRONMENT_NAMES = {"LANG", "LC_ALL", "LC_CTYPE", "TZ", "LD_LIBRARY_PATH", "CUDA_VISIBLE_DEVICES",
                     "CUDA_DEVICE_ORDER", "NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES"}
ENVIRONMENT_PREFIXES = ("PYTORCH_", "TORCH_", "CUBLAS_", "CUDNN_")


def worker_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k in ENVIRONMENT_NAMES or k.startswith(ENVIRONMENT_PREFIXES)}


class WorkerTimeout(Exception):
    """The worker did not answer before the deadline; it has been killed."""


class WorkerDied(Exception):
    """The worker ended (os._exit, a signal, a crash) or broke the protocol."""

    def __init__(self, status: str, detail: str = ""):
        super().__init__(status)
        self.status = status
        self.detail = detail


class Zygote:
    """A fork server process that imported torch and nothing secret.

    Creating one only starts the process; the first ``fork`` waits until it is ready, so
    the zygote imports torch while the grader does the same on the other core.
    """

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        package_root = Path(__file__).resolve().parents[2]
        env = dict(worker_environment(), PYTHONDONTWRITEBYTECODE="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
                   PYTORCH_NVML_BASED_CUDA_CHECK="1", HOME="/tmp/work",
                   PYTHONPATH=os.pathsep.join(filter(None, [str(package_root), os.environ.get("PYTHONPATH")])))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "grader.sandbox.zygote", str(theirs.fileno()), str(os.getpid())],
            pass_fds=(theirs.fileno(),), env=env, stdin=subprocess.DEVNULL, cwd="/",
        )
        theirs.close()
        self.control = ours
        self.ready = False

    def _wait_ready(self) -> None:
        self.control.settimeout(ZYGOTE_START_SECONDS)
        try:
            ready = self.control.recv(4096)
        except socket.timeout:
            ready = b""
        if not ready:
            self.close()
            raise RuntimeError("the sandbox's zygote process failed to start (see the messages above)")
        self.control.settimeout(None)
        self.ready = True

    def link(self) -> "ZygoteLink":
        """A control link of its own, for one parallel grading slot (in this or a child process)."""
        if not self.ready:
            self._wait_ready()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        socket.send_fds(self.control, [b'{"op": "link"}'], [theirs.fileno()])
        theirs.close()
        self.control.recv(4096)
        return ZygoteLink(ours)

    def fork(self, output: int, limits: dict | None = None) -> "WorkerProcess":
        """A new worker writing its stdout and stderr to the descriptor ``output``; ``limits``
        (``isolate``, ``uid``, ``memory_bytes``, ``processes``) say how the zygote places it."""
        if not self.ready:
            self._wait_ready()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        request = json.dumps(dict(limits or {}, op="fork")).encode()
        socket.send_fds(self.control, [request], [theirs.fileno(), output])
        theirs.close()
        answer = json.loads(self.control.recv(4096))
        if "pid" not in answer:
            ours.close()
            raise RuntimeError(f"the sandbox could not fork a worker ({answer.get('error')})")
        return WorkerProcess(self, answer["pid"], ours)

    def sweep(self, uid: int) -> None:
        """Kill whatever still runs as ``uid`` (root only; a no-op otherwise)."""
        self.control.send(json.dumps({"op": "sweep", "uid": uid}).encode())
        self.control.recv(4096)

    def reap(self, pid: int) -> str:
        self.control.send(json.dumps({"op": "reap", "pid": pid}).encode())
        return json.loads(self.control.recv(4096))["status"]

    def release(self, pid: int) -> None:
        """Let the zygote reap a killed worker whenever it is gone, without waiting for it."""
        self.control.send(json.dumps({"op": "release", "pid": pid}).encode())

    def close(self) -> None:
        try:
            self.control.close()
            if not self.ready:  # never used: no workers to clean up, no need to wait
                self.process.kill()
        finally:
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> "Zygote":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ZygoteLink(Zygote):
    """Another control link to a running zygote; closing it leaves the zygote running."""

    def __init__(self, control: socket.socket):  # noqa: super().__init__ would start a process
        self.control = control
        self.process = None
        self.ready = True

    def close(self) -> None:
        self.control.close()


class WorkerProcess:
    """One forked worker. Any failure kills it; then ``status`` says how it ended."""

    def __init__(self, zygote: Zygote, pid: int, channel: socket.socket):
        self.zygote = zygote
        self.pid = pid
        self.channel = channel
        self.status: str | None = None  # set once the worker is gone
        self.last_digest = b""  # of the last answer ``request`` returned (see codec.recv_message)

    @property
    def alive(self) -> bool:
        return self.status is None

    def request(self, header: dict, tensors: list[torch.Tensor] = (), *, timeout: float,
                callback: Callable[[dict, list], tuple[dict, list]] | None = None,
                max_payload: int | None = None) -> tuple[dict, list]:
        """Send one request and wait at most ``timeout`` seconds for the answer.

        With ``callback``, the worker may ask the grader questions during the call
        (``{"op": "callback", ...}``, used to substitute reference functions for the
        student's own); each is answered with what ``callback`` returns. Without one, such a
        question breaks the protocol. A message carrying more than ``max_payload`` bytes of
        tensors (None: the codec's limit) breaks it too, before the grader reads them.
        """
        from . import codec

        deadline = time.monotonic() + timeout
        with self._failures():
            codec.send_message(self.channel, header, list(tensors))
            while True:
                answer, out, digest = self._receive(deadline, max_payload)
                if "ok" in answer:
                    self.last_digest = digest
                    return answer, out
                if answer["op"] != "callback" or callback is None:
                    raise codec.ProtocolError(f"an unexpected {answer['op']} message")
                self._answer(callback, answer, out)

    def pipeline(self, requests: list[tuple[dict, list]], timeout: Callable[[], float]) -> Iterator[tuple[dict, list, bytes]]:
        """Send several requests at once (a thread writes them while this one reads, so that
        neither side blocks on a full socket) and yield each ``(answer, tensors, digest)`` in
        order, each within ``timeout()`` seconds of the one before. Read to the end, or the
        channel is out of step."""
        from . import codec

        def send_all() -> None:
            try:
                for header, tensors in requests:
                    codec.send_message(self.channel, header, list(tensors))
            except OSError:
                pass  # the worker is gone: the reading side says how

        # A thread writes only what might not fit in the socket's buffer while the worker's
        # answers wait unread (a thread start costs about 0.25 ms, per pipeline).
        size = sum(INLINE_HEADER_BYTES + sum(t.nbytes for t in tensors) for _, tensors in requests)
        sender = threading.Thread(target=send_all, name="worker-requests", daemon=True) if size > INLINE_SEND_BYTES else None
        answered = 0
        with self._failures():
            if sender is None:
                self.channel.settimeout(timeout())  # fits in the buffer: a full one means a worker not reading
                send_all()
            else:
                sender.start()
            try:
                for _ in requests:
                    answer, out, digest = self._receive(time.monotonic() + timeout())
                    if "ok" not in answer:
                        raise codec.ProtocolError(f"an unexpected {answer['op']} message")
                    answered += 1
                    self.last_digest = digest
                    yield answer, out, digest
            finally:
                if answered < len(requests):
                    self.kill()  # stopped early (a timeout, a broken answer): out of step, and the sender ends
                if sender is not None:
                    sender.join()

    def _receive(self, deadline: float, max_payload: int | None = None) -> tuple[dict, list, bytes]:
        """The worker's next message, checked field by field (``codec.check_answer``), and
        the digest of its bytes (see ``codec.recv_message``)."""
        from . import codec

        digest = hashlib.blake2b(digest_size=20)
        try:
            message, out = codec.recv_message(self.channel, deadline, digest, max_payload or codec.MAX_PAYLOAD_BYTES)
            codec.check_answer(message, out)
        except (codec.ProtocolError, codec.Timeout, OSError):
            raise
        except Exception as exc:  # noqa: BLE001 - a message the codec chokes on costs the worker, not the grader
            raise codec.ProtocolError(f"a message that could not be read ({type(exc).__name__})") from None
        return message, out, digest.digest()

    def _answer(self, callback: Callable[[dict, list], tuple[dict, list]], question: dict, received: list) -> None:
        """Send the grader's answer to a worker's question; a question that cannot be
        answered (the callback raised, its reply cannot travel) breaks the protocol."""
        from . import codec

        try:
            reply, reply_tensors = callback(question, received)
            codec.send_message(self.channel, reply, reply_tensors)
        except Exception as exc:  # noqa: BLE001 - the worker waits for this reply: it cannot go on
            raise codec.ProtocolError(f"a question that could not be answered ({type(exc).__name__})") from None

    @contextlib.contextmanager
    def _failures(self) -> Iterator[None]:
        """Any failure of the channel kills the worker and becomes WorkerTimeout or WorkerDied."""
        from . import codec

        try:
            yield
        except codec.Timeout:
            self.kill()
            raise WorkerTimeout() from None
        except codec.PeerClosed:
            self.kill()
            raise WorkerDied(self.status or "unknown") from None
        except (codec.ProtocolError, OSError) as exc:
            self.kill()
            raise WorkerDied(self.status or "unknown", f"it broke the protocol ({exc})") from None

    def kill(self, *, wait: bool = True) -> None:
        """Kill the worker's process group; with ``wait``, wait for it to be gone and set
        ``status`` (how it ended), else leave the reaping to the zygote."""
        if self.status is not None:
            return
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        except PermissionError:
            pass
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.channel.close()
        if wait:
            self.status = self.zygote.reap(self.pid)
        else:
            self.zygote.release(self.pid)
            self.status = "killed"
