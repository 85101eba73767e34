"""Identify processes safely across pid reuse: (pid, start time) pairs and pidfds."""

from __future__ import annotations

import os
import select
import signal
import time


def start_time(pid: int) -> int:
    """Field 22 of /proc/<pid>/stat (clock ticks since boot); 0 if the pid is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return 0
    return int(data[data.rindex(b")") + 2 :].split()[19])


def alive(pid: int, started: int) -> bool:
    if pid <= 0:
        return False
    st = start_time(pid)
    if st == 0 or (started and st != started):
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except OSError:
        return False
    return state != b"Z"


def open_pidfd(pid: int, started: int) -> int | None:
    """A pidfd for `pid` only if it is still the same process we recorded."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return None
    if started and start_time(pid) != started:
        os.close(fd)
        return None
    return fd


def signal_process(pid: int, started: int, sig: int) -> bool:
    fd = open_pidfd(pid, started)
    if fd is None:
        return False
    try:
        signal.pidfd_send_signal(fd, sig)
        return True
    except ProcessLookupError:
        return False
    finally:
        os.close(fd)


def wait_gone(pid: int, started: int, timeout: float) -> bool:
    """Wait until the process exits (zombie counts as gone for a non-parent)."""
    fd = open_pidfd(pid, started)
    if fd is None:
        return True
    try:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return not alive(pid, started)
            r, _, _ = select.select([fd], [], [], min(left, 0.2))
            if r or not alive(pid, started):
                return True
    finally:
        os.close(fd)
