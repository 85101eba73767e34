"""What `spec` writes and `features` reports: rref-oci's defaults and abilities."""

from __future__ import annotations

from ..spec import DEFAULT_CAPS, DEFAULT_MOUNTS, DEFAULT_PATH, MASKED_PATHS, READONLY_PATHS
from .config import HOOK_KINDS, NS_TYPES
from .store import OCI_VERSION

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: The same default mounts as rref's engine mode gives its containers.
_MOUNTS = DEFAULT_MOUNTS


def default_config() -> dict[str, Any]:
    """runc spec's document: `sh` as root in every namespace but user, docker's defaults."""
    caps = list(DEFAULT_CAPS)
    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": [f"PATH={DEFAULT_PATH}", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {k: caps for k in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "rref-oci",
        "mounts": [{**m, "options": list(m["options"])} for m in _MOUNTS],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [
                {"type": t} for t in ("pid", "network", "ipc", "uts", "mount", "cgroup")
            ],
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
        },
    }


def features() -> dict[str, Any]:
    """The runtime-spec `features` document (features.md) for what config.py accepts."""
    from ..caps import available
    from ..rootfs import _FLAGS, _PROPAGATION

    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        "hooks": list(HOOK_KINDS),
        "mountOptions": sorted([*_FLAGS, *_PROPAGATION]),
        "linux": {
            "namespaces": list(NS_TYPES),
            "capabilities": available(),
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False},
            "seccomp": {"enabled": True, "actions": [], "operators": [], "archs": []},
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
            "intelRdt": {"enabled": False},
            "mountExtensions": {"idmap": {"enabled": False}},
        },
        "annotations": {"org.opencontainers.runc.checkpoint.enabled": "false"},
        "potentiallyUnsafeConfigAnnotations": [],
    }
