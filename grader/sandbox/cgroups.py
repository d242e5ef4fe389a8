"""Memory and process limits per grading slot through the kernel's cgroup controllers.

A limit that lives in a cgroup holds whatever the worker does: RLIMIT_DATA does not count a
shared anonymous ``mmap`` or what a tmpfs holds, a memory cgroup does; RLIMIT_NPROC means
nothing to root, a pids cgroup does. Each sandbox uid (one per parallel slot, see
``client.claim_uid_block``) gets one cgroup per controller, below the cgroup the grader runs
in: ``<controller root>/<our cgroup>/attention-grader/uid-<uid>``. The zygote, as root,
creates them; a slot's fork server lives in them, so each worker is born there, before it
reads a byte of the submission (a worker forked on the zygote's main link is moved in right
after the fork); the grader reads the OOM-kill counter to say "memory limit" rather than
"crashed".

Both layouts are handled: cgroup v1 (one hierarchy per controller, ``/sys/fs/cgroup/memory``
and ``/sys/fs/cgroup/pids``) and v2 (one unified hierarchy, where our cgroup must already
delegate ``memory`` and ``pids`` to its children). Without either, or without root, nothing
is created and the rlimits are the only limits; ``Slot.active`` says which applied.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

CGROUP_FS = Path("/sys/fs/cgroup")
GROUP = "attention-grader"


def _own_cgroups() -> dict[str, str]:
    """controller name ('memory', 'pids', or '' for v2) -> this process's cgroup path."""
    mine: dict[str, str] = {}
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return mine
    for line in lines:
        _id, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else [""]:
            mine[name] = path
    return mine


@functools.cache
def _home_cgroups() -> dict[str, str]:
    """The cgroups this process started in (read once: a link server of the zygote moves
    itself into a slot's cgroups, and the slots stay where they were created)."""
    return _own_cgroups()


@functools.cache
def home_dirs() -> dict[str, Path]:
    """Per controller ('memory' and 'pids' on v1, else 'unified'), the folder of the cgroup
    this process started in."""
    home = _home_cgroups()
    v1 = {name: CGROUP_FS / name for name in ("memory", "pids")}
    if all((v1[name] / "cgroup.procs").exists() and name in home for name in v1):
        return {name: v1[name] / home[name].lstrip("/") for name in v1}
    return {"unified": CGROUP_FS / home.get("", "/").lstrip("/")}


def _controller_dirs(uid: int) -> dict[str, Path]:
    """Where the slot's cgroups live, per controller ('memory', 'pids'); empty if unusable."""
    if os.geteuid() != 0:
        return {}
    home = home_dirs()
    if "unified" not in home:
        return {name: path / GROUP / f"uid-{uid}" for name, path in home.items()}
    try:
        delegated = (home["unified"] / "cgroup.subtree_control").read_text().split()
    except OSError:
        return {}
    if "memory" in delegated and "pids" in delegated:
        # v2: the GROUP folder must delegate the controllers to the uid folders below it too.
        return {"unified": home["unified"] / GROUP / f"uid-{uid}"}
    return {}


def available() -> bool:
    """Whether this machine lets this process create the slots' cgroups (root, a memory and a
    pids controller, a writable cgroup of our own)."""
    def writable(path: Path) -> bool:
        while not path.exists():
            path = path.parent
        return os.access(path, os.W_OK)

    dirs = _controller_dirs(0)
    return bool(dirs) and all(writable(path) for path in dirs.values())


def joined() -> bool:
    """Whether this process runs in a slot's cgroups (a worker asks, to list its protections)."""
    return f"/{GROUP}/uid-" in "".join(_own_cgroups().values())


@dataclass
class Slot:
    """The cgroups of one sandbox uid."""

    uid: int
    dirs: dict[str, Path]

    @classmethod
    def create(cls, uid: int, memory_bytes: int, processes: int) -> "Slot":
        """Create (or update) the slot's cgroups with these limits; empty ``dirs`` if not possible."""
        dirs = _controller_dirs(uid)
        try:
            for name, path in dirs.items():
                if name == "unified":
                    path.parent.mkdir(exist_ok=True)
                    (path.parent / "cgroup.subtree_control").write_text("+memory +pids")
                path.mkdir(parents=True, exist_ok=True)
            if "memory" in dirs:
                memory = dirs["memory"]
                # memsw (memory + swap) >= limit at every moment: raise memsw first, lower it last.
                names = ["memory.limit_in_bytes"]
                if (memory / "memory.memsw.limit_in_bytes").exists():
                    names.append("memory.memsw.limit_in_bytes")
                if memory_bytes > int((memory / "memory.limit_in_bytes").read_text()):
                    names.reverse()
                for name in names:
                    (memory / name).write_text(str(memory_bytes))
                (dirs["pids"] / "pids.max").write_text(str(processes))
            elif "unified" in dirs:
                unified = dirs["unified"]
                (unified / "memory.max").write_text(str(memory_bytes))
                if (unified / "memory.swap.max").exists():
                    (unified / "memory.swap.max").write_text("0")
                (unified / "pids.max").write_text(str(processes))
        except OSError:
            return cls(uid, {})
        return cls(uid, dirs)

    @classmethod
    def existing(cls, uid: int) -> "Slot":
        """The slot's cgroups as they are (for reading counters), without creating anything."""
        dirs = {name: path for name, path in _controller_dirs(uid).items() if path.is_dir()}
        return cls(uid, dirs)

    def join(self, pid: int) -> None:
        """Move ``pid`` (a worker just forked, not yet running student code) into the slot, and
        start the slot's memory peak afresh."""
        for path in self.dirs.values():
            (path / "cgroup.procs").write_text(str(pid))
        self.reset_peak()

    def enter(self) -> None:
        """Move this process into the slot: its children are born there, so no fork pays for a
        move (10-20 ms each, measured: the kernel waits for an RCU grace period per move)."""
        self.join(os.getpid())

    def leave(self) -> None:
        """Move this process back to the cgroups it started in (before ``remove``)."""
        for name, path in home_dirs().items():
            if name in self.dirs:
                (path / "cgroup.procs").write_text(str(os.getpid()))

    def reset_peak(self) -> None:
        """Start the slot's memory peak afresh (v1; v2 keeps one peak for the cgroup's life)."""
        if "memory" in self.dirs:
            (self.dirs["memory"] / "memory.max_usage_in_bytes").write_text("0")

    def peak_bytes(self) -> int:
        """The most memory the slot's processes held at once (since the last worker joined, v1)."""
        for name, file in (("memory", "memory.max_usage_in_bytes"), ("unified", "memory.peak")):
            if name in self.dirs:
                try:
                    return int((self.dirs[name] / file).read_text())
                except (OSError, ValueError):
                    return 0
        return 0

    def oom_kills(self) -> int:
        """How many processes the memory limit has killed in this slot so far."""
        name = "memory.oom_control" if "memory" in self.dirs else "memory.events"
        folder = self.dirs.get("memory") or self.dirs.get("unified")
        if folder is None:
            return 0
        try:
            for line in (folder / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            pass
        return 0

    def remove(self) -> None:
        """Remove the slot's cgroups (they must be empty: every worker of the uid gone)."""
        for path in self.dirs.values():
            try:
                path.rmdir()
                path.parent.rmdir()  # the GROUP folder, once the last slot is gone
            except OSError:
                pass
