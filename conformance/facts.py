"""Outside facts: what the host sees of a container's process (ns ids, cgroups, processes).

Why: inside views can lie (a runtime could fake /proc); each behaviour is checked from both
sides where possible. Cgroup reads go through `CgroupView`, which hides v1/v2 file names
(v2 names, v1 aliases, as LTP's tst_cgroup does).
"""

from __future__ import annotations

import hashlib
import os
import socket
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from conformance import evidence, hostinfo, hostops

NS_KINDS = ("pid", "mnt", "uts", "ipc", "net", "user", "cgroup")


def ns_id(pid: int | str, kind: str) -> tuple[int, int]:
    """(dev, ino) of /proc/<pid>/ns/<kind> as the host sees it."""
    st = os.stat(f"/proc/{pid}/ns/{kind}")
    return st.st_dev, st.st_ino


def ns_ids(pid: int | str = "self") -> dict[str, tuple[int, int]]:
    return {k: ns_id(pid, k) for k in NS_KINDS}


def host_ns_ids() -> dict[str, tuple[int, int]]:
    """The harness's own namespaces: "the host" for every comparison."""
    return ns_ids("self")


def pids_in_ns(kind: str, ident: tuple[int, int]) -> list[int]:
    """Host pids whose ``kind`` namespace is ``ident`` (processes that vanish are skipped)."""
    out = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if ns_id(entry.name, kind) == ident:
                    out.append(int(entry.name))
            except OSError:
                continue
    return out


def process_state(pid: int) -> str | None:
    """The state letter of /proc/<pid>/stat (R, S, Z...), None when the pid is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rpartition(")")[2].split()[0]


def alive(pid: int) -> bool:
    return process_state(pid) not in (None, "Z", "X")


def status_field(pid: int | str, key: str) -> str | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def host_mountinfo() -> list[str]:
    return mountinfo("self")


def mountinfo(pid: int | str) -> list[str]:
    """The mount table of ``pid``'s mount namespace, as lines."""
    text = Path(f"/proc/{pid}/mountinfo").read_text()
    evidence.note("host", f"/proc/{pid}/mountinfo", text)
    return text.splitlines()


def parse_mountinfo(lines: list[str]) -> list[dict[str, str]]:
    """mountinfo lines as dicts: id, parent, devno, root, mount_point, options (per mount),
    fstype, source, super (per superblock options)."""
    out = []
    for line in lines:
        left, _, right = line.partition(" - ")
        f, r = left.split(), right.split()
        if len(f) < 6 or len(r) < 2:
            continue
        out.append(
            {
                "id": f[0],
                "parent": f[1],
                "devno": f[2],
                "root": f[3],
                "mount_point": f[4],
                "options": f[5],
                "fstype": r[0],
                "source": r[1],
                "super": r[2] if len(r) > 2 else "",
            }
        )
    return out


def host_root_mount() -> dict[str, str]:
    """The host's (the harness's) `/` mount: the top one of /proc/self/mountinfo."""
    return [m for m in parse_mountinfo(host_mountinfo()) if m["mount_point"] == "/"][-1]


def mounts_outside_root(pid: int | str) -> list[hostops.NsMount]:
    """Mounts of ``pid``'s mount namespace that its root directory cannot reach: the old
    root (and everything below it) of a runtime that chroot()s instead of pivot_root()ing
    and detaching it. /proc/<pid>/mountinfo lists only the reachable ones, so the whole
    namespace comes from listmount(2) (OSError where the kernel cannot list it)."""
    every = hostops.namespace_mounts(pid)
    reachable = {int(m["id"]) for m in parse_mountinfo(mountinfo(pid))}
    return [m for m in every if m.old_id not in reachable]


def host_interfaces() -> list[str]:
    return sorted(os.listdir("/sys/class/net"))


def uts_hostname(pid: int) -> str:
    """The hostname in the uts namespace of ``pid`` (a setns child reads it)."""
    return str(hostops.run_in_namespaces(pid, ["uts"], socket.gethostname))


def host_hostname() -> str:
    return socket.gethostname()


