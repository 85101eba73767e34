"""linux.cgroupsPath to rref's cgroup directories, and their removal.

Relative paths hang below rref-oci's own cgroup (runc's rule), absolute ones
below each hierarchy's root; without a path the container gets
`rref-oci-<id>` below its own cgroup. With --systemd-cgroup a path
`slice:prefix:name` is read as runc's systemd driver reads it
(`/<expanded slice>/<prefix>-<name>.scope`), but rref-oci does not ask systemd
for a unit: it makes those directories itself, as the cgroupfs driver would.
Every directory made is recorded, so `delete` removes exactly those.
"""

from __future__ import annotations

import os

from ..errors import RrefError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ..cgroups import Cgroup


def expand_slice(slice_: str) -> str:
    """`a-b.slice` -> `/a.slice/a-b.slice` (systemd's nesting by dashes); `-.slice` -> ``."""
    if not slice_.endswith(".slice") or "/" in slice_:
        raise RrefError(f"cgroupsPath: {slice_!r} is not a systemd slice name", 1)
    name = slice_[: -len(".slice")]
    if name == "-":
        return ""
    if not name or name.startswith("-") or name.endswith("-") or "--" in name:
        raise RrefError(f"cgroupsPath: {slice_!r} is not a valid slice name", 1)
    out, prefix = "", ""
    for part in name.split("-"):
        prefix = f"{prefix}-{part}" if prefix else part
        out += f"/{prefix}.slice"
    return out


def resolve(cgroups_path: str | None, cid: str, systemd: bool) -> tuple[str, str | None]:
    """(name, parent) for `Cgroup.plan`: parent None means below our own cgroup."""
    if systemd and cgroups_path:
        parts = cgroups_path.split(":")
        if len(parts) != 3:
            raise RrefError(
                f"cgroupsPath {cgroups_path!r}: with --systemd-cgroup it is slice:prefix:name", 1
            )
        slice_, prefix, name = parts
        unit = name if name.endswith(".slice") else f"{prefix}-{name}.scope"
        return f"{expand_slice(slice_ or 'system.slice')}/{unit}".lstrip("/"), "/"
    if not cgroups_path:
        return f"rref-oci-{cid}", None
    norm = os.path.normpath(cgroups_path)
    if ".." in norm.split("/"):
        raise RrefError(f"cgroupsPath {cgroups_path!r}: may not leave its hierarchy", 1)
    if norm.startswith("/"):
        return norm.lstrip("/"), "/"
    return norm, None


def missing(cg: Cgroup) -> list[str]:
    """The directories `cg.create()` will make, top-down."""
    out: list[str] = []
    for path in cg.paths.values():
        todo: list[str] = []
        while path and path != "/" and not os.path.isdir(path):
            todo.append(path)
            path = os.path.dirname(path)
        out += todo[::-1]
    return out


def remove(cg: Cgroup, made: list[str]) -> list[str]:
    """rmdir the container's directories and the parents it made; return what is left."""
    left = cg.remove()
    for d in reversed(made):
        if d in cg.paths.values():
            continue
        try:
            os.rmdir(d)
        except FileNotFoundError:
            pass
        except OSError:
            pass  # another container lives there now, or the user's own
    return left


def own_cgroup_mounts(spec: dict[str, Any], cg: Cgroup) -> list[dict[str, Any]]:
    """The spec's mounts with a `cgroup` mount made of the container's own directories.

    Without a cgroup namespace (podman's default on v1 hosts), a fresh cgroupfs would
    show the whole hierarchy, and inside a user namespace the kernel refuses to mount
    one at all; runc binds the container's own directories instead, and so does this:
    a tmpfs at the destination, then one read-only bind per hierarchy.
    """
    from ..cgroups import detect

    new = {ns["type"] for ns in spec["linux"]["namespaces"] if not ns.get("path")}
    if "cgroup" in new:
        return list(spec.get("mounts") or [])
    out: list[dict[str, Any]] = []
    for m in spec.get("mounts") or []:
        if m.get("type") != "cgroup":
            out.append(m)
            continue
        opts = [o for o in m.get("options", []) if o in ("nosuid", "noexec", "nodev", "ro")]
        dest = m["destination"].rstrip("/")
        out.append(
            {"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": ["mode=755"]}
        )
        for h in detect().hierarchies:
            path = cg.paths.get(h.key)
            if path and os.path.isdir(path):
                out.append(
                    {
                        "destination": f"{dest}/{os.path.basename(h.mountpoint)}",
                        "type": "bind",
                        "source": path,
                        "options": ["rbind", *opts],
                    }
                )
    return out
