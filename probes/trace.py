"""A whole trace: the events of one command's process tree, plus what was not seen.

Why ``lost`` and ``notes`` are fields: a verdict built on a trace must say when the trace is
incomplete (ring buffer overruns, daemons outside the tree), never silently pass on a gap.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from probes.events import TraceEvent


@dataclass
class Trace:
    """The events of one traced command, oldest first.

    ``backend`` names who recorded it ("bcc", "ptrace"); ``root_pid`` is the host pid of the
    traced command itself; ``lost`` counts records dropped (e.g. a full ring buffer);
    ``notes`` says in one line each what was not seen and why.
    """

    backend: str
    events: list[TraceEvent] = field(default_factory=list)
    lost: int = 0
    notes: list[str] = field(default_factory=list)
    root_pid: int = 0

    def by_syscall(self, *names: str) -> list[TraceEvent]:
        """The events of the given syscalls, in order."""
        return [e for e in self.events if e.syscall in names]

    def pids(self) -> list[int]:
        """Every process (tgid) seen, in order of first appearance."""
        seen: dict[int, None] = {}
        if self.root_pid:
            seen[self.root_pid] = None
        for e in self.events:
            seen.setdefault(e.pid, None)
            if e.syscall == "fork":
                seen.setdefault(int(e.args.get("child_pid", 0)), None)
        return list(seen)

    def tree(self) -> dict[int, list[int]]:
        """Parent pid -> child pids, from fork events (host pids, never clone's return)."""
        out: dict[int, list[int]] = {}
        for e in self.events:
            if e.syscall == "fork":
                out.setdefault(e.pid, []).append(int(e.args.get("child_pid", 0)))
        return out

    def descendants(self, pid: int) -> list[int]:
        """``pid`` and every process forked below it."""
        tree = self.tree()
        out, todo = [], [pid]
        while todo:
            p = todo.pop(0)
            if p in out:
                continue
            out.append(p)
            todo.extend(tree.get(p, []))
        return out

    def comm_of(self, pid: int) -> str:
        """The last name ``pid`` was seen with ("" when never seen)."""
        name = ""
        for e in self.events:
            if e.pid == pid and e.comm:
                name = e.comm
        return name

    def to_jsonl(self, **extra: Any) -> str:
        """A header line (backend, root_pid, lost, notes, events, and ``extra``), then one
        line per event (keys in the order of `TraceEvent`)."""
        head = {
            "backend": self.backend,
            "root_pid": self.root_pid,
            "lost": self.lost,
            "notes": self.notes,
            "events": len(self.events),
            **extra,
        }
        dumps = json.JSONEncoder(separators=(",", ":")).encode
        lines = [dumps({"trace": head})]
        lines += [dumps(e.to_dict()) for e in self.events]
        return "\n".join(lines) + "\n"

    @classmethod
    def from_jsonl(cls, text: str | Iterable[str]) -> Trace:
        lines = text.splitlines() if isinstance(text, str) else list(text)
        trace = cls(backend="")
        for line in lines:
            if not line.strip():
                continue
            d: dict[str, Any] = json.loads(line)
            if "trace" in d:
                head = d["trace"]
                trace.backend = str(head.get("backend", ""))
                trace.root_pid = int(head.get("root_pid", 0))
                trace.lost = int(head.get("lost", 0))
                trace.notes = [str(n) for n in head.get("notes", [])]
            else:
                trace.events.append(TraceEvent.from_dict(d))
        return trace
