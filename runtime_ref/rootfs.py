"""Root filesystem setup inside the container's mount namespace.

Runs in the container's init before the user program: mounts the rootfs
(overlay or bind), the spec's mounts (every target resolved inside the
rootfs, so a symlink cannot make a mount land outside it), a minimal /dev,
then pivot_root with the old root detached, then masked and read-only paths.
"""

from __future__ import annotations

import os
import stat

from . import syscalls as sc
from .spec import ANN_OVERLAY

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from .mountsrc import HostSources
    from .spec import Spec

_FLAGS = {
    "ro": (sc.MS_RDONLY, True),
    "rw": (sc.MS_RDONLY, False),
    "nosuid": (sc.MS_NOSUID, True),
    "suid": (sc.MS_NOSUID, False),
    "nodev": (sc.MS_NODEV, True),
    "dev": (sc.MS_NODEV, False),
    "noexec": (sc.MS_NOEXEC, True),
    "exec": (sc.MS_NOEXEC, False),
    "bind": (sc.MS_BIND, True),
    "rbind": (sc.MS_BIND | sc.MS_REC, True),
    "strictatime": (sc.MS_STRICTATIME, True),
    "relatime": (1 << 21, True),
    "noatime": (1024, True),
    "nodiratime": (2048, True),
}
_PROPAGATION = {
    "private": sc.MS_PRIVATE,
    "rprivate": sc.MS_PRIVATE | sc.MS_REC,
    "slave": sc.MS_SLAVE,
    "rslave": sc.MS_SLAVE | sc.MS_REC,
    "shared": 1 << 20,
    "rshared": (1 << 20) | sc.MS_REC,
}
# statvfs flags that must survive a read-only remount (locked in user namespaces).
_KEEP_ON_REMOUNT = sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC | 1024 | 2048 | (1 << 21)


class RootfsError(Exception):
    """A mount the spec asks for cannot be made safely."""


def parse_options(options: list[str]) -> tuple[int, int, str]:
    """Split OCI mount options into (flags, propagation flags, data string)."""
    flags = prop = 0
    data: list[str] = []
    for opt in options:
        if opt in _FLAGS:
            bit, on = _FLAGS[opt]
            flags = flags | bit if on else flags & ~bit
        elif opt in _PROPAGATION:
            prop |= _PROPAGATION[opt]
        else:
            data.append(opt)
    return flags, prop, ",".join(data)


def secure_join(root: str, path: str) -> str:
    """Resolve `path` as if `root` were `/`: symlinks and `..` never leave `root`."""
    root = os.path.abspath(root)
    parts = [p for p in path.split("/") if p]
    resolved: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == ".":
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            resolved.append(part)
            continue
        if stat.S_ISLNK(st.st_mode):
            hops += 1
            if hops > 255:
                raise RootfsError(f"too many levels of symbolic links in {path}")
            link = os.readlink(candidate)
            if link.startswith("/"):
                resolved = []
            parts = [p for p in link.split("/") if p] + parts
            continue
        resolved.append(part)
    return os.path.join(root, *resolved)


def _mkdir_p(path: str) -> None:
    os.makedirs(path, mode=0o755, exist_ok=True)


def _ensure_target(target: str, source_is_file: bool) -> None:
    if os.path.lexists(target):
        return
    _mkdir_p(os.path.dirname(target))
    if source_is_file:
        os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
    else:
        os.mkdir(target, 0o755)


def _remount_ro(target: str, extra: int = 0) -> None:
    keep = os.statvfs(target).f_flag & _KEEP_ON_REMOUNT
    sc.mount(None, target, None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | keep | extra)


