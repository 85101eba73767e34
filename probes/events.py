"""One traced syscall (or process event), the record both backends produce.

Why one dataclass: the bcc and ptrace backends must emit identical records for the same run,
so tests, the timeline and the report never care which backend produced a trace.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: The syscall names a record may carry. "fork" comes from sched_process_fork (args
#: {"child_pid": N}), "exit" from sched_process_exit. openat/openat2 are recorded for cgroup
#: paths only, write only to files opened that way, mkdir/mkdirat under a cgroup fs, and
#: unlinkat/unlink under a cgroup fs or by a contained task (one that, or whose ancestor,
#: succeeded in pivot_root, chroot or setns: the container's processes).
SYSCALLS: tuple[str, ...] = (
    "clone",
    "clone3",
    "unshare",
    "setns",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "sethostname",
    "setdomainname",
    "mknodat",
    "mknod",
    "execve",
    "execveat",
    "openat",
    "openat2",
    "write",
    "mkdir",
    "mkdirat",
    "unlinkat",
    "unlink",
    "fork",
    "exit",
)


@dataclass
class TraceEvent:
    """One syscall as seen at its exit (``ret`` known), or a fork/exit of a process.

    ``ts`` is CLOCK_MONOTONIC seconds; ``pid``/``tid``/``ppid`` are host ids (``ppid`` 0 when
    unknown); ``args`` are decoded by `probes.decode.decode`; ``ret`` is the raw return value
    (negative errno on failure); ``ns`` maps namespace type ("mnt", "net", ...) to inode, read
    from /proc in user space ({} when the process was gone); ``cgroup_id`` is the cgroup v2
    id of the calling task (0 when unknown).
    """

    ts: float
    pid: int
    tid: int
    ppid: int
    comm: str
    syscall: str
    args: dict[str, Any] = field(default_factory=dict)
    ret: int = 0
    ns: dict[str, int] = field(default_factory=dict)
    cgroup_id: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready data (shallow: args and ns are shared, not copied)."""
        return {
            "ts": self.ts,
            "pid": self.pid,
            "tid": self.tid,
            "ppid": self.ppid,
            "comm": self.comm,
            "syscall": self.syscall,
            "args": self.args,
            "ret": self.ret,
            "ns": self.ns,
            "cgroup_id": self.cgroup_id,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TraceEvent:
        return cls(
            ts=float(d["ts"]),
            pid=int(d["pid"]),
            tid=int(d["tid"]),
            ppid=int(d.get("ppid", 0)),
            comm=str(d.get("comm", "")),
            syscall=str(d["syscall"]),
            args=dict(d.get("args", {})),
            ret=int(d.get("ret", 0)),
            ns={str(k): int(v) for k, v in d.get("ns", {}).items()},
            cgroup_id=int(d.get("cgroup_id", 0)),
        )

    @property
    def failed(self) -> bool:
        """True when the syscall returned an error (fork/exit never fail)."""
        return self.syscall not in ("fork", "exit") and self.ret < 0
