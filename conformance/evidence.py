"""Evidence a test gathered: the inspector's JSON and the host-side facts it read.

Why: a verdict is only as convincing as what it rests on. Helpers that read facts (the
inspector's output, cgroup files, mountinfo) note what they read here; the plugin attaches
the notes of each test to its Allure result and clears them before the next test. Cheap: a
list append per read, kept per process (xdist workers run one test at a time).
"""

from __future__ import annotations

from dataclasses import dataclass

#: Bytes kept of one note (a full mountinfo is a few KiB; a runaway read is cut).
LIMIT = 64 * 1024


@dataclass(frozen=True)
class Note:
    kind: str  # "inspector" or "host"
    name: str  # what was read: "/proc/123/mountinfo", "memory/memory.limit_in_bytes"
    text: str


_notes: list[Note] = []


def note(kind: str, name: str, text: str | None) -> None:
    """Remember that ``name`` read ``text`` (None: the read found nothing)."""
    _notes.append(Note(kind, name, "<absent>" if text is None else text[:LIMIT]))


def clear() -> None:
    _notes.clear()


def notes(kind: str | None = None) -> list[Note]:
    return [n for n in _notes if kind is None or n.kind == kind]


def render_host(items: list[Note]) -> str:
    """Host facts as one text: a `== name` header per read, then what it returned."""
    return "\n".join(f"== {n.name}\n{n.text.rstrip()}" for n in items)
