"""One cgroup interface over v1 and v2 hierarchies (hybrid hosts mix both).

`detect()` reads the host's cgroup mounts once; `Cgroup` is one container's
set of directories (one per v1 hierarchy, one in the unified tree) created
below the cgroup rref itself runs in, so nothing outside our subtree is touched.

Resource control takes the OCI runtime-spec `linux.resources` shape (plain
dicts).  Each controller is driven by the version that serves it here: v1 when
a v1 hierarchy has it (v1 wins on hybrid hosts, as `Layout.driver_for` says),
else the unified hierarchy.  The per-version code lives in `v1.py`/`v2.py` and
is imported only when a limit is applied or read; what both drivers and this
front share (errors, file access, value formats) is in `_files.py`, so the
import graph is front -> drivers -> _files with no way back.
"""

from __future__ import annotations

import errno
import os
import time

from .. import mountinfo
from ..errors import CgroupError
from ..resources import V2_CONTROLLER, by_controller, parse_cpuset
from ..resources import validate as check_limits
from ._files import (
    V2_LEAF,
    WAIT,
    CgroupUnsupported,
    device_rule,
    parse_flat_keyed,
    parse_int,
    parse_limit,
    read_value,
    write_value,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SIGKILL = 9  # signal.SIGKILL on Linux, without importing signal (and enum) at start-up

__all__ = [
    "WAIT",
    "Cgroup",
    "CgroupError",
    "CgroupUnsupported",
    "Hierarchy",
    "Layout",
    "detect",
    "device_rule",
    "parse_cpuset",
    "parse_flat_keyed",
    "parse_int",
    "parse_limit",
    "parse_mountinfo",
    "parse_proc_cgroup",
    "read_value",
    "validate",
    "write_value",
]


class Hierarchy:
    """A mounted cgroup hierarchy: version, controllers it serves, and where."""

    def __init__(
        self, version: int, mountpoint: str, root: str, controllers: frozenset[str]
    ) -> None:
        self.version = version
        self.mountpoint = mountpoint
        self.root = root  # the mount's root within the hierarchy (mountinfo field 4)
        self.controllers = controllers

    def __repr__(self) -> str:
        return f"Hierarchy(v{self.version}, {self.mountpoint}, {sorted(self.controllers)})"

    @property
    def key(self) -> str:
        return "unified" if self.version == 2 else ",".join(sorted(self.controllers))


_NOT_CONTROLLERS = frozenset(
    (
        "rw",
        "ro",
        "relatime",
        "noatime",
        "nosuid",
        "nodev",
        "noexec",
        "clone_children",
        "noprefix",
        "xattr",
        "cpuset_v2_mode",
    )
)


def parse_mountinfo(text: str) -> list[Hierarchy]:
    """The cgroup mounts in mountinfo `text`, as hierarchies (v1: by controllers)."""
    out: list[Hierarchy] = []
    for m in mountinfo.parse(text):
        if m.fstype == "cgroup2":
            out.append(Hierarchy(2, m.mountpoint, m.root, frozenset()))
        elif m.fstype == "cgroup":
            ctrls = frozenset(
                o for o in m.super_options if "=" not in o and o not in _NOT_CONTROLLERS
            )
            if ctrls:  # named hierarchies (name=systemd) serve no controller
                out.append(Hierarchy(1, m.mountpoint, m.root, ctrls))
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

    def __init__(
        self, paths: dict[str, str] | None = None, bases: dict[str, str] | None = None
    ) -> None:
        self.paths: dict[str, str] = dict(paths or {})
        # per hierarchy, the cgroup the container's one hangs below and that rref
        # must not write to (its own cgroup, or the parent it was given): only
        # directories strictly between it and the container's are ours to touch
        self.bases: dict[str, str] = dict(bases or {})

    @classmethod
    def plan(cls, name: str, parent: str | None = None, layout: Layout | None = None) -> Cgroup:
        layout = layout or detect()
        paths: dict[str, str] = {}
        bases: dict[str, str] = {}
        for h in layout.hierarchies:
            base = parent if parent is not None else layout.own.get(h.key, "/")
            if parent is None and h.version == 2 and os.path.basename(base) == V2_LEAF:
                base = os.path.dirname(base)  # rref moved the caller there: hang beside it
            bases[h.key] = _host_dir(h, base)
            paths[h.key] = os.path.join(bases[h.key], name)
        return cls(paths, bases)

    def create(self) -> None:
        made: list[str] = []
        try:
            for key, path in self.paths.items():
                new = _missing_dirs(path)
                for d in new:
                    os.mkdir(d)
                    made.append(d)
                if "cpuset" in key.split(","):
                    for d in new or [path]:  # top-down: each copies from its parent
                        _inherit_cpuset(d)
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

    # -- which version drives a controller -------------------------------------------

    def v1_dir(self, controller: str) -> str | None:
        """This cgroup's directory in the v1 hierarchy serving `controller`, if any."""
        for key, path in self.paths.items():
            if key != "unified" and controller in key.split(","):
                return path
        return None

    def v2_dir(self) -> str | None:
        return self.paths.get("unified")

    def base(self, key: str) -> str:
        """The deepest ancestor rref may not write to in hierarchy `key`."""
        # Rebuilt from stored paths (no bases), nothing above the container's own
        # directory is known to be ours: a --cgroup-parent may be the user's.
        path = self.paths[key]
        b = (self.bases.get(key) or "").rstrip("/")
        return b if b and path.startswith(b + "/") else os.path.dirname(path)

    def _v2_for(self, controller: str) -> str:
        """The unified directory, with `controller` enabled down to it (or an error)."""
        from . import v2

        u = self.v2_dir()
        if u is None:
            raise CgroupError(
                f"cgroup controller {controller} is not available on this host "
                "(no v1 hierarchy serves it and cgroup2 is not mounted)"
            )
        h = detect().unified()
        v2.enable_controller(u, self.base("unified"), controller, h.mountpoint if h else "")
        return u

    # -- limits -----------------------------------------------------------------------

    def apply(self, resources: dict[str, Any] | None) -> None:
        """Write OCI `linux.resources` limits; raise CgroupError on the first failure."""
        if not resources:
            return
        from . import v1, v2

        for controller, values in by_controller(resources):
            if controller == "blkio" and not values["weight"]:
                continue  # weight 0: leave the default (docker's "not set")
            d = self.v1_dir(controller)
            if d is not None:
                v1.SETTERS[controller](d, values)
            else:
                u = self._v2_for(V2_CONTROLLER.get(controller, controller))
                v2.SETTERS[controller](u, values)
        rules = resources.get("devices")
        if rules:
            v1_devices, unified = self.v1_dir("devices"), self.v2_dir()
            if v1_devices is not None:
                v1.set_devices(v1_devices, rules)
            elif unified is not None:
                from . import devices_bpf

                devices_bpf.attach(unified, rules)
            else:
                raise CgroupUnsupported(
                    "device rules need the cgroup v1 devices controller or cgroup2 "
                    "(an eBPF device program): neither is mounted here"
                )

    def update(self, resources: dict[str, Any] | None) -> None:
        """Change a running container's limits: validate, then apply."""
        validate(resources)
        self.apply(resources)

    # -- reading back -----------------------------------------------------------------

    def stats(self) -> dict[str, dict[str, int | None]]:
        from . import v1, v2

        u = self.v2_dir()
        out: dict[str, dict[str, int | None]] = {}
        d = self.v1_dir("memory")
        out["memory"] = (
            v1.memory_stats(d)
            if d is not None
            else v2.memory_stats(u)
            if u is not None
            else v2.memory_stats(None)
        )
        cpu, acct = self.v1_dir("cpu"), self.v1_dir("cpuacct")
        out["cpu"] = (
            v1.cpu_stats(cpu, acct) if cpu is not None or acct is not None else v2.cpu_stats(u)
        )
        d = self.v1_dir("pids")
        out["pids"] = v1.pids_stats(d) if d is not None else v2.pids_stats(u)
        return out

    def oom_kills(self) -> int:
        """How many processes the kernel OOM killer killed in this cgroup."""
        from . import v1, v2

        d = self.v1_dir("memory")
        if d is not None:
            return v1.oom_kills(d)
        u = self.v2_dir()
        return v2.oom_kills(u) if u is not None else 0

    def oom_killed(self) -> bool:
        return self.oom_kills() > 0

    # -- freezing and killing -----------------------------------------------------------

    def _freezer(self) -> tuple[int, str]:
        d = self.v1_dir("freezer")
        if d is not None:
            return 1, d
        u = self.v2_dir()
        if u is not None:
            return 2, u
        raise CgroupError("cannot freeze: no freezer (v1 freezer hierarchy or cgroup2) here")

    def freeze(self, timeout: float = WAIT) -> None:
        from . import v1, v2

        version, d = self._freezer()
        (v1.freeze if version == 1 else v2.freeze)(d, timeout)

    def thaw(self, timeout: float = WAIT) -> None:
        from . import v1, v2

        version, d = self._freezer()
        (v1.thaw if version == 1 else v2.thaw)(d, timeout)

    def frozen(self) -> bool:
        from . import v1, v2

        version, d = self._freezer()
        return (v1.frozen if version == 1 else v2.frozen)(d)

    def kill_all(self, timeout: float = WAIT) -> None:
        """SIGKILL every process in the cgroup and wait until none is left."""
        u = self.v2_dir()
        if u is not None and os.path.exists(os.path.join(u, "cgroup.kill")):
            try:
                write_value(u, "cgroup.kill", 1)
            except CgroupError:
                if os.path.isdir(u):
                    raise
        freezer = self.v1_dir("freezer")
        deadline = time.monotonic() + timeout
        while True:
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                _signal(pid, SIGKILL)
            # frozen tasks only act on SIGKILL once thawed
            for d, f, v in ((freezer, "freezer.state", "THAWED"), (u, "cgroup.freeze", "0")):
                if d is not None and os.path.exists(os.path.join(d, f)):
                    _try_write(d, f, v)
            if time.monotonic() > deadline:
                raise CgroupError(
                    f"cannot kill every process in cgroup {self.describe()}: "
                    f"still running after {timeout:g}s: " + " ".join(map(str, sorted(pids)))
                )
            time.sleep(0.005)

    def describe(self) -> str:
        return next(iter(self.paths.values()), "<none>")

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


def _signal(pid: int, sig: int) -> bool:
    try:
        os.kill(pid, sig)
    except OSError:
        return False
    return True


def _try_write(d: str, name: str, value: object) -> bool:
    try:
        write_value(d, name, value)
    except CgroupError:
        return False
    return True


def _missing_dirs(path: str) -> list[str]:
    """`path` and its ancestors that do not exist yet, top-down."""
    out: list[str] = []
    while path and path != "/" and not os.path.isdir(path):
        out.append(path)
        path = os.path.dirname(path)
    return out[::-1]


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


# -- validation before anything is created -----------------------------------------------


def validate(resources: dict[str, Any] | None, ncpus: int | None = None) -> None:
    """Refuse bad limits before anything is created, with docker's messages."""
    if not resources:
        return
    if not isinstance(resources, dict):
        raise CgroupError(f"invalid resources: {resources!r} is not an object")
    check_limits(resources, ncpus)

    rules = resources.get("devices") or []
    if not isinstance(rules, list):
        raise CgroupError(f"invalid device rules: {rules!r} is not a list")
    for rule in rules:
        device_rule(rule)
