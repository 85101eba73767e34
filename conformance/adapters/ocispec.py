"""config.json for an OCI bundle, written by the suite from a `ContainerSpec`.

Why: runc-compatible runtimes take an OCI runtime-spec document, and the suite writes its
own so that every OCI runtime is tested against the same, docker-like defaults: namespaces,
the usual kernel mounts, docker's masked/read-only paths and default capabilities, the
devices cgroup allow-list and resources.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conformance.adapters.base import ContainerSpec
from conformance.errors import Unsupported

OCI_VERSION = "1.0.2"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# /proc/<pid>/ns name -> OCI namespace type.
NS_TYPES = {
    "pid": "pid",
    "mnt": "mount",
    "uts": "uts",
    "ipc": "ipc",
    "net": "network",
    "user": "user",
    "cgroup": "cgroup",
}

# docker's default capability set (moby oci/caps/defaults.go).
DEFAULT_CAPS = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)
# docker's default masked and read-only paths (moby oci/defaults.go).
MASKED_PATHS = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")


def _mounts(sysfs_ro: bool) -> list[dict[str, Any]]:
    return [
        {
            "destination": "/proc",
            "type": "proc",
            "source": "proc",
            "options": ["nosuid", "noexec", "nodev"],
        },
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        },
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        },
        {
            "destination": "/dev/mqueue",
            "type": "mqueue",
            "source": "mqueue",
            "options": ["nosuid", "noexec", "nodev"],
        },
        {
            "destination": "/sys",
            "type": "sysfs",
            "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev"] + (["ro"] if sysfs_ro else []),
        },
        {
            "destination": "/sys/fs/cgroup",
            "type": "cgroup",
            "source": "cgroup",
            "options": ["nosuid", "noexec", "nodev", "relatime", "ro"],
        },
    ]


def _device_rules(privileged: bool) -> list[dict[str, Any]]:
    """docker's devices cgroup: deny all; mknod of any; use of the default nodes, pts, ptmx."""
    if privileged:
        return [{"allow": True, "access": "rwm"}]
    rules: list[dict[str, Any]] = [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "access": "m"},
        {"allow": True, "type": "b", "access": "m"},
    ]
    for major, minor in ((1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 1), (5, 2)):
        rules.append({"allow": True, "type": "c", "major": major, "minor": minor, "access": "rwm"})
    rules.append({"allow": True, "type": "c", "major": 136, "access": "rwm"})
    return rules


def _capabilities(spec: ContainerSpec) -> list[str]:
    """docker's rule: default set, drop first ("ALL" empties it), then add."""

    def norm(c: str) -> str:
        c = c.strip().upper()
        return c if c.startswith("CAP_") else "CAP_" + c

    if spec.privileged:
        return [f"CAP_{n.upper()}" for n in _bounding_names()]
    names = list(DEFAULT_CAPS)
    drops = {norm(c) for c in spec.cap_drop}
    if "CAP_ALL" in drops:
        names = []
    names = [n for n in names if n not in drops]
    for c in spec.cap_add:
        if norm(c) == "CAP_ALL":
            names = [f"CAP_{n.upper()}" for n in _bounding_names()]
        elif norm(c) not in names:
            names.append(norm(c))
    return names


def _bounding_names() -> list[str]:
    """Capabilities in this process's bounding set (what "ALL" can grant)."""
    from conformance.hostinfo import CAP_NAMES, parse_cap_mask, parse_status

    status = parse_status(Path("/proc/self/status").read_text())
    return [
        CAP_NAMES[b]
        for b in sorted(parse_cap_mask(status.get("CapBnd", "0")))
        if b < len(CAP_NAMES)
    ]


def _user(spec: ContainerSpec, rootfs: Path) -> dict[str, int]:
    """ "uid[:gid]" with numbers or names of the rootfs's /etc/passwd and /etc/group."""
    if not spec.user:
        return {"uid": 0, "gid": 0}
    user, _, group = spec.user.partition(":")

    def lookup(name: str, file: str, gid_field: bool = False) -> tuple[int, int | None]:
        if name.isdigit():
            return int(name), None
        try:
            for line in (rootfs / "etc" / file).read_text().splitlines():
                f = line.split(":")
                if f[0] == name:
                    return int(f[2]), (int(f[3]) if gid_field else None)
        except (OSError, IndexError, ValueError):
            pass
        raise Unsupported(f"user {name!r} not in the rootfs's /etc/{file}")

    uid, primary = lookup(user, "passwd", gid_field=True)
    gid = lookup(group, "group")[0] if group else (primary if primary is not None else 0)
    return {"uid": uid, "gid": gid}


