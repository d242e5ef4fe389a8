"""Hardening applied inside a worker, after fork and before the student's first byte runs.

``apply(plan, keep_fds)`` runs the steps in order and returns the names of the protections
that took effect; the grader puts them in every report. As root (Gradescope, CI, a grading
server) all of them apply; otherwise the privilege, namespace and mount steps are skipped
and the rest still holds.

Order matters: namespaces and mounts need root, so they come before the privilege drop;
the parent-death signal is cleared by setuid, so it is set after; seccomp comes last
because it forbids the very calls (unshare, mount, setuid) the earlier steps make.
"""
from __future__ import annotations

import ctypes
import errno
import functools
import os
import platform
import resource
import signal
import socket
import sys

from . import cgroups

_libc = ctypes.CDLL(None, use_errno=True)

CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWPID = 0x00020000, 0x08000000, 0x40000000, 0x20000000
CLONE_THREAD = 0x00010000
MS_NOSUID, MS_NODEV, MS_RDONLY, MS_REC, MS_PRIVATE = 0x2, 0x4, 0x1, 0x4000, 0x40000
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS = 1, 4, 38

# RLIMIT_DATA, not RLIMIT_AS: torch reserves ~72 MiB of address space per thread (and CUDA
# hundreds of GB), so an address-space cap breaks it while a data cap does not.
_RLIMITS = {
    "cpu_seconds": resource.RLIMIT_CPU,
    "memory_bytes": resource.RLIMIT_DATA,
    "file_bytes": resource.RLIMIT_FSIZE,
    "open_files": resource.RLIMIT_NOFILE,
    "processes": resource.RLIMIT_NPROC,
}


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(_libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None, flags,
                       data.encode() if data else None), f"mount {target}")


def close_inherited_fds(keep: set[int]) -> None:
    """Close every descriptor but ``keep``: nothing of the grader's leaks to the student."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


MS_NOEXEC, MS_BIND, MS_REMOUNT, MNT_DETACH = 0x8, 0x1000, 0x20, 0x2
_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}.get(platform.machine())

# The devices a worker may open: nothing but these (and a GPU's, when the machine has one).
DEVICES = ("null", "zero", "full", "random", "urandom")
GPU_DEVICES = ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset")


def gpu_machine() -> bool:
    """An NVIDIA driver is here (its control node), whatever this process's torch can do."""
    return os.path.exists("/dev/nvidiactl")


def on_cuda(plan: dict) -> bool:
    """The plan is a worker's of a course graded on CUDA (only those carry a GPU share)."""
    return "gpu_memory_fraction" in plan


@functools.lru_cache(maxsize=1)
def runtime_paths() -> tuple[str, ...]:
    """What a worker's file system holds, read-only: the Python runtime and its packages (the
    folders on ``sys.path``), the system's libraries, and on a GPU machine what CUDA reads.
    Computed in the zygote, after it dropped the repository from ``sys.path``."""
    # ("/" is on sys.path as the zygote's working folder, from ``python -m``: not a library)
    paths = {os.path.realpath(p) for p in sys.path if p and os.path.isabs(p) and os.path.isdir(p)} - {"/"}
    paths.add("/usr")
    for top in ("/lib", "/lib64", "/lib32", "/libx32"):
        if os.path.exists(top):
            paths.add(top)  # a symlink into /usr on most systems: recreated as one
    if gpu_machine():
        paths.update({"/sys", "/etc/ld.so.cache"})  # the driver reads both (CUDA ran so on an H200, 2026-12-04)
    ordered = sorted(paths)
    return tuple(p for p in ordered if not any(p != q and p.startswith(q.rstrip("/") + "/") for q in ordered))


def _bind(source: str, target: str, *, writable: bool = False) -> None:
    if os.path.isdir(source):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        open(target, "a").close()
    _mount(source, target, None, MS_BIND | MS_REC)
    flags = MS_REMOUNT | MS_BIND | MS_NOSUID | (0 if writable else MS_RDONLY | MS_NODEV)
    _mount("none", target, None, flags)


class PidNamespaces:
    """Root only: the next child of this process (the zygote) starts a PID namespace of its
    own, as its process 1; the processes it could start die with it, and its ``/proc`` shows
    nothing else. ``for_next_child()`` before the fork, ``restore()`` after it."""

    def __init__(self) -> None:
        self.own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)

    def for_next_child(self) -> None:
        _check(_libc.unshare(CLONE_NEWPID), "unshare(CLONE_NEWPID)")

    def restore(self) -> None:
        _check(_libc.setns(self.own, CLONE_NEWPID), "setns(pid)")


def _tmpfs(target: str, size: int, mode: str, *, readonly: bool = False) -> None:
    os.makedirs(target, exist_ok=True)
    _mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV | (MS_RDONLY if readonly else 0), f"size={size},mode={mode}")


@functools.lru_cache(maxsize=1)
def namespaces_allowed() -> bool:
    """Root only: may a child of this process make the namespaces and mounts of ``isolate``?
    Not in a container without CAP_SYS_ADMIN (Docker's default): there workers go without
    them (their reports leave those protections out) instead of failing to start."""
    if os.geteuid() != 0:
        return False
    pid = os.fork()
    if pid == 0:  # the child only makes two system calls and exits
        allowed = (_libc.unshare(CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWNET | CLONE_NEWPID) == 0
                   and _libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) == 0)
        os._exit(0 if allowed else 1)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def isolate(plan: dict) -> list[str]:
    """Root only: private network and IPC namespaces, and a file system of its own.

    The worker's root is a new, read-only tmpfs holding only the ``runtime`` folders (bind
    mounts, read-only), ``/dev`` with the few devices torch needs, a ``/proc`` of its own PID
    namespace (the zygote forked it into a new one: it sees no other process), and a private,
    size-capped ``/tmp`` and ``/dev/shm``. Nothing else exists: not the course, its ``.git``,
    the solutions, the suites, the submissions, the results files, home folders or ``/run``.
    Folders in ``hide`` that lie inside a runtime folder are covered by an empty tmpfs.
    """
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWNET), "unshare")
    _mount("none", "/", None, MS_REC | MS_PRIVATE)  # our mounts must not leak to the host
    new = "/tmp"  # any folder will do: in this mount namespace it becomes the new root
    _tmpfs(new, 1 << 20, "755")
    _scratch_and_devices(new, plan)
    _runtime(new, plan.get("hide", []))
    _enter_root(new)
    pid_namespace = ["PID namespace (no other process visible)"] if os.getpid() == 1 else []
    return ["network namespace (no network)", "IPC namespace", *pid_namespace,
            "own read-only root: only the Python runtime and system libraries, private /tmp and /dev/shm"]


def _scratch_and_devices(new: str, plan: dict) -> None:
    """``/dev`` (a few devices), ``/proc``, and the private, size-capped ``/tmp`` (with the
    student's ``/tmp/work``) and ``/dev/shm`` of the root being built at ``new``."""
    size = int(plan.get("tmpfs_bytes", 64 << 20))
    _tmpfs(new + "/dev", 64 << 10, "755")
    gpu = (*GPU_DEVICES, *_gpu_nodes()) if on_cuda(plan) else ()  # only a CUDA course's workers
    for name in (*DEVICES, *gpu):
        if os.path.exists("/dev/" + name):
            _bind("/dev/" + name, new + "/dev/" + name, writable=True)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{new}/dev/{name}")
    _tmpfs(new + "/dev/shm", size, "1777")
    _tmpfs(new + "/tmp", size, "1777")
    os.makedirs(new + "/tmp/work", mode=0o700)
    if plan.get("uid"):
        os.chown(new + "/tmp/work", int(plan["uid"]), int(plan["uid"]))
    os.makedirs(new + "/proc")
    _mount("proc", new + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)


def _runtime(new: str, hide: list[str]) -> None:
    """The runtime folders, read-only (a runtime under /tmp lands on the private tmpfs, which
    is fine); then an empty tmpfs over each folder of ``hide`` inside them, and over the grader
    package itself when it was installed into site-packages (its suites, its misconception
    library): the worker imported all it needs of it before the fork."""
    runtime = runtime_paths()  # computed once in the zygote, inherited by every fork
    for path in runtime:
        if os.path.islink(path):
            os.symlink(os.readlink(path), new + path)
        elif os.path.exists(path):
            _bind(path, new + path)
    if not os.path.lexists(new + "/var/tmp"):
        os.makedirs(new + "/var", exist_ok=True)
        os.symlink("/tmp", new + "/var/tmp")
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for path in [*hide, package]:
        if os.path.isdir(path) and any(path.startswith(r.rstrip("/") + "/") for r in runtime):
            _tmpfs(new + path, 4096, "000", readonly=True)


def _gpu_nodes() -> list[str]:
    try:
        return [n for n in os.listdir("/dev") if n.startswith("nvidia") and n[6:].isdigit()]
    except OSError:
        return []


def _enter_root(new: str) -> None:
    """Make ``new`` the root, drop every trace of the old one, and make the root read-only."""
    if _PIVOT_ROOT is None:
        raise OSError(errno.ENOSYS, f"pivot_root: unknown on {platform.machine()}")
    os.chdir(new)
    _check(_libc.syscall(_PIVOT_ROOT, b".", b"."), "pivot_root")
    _check(_libc.umount2(b".", MNT_DETACH), "umount old root")  # the old root was stacked under the new
    os.chdir("/")
    _mount("none", "/", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def set_limits(plan: dict) -> list[str]:
    active = []
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    for name, which in _RLIMITS.items():
        value = plan.get(name)
        if value:
            soft = int(value)
            hard = soft + 1 if which == resource.RLIMIT_CPU else soft  # SIGXCPU first, SIGKILL a second later
            resource.setrlimit(which, (soft, hard))
            active.append(name.replace("_", " "))
    return ["limits: " + ", ".join(["no core dumps", *active])]


def drop_privileges(uid: int) -> list[str]:
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    return [f"unprivileged uid {uid}"]


def watch_parent(parent: int) -> None:
    """Die with the zygote. Set after setuid, which clears it; then close the race (in a PID
    namespace of its own the parent is outside it and ``getppid()`` is 0: the channel's EOF
    then ends a worker whose grader is gone)."""
    _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PDEATHSIG)")
    if os.getppid() not in (parent, 0):
        os._exit(1)