def wait_for(
    pred: Callable[[], object],
    timeout: float = 10.0,
    interval: float = 0.01,
    what: str = "condition",
    failure: type[Exception] = TimeoutError,
) -> object:
    """Poll ``pred`` until it returns a truthy value; ``failure`` (TimeoutError) names
    ``what``. Waits on something the container must do pass `RuntimeTimeout`: running out
    of time there is the runtime's failure, not a broken harness."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise failure(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)
        interval = min(interval * 1.5, 0.1)


def read_in_root(pid: int, path: str) -> str | None:
    """A file of the container's filesystem, read from the host via /proc/<pid>/root."""
    try:
        return Path(f"/proc/{pid}/root{path}").read_text()
    except OSError:
        return None


# ---------------------------------------------------------------------------- cgroups


def cgroup_paths(pid: int | str) -> dict[str, str]:
    """controller -> cgroup path of ``pid`` (v2's unified entry under the key "", and under
    each controller cgroup v2 serves here)."""
    text = Path(f"/proc/{pid}/cgroup").read_text()
    evidence.note("host", f"/proc/{pid}/cgroup", text)
    out: dict[str, str] = {}
    for m in hostinfo.parse_proc_cgroup(text):
        if m.hierarchy_id == 0 and not m.controllers:
            out[""] = m.path
        for c in m.controllers:
            out[c] = m.path
    if "" in out:  # controllers v2 serves have no line of their own: the unified path's
        for c, hier in hierarchies().items():
            if hier.version == 2:
                out.setdefault(c, out[""])
    return out


@dataclass(frozen=True)
class Hierarchy:
    version: int
    mount_point: str


def hierarchies() -> dict[str, Hierarchy]:
    """controller -> the hierarchy that serves it; "" -> the cgroup2 mount (if any)."""
    info = hostinfo.get_host_info().cgroups
    out = {
        c: Hierarchy(2 if w.version == "v2" else 1, w.mount_point)
        for c, w in info.controllers.items()
    }
    if info.v2_mount:
        out[""] = Hierarchy(2, info.v2_mount)
    return out


def cgroup_dirs(pid: int | str) -> dict[str, Path]:
    """controller -> host directory of ``pid``'s cgroup (every mounted hierarchy)."""
    h = hierarchies()
    return {
        c: Path(h[c].mount_point + (p if p != "/" else ""))
        for c, p in cgroup_paths(pid).items()
        if c in h
    }


def _flat(text: str | None) -> dict[str, int]:
    out = {}
    for line in (text or "").splitlines():
        k, _, v = line.partition(" ")
        if v.strip().lstrip("-").isdigit():
            out[k] = int(v)
    return out


