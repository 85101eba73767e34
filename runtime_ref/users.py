"""Resolve docker's `--user` strings against the container's own passwd and group files."""

from __future__ import annotations

from .errors import RrefError, UsageError

MAX_ID = 2**31 - 1  # runc's (and the kernel's) largest uid or gid


def check_ids(user: str) -> None:
    """Refuse numeric ids no process can have, before anything is made (runc's message)."""
    for part in user.split(":", 1):
        if part.isdigit() and int(part) > MAX_ID:
            raise UsageError(f"invalid user {user!r}: uids and gids must be in range 0-{MAX_ID}")


def _read_db(path: str) -> list[list[str]]:
    try:
        with open(path) as f:
            return [
                line.rstrip("\n").split(":")
                for line in f
                if line.strip() and not line.startswith("#")
            ]
    except OSError:
        return []


def resolve(user: str, root: str = "/") -> tuple[int, int, list[int], str]:
    """Return (uid, gid, supplementary gids, home) for `name|uid[:group|gid]`."""
    passwd = _read_db(root.rstrip("/") + "/etc/passwd")
    groups = _read_db(root.rstrip("/") + "/etc/group")
    check_ids(user)  # an image's USER or a build's COPY --chown too
    uname, _, gname = user.partition(":")
    entry = None
    if uname.isdigit():
        uid = int(uname)
        entry = next((e for e in passwd if len(e) > 3 and e[2] == uname), None)
    else:
        entry = next((e for e in passwd if len(e) > 3 and e[0] == uname), None)
        if entry is None:
            raise RrefError(f"unable to find user {uname}: no matching entries in passwd file")
        uid = int(entry[2])
    gid = int(entry[3]) if entry else 0
    home = entry[5] if entry and len(entry) > 5 else "/"
    if gname:
        if gname.isdigit():
            gid = int(gname)
        else:
            g = next((e for e in groups if len(e) > 2 and e[0] == gname), None)
            if g is None:
                raise RrefError(f"unable to find group {gname}: no matching entries in group file")
            gid = int(g[2])
    name = entry[0] if entry else None
    extra = sorted(
        {
            int(e[2])
            for e in groups
            if len(e) > 3 and name and name in e[3].split(",") and int(e[2]) != gid
        }
    )
    return uid, gid, extra, home