def mount_cgroupfs(target: str, flags: int) -> None:
    """/sys/fs/cgroup as the container sees it: its own cgroup (namespace) as the root.

    v1/hybrid: a tmpfs holding one mount per hierarchy (plus `unified`), like the
    host's layout; pure v2: one cgroup2 mount. Read-only unless asked otherwise.
    """
    from .cgroups import parse_mountinfo

    with open("/proc/self/mountinfo") as f:
        hierarchies = parse_mountinfo(f.read())
    _ensure_target(target, False)
    ro = flags & sc.MS_RDONLY
    base = (flags & ~sc.MS_RDONLY) | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC
    if all(h.version == 2 for h in hierarchies):
        sc.mount("cgroup2", target, "cgroup2", base | ro)
        return
    sc.mount("tmpfs", target, "tmpfs", base, "mode=755")
    for h in hierarchies:
        name = os.path.basename(h.mountpoint)
        sub = os.path.join(target, name)
        os.makedirs(sub, exist_ok=True)
        if h.version == 2:
            sc.mount("cgroup2", sub, "cgroup2", base | ro)
        else:
            sc.mount("cgroup", sub, "cgroup", base | ro, ",".join(sorted(h.controllers)))
    if ro:
        sc.mount(None, target, None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | base)


def mount_one(rootfs: str, m: dict[str, Any], source_fd: int = -1) -> None:
    """Make one spec mount; `source_fd`: the bind source as a detached clone the
    host opened (`mountsrc`), attached with move_mount instead of a path lookup."""
    flags, prop, data = parse_options(m.get("options", []))
    kind = m.get("type") or ("bind" if flags & sc.MS_BIND else "none")
    target = secure_join(rootfs, m["destination"])
    if kind == "cgroup":
        mount_cgroupfs(target, flags)
        return
    is_bind = bool(flags & sc.MS_BIND) or kind == "bind"
    if is_bind:
        source = m["source"]
        try:
            src_is_dir = stat.S_ISDIR(
                (os.fstat(source_fd) if source_fd >= 0 else os.stat(source)).st_mode
            )
        except OSError as e:
            raise RootfsError(f"bind source {source}: {e.strerror}") from None
        _ensure_target(target, not src_is_dir)
        if source_fd >= 0:
            from .mountsrc import move_mount

            move_mount(source_fd, target)
            os.close(source_fd)
        else:
            sc.mount(source, target, None, sc.MS_BIND | (flags & sc.MS_REC))
        if flags & ~(sc.MS_BIND | sc.MS_REC):
            if flags & sc.MS_RDONLY:
                _remount_ro(target, flags & ~(sc.MS_BIND | sc.MS_REC | sc.MS_RDONLY))
            else:
                sc.mount(
                    None,
                    target,
                    None,
                    sc.MS_BIND | sc.MS_REMOUNT | (flags & ~(sc.MS_BIND | sc.MS_REC)),
                )
    else:
        _ensure_target(target, False)
        copy_up = kind == "tmpfs" and "tmpcopyup" in m.get("options", [])
        if copy_up:
            data = ",".join(o for o in data.split(",") if o != "tmpcopyup")
            hidden = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        sc.mount(m.get("source") or kind, target, kind, flags, data or None)
        if copy_up:
            try:
                _copy_up(hidden, target)
            finally:
                os.close(hidden)
    if prop:
        sc.mount(None, target, None, prop)


def _copy_up(src_fd: int, dst: str) -> None:
    """runc's `tmpcopyup` (podman's --read-only tmpfs mounts): what the new tmpfs hides,
    copied into it with modes and owners. `src_fd` is the covered directory."""
    with os.scandir(src_fd) as it:
        entries = list(it)
    for e in entries:
        st = e.stat(follow_symlinks=False)
        out = os.path.join(dst, e.name)
        if stat.S_ISDIR(st.st_mode):
            os.mkdir(out)
            fd = os.open(e.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=src_fd)
            try:
                _copy_up(fd, out)
            finally:
                os.close(fd)
        elif stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(e.name, dir_fd=src_fd), out)
        elif stat.S_ISREG(st.st_mode):
            fd = os.open(e.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src_fd)
            try:
                with open(out, "xb") as f:
                    while chunk := os.read(fd, 1 << 20):
                        f.write(chunk)
            finally:
                os.close(fd)
        else:
            os.mknod(out, st.st_mode, st.st_rdev)
        os.chown(out, st.st_uid, st.st_gid, follow_symlinks=False)
        if not stat.S_ISLNK(st.st_mode):
            os.chmod(out, stat.S_IMODE(st.st_mode))


