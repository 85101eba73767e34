"""Per-session scratch space and the names of every host resource the session creates.

Why: xdist workers run in parallel and runs may overlap, so each session works under its own
/tmp/conform-<sid> and records the names it gives out; the end-of-session leak check looks
only for those names (and for the SysV keys and POSIX mqueue names it handed out).
"""

from __future__ import annotations

import os
import random
import shutil
import uuid
from pathlib import Path

from conformance import hostops, rootfs
from conformance.errors import Unsupported


class Workspace:
    """Scratch directory, base rootfs and the leak-marker registry of one pytest session."""

    def __init__(self, parent: str = "/tmp") -> None:
        self.sid = uuid.uuid4().hex[:10]
        self.dir = Path(parent) / f"conform-{self.sid}"
        self.dir.mkdir(mode=0o755)
        os.chmod(self.dir, 0o755)  # traversable by mapped (user namespace) container roots
        self.markers: set[str] = {str(self.dir)}
        self.sysv_keys: set[int] = set()
        self.mqueues: set[str] = set()
        self._tree: Path | None = None
        self._hash: str | None = None

    def path(self, *parts: str) -> Path:
        p = self.dir.joinpath(*parts)
        p.mkdir(parents=True, exist_ok=True)
        return p

    def mark(self, *names: str) -> None:
        """Remember host-resource names (container ids, cgroup names...) for leak checks."""
        self.markers.update(n for n in names if n and len(n) >= 8)

    def ipc_key(self) -> int:
        """A SysV IPC key of the suite's range (hostops.CONFORM_KEYS), new in this session."""
        while True:
            key = random.choice(hostops.CONFORM_KEYS)
            if key not in self.sysv_keys:
                self.sysv_keys.add(key)
                return key

    def mqueue_name(self) -> str:
        """A POSIX message queue name ``/conform-<hex>``, new in this session."""
        name = f"/conform-{uuid.uuid4().hex[:16]}"
        self.mqueues.add(name)
        return name

    def base_tree(self) -> Path:
        """The suite's busybox rootfs (built on first use; Unsupported without a static
        busybox)."""
        if self._tree is None:
            busybox = rootfs.find_busybox()
            if busybox is None:
                raise Unsupported(
                    "tool:busybox (no static busybox for the suite's "
                    "rootfs; install busybox-static)"
                )
            tree = self.dir / "rootfs"
            rootfs.build_tree(busybox, tree)
            self._tree = tree
        return self._tree

    def base_hash(self) -> str:
        if self._hash is None:
            self._hash = rootfs.content_hash(self.base_tree())
        return self._hash

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
