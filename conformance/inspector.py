"""The inside view of a container: run `inspector.sh` in it and parse its one JSON object.

Why: inside facts (pid, ns ids, maps, mounts, capabilities...) must be gathered the same way
whatever the runtime, without changing the image: the script travels as `sh -c SCRIPT`.
A fact the script could not read is None here, never dropped: a test that needs it fails
naming it (`Inside.ns_id`), instead of breaking on a missing key. Output that is not the
inspector's JSON at all is the runtime's failure (its stdout did not come through).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from conformance import evidence
from conformance.errors import RuntimeFailure
from conformance.hostinfo import CAP_NAMES, parse_cap_mask

#: Where `inspector_argv(save=True)` leaves the JSON inside the container (read from the host
#: through /proc/<pid>/root).
SAVED_PATH = "/tmp/.conform-inside.json"


class InspectorError(RuntimeFailure, ValueError):
    """The container's output is not the inspector's JSON (the script always prints valid
    JSON, so its output did not come through: a failure of the runtime under test)."""


@functools.cache
def script() -> str:
    return resources.files("conformance").joinpath("inspector.sh").read_text("utf-8")


def inspector_argv(
    *, before: str | None = None, then: str | None = None, save: bool = False
) -> list[str]:
    """argv that runs the inspector; ``save`` writes it to SAVED_PATH (atomically) instead of
    stdout; ``before``/``then`` are shell run before/after it (e.g. ``exec sleep 1000``)."""
    text = script()
    if save:
        text = f"{{\n{text}\n}} > {SAVED_PATH}.tmp && mv {SAVED_PATH}.tmp {SAVED_PATH}"
    if before:
        text = f"{before}\n{text}"
    if then:
        text = f"{text}\n{then}"
    return ["sh", "-c", text]


@dataclass
class Inside:
    """Parsed inspector output."""

    pid: int | None  # None: a fact that could not be read inside
    ppid: int | None
    pid1_ppid: int | None
    hostname: str
    etc_hostname: bytes | None
    ns: dict[str, tuple[int, int] | None]  # name -> (dev, ino); None: unreadable inside
    ns_links: dict[str, str]
    uid_map: list[tuple[int, int, int]]
    gid_map: list[tuple[int, int, int]]
    setgroups: str
    cgroup: list[str]
    mountinfo: list[str]
    interfaces: list[str]
    status: dict[str, str]
    pids: list[int]
    self_link: str
    cwd: str
    uid: int | None
    gid: int | None
    env: dict[str, str]
    raw: dict[str, Any] = field(repr=False, default_factory=dict)

    def ns_id(self, kind: str) -> tuple[int, int]:
        """(dev, ino) of /proc/self/ns/<kind> as seen inside; AssertionError (a FAIL) naming
        the file when the container could not read it (no /proc of its own, ...)."""
        ident = self.ns.get(kind)
        assert ident is not None, (
            f"inside the container, /proc/self/ns/{kind} could not be read "
            f"(readlink: {self.ns_links.get(kind) or 'nothing'}): its /proc does not show "
            "the process itself"
        )
        return ident

    def caps(self, field_name: str = "CapEff") -> set[str]:
        """Capability names (lower case, no CAP_ prefix) of a Cap* status field."""
        bits = parse_cap_mask(self.status.get(field_name, "0") or "0")
        return {CAP_NAMES[b] if b < len(CAP_NAMES) else f"cap{b}" for b in bits}

    def mounts(self) -> list[dict[str, str]]:
        """mountinfo lines as dicts (`facts.parse_mountinfo`): mount_point, root, fstype,
        source, options, devno..."""
        from conformance.facts import parse_mountinfo

        return parse_mountinfo(self.mountinfo)


def _map(lines: list[str]) -> list[tuple[int, int, int]]:
    out = []
    for line in lines:
        parts = line.split()
        if len(parts) == 3:
            out.append((int(parts[0]), int(parts[1]), int(parts[2])))
    return out


def _dev_ino(text: str | None) -> tuple[int, int] | None:
    dev, sep, ino = (text or "").partition(":")
    if not (sep and dev.isdigit() and ino.isdigit()):
        return None
    return int(dev), int(ino)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


#: Keys every inspector object has (a JSON line without them is someone else's output).
REQUIRED = ("pid", "ns", "mountinfo", "status")


def parse(text: str) -> Inside:
    """Inside from the inspector's stdout (the last line that is a JSON object)."""
    line = next((ln for ln in reversed(text.strip().splitlines()) if ln.startswith("{")), "")
    evidence.note("inspector", "inspector JSON", line or text[-4000:])
    try:
        d = json.loads(line)
    except json.JSONDecodeError as e:
        raise InspectorError(f"inspector output is not JSON ({e}): {text[-500:]!r}") from None
    missing = [k for k in REQUIRED if not isinstance(d, dict) or k not in d]
    if missing:
        raise InspectorError(f"not the inspector's JSON (no {', '.join(missing)}): {line[:300]!r}")
    hexed = d.get("etc_hostname_hex", "")
    env = {}
    for item in d.get("env", []):
        k, _, v = item.partition("=")
        env[k] = v
    ns = {k: v for k, v in d["ns"].items() if isinstance(v, dict)}
    return Inside(
        pid=_int(d["pid"]),
        ppid=_int(d.get("ppid")),
        pid1_ppid=_int(d.get("pid1_ppid")),
        hostname=d.get("hostname", ""),
        etc_hostname=bytes.fromhex(hexed) if d.get("etc_hostname_exists") else None,
        ns={k: _dev_ino(v.get("id")) for k, v in ns.items()},
        ns_links={k: v.get("link") or "" for k, v in ns.items()},
        uid_map=_map(d.get("uid_map", [])),
        gid_map=_map(d.get("gid_map", [])),
        setgroups=d.get("setgroups", ""),
        cgroup=d.get("cgroup", []),
        mountinfo=d["mountinfo"],
        interfaces=d.get("interfaces", []),
        status=d["status"],
        pids=[int(p) for p in d.get("pids", [])],
        self_link=d.get("self_link", ""),
        cwd=d.get("cwd", ""),
        uid=_int(d.get("uid")),
        gid=_int(d.get("gid")),
        env=env,
        raw=d,
    )
