"""Paths of a traced task's fds and cwd, cgroup mounts, and its cgroup2 id, from /proc.

Why: the cgroup syscalls are recorded only when they touch a cgroup filesystem, which the
ptrace backend decides from where the task's fds point; the cgroup id is the one
`bpf_get_current_cgroup_id` gives the bcc backend. Readers return None/0 for a task that
is gone instead of raising.
"""

from __future__ import annotations

import functools
import os

AT_FDCWD = -100


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
