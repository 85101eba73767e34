"""Names for temporaries that say who owns them, so leftovers of a killed rref are found.

Every temporary file or tree rref makes under its root (a layer being staged,
a changeset tar, a build stage, a state file being replaced, a container
record being removed) is named `<base>.rref-tmp-<pid>-<start>-<rand>`: the
owner's pid and its start time (clock ticks since boot, so a reused pid does
not count as the owner). A later command, or `system prune`, calls `reclaim`
on a directory and removes every temporary whose owner is gone, detaching any
mount left below it first.
"""

from __future__ import annotations

import contextlib
import os

from . import procinfo

MARK = ".rref-tmp-"
_OWNER = r"\.rref-tmp-(\d+)-(\d+)-[0-9a-f]{8}"
# names used before temporaries carried their owner's start time (pid only)
_LEGACY = r"^\.(?:commit|tmp|build|rref-view|rref-copy)-(\d+)(?:[-.]|$)"
_self: tuple[int, int] | None = None


def _me() -> tuple[int, int]:
    """(pid, start time) of this process, cached per pid (a fork gets its own)."""
    global _self
    pid = os.getpid()
    if _self is None or _self[0] != pid:
        _self = (pid, procinfo.start_time(pid))
    return _self


def name(base: str = "") -> str:
    """A fresh temporary name owned by this process: `base` plus the owner mark."""
    pid, start = _me()
    return f"{base}{MARK}{pid}-{start}-{os.urandom(4).hex()}"


def path(directory: str, base: str = "", suffix: str = "") -> str:
    return os.path.join(directory, name(base) + suffix)


def owner(entry: str) -> tuple[int, int] | None:
    """(pid, start) a temporary's name records (start 0: legacy, pid only); None: not one."""
    if MARK not in entry and not entry.startswith("."):
        return None
    import re  # only cleanup paths parse names; `run` never does

    m = re.search(_OWNER, entry)
    if m:
        return int(m.group(1)), int(m.group(2))
    m = re.match(_LEGACY, entry)
    if m:
        return int(m.group(1)), 0
    return None


def is_stale(entry: str) -> bool:
    """A temporary whose owner is no longer running."""
    who = owner(entry)
    return who is not None and not procinfo.alive(*who)


def stale(directory: str) -> list[str]:
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    return [os.path.join(directory, n) for n in names if is_stale(n)]


def _detach_mounts_below(top: str) -> None:
    """Unmount (lazily) whatever a killed owner left mounted under `top`, deepest first."""
    from . import syscalls as sc

    prefix = top.rstrip("/") + "/"
    try:
        with open("/proc/self/mountinfo") as f:
            points = [ln.split()[4] for ln in f]
    except OSError:
        return
    points = [p.replace("\\040", " ") for p in points]
    for p in sorted((p for p in points if p == top or p.startswith(prefix)), reverse=True):
        with contextlib.suppress(OSError):
            sc.umount2(p, sc.MNT_DETACH)


def remove(target: str) -> None:
    """Remove one temporary (file or tree), never following symlinks, mounts detached."""
    from .rmtree import remove_tree

    try:
        if os.path.isdir(target) and not os.path.islink(target):
            _detach_mounts_below(target)
            remove_tree(target)
        else:
            os.unlink(target)
    except FileNotFoundError:
        pass


def reclaim(*directories: str) -> tuple[int, int]:
    """Remove the stale temporaries in each directory; return (count, bytes freed)."""
    count = freed = 0
    for d in directories:
        for t in stale(d):
            if os.path.isdir(t) and not os.path.islink(t):
                _detach_mounts_below(t)
            size = disk_usage(t)
            try:
                remove(t)
            except OSError:
                continue
            count += 1
            freed += size
    return count, freed


def disk_usage(top: str) -> int:
    """Bytes allocated under `top` (a file or a tree)."""
    try:
        st = os.lstat(top)
    except OSError:
        return 0
    if not os.path.isdir(top) or os.path.islink(top):
        return st.st_blocks * 512
    return tree_bytes(top)


def tree_bytes(top: str) -> int:
    """Bytes allocated by the files under a directory, hard links counted once."""
    total, seen = 0, set()
    for dirpath, _, files in os.walk(top):
        for f in files:
            try:
                st = os.lstat(os.path.join(dirpath, f))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total
