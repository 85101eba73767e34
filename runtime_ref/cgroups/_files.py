"""What the cgroup drivers share: errors, reading and writing cgroup files, value formats.

Private to the package: `v1`, `v2` and the front (`__init__`) import from here,
so neither driver needs the front and the front needs no driver at import time.
"""

from __future__ import annotations

import os

from ..errors import CgroupError
from ..resources import ROWS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

WAIT = 5.0  # seconds to wait for freeze/thaw and for a killed cgroup to empty
#: the v2 leaf rref moves a delegated cgroup's own processes into, so that the cgroup may
#: enable controllers for its children (a non-root v2 cgroup with processes cannot)
V2_LEAF = "rref-leaf"


class CgroupUnsupported(CgroupError, NotImplementedError):
    """The request needs a mechanism rref does not implement on this host."""


def write_raw(d: str, name: str, value: object) -> None:
    """Write one cgroup file in one write(2); OSError as the kernel gave it."""
    fd = os.open(os.path.join(d, name), os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, str(value).encode())
    finally:
        os.close(fd)


def write_value(d: str, name: str, value: object) -> None:
    """Write one cgroup file; CgroupError names the file, value and directory."""
    try:
        write_raw(d, name, value)
    except OSError as e:
        raise CgroupError(f"cannot set {name} to {value}: {e.strerror} ({d})") from None


def read_value(d: str | None, name: str) -> str | None:
    """A cgroup file's text, stripped; None when the directory or file is absent."""
    if d is None:
        return None
    try:
        with open(os.path.join(d, name)) as f:
            return f.read().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        raise CgroupError(f"cannot read {name}: {e.strerror} ({d})") from None


def parse_flat_keyed(text: str | None) -> dict[str, int]:
    """`key value` lines (cpu.stat, memory.events, cgroup.events, oom_control)."""
    out: dict[str, int] = {}
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


UNLIMITED_V1 = 1 << 62  # v1 reports "no limit" as PAGE_COUNTER_MAX pages: ~2**63


def parse_limit(text: str | None) -> int | None:
    """A limit file's value; None for "max", -1, v1's huge no-limit numbers or absence."""
    if text is None:
        return None
    text = text.strip()
    if text in ("max", "", "-1"):
        return None
    n = int(text)
    return None if n >= UNLIMITED_V1 else n


def parse_int(text: str | None) -> int | None:
    return int(text) if text else None


def device_rule(rule: object) -> str:
    """A device rule as the v1 devices.allow/deny line ("c 1:3 rwm"); CgroupError if bad."""
    if not isinstance(rule, dict):
        raise CgroupError(f"invalid device rule: {rule!r}")
    kind = rule.get("type") or "a"
    access = rule.get("access") or "rwm"
    if (
        kind not in ("a", "c", "b")
        or not isinstance(access, str)
        or not access
        or set(access) - set("rwm")
    ):
        raise CgroupError(f"invalid device rule: {rule!r}")
    nums = []
    for k in ("major", "minor"):
        n = rule.get(k)
        if n is None or n == -1:
            nums.append("*")
        elif isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise CgroupError(f"invalid device rule: {rule!r}")
        else:
            nums.append(str(n))
    return f"{kind} {nums[0]}:{nums[1]} {access}"


def write_plain(d: str, controller: str, values: dict[str, Any], version: int) -> None:
    """Write each set value of `controller` to its file from the resource table.

    For the controllers whose files are independent (cpuset, pids); "" means unset.
    """
    for r in ROWS:
        value = values.get(r.key)
        name = r.file(version)
        if r.controller == controller and value is not None and value != "" and name:
            write_value(d, name, r.file_value(version, value))
