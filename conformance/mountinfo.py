"""/proc/<pid>/mountinfo, parsed once for the whole suite (proc(5)): one `MountInfoEntry`
per line, paths unescaped. The host probe, the facts tests read and the harness's own
mount checks all use this parser."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass
class MountInfoEntry:
    mount_id: int
    parent_id: int
    devno: str
    root: str
    mount_point: str
    options: tuple[str, ...]
    fstype: str
    source: str
    super_options: tuple[str, ...]


_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


def _unescape(path: str) -> str:
    """Undo the kernel's octal escaping of spaces, tabs, newlines and backslashes."""
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), path)


def parse_mountinfo(text: str) -> list[MountInfoEntry]:
    """Parse /proc/<pid>/mountinfo text.  Malformed lines are skipped."""
    entries: list[MountInfoEntry] = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        sep = fields.index("-")
        if sep < 6 or len(fields) < sep + 3:
            continue
        try:
            mount_id, parent_id = int(fields[0]), int(fields[1])
        except ValueError:
            continue
        super_opts = fields[sep + 3] if len(fields) > sep + 3 else ""
        entries.append(
            MountInfoEntry(
                mount_id=mount_id,
                parent_id=parent_id,
                devno=fields[2],
                root=_unescape(fields[3]),
                mount_point=_unescape(fields[4]),
                options=tuple(fields[5].split(",")),
                fstype=fields[sep + 1],
                source=_unescape(fields[sep + 2]),
                super_options=tuple(o for o in super_opts.split(",") if o),
            )
        )
    return entries
