"""What user space can read about a traced process from /proc (both backends use it).

Why here: namespace inodes and parents are read after the fact, in user space, so neither
backend dereferences kernel structs (whose layout may not match the headers bcc compiles with).
"""

from __future__ import annotations

import os

NS_TYPES: tuple[str, ...] = ("mnt", "uts", "ipc", "pid", "net", "user", "cgroup", "time")


def read_ns(pid: int) -> dict[str, int]:
    """Namespace type -> inode of ``pid`` ({} when it is gone or unreadable)."""
    out: dict[str, int] = {}
    for t in NS_TYPES:
        try:
            link = os.readlink(f"/proc/{pid}/ns/{t}")
        except OSError:
            continue
        # "mnt:[4026531841]"
        try:
            out[t] = int(link[link.index("[") + 1 : -1])
        except ValueError:
            continue
    return out


def read_ppid(pid: int) -> int:
    """The parent tgid of ``pid`` (0 when gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return 0
    # comm may contain spaces and parentheses: fields start after the last ')'
    rest = data[data.rfind(b")") + 2 :].split()
    try:
        return int(rest[1])
    except (IndexError, ValueError):
        return 0


def read_comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as f:
            return f.read().rstrip("\n")
    except OSError:
        return ""


def read_tgid(tid: int) -> int:
    """The thread group (process) id of host thread ``tid`` (0 when gone)."""
    try:
        with open(f"/proc/{tid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Tgid:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0
