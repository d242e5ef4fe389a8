"""What a submission's workers print, as the grader captured it.

Workers write their stdout and stderr into a pipe; a thread of the grader drains it into a
file only the grader holds. A worker can therefore neither rewrite nor truncate what it
printed before (it had a file descriptor to seek and ``pwrite`` into when it wrote to the
file itself), nor block by printing more than a pipe holds. Past ``limit`` bytes the pipe
is closed: further writes fail with a broken pipe, in the student's code.
"""
from __future__ import annotations

import os
import select
import tempfile
import threading
import time

SETTLE_SECONDS = 0.2


class OutputCapture:
    def __init__(self, limit: int):
        self.limit = limit
        self._read, self.write_fd = os.pipe()  # write_fd: handed to every worker of the submission
        self._stop_read, self._stop = os.pipe()  # close() says "stop" here: no waiting for a dying worker's EOF
        self._file = tempfile.TemporaryFile()
        self._lock = threading.Lock()
        self._received = 0
        self._thread = threading.Thread(target=self._drain, name="worker-output", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        try:
            while self._received < self.limit:
                readable, _, _ = select.select([self._read, self._stop_read], [], [])
                if self._read not in readable:
                    break
                chunk = os.read(self._read, min(65536, self.limit - self._received))
                if not chunk:
                    break
                with self._lock:
                    self._file.write(chunk)
                    self._received += len(chunk)
        except OSError:
            pass  # the read end was closed under us (close())
        finally:
            _close(self._read)

    def settle(self) -> None:
        """Wait (briefly) until what the workers wrote so far has been read: a worker flushes
        its output before it answers, so after an answer this catches everything before it."""
        deadline = time.monotonic() + SETTLE_SECONDS
        while self._thread.is_alive() and time.monotonic() < deadline:
            try:
                readable, _, _ = select.select([self._read], [], [], 0)
            except (OSError, ValueError):
                return
            if not readable:
                return
            time.sleep(0.001)

    @property
    def size(self) -> int:
        """Bytes received (at most ``limit``)."""
        self.settle()
        return self._received

    def read(self, limit: int) -> bytes:
        self.settle()
        with self._lock:
            self._file.seek(0)
            data = self._file.read(limit)
            self._file.seek(0, os.SEEK_END)
        return data

    def close(self) -> None:
        _close(self.write_fd)
        os.write(self._stop, b"x")
        self._thread.join(timeout=1.0)
        for fd in (self._stop, self._stop_read):
            _close(fd)
        self._file.close()


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass
