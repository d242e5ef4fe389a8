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
import os
import resource
import signal
import socket

_libc = ctypes.CDLL(None, use_errno=True)

CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWNET = 0x00020000, 0x08000000, 0x40000000
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


def isolate(plan: dict) -> list[str]:
    """Root only: private network, IPC and mount namespaces; fresh tmpfs where students may write;
    empty read-only tmpfs over the solutions, the suites and the other submissions."""
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWNET), "unshare")
    _mount("none", "/", None, MS_REC | MS_PRIVATE)  # our mounts must not leak to the host
    size = f"size={int(plan.get('tmpfs_bytes', 64 << 20))},mode=1777"
    for path in ("/tmp", "/var/tmp", "/dev/shm"):
        if os.path.isdir(path):
            _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, size)
    for path in plan.get("hide", []):
        if os.path.isdir(path):
            _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV | MS_RDONLY, "size=4k,mode=000")
    os.makedirs("/tmp/work", mode=0o700)
    if plan.get("uid"):
        os.chown("/tmp/work", int(plan["uid"]), int(plan["uid"]))
    return ["network namespace (no network)", "IPC namespace", "mount namespace with private /tmp, /var/tmp, /dev/shm",
            "solutions, suites and other submissions hidden"]


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
    """Die with the zygote. Set after setuid, which clears it; then close the race."""
    _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PDEATHSIG)")
    if os.getppid() != parent:
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
)


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
    for name in ("tgkill", "rt_tgsigqueueinfo", "rt_sigqueueinfo"):
        f.add_rule(sc.ERRNO(errno.EPERM), name, sc.Arg(0, sc.NE, os.getpid()))
    f.load()
    return ["seccomp filter (no fork, exec, network sockets, signals to other processes, ptrace, mount, setuid)"]


def apply(plan: dict, keep_fds: set[int], parent: int) -> tuple[list[str], str]:
    """Run every step the plan and the privileges allow; return what is active, and the
    folder the student's code starts in (its only writable place when isolated)."""
    active = []
    scratch = plan.get("scratch") or "/tmp"
    root = os.geteuid() == 0
    if root and plan.get("namespaces", True):
        active += isolate(plan)
        scratch = "/tmp/work"
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
