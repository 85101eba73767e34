"""Helpers for the fault tests: tiny tmpfs state roots and what a dead rref may leave.

A root on its own small tmpfs fills up for real (ENOSPC from the kernel), and
everything under it can be listed to prove a cleanup reclaimed it.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator

from conftest import Rref

# names of temporaries, current (owner pid + start) and the pid-only ones older code made
TEMP_NAME = re.compile(r"\.rref-tmp-|\.tmp[.-]\d+|^\.(commit|tmp|build|rref-view|rref-copy)-\d+")


@contextlib.contextmanager
def tmpfs_root(size: str = "16m") -> Iterator[Rref]:
    """An rref on a fresh tmpfs of `size`; every container removed and the tmpfs gone after."""
    root = tempfile.mkdtemp(prefix="rref-test-tmpfs-")
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "rref-test", root], check=True)
    r = Rref(root)
    try:
        yield r
    finally:
        ids = container_dirs(root)
        for cid in ids:
            r("rm", "-f", cid, check=False)
        r.cleanup()
        for cid in ids:  # a failing rm must not leak cgroups or processes either
            for cg in cgroups_of(cid):
                _kill_and_remove(cg)
        subprocess.run(["umount", "-l", root], check=False)
        os.rmdir(root)


def container_dirs(root: str) -> list[str]:
    try:
        return sorted(os.listdir(os.path.join(root, "containers")))
    except FileNotFoundError:
        return []


def temporaries(root: str) -> list[str]:
    """Every file or directory under `root` whose name marks it as a temporary."""
    found = []
    for dirpath, dirnames, files in os.walk(root):
        found += [os.path.join(dirpath, n) for n in dirnames + files if TEMP_NAME.search(n)]
    return found


def fill(path: str) -> None:
    """Write zeros into `path` until the filesystem under it has no byte left (ENOSPC)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 20, 65536, 4096, 1):
            chunk = b"\0" * size
            with contextlib.suppress(OSError):
                while os.write(fd, chunk):
                    pass
    finally:
        os.close(fd)
    st = os.statvfs(path)
    assert st.f_bavail == 0, f"{path}: {st.f_bavail} blocks still free"


def cgroups_of(cid: str) -> list[str]:
    found = []
    for dirpath, dirnames, _ in os.walk("/sys/fs/cgroup"):
        found += [f"{dirpath}/{d}" for d in dirnames if d == f"rref-{cid}"]
    return found


def _kill_and_remove(cgroup: str) -> None:
    import signal
    import time

    for _ in range(100):
        with contextlib.suppress(OSError), open(os.path.join(cgroup, "cgroup.procs")) as f:
            for pid in f.read().split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
        try:
            os.rmdir(cgroup)
            return
        except OSError:
            time.sleep(0.05)