def no_new_privileges() -> list[str]:
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
    _check(_libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "prctl(DUMPABLE)")
    return ["no new privileges", "not dumpable (no ptrace, no /proc/<pid>/mem)"]


DENIED_SYSCALLS = (
    "execve", "execveat", "fork", "vfork", "ptrace", "process_vm_readv", "process_vm_writev", "unshare", "setns",
    "mount", "umount2", "pivot_root", "chroot", "bpf", "perf_event_open", "keyctl", "add_key", "request_key",
    "setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setgroups", "setfsuid", "setfsgid",
    "kexec_load", "init_module", "finit_module", "delete_module", "reboot", "swapon", "swapoff", "userfaultfd",
    # Signals to others: without a uid of its own, kill(-1) would reach every process of the
    # grader's user. A process may still signal its own threads (tgkill with its own pid).
    "kill", "tkill", "pidfd_send_signal", "pidfd_open",
    # io_uring runs its requests in kernel threads the socket rule below never sees (it
    # opened AF_INET and netlink sockets); handles and key/cross-process calls besides.
    "io_uring_setup", "io_uring_enter", "io_uring_register", "open_by_handle_at", "name_to_handle_at",
    "kcmp", "process_madvise", "fanotify_init", "personality",
)
# prctl options that would undo a protection: dumpable again (ptrace, /proc/<pid>/mem), a
# ptracer allowed, the memory map rewritten.
PR_SET_MM, PR_SET_PTRACER = 35, 0x59616D61
DENIED_PRCTL = (PR_SET_DUMPABLE, PR_SET_PTRACER, PR_SET_MM)


def install_seccomp() -> list[str]:
    """Deny new processes, exec, network sockets, tracing and privilege calls; threads stay allowed."""
    import pyseccomp as sc

    f = sc.SyscallFilter(defaction=sc.ALLOW)
    for name in DENIED_SYSCALLS:
        try:
            f.add_rule(sc.ERRNO(errno.EPERM), name)
        except (RuntimeError, ValueError, OSError):
            pass  # not a syscall on this architecture
    # clone: threads (CLONE_THREAD set) are fine, new processes are not.
    f.add_rule(sc.ERRNO(errno.EPERM), "clone", sc.Arg(0, sc.MASKED_EQ, CLONE_THREAD, 0))
    # clone3 passes its flags in memory seccomp cannot read: ENOSYS makes libc fall back to clone.
    f.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    f.add_rule(sc.ERRNO(errno.EACCES), "socket", sc.Arg(0, sc.NE, socket.AF_UNIX))
    f.add_rule(sc.ERRNO(errno.EACCES), "socketpair", sc.Arg(0, sc.NE, socket.AF_UNIX))
    for option in DENIED_PRCTL:
        f.add_rule(sc.ERRNO(errno.EPERM), "prctl", sc.Arg(0, sc.EQ, option))
    for name in ("tgkill", "rt_tgsigqueueinfo", "rt_sigqueueinfo"):
        f.add_rule(sc.ERRNO(errno.EPERM), name, sc.Arg(0, sc.NE, os.getpid()))
    f.load()
    return ["seccomp filter (no fork, exec, network sockets, io_uring, signals to other processes, ptrace, "
            "dumpable again, mount, setuid)"]


def apply(plan: dict, keep_fds: set[int], parent: int) -> tuple[list[str], str]:
    """Run every step the plan and the privileges allow; return what is active, and the
    folder the student's code starts in (its only writable place when isolated)."""
    active = []
    scratch = plan.get("scratch") or "/tmp"
    root = os.geteuid() == 0
    if root and plan.get("namespaces", True):
        active += isolate(plan)
        scratch = "/tmp/work"
    if cgroups.joined():
        active.append("memory (all of it: heap, shared mappings, tmpfs) and process count capped by cgroups")
    close_inherited_fds(keep_fds)
    active.append("grader's descriptors closed")
    active += set_limits(plan)
    if root and plan.get("uid"):
        active += drop_privileges(int(plan["uid"]))
    watch_parent(parent)
    active += no_new_privileges()
    if plan.get("seccomp", True):
        try:
            active += install_seccomp()
        except (ImportError, OSError) as exc:  # no libseccomp on this machine: say so, go on
            active.append(f"no seccomp filter ({type(exc).__name__}: {exc})")
    return active, scratch
