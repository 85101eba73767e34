"""Find host resources a session left behind: mounts, cgroups, processes and network
interfaces whose names carry one of the session's markers (its workspace path, container
names and ids, veth names).

Why: teardown must leave the host clean even when tests fail; the end-of-session check
proves it, and names only what this session created (runs and workers may overlap).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path

CGROUP_ROOT = "/sys/fs/cgroup"
NET_ROOT = "/sys/class/net"


def _hit(text: str, markers: Iterable[str]) -> str | None:
    return next((m for m in markers if m in text), None)


def settled(markers: set[str], grace: float = 5.0) -> list[str]:
    """Leftovers that are still there after ``grace`` seconds: engines finish some clean-up
    asynchronously (podman's conmon exits just after `podman rm` returns)."""
    deadline = time.monotonic() + grace
    found = scan(markers)
    while found and time.monotonic() < deadline:
        time.sleep(0.2)
        found = scan(markers)
    return found


def scan(markers: set[str], cgroup_root: str = CGROUP_ROOT) -> list[str]:
    """Human-readable leftovers ("mount: ...", "cgroup: ...", "process: ...", "interface:
    ...")."""
    if not markers:
        return []
    found: list[str] = []
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