def _resources(spec: ContainerSpec) -> dict[str, Any]:
    res: dict[str, Any] = {"devices": _device_rules(spec.privileged)}
    mem: dict[str, int] = {}
    if spec.memory is not None:
        mem["limit"] = spec.memory
    if spec.memory_swap is not None:
        mem["swap"] = spec.memory_swap
    if mem:
        res["memory"] = mem
    cpu: dict[str, Any] = {}
    if spec.cpu_quota is not None:
        cpu["quota"] = spec.cpu_quota
    if spec.cpu_period is not None:
        cpu["period"] = spec.cpu_period
    if spec.cpuset_cpus is not None:
        cpu["cpus"] = spec.cpuset_cpus
    if cpu:
        res["cpu"] = cpu
    if spec.pids_limit is not None:
        res["pids"] = {"limit": spec.pids_limit}
    if spec.blkio_weight is not None:
        res["blockIO"] = {"weight": spec.blkio_weight}
    return res


def _seccomp(path: str) -> dict[str, Any]:
    """A profile file as linux.seccomp: the OCI fields of docker's format are the same."""
    try:
        profile = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise Unsupported(f"seccomp profile {path} ({e})") from None
    keys = ("defaultAction", "defaultErrnoRet", "architectures", "flags", "syscalls")
    return {k: profile[k] for k in keys if k in profile}


def build_config(spec: ContainerSpec, rootfs: Path, cgroups_path: str) -> dict[str, Any]:
    """The config.json document for ``spec`` with the bundle's rootfs at ``rootfs``."""
    if spec.network == "bridge":
        raise Unsupported("network:bridge (OCI bundles get no network set-up)")
    if any(v.named for v in spec.volumes):
        raise Unsupported("named-volumes (an OCI runtime has no volume store)")
    caps = _capabilities(spec)
    env = {"PATH": DEFAULT_PATH, **spec.env}
    namespaces = [{"type": NS_TYPES[n]} for n in sorted(spec.effective_namespaces())]
    linux: dict[str, Any] = {
        "namespaces": namespaces,
        "maskedPaths": [] if spec.privileged else list(MASKED_PATHS),
        "readonlyPaths": [] if spec.privileged else list(READONLY_PATHS),
        "resources": _resources(spec),
        "cgroupsPath": cgroups_path,
    }
    if spec.seccomp_profile:
        linux["seccomp"] = _seccomp(spec.seccomp_profile)
    if spec.uid_map or spec.gid_map:
        uid_map = spec.uid_map or spec.gid_map
        gid_map = spec.gid_map or spec.uid_map
        linux["uidMappings"] = [
            {"containerID": m.container, "hostID": m.host, "size": m.size} for m in uid_map
        ]
        linux["gidMappings"] = [
            {"containerID": m.container, "hostID": m.host, "size": m.size} for m in gid_map
        ]
    mounts = _mounts(sysfs_ro=not spec.privileged)
    if spec.network == "host":
        mounts = [m for m in mounts if m["destination"] != "/sys"] + [
            {
                "destination": "/sys",
                "type": "bind",
                "source": "/sys",
                "options": ["rbind", "nosuid", "noexec", "nodev", "ro"],
            }
        ]
    for v in spec.volumes:
        mounts.append(
            {
                "destination": v.target,
                "type": "bind",
                "source": v.source,
                "options": ["rbind", "rprivate"] + (["ro"] if v.readonly else []),
            }
        )
    config: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": False,
            "user": _user(spec, rootfs),
            "args": list(spec.argv),
            "env": [f"{k}={v}" for k, v in env.items()],
            "cwd": spec.workdir or "/",
            "capabilities": {k: list(caps) for k in ("bounding", "effective", "permitted")},
            "noNewPrivileges": spec.no_new_privs,
        },
        "root": {"path": str(rootfs), "readonly": spec.readonly_rootfs},
        "mounts": mounts,
        "linux": linux,
    }
    if spec.hostname is not None:
        config["hostname"] = spec.hostname
    return config
