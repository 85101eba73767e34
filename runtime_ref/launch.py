"""How a spec turns into the steps of `process.spawn`: which namespaces are
unshared by the child, and which host-side steps (id maps, network) the
monitor performs while the child or the init waits for it."""

from __future__ import annotations

from . import process

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from .spec import Spec


def id_map_text(mappings: list[dict[str, int]]) -> str:
    return "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in mappings)


def write_id_maps(pid: int, spec: Spec) -> None:
    """Written by the (privileged) monitor, so setgroups stays allowed inside."""
    linux = spec["linux"]
    with open(f"/proc/{pid}/uid_map", "w") as f:
        f.write(id_map_text(linux.get("uidMappings", [])))
    with open(f"/proc/{pid}/gid_map", "w") as f:
        f.write(id_map_text(linux.get("gidMappings", [])))


def uses_userns(spec: Spec) -> bool:
    return any(ns["type"] == "user" and not ns.get("path") for ns in spec["linux"]["namespaces"])


def plan(
    spec: Spec, host_setup: Callable[[int], None] | None = None
) -> tuple[Callable[[], None], Callable[[int], None] | None, Callable[[int], None] | None]:
    """(prepare, userns_setup, host_setup) for `process.spawn`."""
    namespaces = spec["linux"]["namespaces"]
    if uses_userns(spec):
        rest = [ns for ns in namespaces if ns["type"] != "user"]
        return (process.unshare_for(rest), lambda pid: write_id_maps(pid, spec), host_setup)
    return process.unshare_for(namespaces), None, host_setup
