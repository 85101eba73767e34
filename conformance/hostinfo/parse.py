"""Pure parsers of what the kernel shows (text in, data out): cgroup mounts and
membership, /proc/<pid>/status, capability masks, kernel config and release. They are
tested on literal layouts. mountinfo itself is `conformance.mountinfo`."""

from __future__ import annotations

import re
from collections.abc import Iterable

from conformance.hostinfo.model import (
    CAP_NAMES,
    CGROUP_CONTROLLERS,
    CgroupMembership,
    CgroupMount,
    ControllerInfo,
)
from conformance.mountinfo import parse_mountinfo


def parse_cgroup_mounts(
    mountinfo_text: str, known_controllers: Iterable[str] = CGROUP_CONTROLLERS
) -> list[CgroupMount]:
    """The cgroup (v1) and cgroup2 mounts in mountinfo text.

    A v1 hierarchy's controllers are the super-block options that name a known controller
    (pass the names from /proc/cgroups to recognise controllers this module has never heard
    of).  A hierarchy mounted twice (bind mounts) is reported once, at its first mount point.
    """
    known = set(known_controllers)
    mounts: list[CgroupMount] = []
    seen: set[tuple[int, str]] = set()
    for entry in parse_mountinfo(mountinfo_text):
        if entry.fstype == "cgroup2":
            version = 2
            controllers: tuple[str, ...] = ()
            name = None
        elif entry.fstype == "cgroup":
            version = 1
            controllers = tuple(o for o in entry.super_options if o in known)
            name = next(
                (o.partition("=")[2] for o in entry.super_options if o.startswith("name=")),
                None,
            )
        else:
            continue
        if (version, entry.devno) in seen:
            continue
        seen.add((version, entry.devno))
        mounts.append(
            CgroupMount(
                version=version,
                mount_point=entry.mount_point,
                root=entry.root,
                controllers=controllers,
                name=name,
            )
        )
    return mounts


def cgroup_mode(mounts: Iterable[CgroupMount]) -> str:
    """``"v1"``, ``"v2"``, ``"hybrid"`` (both mounted) or ``"none"``.

    Only v1 hierarchies that carry a controller count: a lone ``name=systemd`` hierarchy next
    to cgroup2 does not make a host hybrid.
    """
    mounts = list(mounts)
    has_v1 = any(m.version == 1 and m.controllers for m in mounts)
    has_v2 = any(m.version == 2 for m in mounts)
    if has_v1 and has_v2:
        return "hybrid"
    if has_v1:
        return "v1"
    if has_v2:
        return "v2"
    return "none"


def controller_versions(
    mounts: Iterable[CgroupMount], v2_controllers: Iterable[str]
) -> dict[str, ControllerInfo]:
    """Which cgroup version (and mount point) serves each controller.

    ``v2_controllers`` is the content of the v2 root's ``cgroup.controllers``.  The kernel
    binds a controller to one version at a time; if both claim one, the v1 mount wins.
    """
    mounts = list(mounts)
    result: dict[str, ControllerInfo] = {}
    for m in mounts:
        if m.version == 1:
            for c in m.controllers:
                result.setdefault(c, ControllerInfo("v1", m.mount_point))
    v2_mount = next((m for m in mounts if m.version == 2), None)
    if v2_mount is not None:
        for c in v2_controllers:
            result.setdefault(c, ControllerInfo("v2", v2_mount.mount_point))
    return dict(sorted(result.items()))


def parse_proc_cgroup(text: str) -> list[CgroupMembership]:
    """Parse /proc/<pid>/cgroup (``hierarchy-id:controllers:path`` per line)."""
    result: list[CgroupMembership] = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        try:
            hid = int(parts[0])
        except ValueError:
            continue
        controllers = tuple(c for c in parts[1].split(",") if c)
        result.append(CgroupMembership(hid, controllers, parts[2]))
    return result


def parse_proc_cgroups(text: str) -> dict[str, bool]:
    """Parse /proc/cgroups: controller name -> enabled (compiled in and not disabled)."""
    result: dict[str, bool] = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        fields = line.split()
        if len(fields) >= 4:
            result[fields[0]] = fields[3] == "1"
    return result


def parse_status(text: str) -> dict[str, str]:
    """Parse /proc/<pid>/status into a field -> value dict."""
    result: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            result[key.strip()] = value.strip()
    return result


def parse_cap_mask(hex_mask: str) -> set[int]:
    """Capability numbers set in a CapEff-style hex mask."""
    value = int(hex_mask, 16)
    return {bit for bit in range(value.bit_length()) if value >> bit & 1}


def _cap_display(bit: int) -> str:
    return f"CAP_{CAP_NAMES[bit].upper()}" if bit < len(CAP_NAMES) else f"CAP_{bit}"


def missing_capabilities(cap_eff: int, cap_last_cap: int) -> list[str]:
    """CAP_* names in 0..cap_last_cap that are not in the effective mask."""
    return [_cap_display(b) for b in range(cap_last_cap + 1) if not cap_eff >> b & 1]


def parse_kernel_config(text: str) -> dict[str, str]:
    """Parse a kernel .config: ``CONFIG_X=y`` -> {"CONFIG_X": "y"}; "is not set" -> "n"."""
    result: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("# CONFIG_") and line.endswith(" is not set"):
            result[line[2:].split()[0]] = "n"
        elif line.startswith("CONFIG_") and "=" in line:
            key, _, value = line.partition("=")
            result[key] = value.strip('"')
    return result


def parse_kernel_release(release: str) -> tuple[int, int, int] | None:
    """``"6.18.44-fc-v595"`` -> (6, 18, 44); None when it does not start with a version."""
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", release)
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def _parse_utsrelease_h(text: str) -> str | None:
    m = re.search(r'#define\s+UTS_RELEASE\s+"([^"]*)"', text)
    return m.group(1) if m else None
