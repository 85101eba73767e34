"""/proc/<pid>/mountinfo, parsed in one place (proc(5) layout, octal escapes undone).

Lean on purpose (no dataclasses): the cgroup layout is read on `rref run`'s path.
"""

from __future__ import annotations


class Mount:
    """One mountinfo line: ids, the mount's root within its filesystem, where, what."""

    __slots__ = (
        "fstype",
        "mount_id",
        "mountpoint",
        "options",
        "parent_id",
        "root",
        "source",
        "super_options",
    )

    def __init__(
        self,
        mount_id: int,
        parent_id: int,
        root: str,
        mountpoint: str,
        options: list[str],
        fstype: str,
        source: str,
        super_options: list[str],
    ) -> None:
        self.mount_id, self.parent_id = mount_id, parent_id
        self.root, self.mountpoint, self.options = root, mountpoint, options
        self.fstype, self.source, self.super_options = fstype, source, super_options

    def __repr__(self) -> str:
        return f"Mount({self.mount_id}, {self.mountpoint!r}, {self.fstype})"


def unescape(field: str) -> str:
    """The kernel writes space, tab, newline and backslash as \\040, \\011, \\012, \\134."""
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        c = field[i]
        digits = field[i + 1 : i + 4]
        if c == "\\" and len(digits) == 3 and all(d in "01234567" for d in digits):
            out.append(chr(int(digits, 8)))
            i += 4
        else:
            out.append(c)
            i += 1
    return "".join(out)


def parse(text: str) -> list[Mount]:
    """Every well-formed line of mountinfo `text`; malformed lines are skipped."""
    out: list[Mount] = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields, rfields = left.split(), right.split()
        if not sep or len(fields) < 6 or len(rfields) < 3:
            continue
        try:
            mount_id, parent_id = int(fields[0]), int(fields[1])
        except ValueError:
            continue
        out.append(
            Mount(
                mount_id,
                parent_id,
                unescape(fields[3]),
                unescape(fields[4]),
                fields[5].split(","),
                rfields[0],
                unescape(rfields[1]),
                rfields[2].split(","),
            )
        )
    return out


def read(pid: int | str = "self") -> list[Mount]:
    with open(f"/proc/{pid}/mountinfo") as f:
        return parse(f.read())
