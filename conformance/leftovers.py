"""Find host resources a session left behind: mounts, cgroups, processes and network
interfaces whose names carry one of the session's markers (its workspace path, container
names and ids, veth names); SysV shm segments, semaphore sets and message queues with a key
the session handed out (`Workspace.ipc_key`, in the suite's own key range); POSIX message
queues of the names it handed out (`Workspace.mqueue_name`). IPC objects are looked for in
the harness's own ipc namespace: what a container made in its own dies with it.

Why: teardown must leave the host clean even when tests fail; the end-of-session check
proves it, and names only what this session created (runs and workers may overlap).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path

from conformance import hostops

CGROUP_ROOT = "/sys/fs/cgroup"
NET_ROOT = "/sys/class/net"


def _hit(text: str, markers: Iterable[str]) -> str | None:
    return next((m for m in markers if m in text), None)


def settled(
    markers: set[str],
    grace: float = 5.0,
    sysv_keys: Iterable[int] = (),
    mqueues: Iterable[str] = (),
) -> list[str]:
    """Leftovers that are still there after ``grace`` seconds: engines finish some clean-up
    asynchronously (podman's conmon exits just after `podman rm` returns)."""
    keys, queues = set(sysv_keys), set(mqueues)
    deadline = time.monotonic() + grace
    found = scan(markers, sysv_keys=keys, mqueues=queues)
    while found and time.monotonic() < deadline:
        time.sleep(0.2)
        found = scan(markers, sysv_keys=keys, mqueues=queues)
    return found


def ipc_leftovers(sysv_keys: Iterable[int], mqueues: Iterable[str] = ()) -> list[str]:
    """SysV objects with one of ``sysv_keys`` and POSIX mqueues of ``mqueues`` ("/name")
    that exist in this process's ipc namespace."""
    keys = set(sysv_keys)
    found = []
    if keys:
        for kind in hostops.SYSV_KINDS:
            for key, ident in hostops.sysv_objects(kind):
                if key in keys:
                    found.append(f"sysv {kind}: key {key:#x} id {ident}")
    found += [f"mqueue: {q}" for q in sorted(mqueues) if hostops.mq_exists(q)]
    return found


def scan(
    markers: set[str],
    cgroup_root: str = CGROUP_ROOT,
    sysv_keys: Iterable[int] = (),
    mqueues: Iterable[str] = (),
) -> list[str]:
    """Human-readable leftovers ("mount: ...", "cgroup: ...", "process: ...", "interface:
    ...", "sysv shm: ...", "mqueue: ...")."""
    found: list[str] = ipc_leftovers(sysv_keys, mqueues)
    if not markers:
        return found
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        if _hit(line, markers):
            found.append(f"mount: {line.split()[4]}")
    for dirpath, dirnames, _ in os.walk(cgroup_root):
        for d in dirnames:
            if _hit(d, markers):
                found.append(f"cgroup: {dirpath}/{d}")
    me = os.getpid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            cmdline = (
                Path(entry.path, "cmdline")
                .read_bytes()
                .replace(b"\0", b" ")
                .decode(errors="replace")
            )
        except OSError:
            continue
        if _hit(cmdline, markers):
            found.append(f"process: {entry.name} {cmdline.strip()[:200]}")
    for name in sorted(os.listdir(NET_ROOT)):  # veths of bridge-mode containers
        if _hit(name, markers):
            found.append(f"interface: {name}")
    return found
