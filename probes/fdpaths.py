"""What /proc says about a traced task: comm, parent, namespaces, cgroup, fd paths.

Why: both backends fill the same event fields from user space (BPF cannot reliably walk
6.1-layout kernel structs on this kernel, ptrace cannot see them at all). Every reader
returns an empty value for a task that is already gone instead of raising.
"""

from __future__ import annotations

import functools
import os

NAMESPACES = ("cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts")
AT_FDCWD = -100


def _status(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def tgid(tid: int) -> int:
    """The thread-group id (host pid) of ``tid``; 0 when it is gone."""
    return _status(tid, b"Tgid:")


def ppid(pid: int) -> int:
    """The host pid of the parent of ``pid``; 0 when unknown."""
    return _status(pid, b"PPid:")


def comm(tid: int) -> str:
    try:
        with open(f"/proc/{tid}/comm", "rb") as f:
            return f.read().rstrip(b"\n").decode(errors="replace")
    except OSError:
        return ""


def namespaces(pid: int) -> dict[str, int]:
    """Namespace type -> inode for ``pid`` (those readable; {} when it is gone)."""
    out: dict[str, int] = {}
    for ns in NAMESPACES:
        try:
            out[ns] = os.stat(f"/proc/{pid}/ns/{ns}").st_ino
        except OSError:
            continue
    return out


@functools.cache
def cgroup2_root() -> str | None:
    """Where the cgroup2 (unified) hierarchy is mounted on this host, if anywhere."""
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                if right.split(" ", 1)[0] == "cgroup2":
                    return left.split()[4]
    except OSError:
        pass
    return None


@functools.cache
def cgroup_mounts() -> tuple[str, ...]:
    """Mount points of cgroup and cgroup2 filesystems in this mount namespace."""
    out: list[str] = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                if right.split(" ", 1)[0] in ("cgroup", "cgroup2"):
                    out.append(left.split()[4])
    except OSError:
        pass
    return tuple(out) or ("/sys/fs/cgroup",)


def cgroup_id(pid: int) -> int:
    """The cgroup2 id of ``pid`` (the inode of its unified-hierarchy directory), or 0.

    It is what `bpf_get_current_cgroup_id` returns for the same task.
    """
    root = cgroup2_root()
    if root is None:
        return 0
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            for line in f:
                if line.startswith("0::"):
                    return os.stat(root + line[3:].rstrip("\n")).st_ino
    except OSError:
        pass
    return 0


def on_cgroupfs(path: str | None) -> bool:
    """Whether ``path`` (absolute, as the task sees it) lies under a cgroup mount."""
    if path is None:
        return False
    if path.startswith("/sys/fs/cgroup"):
        return True
    return any(path == m or path.startswith(m + "/") for m in cgroup_mounts())


def fd_path(tid: int, fd: int) -> str | None:
    if fd < 0:
        return None
    try:
        return os.readlink(f"/proc/{tid}/fd/{fd}")
    except OSError:
        return None


def resolve_at(tid: int, dfd: int, path: str | None) -> str | None:
    """``path`` made absolute against ``dfd`` (AT_FDCWD: the task's cwd), as the task sees it."""
    if path is None:
        return None
    if path.startswith("/"):
        return path
    if dfd == AT_FDCWD:
        try:
            base = os.readlink(f"/proc/{tid}/cwd")
        except OSError:
            return None
    else:
        found = fd_path(tid, dfd)
        if found is None:
            return None
        base = found
    return base.rstrip("/") + "/" + path if path else base
