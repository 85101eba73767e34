"""docker's resource flags (--memory, --cpus, --pids-limit, ...) as OCI linux.resources."""

from __future__ import annotations

from .errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1024,
    "m": 1024**2,
    "mb": 1024**2,
    "g": 1024**3,
    "gb": 1024**3,
    "t": 1024**4,
    "tb": 1024**4,
}
FLAGS = (
    "memory",
    "memory_swap",
    "memory_reservation",
    "cpus",
    "cpu_period",
    "cpu_quota",
    "cpu_shares",
    "cpuset_cpus",
    "cpuset_mems",
    "pids_limit",
    "blkio_weight",
    "oom_kill_disable",
)


def parse_bytes(text: str, flag: str) -> int:
    """`512m`, `1g`, `1048576` -> bytes (docker's RAMInBytes); `-1` stays -1."""
    t = text.strip().lower()
    if t == "-1":
        return -1
    num = t.rstrip("kmgtb")
    unit = t[len(num) :]
    try:
        value = float(num)
    except ValueError:
        raise UsageError(f"invalid value {text!r} for --{flag}: want a size like 512m") from None
    if unit not in _UNITS or value < 0:
        raise UsageError(f"invalid value {text!r} for --{flag}: want a size like 512m")
    return int(value * _UNITS[unit])


def _int(text: str, flag: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"invalid value {text!r} for --{flag}: want an integer") from None


def build(flags: dict[str, Any]) -> dict[str, Any]:
    """Resources from the flags that were given (values are the CLI strings)."""
    res: dict[str, Any] = {}
    mem: dict[str, Any] = {}
    if flags.get("memory") is not None:
        mem["limit"] = parse_bytes(flags["memory"], "memory")
    if flags.get("memory_swap") is not None:
        mem["swap"] = parse_bytes(flags["memory_swap"], "memory-swap")
        if "limit" not in mem:
            raise UsageError(
                "you should always set the memory limit when using the memoryswap limit, see usage"
            )
    if flags.get("memory_reservation") is not None:
        mem["reservation"] = parse_bytes(flags["memory_reservation"], "memory-reservation")
    if flags.get("oom_kill_disable"):
        mem["disableOOMKiller"] = True
    if mem:
        res["memory"] = mem
    cpu: dict[str, Any] = {}
    if flags.get("cpus") is not None:
        try:
            cpus = float(flags["cpus"])
        except ValueError:
            raise UsageError(f"invalid value {flags['cpus']!r} for --cpus") from None
        if cpus <= 0:
            raise UsageError(f"invalid value {flags['cpus']!r} for --cpus: must be positive")
        if flags.get("cpu_quota") is not None or flags.get("cpu_period") is not None:
            raise UsageError(
                "conflicting options: Nano CPUs and CPU Period/Quota cannot both be set"
            )
        import os

        n = os.cpu_count() or 1
        if cpus > n:
            raise UsageError(
                f"range of CPUs is from 0.01 to {n}.00, as there are only {n} CPUs available"
            )
        cpu["period"] = 100000
        cpu["quota"] = int(cpus * 100000)
    if flags.get("cpu_period") is not None:
        cpu["period"] = _int(flags["cpu_period"], "cpu-period")
    if flags.get("cpu_quota") is not None:
        cpu["quota"] = _int(flags["cpu_quota"], "cpu-quota")
    if flags.get("cpu_shares") is not None:
        cpu["shares"] = _int(flags["cpu_shares"], "cpu-shares")
        if cpu["shares"] < 0:
            raise UsageError(f"invalid value {flags['cpu_shares']!r} for --cpu-shares")
    if flags.get("cpuset_cpus") is not None:
        cpu["cpus"] = flags["cpuset_cpus"]
    if flags.get("cpuset_mems") is not None:
        cpu["mems"] = flags["cpuset_mems"]
    if cpu:
        res["cpu"] = cpu
    if flags.get("pids_limit") is not None:
        res["pids"] = {"limit": _int(flags["pids_limit"], "pids-limit")}
    if flags.get("blkio_weight") is not None:
        res["blockIO"] = {"weight": _int(flags["blkio_weight"], "blkio-weight")}
    return res


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """`rref update`: new values replace old ones key by key within each controller."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for k, v in update.items():
        if isinstance(v, dict):
            out.setdefault(k, {}).update(v)
        else:
            out[k] = v
    return out
