"""The host facts as data: the vocabulary (capabilities, namespaces, controllers, tools)
and the typed records a probe fills in (`HostInfo` and its parts)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

#: Capability names by number (linux/capability.h), lower-case without the CAP_ prefix.
# fmt: off
CAP_NAMES: tuple[str, ...] = (
    "chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid", "setuid",
    "setpcap", "linux_immutable", "net_bind_service", "net_broadcast", "net_admin", "net_raw",
    "ipc_lock", "ipc_owner", "sys_module", "sys_rawio", "sys_chroot", "sys_ptrace", "sys_pacct",
    "sys_admin", "sys_boot", "sys_nice", "sys_resource", "sys_time", "sys_tty_config", "mknod",
    "lease", "audit_write", "audit_control", "setfcap", "mac_override", "mac_admin", "syslog",
    "wake_alarm", "block_suspend", "audit_read", "perfmon", "bpf", "checkpoint_restore",
)
# fmt: on

#: Namespaces probed, with their CLONE_NEW* flag.
NAMESPACES: dict[str, int] = {
    "pid": 0x20000000,
    "mnt": 0x00020000,
    "uts": 0x04000000,
    "ipc": 0x08000000,
    "net": 0x40000000,
    "user": 0x10000000,
    "cgroup": 0x02000000,
    "time": 0x00000080,
}

#: Cgroup controllers the probe knows by name (v1 and v2 spellings; "io" is v2's blkio).
# fmt: off
CGROUP_CONTROLLERS: tuple[str, ...] = (
    "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "io", "pids",
    "hugetlb", "net_cls", "net_prio", "perf_event", "rdma", "misc", "dmem", "debug",
)
# fmt: on

#: External tools whose presence and version are reported.
TOOLS: tuple[str, ...] = ("runc", "crun", "youki", "podman", "docker", "bpftrace", "busybox")


@dataclass
class Check:
    """One yes/no fact.  ``ok`` is True (works), False (absent/refused) or None (unknown).

    ``error`` is set only when the probe itself failed (an exception in our code); the
    kernel refusing something is ``ok=False`` with the reason in ``detail``.
    """

    ok: bool | None
    detail: str = ""
    error: str | None = None


@dataclass
class KernelInfo:
    release: str = ""
    version: str = ""
    machine: str = ""
    release_tuple: tuple[int, int, int] | None = None
    config_source: str | None = None
    config: dict[str, str] = field(default_factory=dict)


@dataclass
class PrivilegeInfo:
    uid: int = -1
    euid: int = -1
    is_root: bool = False
    cap_eff: int | None = None
    cap_last_cap: int | None = None
    effective: list[str] = field(default_factory=list)  # CAP_* names
    missing: list[str] = field(default_factory=list)  # CAP_* names up to cap_last_cap


@dataclass
class CgroupMount:
    version: int  # 1 or 2
    mount_point: str
    root: str
    controllers: tuple[str, ...] = ()  # v1: from the mount options; v2: empty here
    name: str | None = None  # v1 named hierarchy (name=systemd)


@dataclass
class CgroupMembership:
    hierarchy_id: int
    controllers: tuple[str, ...]
    path: str

    @property
    def key(self) -> str:
        """A stable label: the controller list, ``name=...``, or ``unified`` for v2."""
        if self.hierarchy_id == 0 and not self.controllers:
            return "unified"
        return ",".join(self.controllers)


@dataclass
class ControllerInfo:
    version: str  # "v1" or "v2"
    mount_point: str


@dataclass
class CgroupInfo:
    mode: str = "none"  # "v1", "v2", "hybrid" or "none"
    mounts: list[CgroupMount] = field(default_factory=list)
    v2_mount: str | None = None
    v2_controllers: list[str] = field(default_factory=list)
    controllers: dict[str, ControllerInfo] = field(default_factory=dict)
    kernel_controllers: dict[str, bool] = field(default_factory=dict)  # /proc/cgroups
    self_paths: dict[str, str] = field(default_factory=dict)  # /proc/self/cgroup


@dataclass
class NamespaceInfo:
    name: str
    present: bool
    unshare: Check


@dataclass
class UserNsInfo:
    max_user_namespaces: int | None = None
    sysctls: dict[str, str] = field(default_factory=dict)
    unprivileged: Check = field(default_factory=lambda: Check(None, "not probed"))


@dataclass
class FilesystemInfo:
    overlay_listed: bool = False
    overlay_mount: Check = field(default_factory=lambda: Check(None, "not probed"))
    idmapped_mounts: Check = field(default_factory=lambda: Check(None, "not probed"))


@dataclass
class SecurityInfo:
    seccomp_field: bool = False
    seccomp_mode: int | None = None
    seccomp_actions: list[str] = field(default_factory=list)
    seccomp_filter: Check = field(default_factory=lambda: Check(None, "not probed"))
    python_seccomp: Check = field(default_factory=lambda: Check(None, "not probed"))


@dataclass
class BpfInfo:
    bpf_syscall: Check = field(default_factory=lambda: Check(None, "not probed"))
    btf: Check = field(default_factory=lambda: Check(None, "not probed"))
    tracefs: Check = field(default_factory=lambda: Check(None, "not probed"))
    tracefs_path: str | None = None
    syscall_tracepoints: Check = field(default_factory=lambda: Check(None, "not probed"))
    kprobes: Check = field(default_factory=lambda: Check(None, "not probed"))
    headers_path: str | None = None
    headers_release: str | None = None
    kernel_headers: Check = field(default_factory=lambda: Check(None, "not probed"))
    bcc: Check = field(default_factory=lambda: Check(None, "not probed"))


@dataclass
class ToolInfo:
    name: str
    path: str | None = None
    version: str | None = None
    error: str | None = None  # the version command failed (text of the failure)
    engine: Check | None = None  # docker only: does an engine answer `docker info`?

    @property
    def usable(self) -> bool:
        return self.path is not None and self.error is None


@dataclass
class HostInfo:
    kernel: KernelInfo = field(default_factory=KernelInfo)
    privileges: PrivilegeInfo = field(default_factory=PrivilegeInfo)
    cgroups: CgroupInfo = field(default_factory=CgroupInfo)
    namespaces: dict[str, NamespaceInfo] = field(default_factory=dict)
    userns: UserNsInfo = field(default_factory=UserNsInfo)
    filesystems: FilesystemInfo = field(default_factory=FilesystemInfo)
    security: SecurityInfo = field(default_factory=SecurityInfo)
    bpf: BpfInfo = field(default_factory=BpfInfo)
    tools: dict[str, ToolInfo] = field(default_factory=dict)
    rref_path: str | None = None
    errors: dict[str, str] = field(default_factory=dict)  # section -> probe failure
    probe_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict of every fact (``tokens.host_dict`` adds the tokens)."""
        return dataclasses.asdict(self)
