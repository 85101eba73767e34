"""cgroup v2 driver: one directory in the unified hierarchy.

A v2 controller's files appear in a cgroup only once every ancestor has the
controller in cgroup.subtree_control; `enable_controller` turns it on from the
cgroup rref's containers hang below, as runc's v2 manager does from its root,
but writes to that cgroup only when it is delegated to rref (`delegated`), and
never above it. A delegated cgroup that holds processes (the caller's own, on a
systemd host a Delegate=yes scope) cannot enable controllers for its children:
its processes move into a leaf, rref-leaf, first.
"""

from __future__ import annotations

import errno
import os
import time

from ..resources import BY_NAME, cpu_weight
from ._files import (
    V2_LEAF,
    WAIT,
    CgroupError,
    parse_flat_keyed,
    parse_int,
    parse_limit,
    read_value,
    write_plain,
    write_raw,
    write_value,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["LEAF", "SETTERS", "cpu_weight", "delegated", "enable_controller", "swap_max"]


def _file(name: str) -> str:
    f = BY_NAME[name].v2
    if f is None:
        raise LookupError(f"{name} has no cgroup v2 file")
    return f


# the resource table's v2 files for the limits whose writes need care
MAX, SWAP, LOW = (_file(n) for n in ("memory", "memory_swap", "memory_reservation"))
WEIGHT, CPU_MAX = _file("cpu_shares"), _file("cpu_quota")
IO_WEIGHTS = (_file("blkio_weight"), "io.bfq.weight")


LEAF = V2_LEAF


def delegated(d: str, mountpoint: str) -> bool:
    """Whether rref may organise `d`: the root of its cgroup2 mount, or a delegated cgroup.

    The root (of the host, or of a cgroup namespace) is the caller's own when the caller
    runs in it; a service manager marks what it hands over (systemd's Delegate=yes sets
    trusted.delegate=1; user.delegate=1 is the unprivileged form).
    """
    if os.path.normpath(d) == os.path.normpath(mountpoint):
        return True
    for attr in ("trusted.delegate", "user.delegate"):
        try:
            if os.getxattr(d, attr).strip() == b"1":
                return True
        except OSError:
            pass
    return False


def enable_controller(cgdir: str, base: str, controller: str, mountpoint: str = "") -> None:
    """Make `controller` available in `cgdir`, enabling it from `base` down.

    `base` (the caller's own cgroup or the parent it was given) is written to only when
    it is delegated to rref (`delegated`); every directory between it and `cgdir` is ours.
    """
    base = base.rstrip("/")
    parent = os.path.dirname(cgdir)
    chain = [parent]
    if parent != base and parent.startswith(base + "/"):
        d = parent
        while d != base:
            d = os.path.dirname(d)
            chain.append(d)
    chain.reverse()  # top-down, starting at base (or at the parent when that is all we know)
    for i, d in enumerate(chain):
        if controller not in (read_value(d, "cgroup.controllers") or "").split():
            raise CgroupError(f"cgroup v2 controller {controller} is not available in {d}")
        if controller in (read_value(d, "cgroup.subtree_control") or "").split():
            continue
        if i == 0:
            if not (mountpoint and delegated(d, mountpoint)):
                raise CgroupError(
                    f"cgroup v2 controller {controller} is not enabled in "
                    f"{d}/cgroup.subtree_control, and {d} is not delegated to rref "
                    "(run rref in a delegated cgroup, e.g. systemd-run --scope -p Delegate=yes, "
                    f"or give --cgroup-parent a cgroup that enables {controller})"
                )
            _enable_delegated(d, controller)
        else:
            write_value(d, "cgroup.subtree_control", f"+{controller}")


def _enable_delegated(d: str, controller: str, timeout: float = WAIT) -> None:
    """Enable `controller` for d's children; first move d's processes into d/rref-leaf
    when the no-internal-process rule refuses (EBUSY: d is a populated non-root cgroup)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            write_raw(d, "cgroup.subtree_control", f"+{controller}")
            return
        except OSError as e:
            if e.errno != errno.EBUSY or time.monotonic() > deadline:
                raise CgroupError(
                    f"cannot set cgroup.subtree_control to +{controller}: {e.strerror} ({d})"
                ) from None
        _vacate(d)


def _vacate(d: str) -> None:
    """Move every process of `d` into its leaf (processes forked meanwhile: the caller retries)."""
    leaf = os.path.join(d, LEAF)
    try:
        os.mkdir(leaf)
    except FileExistsError:
        pass
    except OSError as e:
        raise CgroupError(f"cannot create {leaf}: {e.strerror}") from None
    for pid in (read_value(d, "cgroup.procs") or "").split():
        try:
            write_raw(leaf, "cgroup.procs", pid)
        except OSError as e:
            if e.errno != errno.ESRCH:  # exited meanwhile
                raise CgroupError(f"cannot move process {pid} into {leaf}: {e.strerror}") from None


def swap_max(swap: int | None, limit: int | None) -> int | None:
    """OCI memory+swap total -> memory.swap.max (swap alone), like runc; -1 = max."""
    if (limit is not None and limit < 0) and not swap:
        return -1
    if swap is None or swap == 0 or swap == -1:
        return swap or None
    if not limit or limit < 0:
        raise CgroupError(
            f"cannot set memory.swap.max from a memory+swap limit of {swap}: "
            "a memory limit is needed too"
        )
    if swap < limit:
        raise CgroupError(
            f"cannot set memory.swap.max: memory+swap limit {swap} is below "
            f"the memory limit {limit}"
        )
    return swap - limit


def _max(n: int) -> str:
    return "max" if n < 0 else str(n)


def set_memory(d: str, mem: dict[str, Any]) -> None:
    """memory.max, memory.swap.max, memory.low (disableOOMKiller has no v2 equivalent)."""
    limit = mem.get("limit") or None
    swap = swap_max(mem.get("swap"), limit)
    if swap is not None and os.path.exists(os.path.join(d, SWAP)):
        write_value(d, SWAP, _max(swap))
    if limit is not None:
        write_value(d, MAX, _max(limit))
    if mem.get("reservation"):
        write_value(d, LOW, mem["reservation"])


def set_cpu(d: str, cpu: dict[str, Any]) -> None:
    if cpu.get("shares"):
        write_value(d, WEIGHT, BY_NAME["cpu_shares"].file_value(2, cpu["shares"]))
    quota, period = cpu.get("quota"), cpu.get("period") or 0
    if quota is None and not period:
        return
    if quota is None:  # a new period alone keeps the current quota
        quota_text = (read_value(d, CPU_MAX) or "max").split()[0]
    else:
        quota_text = str(quota) if quota > 0 else "max"
    write_value(d, CPU_MAX, f"{quota_text} {period}" if period else quota_text)


def set_cpuset(d: str, cpu: dict[str, Any]) -> None:
    write_plain(d, "cpuset", cpu, 2)


def set_pids(d: str, pids: dict[str, Any]) -> None:
    write_plain(d, "pids", pids, 2)


def set_io(d: str, blkio: dict[str, Any]) -> None:
    set_io_weight(d, blkio["weight"])


def set_io_weight(d: str, weight: int) -> None:
    io_weight, bfq = IO_WEIGHTS
    if os.path.exists(os.path.join(d, io_weight)):
        write_value(d, io_weight, f"default {weight}")
    elif os.path.exists(os.path.join(d, bfq)):
        write_value(d, bfq, weight)
    else:
        raise CgroupError(
            f"cannot set io weight to {weight}: neither io.weight nor io.bfq.weight exists ({d})"
        )


# v1 controller name (the table's) -> writer of its OCI values on v2
SETTERS: dict[str, Callable[[str, dict[str, Any]], None]] = {
    "memory": set_memory,
    "cpu": set_cpu,
    "cpuset": set_cpuset,
    "pids": set_pids,
    "blkio": set_io,
}


def memory_stats(d: str | None) -> dict[str, int | None]:
    events = parse_flat_keyed(read_value(d, "memory.events"))
    return {
        "usage": parse_int(read_value(d, "memory.current")),
        "limit": parse_limit(read_value(d, MAX)),
        "max_usage": parse_int(read_value(d, "memory.peak")),
        "failcnt": events.get("max"),
    }


def cpu_stats(d: str | None) -> dict[str, int | None]:
    st = parse_flat_keyed(read_value(d, "cpu.stat"))
    return {
        "usage_ns": st.get("usage_usec", 0) * 1000,
        "nr_periods": st.get("nr_periods", 0),
        "nr_throttled": st.get("nr_throttled", 0),
        "throttled_ns": st.get("throttled_usec", 0) * 1000,
    }


def pids_stats(d: str | None) -> dict[str, int | None]:
    return {
        "current": parse_int(read_value(d, "pids.current")) or 0,
        "limit": parse_limit(read_value(d, "pids.max")),
    }


def oom_kills(d: str) -> int:
    return parse_flat_keyed(read_value(d, "memory.events")).get("oom_kill", 0)


def frozen(d: str) -> bool:
    return parse_flat_keyed(read_value(d, "cgroup.events")).get("frozen") == 1


def freeze(d: str, timeout: float = WAIT) -> None:
    _set_frozen(d, True, timeout)


def thaw(d: str, timeout: float = WAIT) -> None:
    _set_frozen(d, False, timeout)


def _set_frozen(d: str, want: bool, timeout: float) -> None:
    """Write cgroup.freeze and wait for cgroup.events to report `frozen` accordingly."""
    write_value(d, "cgroup.freeze", int(want))
    deadline = time.monotonic() + timeout
    while frozen(d) != want:
        if time.monotonic() > deadline:
            if want:
                write_value(d, "cgroup.freeze", 0)
            raise CgroupError(
                f"cannot set cgroup.freeze to {int(want)}: cgroup.events "
                f"still says frozen {int(not want)} after {timeout:g}s ({d})"
            )
        time.sleep(0.005)