def make_devices(rootfs: str, spec: Spec) -> None:
    """mknod the spec's devices; in a user namespace (no mknod there) bind the host's."""
    dev = secure_join(rootfs, "/dev")
    userns = any(ns["type"] == "user" for ns in spec.get("linux", {}).get("namespaces", []))
    for d in spec.get("linux", {}).get("devices", []):
        path = secure_join(rootfs, d["path"])
        kind = stat.S_IFCHR if d.get("type", "c") == "c" else stat.S_IFBLK
        mode = d.get("fileMode", 0o666)
        if os.path.lexists(path):
            os.unlink(path)
        _mkdir_p(os.path.dirname(path))
        if userns:
            _ensure_target(path, True)
            sc.mount(d["path"], path, None, sc.MS_BIND)
            continue
        os.mknod(path, kind | mode, os.makedev(d["major"], d["minor"]))
        os.chmod(path, mode)
        os.chown(path, d.get("uid", 0), d.get("gid", 0))
    links = {
        "fd": "/proc/self/fd",
        "stdin": "/proc/self/fd/0",
        "stdout": "/proc/self/fd/1",
        "stderr": "/proc/self/fd/2",
    }
    if os.path.isdir(os.path.join(dev, "pts")):
        links["ptmx"] = "pts/ptmx"
    for name, to in links.items():
        p = os.path.join(dev, name)
        if not os.path.lexists(p):
            os.symlink(to, p)


def pivot(rootfs: str) -> None:
    """pivot_root(".", ".") then detach the old root, as runc does: no put_old dir needed."""
    old = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    new = os.open(rootfs, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fchdir(new)
        sc.pivot_root(".", ".")
        os.fchdir(old)
        sc.mount(None, ".", None, sc.MS_SLAVE | sc.MS_REC)
        sc.umount2(".", sc.MNT_DETACH)
    finally:
        os.close(old)
        os.close(new)
    os.chdir("/")


def mask_paths(paths: list[str]) -> None:
    for p in paths:
        if not os.path.lexists(p):
            continue
        if os.path.isdir(p) and not os.path.islink(p):
            sc.mount("tmpfs", p, "tmpfs", sc.MS_RDONLY)
        else:
            sc.mount("/dev/null", p, None, sc.MS_BIND)


def readonly_paths(paths: list[str]) -> None:
    for p in paths:
        if not os.path.lexists(p):
            continue
        sc.mount(p, p, None, sc.MS_BIND | sc.MS_REC)
        _remount_ro(p, sc.MS_REC)


def setup(
    spec: Spec,
    workdir: str,
    sources: HostSources | None = None,
    before_pivot: Callable[[str], None] | None = None,
) -> None:
    """Everything between unshare(CLONE_NEWNS) and the final chdir; `sources`: what the
    host opened before the user namespace (bind clones, the overlay's directory fds);
    `before_pivot(root)`: the OCI front's moment for sysctls and createContainer hooks,
    with every mount made and the host's paths still reachable."""
    root = spec["root"]["path"]
    sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
    overlay = spec.get("annotations", {}).get(ANN_OVERLAY)
    if sources is not None and sources.target:
        # relative to the working directory the host chose (see mountsrc); from then on
        # the rootfs is reached through the magic link, not the path above the state root
        if sources.overlay:
            sc.mount("overlay", sources.target, "overlay", 0, sources.overlay)
        else:  # a bundle's rootfs, used as it is
            sc.mount(sources.target, sources.target, None, sc.MS_BIND | sc.MS_REC)
        os.chdir(sources.target)
        root = "/proc/self/cwd"
    elif overlay:
        sc.mount("overlay", root, "overlay", 0, overlay)
    else:
        sc.mount(root, root, None, sc.MS_BIND | sc.MS_REC)
    binds = sources.binds if sources is not None else {}
    for i, m in enumerate(spec.get("mounts", [])):
        mount_one(root, m, binds.get(i, -1))
    make_devices(root, spec)
    wd = secure_join(root, workdir)
    if not os.path.isdir(wd):
        _mkdir_p(wd)
    if before_pivot is not None:
        before_pivot(root)
    pivot(root)
    linux = spec.get("linux", {})
    mask_paths(linux.get("maskedPaths", []))
    readonly_paths(linux.get("readonlyPaths", []))
    if spec["root"].get("readonly"):
        _remount_ro("/")
