"""Hardening applied inside a worker, after fork and before the student's first byte runs.

``apply`` receives the limits the grader chose (from course.yaml) and returns the names of
the protections that took effect, so every report can say what was active.
"""
from __future__ import annotations

import os
import resource

# Resource limits, named as in the grader's request. RLIMIT_DATA, not RLIMIT_AS: torch
# reserves ~72 MiB of address space per thread, so an address-space cap breaks it.
_RLIMITS = {
    "cpu_seconds": resource.RLIMIT_CPU,
    "memory_bytes": resource.RLIMIT_DATA,
    "file_bytes": resource.RLIMIT_FSIZE,
    "open_files": resource.RLIMIT_NOFILE,
}


def close_inherited_fds(keep: set[int]) -> None:
    """Close every descriptor but ``keep``: nothing of the grader's leaks to the student."""
    fds = sorted(int(name) for name in os.listdir("/proc/self/fd") if name.isdigit())
    for fd in fds:
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def apply(requested: dict, keep_fds: set[int]) -> list[str]:
    active = []
    close_inherited_fds(keep_fds)
    active.append("inherited descriptors closed")
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    active.append("no core dumps")
    for name, which in _RLIMITS.items():
        value = requested.get(name)
        if value:
            soft = int(value)
            hard = soft + 1 if which == resource.RLIMIT_CPU else soft  # SIGXCPU first, then SIGKILL
            resource.setrlimit(which, (soft, hard))
            active.append(f"{name} limit")
    return active