class CgroupView:
    """Read a process's cgroup values by meaning, whatever the cgroup version.

    Built from the pid while it runs (the directories stay valid after it exits, until the
    runtime removes the cgroup).
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.hier = hierarchies()
        self.dirs = cgroup_dirs(pid)

    def version(self, controller: str) -> int | None:
        h = self.hier.get(controller)
        return h.version if h else None

    def dir(self, controller: str) -> Path:
        d = self.dirs.get(controller)
        if d is None:
            raise LookupError(f"no {controller} cgroup for pid {self.pid}")
        return d

    def read(self, controller: str, name: str) -> str | None:
        path = self.dirs.get(controller, Path(f"<no {controller} cgroup>")) / name
        try:
            text: str | None = (self.dir(controller) / name).read_text().strip()
        except OSError:
            text = None
        evidence.note("host", str(path), text)
        return text

    def _v(self, controller: str, v2: str, v1: str) -> str | None:
        return self.read(controller, v2 if self.version(controller) == 2 else v1)

    def memory_limit(self) -> int | None:
        text = self._v("memory", "memory.max", "memory.limit_in_bytes")
        return None if text in (None, "max") else int(text)

    def memory_events(self) -> dict[str, int]:
        """v2 memory.events; on v1 the same keys from memory.failcnt and memory.oom_control."""
        if self.version("memory") == 2:
            return _flat(self.read("memory", "memory.events"))
        oom = _flat(self.read("memory", "memory.oom_control"))
        failcnt = self.read("memory", "memory.failcnt")
        return {
            "max": int(failcnt) if failcnt else 0,
            "oom_kill": oom.get("oom_kill", 0),
            "under_oom": oom.get("under_oom", 0),
        }

    def pids_max(self) -> int | None:
        text = self.read("pids", "pids.max")
        return None if text in (None, "max") else int(text)

    def pids_events(self) -> dict[str, int]:
        return _flat(self.read("pids", "pids.events"))

    def cpu_usage_ns(self) -> int:
        if self.version("cpu") == 2:
            return _flat(self.read("cpu", "cpu.stat")).get("usage_usec", 0) * 1000
        return int(self.read("cpuacct", "cpuacct.usage") or 0)

    def cpu_stat(self) -> dict[str, int]:
        return _flat(self.read("cpu", "cpu.stat"))

    def cpu_max(self) -> tuple[int | None, int]:
        """(quota or None for unlimited, period) in microseconds."""
        if self.version("cpu") == 2:
            text, _, period = (self.read("cpu", "cpu.max") or "max 100000").partition(" ")
            return (None if text == "max" else int(text)), int(period)
        quota = int(self.read("cpu", "cpu.cfs_quota_us") or -1)
        return (None if quota < 0 else quota), int(self.read("cpu", "cpu.cfs_period_us") or 0)

    def cpuset_cpus(self) -> str | None:
        text = self.read("cpuset", "cpuset.cpus")
        if not text and self.version("cpuset") == 2:
            text = self.read("cpuset", "cpuset.cpus.effective")
        return text

    def blkio_weight(self) -> int | None:
        """The default weight: v1 blkio.weight or blkio.bfq.weight, v2 io.weight or
        io.bfq.weight ("default N" or "N"); None when no such file exists."""
        ctrl, names = (
            ("", ("io.weight", "io.bfq.weight"))  # v2: the unified directory
            if self.version("blkio") is None and self.version("io") == 2
            else ("blkio", ("blkio.weight", "blkio.bfq.weight"))
        )
        for name in names:
            text = self.read(ctrl, name)
            if text:
                return _default_weight(text)
        return None

    def frozen(self) -> bool:
        if self.version("freezer") == 1:
            return self.read("freezer", "freezer.state") == "FROZEN"
        return _flat(self.read("", "cgroup.events")).get("frozen") == 1

    def procs(self, controller: str) -> list[int]:
        text = self.read(controller, "cgroup.procs") or ""
        return [int(p) for p in text.split()]

    def existing(self) -> list[Path]:
        return [d for d in self.dirs.values() if d.is_dir()]


def parse_cpu_list(text: str) -> set[int]:
    """`0-2,5` -> {0, 1, 2, 5}."""
    out: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


def _default_weight(text: str) -> int | None:
    for line in text.splitlines():
        f = line.split()
        if len(f) == 2 and f[0] == "default" and f[1].isdigit():
            return int(f[1])
        if len(f) == 1 and f[0].isdigit():
            return int(f[0])
    return None


# ---------------------------------------------------------------------------- layers


def is_whiteout(path: Path) -> bool:
    """An overlay whiteout: a character device 0/0."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def xattr(path: Path, name: str) -> bytes | None:
    try:
        return os.getxattr(path, name, follow_symlinks=False)
    except OSError:
        return None


def tree_state(top: Path) -> dict[str, tuple[object, ...]]:
    """path -> (type+mode, uid, gid, size, mtime_ns, content sha256 | link target | rdev,
    xattrs) for every entry below ``top`` (contents hashed once per inode)."""
    out: dict[str, tuple[object, ...]] = {}
    hashed: dict[tuple[int, int], str] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            st = os.lstat(p)
            if stat.S_ISREG(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if key not in hashed:
                    hashed[key] = hashlib.sha256(p.read_bytes()).hexdigest()
                what: object = hashed[key]
            elif stat.S_ISLNK(st.st_mode):
                what = os.readlink(p)
            else:
                what = st.st_rdev
            try:
                names = sorted(os.listxattr(p, follow_symlinks=False))
            except OSError:
                names = []
            xattrs = tuple((n, xattr(p, n)) for n in names)
            out[str(p.relative_to(top))] = (
                st.st_mode,
                st.st_uid,
                st.st_gid,
                st.st_size,
                st.st_mtime_ns,
                what,
                xattrs,
            )
    return out
