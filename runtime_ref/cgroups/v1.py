"""cgroup v1 driver: each controller has its own hierarchy and directory.

Every function takes the container's directory in the hierarchy that serves
the controller; `Cgroup` picks it.  Values follow OCI `linux.resources`.
"""

from __future__ import annotations

import errno
import os
import time

from ..resources import BY_NAME
from ._files import (
    WAIT,
    CgroupError,
    device_rule,
    parse_flat_keyed,
    parse_int,
    parse_limit,
    read_value,
    write_plain,
    write_value,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def _file(name: str) -> str:
    f = BY_NAME[name].v1
    if f is None:
        raise LookupError(f"{name} has no cgroup v1 file")
    return f


# the resource table's v1 files for the limits whose writes need an order
LIMIT, MEMSW, SOFT, OOM = (
    _file(n) for n in ("memory", "memory_swap", "memory_reservation", "oom_kill_disable")
)
SHARES, PERIOD, QUOTA = (_file(n) for n in ("cpu_shares", "cpu_period", "cpu_quota"))
WEIGHTS = (_file("blkio_weight"), "blkio.bfq.weight")  # CFQ (gone since 5.0), then BFQ


def set_memory(d: str, mem: dict[str, Any]) -> None:
    limit, swap = mem.get("limit"), mem.get("swap")
    has_memsw = os.path.exists(os.path.join(d, MEMSW))
    if limit == 0:
        limit = None  # OCI/runc: 0 leaves the limit alone
    if limit is not None and limit < 0 and swap is None:
        swap = -1  # unlimited memory needs unlimited memory+swap first
    if not has_memsw or swap == 0:
        swap = None  # swap accounting is off (no memsw files): memory alone is limited
    if limit is not None and swap is not None:
        # the kernel keeps memsw >= memory at every step: raise memsw first when the
        # new memsw is above the current memory limit, else lower memory first
        # (an unlimited current limit, None here, is above any finite memsw)
        current = parse_limit(read_value(d, LIMIT))
        if swap < 0 or (current is not None and current < swap):
            write_value(d, MEMSW, swap)
            write_value(d, LIMIT, limit)
        else:
            write_value(d, LIMIT, limit)
            write_value(d, MEMSW, swap)
    elif limit is not None:
        write_value(d, LIMIT, limit)
    elif swap is not None:
        write_value(d, MEMSW, swap)
    if mem.get("reservation"):
        write_value(d, SOFT, mem["reservation"])
    if mem.get("disableOOMKiller") is not None:
        write_value(d, OOM, 1 if mem["disableOOMKiller"] else 0)


def set_cpu(d: str, cpu: dict[str, Any]) -> None:
    if cpu.get("shares"):
        write_value(d, SHARES, cpu["shares"])
    period, quota = cpu.get("period") or 0, cpu.get("quota")
    if quota is not None and quota <= 0:
        quota = -1
    if period and quota is not None:
        # a new period can clash with the old quota (and vice versa) against the
        # parent's bandwidth: if period-then-quota is refused, try quota first
        try:
            write_value(d, PERIOD, period)
        except CgroupError:
            write_value(d, QUOTA, quota)
            write_value(d, PERIOD, period)
            return
        write_value(d, QUOTA, quota)
    elif period:
        write_value(d, PERIOD, period)
    elif quota is not None:
        write_value(d, QUOTA, quota)


def set_cpuset(d: str, cpu: dict[str, Any]) -> None:
    write_plain(d, "cpuset", cpu, 1)


def set_pids(d: str, pids: dict[str, Any]) -> None:
    write_plain(d, "pids", pids, 1)


def set_blkio(d: str, blkio: dict[str, Any]) -> None:
    set_blkio_weight(d, blkio["weight"])


def set_blkio_weight(d: str, weight: int) -> None:
    for name in WEIGHTS:
        if os.path.exists(os.path.join(d, name)):
            write_value(d, name, weight)
            return
    raise CgroupError(
        f"cannot set blkio weight to {weight}: neither blkio.weight nor "
        f"blkio.bfq.weight exists ({d})"
    )


def set_devices(d: str, rules: list[dict[str, Any]]) -> None:
    lines = [(bool(r.get("allow")), device_rule(r)) for r in rules]  # all checked first
    write_value(d, "devices.deny", "a")
    for allow, line in lines:
        write_value(d, "devices.allow" if allow else "devices.deny", line)


# controller -> writer of its OCI values (Cgroup.apply picks the version)
SETTERS: dict[str, Callable[[str, dict[str, Any]], None]] = {
    "memory": set_memory,
    "cpu": set_cpu,
    "cpuset": set_cpuset,
    "pids": set_pids,
    "blkio": set_blkio,
}


def memory_stats(d: str) -> dict[str, int | None]:
    return {
        "usage": parse_int(read_value(d, "memory.usage_in_bytes")),
        "limit": parse_limit(read_value(d, LIMIT)),
        "max_usage": parse_int(read_value(d, "memory.max_usage_in_bytes")),
        "failcnt": parse_int(read_value(d, "memory.failcnt")),
    }


def cpu_stats(cpu: str | None, acct: str | None) -> dict[str, int | None]:
    st = parse_flat_keyed(read_value(cpu, "cpu.stat"))
    return {
        "usage_ns": parse_int(read_value(acct, "cpuacct.usage")) or 0,
        "nr_periods": st.get("nr_periods", 0),
        "nr_throttled": st.get("nr_throttled", 0),
        "throttled_ns": st.get("throttled_time", 0),
    }


def pids_stats(d: str) -> dict[str, int | None]:
    return {
        "current": parse_int(read_value(d, "pids.current")) or 0,
        "limit": parse_limit(read_value(d, "pids.max")),
    }


def oom_kills(d: str) -> int:
    """memory.oom_control's oom_kill counter (kernel >= 4.13)."""
    return parse_flat_keyed(read_value(d, "memory.oom_control")).get("oom_kill", 0)


def frozen(d: str) -> bool:
    return read_value(d, "freezer.state") == "FROZEN"


def freeze(d: str, timeout: float = WAIT) -> None:
    _set_state(d, "FROZEN", timeout)


def thaw(d: str, timeout: float = WAIT) -> None:
    _set_state(d, "THAWED", timeout)


def _set_state(d: str, want: str, timeout: float) -> None:
    """Write freezer.state and poll until it reads `want` (FREEZING is transitional)."""
    deadline = time.monotonic() + timeout
    tries = 0
    while True:
        if tries % 20 == 0:  # re-ask now and then: tasks forked mid-freeze can escape it
            write_value(d, "freezer.state", want)
        state = read_value(d, "freezer.state")
        if state is None:
            raise CgroupError(
                f"cannot set freezer.state to {want}: {os.strerror(errno.ENOENT)} ({d})"
            )
        if state == want:
            return
        if time.monotonic() > deadline:
            if want == "FROZEN":  # do not leave it half frozen
                write_value(d, "freezer.state", "THAWED")
            raise CgroupError(
                f"cannot set freezer.state to {want}: still {state} after {timeout:g}s ({d})"
            )
        tries += 1
        time.sleep(0.005)
