"""A readable timeline of a trace: per process, indented by the process tree, flags decoded.

Why: a focused strace for containers; it is what `conform trace` prints and what a test's
report carries next to the JSONL, so a failed verdict can be read without tools.
"""

from __future__ import annotations

import json
from typing import Any

from probes.decode import AT_FDCWD, errno_name
from probes.events import TraceEvent
from probes.trace import Trace


def _q(value: Any) -> str:
    return "NULL" if value is None else json.dumps(value)


def _fd(value: Any) -> str:
    return "AT_FDCWD" if value == AT_FDCWD else str(value)


def _flags(names: Any) -> str:
    return "|".join(names) if names else "0"


def describe(e: TraceEvent) -> str:
    """One syscall as strace would write it, with decoded flags: `unshare(CLONE_NEWNS) = 0`."""
    a = e.args
    s = e.syscall
    if s == "fork":
        return f"fork -> child {a.get('child_pid')}"
    if s == "exit":
        return "exit"
    if s == "clone":
        body = f"{_flags(a.get('flags'))}, {a.get('exit_signal', '0')}"
    elif s == "clone3":
        body = f"{{flags={_flags(a.get('flags'))}, exit_signal={a.get('exit_signal', '0')}}}"
    elif s == "unshare":
        body = _flags(a.get("flags"))
    elif s == "setns":
        body = f"{a.get('fd')}, {a.get('nstype')}"
    elif s == "mount":
        parts = [_q(a.get(k)) for k in ("source", "target", "fstype")]
        body = ", ".join([*parts, _flags(a.get("flags")), _q(a.get("data"))])
    elif s == "umount2":
        body = f"{_q(a.get('target'))}, {_flags(a.get('flags'))}"
    elif s == "pivot_root":
        body = f"{_q(a.get('new_root'))}, {_q(a.get('put_old'))}"
    elif s == "chroot":
        body = _q(a.get("path"))
    elif s in ("sethostname", "setdomainname"):
        body = _q(a.get("name"))
    elif s in ("mknodat", "mknod"):
        dev = a.get("dev") or [0, 0]
        where = f"{_fd(a.get('dfd'))}, " if s == "mknodat" else ""
        body = f"{where}{_q(a.get('path'))}, {a.get('mode')}, makedev({dev[0]}, {dev[1]})"
    elif s in ("execve", "execveat"):
        where = f"{_fd(a.get('dfd'))}, " if s == "execveat" else ""
        body = f"{where}{_q(a.get('filename'))}, {json.dumps(a.get('argv', []))}"
    elif s in ("openat", "openat2"):
        body = f"{_fd(a.get('dfd'))}, {_q(a.get('path'))}, {_flags(a.get('flags'))}"
    elif s == "write":
        body = f"{a.get('fd')}, {_q(a.get('data'))}"
    elif s in ("mkdir", "mkdirat"):
        where = f"{_fd(a.get('dfd'))}, " if s == "mkdirat" else ""
        body = f"{where}{_q(a.get('path'))}, {a.get('mode', 0):04o}"
    elif s == "unlinkat":
        body = f"{_fd(a.get('dfd'))}, {_q(a.get('path'))}, {_flags(a.get('flags'))}"
    elif s == "unlink":
        body = _q(a.get("path"))
    else:
        body = ", ".join(f"{k}={v}" for k, v in a.items())
    return f"{s}({body}) = {errno_name(e.ret)}"


def render(trace: Trace) -> str:
    """The whole timeline: a header, notes, then each process (children indented)."""
    events = sorted(trace.events, key=lambda e: e.ts)
    t0 = events[0].ts if events else 0.0
    head = (
        f"trace: backend {trace.backend}, root pid {trace.root_pid}, "
        f"{len(events)} events, {trace.lost} lost"
    )
    lines = [head] + [f"note: {n}" for n in trace.notes]
    by_pid: dict[int, list[TraceEvent]] = {}
    for e in events:
        by_pid.setdefault(e.pid, []).append(e)
    tree = trace.tree()
    done: set[int] = set()

    def block(pid: int, depth: int) -> None:
        if pid in done:
            return
        done.add(pid)
        pad = "  " * depth
        mine = by_pid.get(pid, [])
        names = []
        for e in mine:
            if e.comm and e.comm not in names:
                names.append(e.comm)
        ns = next((e.ns for e in mine if e.ns), {})
        ns_text = " ".join(f"{k}:{v}" for k, v in sorted(ns.items()))
        lines.append(
            f"{pad}[{pid}] {' -> '.join(names) or '?'}" + (f"  ns {ns_text}" if ns_text else "")
        )
        for e in mine:
            who = f" (tid {e.tid})" if e.tid != e.pid else ""
            lines.append(f"{pad}  +{e.ts - t0:8.4f}s{who} {describe(e)}")
            if e.syscall == "fork":
                block(int(e.args.get("child_pid", 0)), depth + 1)

    roots = [trace.root_pid] if trace.root_pid else []
    children = {c for cs in tree.values() for c in cs}
    roots += [p for p in by_pid if p not in children and p not in roots]
    for pid in roots:
        block(pid, 0)
    for pid in by_pid:
        block(pid, 0)
    return "\n".join(lines) + "\n"
