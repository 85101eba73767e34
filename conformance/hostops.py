"""Host-side actions the harness performs itself (not through a runtime): mounts, SysV IPC
objects, POSIX mqueues, and short-lived children that join a container's namespaces.

Why: several behaviours are checked by changing the host (a mount after start, a shm
segment) or by acting from inside a container's namespace without relying on the runtime's
exec. ctypes keeps this free of extra tools and of subprocess.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import functools
import json
import os
import platform
import select
import signal
import struct
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
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


# ---------------------------------------------------------------------------- SysV IPC

#: The suite's SysV IPC keys: 0x436f0000..0x436fffff ("Co" and 16 bits). Tests take their
#: keys from `Workspace.ipc_key()`, so the session's leak check can find what it left.
CONFORM_KEYS = range(0x436F0000, 0x43700000)
SYSV_KINDS = ("shm", "sem", "msg")


def sysv_objects(kind: str, text: str | None = None) -> list[tuple[int, int]]:
    """(key, id) of every SysV ``kind`` (shm, sem, msg) object in /proc/sysvipc/<kind> of
    this process's ipc namespace (or of ``text``, that file's content)."""
    if text is None:
        try:
            with open(f"/proc/sysvipc/{kind}") as f:
                text = f.read()
        except OSError:
            return []
    out = []
    for line in text.splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 2 and cols[0].lstrip("-").isdigit() and cols[1].isdigit():
            out.append((int(cols[0]) & 0xFFFFFFFF, int(cols[1])))
    return out


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


def msg_create(key: int) -> int:
    """A new SysV message queue; returns its id."""
    libc = _libc()
    return _check(
        "msgget", libc.msgget(ctypes.c_int(key), ctypes.c_int(IPC_CREAT | IPC_EXCL | 0o600))
    )


def msg_remove(msqid: int) -> None:
    _check("msgctl IPC_RMID", _libc().msgctl(ctypes.c_int(msqid), IPC_RMID, None))


def sem_create(key: int, nsems: int = 1) -> int:
    """A new SysV semaphore set; returns its id."""
    libc = _libc()
    return _check(
        "semget",
        libc.semget(
            ctypes.c_int(key), ctypes.c_int(nsems), ctypes.c_int(IPC_CREAT | IPC_EXCL | 0o600)
        ),
    )


def sem_remove(semid: int) -> None:
    _check("semctl IPC_RMID", _libc().semctl(ctypes.c_int(semid), 0, IPC_RMID))


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


# ---------------------------------------------------------------------------- mount namespaces

#: listmount(2)/statmount(2) (Linux 6.8; mounts of another namespace, by its id, since 6.11):
#: the same numbers wherever the unified syscall table is used.
SYSCALLS = {"x86_64": (457, 458), "aarch64": (457, 458), "riscv64": (457, 458)}
NS_GET_MNTNS_ID = 0x8008B705  # _IOR(0xb7, 5, __u64)
LSMT_ROOT = 0xFFFF_FFFF_FFFF_FFFF
STATMOUNT_MASK = 0x1 | 0x2 | 0x8 | 0x10 | 0x20  # sb basic, mnt basic, root, point, fs type
STATMOUNT_STR = 512  # offset of the strings after struct statmount's fixed part


@dataclass(frozen=True)
class NsMount:
    """One mount of a mount namespace, as statmount(2) tells it."""

    mnt_id: int  # 64-bit unique id
    old_id: int  # the id in /proc/<pid>/mountinfo
    dev: str  # major:minor of the filesystem
    root: str  # the mount's root within its filesystem
    mount_point: str  # relative to the namespace's first mount
    fstype: str


def _syscalls() -> tuple[int, int]:
    numbers = SYSCALLS.get(platform.machine())
    if numbers is None:
        raise OSError(errno.ENOSYS, f"listmount(2) number unknown on {platform.machine()}")
    return numbers


def mount_namespace_id(pid: int | str) -> int:
    """The 64-bit id of ``pid``'s mount namespace (NS_GET_MNTNS_ID, Linux 6.11)."""
    import fcntl

    fd = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    try:
        buf = bytearray(8)
        fcntl.ioctl(fd, NS_GET_MNTNS_ID, buf)
    finally:
        os.close(fd)
    return int(struct.unpack("Q", buf)[0])


def _mnt_id_req(mnt_id: int, param: int, ns_id: int) -> bytes:
    return struct.pack("IIQQQ", 32, 0, mnt_id, param, ns_id)


def namespace_mounts(pid: int | str) -> list[NsMount]:
    """EVERY mount of ``pid``'s mount namespace, also those outside its root directory, which
    /proc/<pid>/mountinfo leaves out (an old root left below a chroot). OSError (ENOSYS,
    EINVAL, ENOTTY...) where the kernel cannot list another namespace's mounts."""
    statmount, listmount = _syscalls()
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    ns_id = mount_namespace_id(pid)
    ids: list[int] = []
    batch = (ctypes.c_uint64 * 512)()
    last = 0
    while True:
        req = _mnt_id_req(LSMT_ROOT, last, ns_id)
        n = _check(
            "listmount",
            libc.syscall(
                ctypes.c_long(listmount), req, batch, ctypes.c_size_t(len(batch)), ctypes.c_uint(0)
            ),
        )
        ids += batch[:n]
        if n < len(batch):
            break
        last = batch[n - 1]
    out = []
    buf = ctypes.create_string_buffer(1 << 16)
    for mnt_id in ids:
        req = _mnt_id_req(mnt_id, STATMOUNT_MASK, ns_id)
        rc = libc.syscall(
            ctypes.c_long(statmount), req, buf, ctypes.c_size_t(len(buf)), ctypes.c_uint(0)
        )
        if rc < 0 and ctypes.get_errno() == errno.ENOENT:
            continue  # unmounted since it was listed
        _check("statmount", rc)
        raw = buf.raw
        major, minor = struct.unpack_from("II", raw, 16)
        (fs_type,) = struct.unpack_from("I", raw, 36)
        (old_id,) = struct.unpack_from("I", raw, 56)
        root, point = struct.unpack_from("II", raw, 104)

        def text(off: int, raw: bytes = raw) -> str:
            return raw[STATMOUNT_STR + off :].split(b"\0", 1)[0].decode(errors="replace")

        out.append(
            NsMount(mnt_id, old_id, f"{major}:{minor}", text(root), text(point), text(fs_type))
        )
    return out


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
