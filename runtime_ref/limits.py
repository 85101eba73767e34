"""docker's resource flags (--memory, --cpus, --pids-limit, ...) as OCI linux.resources.

Which flags exist and where each value goes is the table in `resources`; this
module reads the flags' text (sizes, integers) with docker's messages.
"""

from __future__ import annotations

from .errors import UsageError
from .resources import CPUS_FLAG, CPUS_PERIOD, ROWS, flag_names

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
FLAGS = flag_names()  # argparse dests of every resource flag


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
    if unit not in _UNITS or not value >= 0:  # `not >=`: NaN too
        raise UsageError(f"invalid value {text!r} for --{flag}: want a size like 512m")
    size = value * _UNITS[unit]
    if size >= 2**63:  # docker's RAMInBytes refuses what does not fit an int64
        raise UsageError(f"invalid value {text!r} for --{flag}: value out of range")
    return int(size)


def _int(text: str, flag: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"invalid value {text!r} for --{flag}: want an integer") from None
    if not -(2**63) <= value < 2**63:
        raise UsageError(f"invalid value {text!r} for --{flag}: value out of range")
    return value


def build(flags: dict[str, Any]) -> dict[str, Any]:
    """Resources from the flags that were given (values are the CLI strings)."""
    res: dict[str, Any] = {}
    _nano_cpus(flags, res)
    for r in ROWS:
        text = flags.get(r.name)
        if text is None or (r.kind == "switch" and not text):
            continue
        flag = r.flags[-1][2:]
        if r.kind == "bytes":
            value: Any = parse_bytes(text, flag)
        elif r.kind == "int":
            value = _int(text, flag)
            if r.name == "cpu_shares" and value < 0:
                raise UsageError(f"invalid value {text!r} for --{flag}")
        else:
            value = True if r.kind == "switch" else text
        res.setdefault(r.section, {})[r.key] = value
        if r.name == "memory_swap" and "limit" not in res["memory"]:
            raise UsageError(
                "you should always set the memory limit when using the memoryswap limit, see usage"
            )
    return res


def _nano_cpus(flags: dict[str, Any], res: dict[str, Any]) -> None:
    """docker's --cpus: a quota over a fixed period, refused next to --cpu-quota/--cpu-period."""
    text = flags.get(CPUS_FLAG[0])
    if text is None:
        return
    try:
        cpus = float(text)
    except ValueError:
        raise UsageError(f"invalid value {text!r} for --cpus") from None
    if cpus <= 0:
        raise UsageError(f"invalid value {text!r} for --cpus: must be positive")
    if flags.get("cpu_quota") is not None or flags.get("cpu_period") is not None:
        raise UsageError("conflicting options: Nano CPUs and CPU Period/Quota cannot both be set")
    import os

    n = os.cpu_count() or 1
    if cpus > n:
        raise UsageError(
            f"range of CPUs is from 0.01 to {n}.00, as there are only {n} CPUs available"
        )
    res.setdefault("cpu", {}).update(period=CPUS_PERIOD, quota=int(cpus * CPUS_PERIOD))


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """`rref update`: new values replace old ones key by key within each controller."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for k, v in update.items():
        if isinstance(v, dict):
            out.setdefault(k, {}).update(v)
        else:
            out[k] = v
    return out
