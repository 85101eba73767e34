"""The one internal model of a container: an OCI runtime-spec config.json.

The docker-like CLI builds this document and a future OCI front end reads it
from a bundle; the container init (`init.py`) executes only this document, so
both front ends share one core. rref-specific facts ride in `annotations`.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TypeAlias

    Spec: TypeAlias = dict[str, Any]

OCI_VERSION = "1.0.2"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Annotations understood by rref's init.
ANN_OVERLAY = "rref.overlay"  # overlay mount data for root.path, mounted inside the mount ns
ANN_USER = "rref.user"  # docker --user string, resolved against the container's /etc/passwd

# docker's default capability set (moby oci/caps/defaults.go).
DEFAULT_CAPS = [
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
]

# docker's default masked and read-only paths (moby oci/defaults.go).
MASKED_PATHS = [
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
]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]

NAMESPACES = ("pid", "network", "ipc", "uts", "mount", "cgroup", "user")

DEFAULT_MOUNTS: list[dict[str, Any]] = [
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
        "destination": "/sys",
        "type": "sysfs",
        "source": "sysfs",
        "options": ["nosuid", "noexec", "nodev", "ro"],
    },
    {
        "destination": "/sys/fs/cgroup",
        "type": "cgroup",
        "source": "cgroup",
        "options": ["nosuid", "noexec", "nodev", "relatime", "ro"],
    },
    {
        "destination": "/dev/mqueue",
        "type": "mqueue",
        "source": "mqueue",
        "options": ["nosuid", "noexec", "nodev"],
    },
    {
        "destination": "/dev/shm",
        "type": "tmpfs",
        "source": "shm",
        "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
    },
]

# The OCI default device set: (path, type, major, minor, mode).
DEFAULT_DEVICES = [
    ("/dev/null", "c", 1, 3, 0o666),
    ("/dev/zero", "c", 1, 5, 0o666),
    ("/dev/full", "c", 1, 7, 0o666),
    ("/dev/random", "c", 1, 8, 0o666),
    ("/dev/urandom", "c", 1, 9, 0o666),
    ("/dev/tty", "c", 5, 0, 0o666),
]


def default_device_rules() -> list[dict[str, Any]]:
    """The devices cgroup: deny all, allow mknod of anything and the default nodes' use."""
    rules: list[dict[str, Any]] = [
        {"allow": False, "type": "a", "major": None, "minor": None, "access": "rwm"}
    ]
    rules += [
        {"allow": True, "type": t, "major": None, "minor": None, "access": "m"} for t in ("c", "b")
    ]
    rules += [
        {"allow": True, "type": "c", "major": ma, "minor": mi, "access": "rwm"}
        for _, _, ma, mi, _ in DEFAULT_DEVICES
    ]
    rules += [
        {"allow": True, "type": "c", "major": 5, "minor": 1, "access": "rwm"},  # console
        {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},  # ptmx
        {"allow": True, "type": "c", "major": 136, "minor": None, "access": "rwm"},
    ]  # pts
    return rules


def default_spec(args: list[str], rootfs: str) -> Spec:
    """A spec with docker's defaults: every namespace but user, default caps and paths."""
    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": list(args),
            "env": [f"PATH={DEFAULT_PATH}"],
            "cwd": "/",
            "capabilities": {k: list(DEFAULT_CAPS) for k in ("bounding", "effective", "permitted")},
            "noNewPrivileges": False,
        },
        "root": {"path": rootfs, "readonly": False},
        "hostname": "",
        "mounts": [{**m, "options": list(m["options"])} for m in DEFAULT_MOUNTS],
        "annotations": {},
        "linux": {
            "namespaces": [{"type": t} for t in NAMESPACES if t != "user"],
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
            "devices": [
                {"path": p, "type": t, "major": ma, "minor": mi, "fileMode": mode}
                for p, t, ma, mi, mode in DEFAULT_DEVICES
            ],
            "resources": {"devices": default_device_rules()},
        },
    }


def namespace_types(spec: Spec) -> list[str]:
    return [ns["type"] for ns in spec.get("linux", {}).get("namespaces", [])]


def env_dict(env: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in env:
        key, _, value = item.partition("=")
        out[key] = value
    return out


def merge_env(base: list[str], extra: list[str]) -> list[str]:
    """Later entries win, order of first appearance kept (docker's semantics)."""
    merged = env_dict(base)
    merged.update(env_dict(extra))
    return [f"{k}={v}" for k, v in merged.items()]
