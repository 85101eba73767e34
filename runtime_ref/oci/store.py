"""The state root of rref-oci: one directory per container id, and its true status.

Why: runc's callers (podman, containerd, the suite) ask `state` at any moment,
also after the init died or the machine rebooted it away, so the status is never
stored as a fact but derived each time: the recorded init must still be alive
(pid and start time), the exec fifo says "created" until `start` removes it, a
frozen cgroup says "paused". Every record is read and written under its lock.
"""

from __future__ import annotations

import contextlib
import os
import re

from .. import procinfo
from ..errors import RrefError
from ..state import flock, now_iso, read_json, write_json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

DEFAULT_ROOT = "/run/rref-oci"
OCI_VERSION = "1.0.2"
_ID = re.compile(r"^[\w+.-]+$")
FIFO = "exec.fifo"


class NoContainer(RrefError):
    def __init__(self, cid: str) -> None:
        super().__init__(f"container {cid} does not exist", 1)


def check_id(cid: str) -> None:
    if not cid or not _ID.match(cid) or cid in (".", ".."):
        raise RrefError(f"invalid container id {cid!r} (letters, digits, _ + - . only)", 1)


class Store:
    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)

    def path(self, cid: str, *parts: str) -> str:
        return os.path.join(self.root, cid, *parts)

    def ids(self) -> list[str]:
        try:
            return sorted(d for d in os.listdir(self.root) if os.path.isdir(self.path(d)))
        except FileNotFoundError:
            return []

    def claim(self, cid: str) -> str:
        """Make the container's directory; an existing one means the id is taken."""
        check_id(cid)
        os.makedirs(self.root, mode=0o711, exist_ok=True)
        try:
            os.mkdir(self.path(cid), 0o711)
        except FileExistsError:
            raise RrefError(f"container with id exists: {cid}", 1) from None
        return self.path(cid)

    @contextlib.contextmanager
    def lock(self, cid: str) -> Iterator[None]:
        if not os.path.isdir(self.path(cid)):
            raise NoContainer(cid)
        with flock(self.path(cid, "lock")):
            yield

    def load(self, cid: str) -> dict[str, Any]:
        check_id(cid)
        try:
            rec = read_json(self.path(cid, "state.json"))
        except FileNotFoundError:
            raise NoContainer(cid) from None
        except (OSError, ValueError) as e:
            raise RrefError(f"container {cid}: unreadable state: {e}", 1) from None
        if not isinstance(rec, dict):
            raise RrefError(f"container {cid}: unreadable state", 1)
        return rec

    def save(self, rec: dict[str, Any]) -> None:
        write_json(self.path(rec["id"], "state.json"), rec, durable=False)

    def spec(self, cid: str) -> dict[str, Any]:
        spec = read_json(self.path(cid, "config.json"))
        assert isinstance(spec, dict)
        return spec

    def save_spec(self, cid: str, spec: dict[str, Any]) -> None:
        write_json(self.path(cid, "config.json"), spec, durable=False)


def new_record(cid: str, bundle: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": cid,
        "bundle": bundle,
        "rootfs": spec["root"]["path"],
        "annotations": dict(spec.get("annotations") or {}),
        "created": now_iso(),
        "phase": "creating",
        "creator": os.getpid(),
        "creatorStart": procinfo.start_time(os.getpid()),
        "pid": 0,
        "pidStart": 0,
        "cgroup": {},
        "cgroupMade": [],
    }


def status(store: Store, rec: dict[str, Any]) -> str:
    """creating, created, running, paused or stopped: what is true now."""
    if rec.get("phase") == "creating":
        if procinfo.alive(rec.get("creator", 0), rec.get("creatorStart", 0)):
            return "creating"
        return "stopped"
    if not procinfo.alive(rec.get("pid", 0), rec.get("pidStart", 0)):
        return "stopped"
    if os.path.exists(store.path(rec["id"], FIFO)):
        return "created"
    if rec.get("cgroup"):
        from ..cgroups import Cgroup, CgroupError

        with contextlib.suppress(CgroupError, OSError):
            if Cgroup(rec["cgroup"]).frozen():
                return "paused"
    return "running"


def oci_state(store: Store, rec: dict[str, Any], st: str | None = None) -> dict[str, Any]:
    """The runtime-spec state document (plus runc's rootfs, created and owner)."""
    st = st or status(store, rec)
    return {
        "ociVersion": OCI_VERSION,
        "id": rec["id"],
        "pid": rec.get("pid", 0) if st != "stopped" else 0,
        "status": st,
        "bundle": rec["bundle"],
        "rootfs": rec.get("rootfs", ""),
        "created": rec.get("created", ""),
        "owner": "",
        "annotations": rec.get("annotations", {}),
    }
