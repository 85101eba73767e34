"""One cgroup interface over v1 and v2 hierarchies (hybrid hosts mix both).

`detect()` reads the host's cgroup mounts once; `Cgroup` is one container's
set of directories (one per v1 hierarchy, one in the unified tree) created
below the cgroup rref itself runs in, so nothing outside our subtree is touched.
"""

from __future__ import annotations

import errno
import os
import time


class Hierarchy:
    """A mounted cgroup hierarchy: version, controllers it serves, and where."""

    def __init__(self, version: int, mountpoint: str, root: str,
                 controllers: frozenset[str]) -> None:
        self.version = version
        self.mountpoint = mountpoint
        self.root = root  # the mount's root within the hierarchy (mountinfo field 4)
        self.controllers = controllers

    def __repr__(self) -> str:
        return f"Hierarchy(v{self.version}, {self.mountpoint}, {sorted(self.controllers)})"

    @property
    def key(self) -> str:
        return "unified" if self.version == 2 else ",".join(sorted(self.controllers))


def parse_mountinfo(text: str) -> list[Hierarchy]:
    out: list[Hierarchy] = []
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        fields, rfields = left.split(), right.split()
        if len(fields) < 5 or len(rfields) < 3:
            continue
        fstype, opts = rfields[0], rfields[2].split(",")
        if fstype == "cgroup2":
            out.append(Hierarchy(2, fields[4], fields[3], frozenset()))
        elif fstype == "cgroup":
            ctrls = frozenset(o for o in opts if o not in ("rw", "ro") and "=" not in o
                              and o not in ("relatime", "noatime", "nosuid", "nodev",
                                            "noexec", "clone_children", "noprefix",
                                            "xattr", "cpuset_v2_mode"))
            if ctrls:  # named hierarchies (name=systemd) serve no controller
                out.append(Hierarchy(1, fields[4], fields[3], ctrls))
    return out


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """Map hierarchy key ("unified" or sorted controller list) -> own path."""
    own: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, ctrls, path = parts
        if ctrls == "":
            own["unified"] = path
        elif not ctrls.startswith("name="):
            own[",".join(sorted(ctrls.split(",")))] = path
    return own


class Layout:
    """The host's hierarchies and this process's own cgroup in each."""

    def __init__(self, hierarchies: list[Hierarchy], own: dict[str, str]) -> None:
        self.hierarchies = hierarchies
        self.own = own

    @property
    def mode(self) -> str:
        v1 = any(h.version == 1 for h in self.hierarchies)
        v2 = any(h.version == 2 for h in self.hierarchies)
        return "hybrid" if v1 and v2 else ("v1" if v1 else "v2")

    def unified(self) -> Hierarchy | None:
        return next((h for h in self.hierarchies if h.version == 2), None)

    def v2_controllers(self) -> frozenset[str]:
        h = self.unified()
        if h is None:
            return frozenset()
        try:
            with open(os.path.join(h.mountpoint, "cgroup.controllers")) as f:
                return frozenset(f.read().split())
        except OSError:
            return frozenset()

    def driver_for(self, controller: str) -> int | None:
        """Which version enforces a controller here (v1 wins where both claim it)."""
        if any(h.version == 1 and controller in h.controllers for h in self.hierarchies):
            return 1
        return 2 if controller in self.v2_controllers() else None


_layout: Layout | None = None


def detect() -> Layout:
    global _layout
    if _layout is None:
        with open("/proc/self/mountinfo") as f:
            hier = parse_mountinfo(f.read())
        with open("/proc/self/cgroup") as f:
            own = parse_proc_cgroup(f.read())
        # one mount per hierarchy: keep the first (the host's /sys/fs/cgroup ones)
        seen: dict[str, Hierarchy] = {}
        for h in hier:
            seen.setdefault(h.key, h)
        _layout = Layout(list(seen.values()), own)
    return _layout


def _host_dir(h: Hierarchy, path: str) -> str:
    rel = os.path.relpath(path, h.root) if path.startswith(h.root) else path.lstrip("/")
    return os.path.normpath(os.path.join(h.mountpoint, rel))


class Cgroup:
    """A container's cgroup directories, by hierarchy key -> absolute host path."""

    def __init__(self, paths: dict[str, str] | None = None) -> None:
        self.paths: dict[str, str] = dict(paths or {})

    @classmethod
    def plan(cls, name: str, parent: str | None = None, layout: Layout | None = None) -> Cgroup:
        layout = layout or detect()
        paths: dict[str, str] = {}
        for h in layout.hierarchies:
            base = parent if parent is not None else layout.own.get(h.key, "/")
            paths[h.key] = os.path.join(_host_dir(h, base), name)
        return cls(paths)

    def create(self) -> None:
        made: list[str] = []
        try:
            for key, path in self.paths.items():
                os.makedirs(path, exist_ok=True)
                made.append(path)
                if "cpuset" in key.split(","):
                    _inherit_cpuset(path)
        except OSError:
            for p in reversed(made):
                _rmdir(p)
            raise

    def procs_files(self) -> list[str]:
        return [os.path.join(p, "cgroup.procs") for p in self.paths.values()]

    def pids(self) -> set[int]:
        out: set[int] = set()
        for f in self.procs_files():
            try:
                with open(f) as fh:
                    out.update(int(x) for x in fh.read().split())
            except OSError:
                pass
        return out

    def exists(self) -> list[str]:
        return [p for p in self.paths.values() if os.path.isdir(p)]

    def remove(self, timeout: float = 5.0) -> list[str]:
        """rmdir every directory, retrying while exiting tasks drain; return leftovers."""
        deadline = time.monotonic() + timeout
        left = list(self.paths.values())
        while left:
            left = [p for p in left if not _rmdir(p)]
            if not left or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        return left


def _rmdir(path: str) -> bool:
    try:
        os.rmdir(path)
    except FileNotFoundError:
        return True
    except OSError as e:
        if e.errno in (errno.EBUSY, errno.ENOTEMPTY):
            return False
        raise
    return True


def _inherit_cpuset(path: str) -> None:
    """v1 cpuset children start empty and refuse tasks until cpus/mems are copied down."""
    parent = os.path.dirname(path)
    for f in ("cpuset.cpus", "cpuset.mems"):
        mine = os.path.join(path, f)
        with open(mine) as fh:
            if fh.read().strip():
                continue
        with open(os.path.join(parent, f)) as fh:
            value = fh.read().strip()
        with open(mine, "w") as fh:
            fh.write(value)
