"""Mount sources opened on the host side, before the container's user namespace.

Inside a user namespace the container's root is an unprivileged host uid: it
cannot look up a path whose parent is a 0700 root-owned directory (what
`mktemp -d` makes), so a bind source or a state root there fails with EACCES.
runc >= 1.2 and crun open such sources while still host root and only attach
them inside. So does rref: the monitor clones each bind source into a detached
mount (open_tree(OPEN_TREE_CLONE)) and opens the overlay's directories with
O_PATH; the init attaches the clones with move_mount and names the overlay's
directories as /proc/self/fd/N, which needs no search permission on parents.
"""

from __future__ import annotations

import ctypes
import os

from .errors import EXIT_RUNTIME, RrefError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .spec import Spec

_libc = ctypes.CDLL(None, use_errno=True)
_OPEN_TREE, _MOVE_MOUNT = 428, 429  # the same number on every architecture
OPEN_TREE_CLONE = 1
AT_FDCWD = -100
AT_RECURSIVE = 0x8000
MOVE_MOUNT_F_EMPTY_PATH = 0x4


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def open_tree(path: str, recursive: bool) -> int:
    flags = OPEN_TREE_CLONE | os.O_CLOEXEC | (AT_RECURSIVE if recursive else 0)
    fd = _libc.syscall(_OPEN_TREE, AT_FDCWD, os.fsencode(path), ctypes.c_uint(flags))
    return _check(fd, f"open_tree {path}")


def move_mount(fd: int, target: str) -> None:
    ret = _libc.syscall(
        _MOVE_MOUNT,
        fd,
        b"",
        AT_FDCWD,
        os.fsencode(target),
        ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH),
    )
    _check(ret, f"move_mount on {target}")


class HostSources:
    """What the monitor prepared for one container: bind clones by mount index (fds to
    keep open in the init, closed after the spawn), and the overlay relative to `base`.

    The init starts in `base` (the state root, entered while still host root); a new
    mount namespace carries the working directory over to its copy of the mount, so
    the overlay's directories and target are reached from there, never through the
    0700 directories above the root.
    """

    def __init__(self, base: str) -> None:
        self.base = base
        self.binds: dict[int, int] = {}
        self.overlay: str | None = None
        self.target: str | None = None  # the rootfs, relative to `base`
        self.fds: list[int] = []

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds.clear()


def _is_bind(m: dict[str, Any]) -> bool:
    opts = m.get("options", [])
    return m.get("type") == "bind" or "bind" in opts or "rbind" in opts


def _below(path: str, base: str) -> str:
    """`path` relative to `base` when it lies under it, else unchanged."""
    rel = os.path.relpath(path, base)
    return path if rel.startswith("..") else rel


def _relative_overlay(options: str, base: str) -> str:
    out = []
    for opt in options.split(","):
        key, eq, value = opt.partition("=")
        if key in ("lowerdir", "upperdir", "workdir") and eq:
            value = ":".join(_below(d, base) for d in value.split(":"))
        out.append(f"{key}{eq}{value}")
    return ",".join(out)


def open_sources(spec: Spec, overlay: str | None, base: str) -> HostSources:
    """Prepare the container's mount sources as host root (call before spawning)."""
    src = HostSources(os.path.abspath(base))
    root = spec["root"]["path"]
    if overlay and not os.path.relpath(root, src.base).startswith(".."):
        src.overlay = _relative_overlay(overlay, src.base)
        src.target = _below(root, src.base)
    try:
        for i, m in enumerate(spec.get("mounts", [])):
            if not _is_bind(m):
                continue
            try:
                fd = open_tree(m["source"], "rbind" in m.get("options", []))
            except OSError as e:
                raise RrefError(
                    f"bind source {m['source']}: {os.strerror(e.errno or 0)}", EXIT_RUNTIME
                ) from None
            src.fds.append(fd)
            src.binds[i] = fd
    except BaseException:
        src.close()
        raise
    return src
