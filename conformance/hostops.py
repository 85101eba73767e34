"""Host-side actions the harness performs itself (not through a runtime): mounts, SysV shm,
POSIX mqueues, and short-lived children that join a container's namespaces.

Why: several behaviours are checked by changing the host (a mount after start, a shm
segment) or by acting from inside a container's namespace without relying on the runtime's
exec. ctypes keeps this free of extra tools and of subprocess.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import json
import os
import select
import signal
import time
import traceback
from collections.abc import Callable
from typing import Any

MNT_DETACH = 2
IPC_CREAT = 0o1000
IPC_EXCL = 0o2000
IPC_RMID = 0
O_RDWR = 0o2
O_CREAT = 0o100

CLONE_FLAGS = {
    "mnt": 0x00020000,
    "uts": 0x04000000,
    "ipc": 0x08000000,
    "net": 0x40000000,
    "pid": 0x20000000,
    "user": 0x10000000,
    "cgroup": 0x02000000,
}


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _check(what: str, rc: int) -> int:
    if rc < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return rc


def mount(source: str, target: str, fstype: str, flags: int = 0, data: str = "") -> None:
    _check(
        f"mount {fstype} on {target}",
        _libc().mount(
            source.encode(),
            target.encode(),
            fstype.encode(),
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
    )


def umount(target: str, detach: bool = True) -> None:
    _check(f"umount {target}", _libc().umount2(target.encode(), MNT_DETACH if detach else 0))


def mount_overlay(lower: str, upper: str, work: str, merged: str) -> None:
    mount("overlay", merged, "overlay", 0, f"lowerdir={lower},upperdir={upper},workdir={work}")


def is_mountpoint(path: str) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


# ---------------------------------------------------------------------------- SysV shm


def shm_create(key: int, size: int) -> int:
    """A new SysV shm segment in this process's ipc namespace; returns its id."""
    libc = _libc()
    libc.shmget.restype = ctypes.c_int
    return _check(
        "shmget",
        libc.shmget(
            ctypes.c_int(key), ctypes.c_size_t(size), ctypes.c_int(IPC_CREAT | IPC_EXCL | 0o600)
        ),
    )


def shm_remove(shmid: int) -> None:
    _check("shmctl IPC_RMID", _libc().shmctl(ctypes.c_int(shmid), IPC_RMID, None))


def shm_keys_sizes(text: str) -> dict[int, int]:
    """key -> size from /proc/sysvipc/shm text."""
    out = {}
    for line in text.splitlines()[1:]:
        f = line.split()
        if len(f) >= 4:
            out[int(f[0])] = int(f[3])
    return out


# ---------------------------------------------------------------------------- POSIX mqueue


def mq_create(name: str) -> None:
    """Create (and close) a POSIX message queue ``name`` ("/x") in this ipc namespace."""
    libc = _libc()
    libc.mq_open.restype = ctypes.c_int
    fd = _check(f"mq_open {name}", libc.mq_open(name.encode(), O_RDWR | O_CREAT, 0o600, None))
    libc.mq_close(fd)


def mq_exists(name: str) -> bool:
    libc = _libc()
    libc.mq_open.restype = ctypes.c_int
    fd = libc.mq_open(name.encode(), 0)  # O_RDONLY
    if fd < 0:
        return False
    libc.mq_close(fd)
    return True


def mq_unlink(name: str) -> None:
    with contextlib.suppress(OSError):
        _check(f"mq_unlink {name}", _libc().mq_unlink(name.encode()))


# ---------------------------------------------------------------------------- namespaces


def run_in_namespaces(
    pid: int, kinds: list[str], fn: Callable[[], Any], timeout: float = 10.0
) -> Any:
    """Run ``fn`` in a forked child that joined the ``kinds`` namespaces of ``pid``.

    The result must be JSON-serialisable; an exception in the child is raised here as
    RuntimeError with the child's traceback. The child never returns into pytest.
    """
    fds = [os.open(f"/proc/{pid}/ns/{k}", os.O_RDONLY | os.O_CLOEXEC) for k in kinds]
    libc = _libc()
    r, w = os.pipe()
    try:
        child = os.fork()
        if child == 0:  # pragma: no cover - runs in the child
            code = 0
            try:
                os.close(r)
                for k, fd in zip(kinds, fds, strict=True):
                    _check(f"setns {k}", libc.setns(fd, CLONE_FLAGS[k]))
                payload = {"ok": fn()}
            except BaseException:
                payload = {"error": traceback.format_exc()}
                code = 1
            try:
                os.write(w, json.dumps(payload).encode())
            finally:
                os._exit(code)
        os.close(w)
        w = -1
        chunks = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([r], [], [], left)[0]:
                os.kill(child, signal.SIGKILL)
                os.waitpid(child, 0)
                raise TimeoutError(f"namespace helper for pid {pid} did not finish")
            data = os.read(r, 65536)
            if not data:
                break
            chunks.append(data)
        os.waitpid(child, 0)
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)
        for fd in fds:
            os.close(fd)
    payload = json.loads(b"".join(chunks) or b"{}")
    if "error" in payload:
        raise RuntimeError(f"in namespaces {kinds} of pid {pid}: {payload['error']}")
    return payload.get("ok")
