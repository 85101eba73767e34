"""The inside view of a container: run `inspector.sh` in it and parse its one JSON object.

Why: inside facts (pid, ns ids, maps, mounts, capabilities...) must be gathered the same way
whatever the runtime, without changing the image: the script travels as `sh -c SCRIPT`.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from conformance.hostinfo import CAP_NAMES, parse_cap_mask

#: Where `inspector_argv(save=True)` leaves the JSON inside the container (read from the host
#: through /proc/<pid>/root).
SAVED_PATH = "/tmp/.conform-inside.json"


class InspectorError(ValueError):
    """The inspector's output could not be parsed (harness problem unless stated otherwise)."""


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

    pid: int
    ppid: int
    pid1_ppid: int
    hostname: str
    etc_hostname: bytes | None
    ns: dict[str, tuple[int, int]]  # name -> (dev, ino)
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
    uid: int
    gid: int
    env: dict[str, str]
    raw: dict[str, Any] = field(repr=False, default_factory=dict)

    def caps(self, field_name: str = "CapEff") -> set[str]:
        """Capability names (lower case, no CAP_ prefix) of a Cap* status field."""
        bits = parse_cap_mask(self.status.get(field_name, "0") or "0")
        return {CAP_NAMES[b] if b < len(CAP_NAMES) else f"cap{b}" for b in bits}

    def mounts(self) -> list[dict[str, str]]:
        """mountinfo lines as dicts: mount_point, root, fstype, source, options, devno."""
        out = []
        for line in self.mountinfo:
            left, _, right = line.partition(" - ")
            f, r = left.split(), right.split()
            if len(f) < 6 or len(r) < 2:
                continue
            out.append(
                {
                    "devno": f[2],
                    "root": f[3],
                    "mount_point": f[4],
                    "options": f[5],
                    "fstype": r[0],
                    "source": r[1],
                    "super": r[2] if len(r) > 2 else "",
                }
            )
        return out


def _map(lines: list[str]) -> list[tuple[int, int, int]]:
    out = []
    for line in lines:
        parts = line.split()
        if len(parts) == 3:
            out.append((int(parts[0]), int(parts[1]), int(parts[2])))
    return out


def _dev_ino(text: str) -> tuple[int, int]:
    dev, _, ino = text.partition(":")
    return int(dev), int(ino)


def parse(text: str) -> Inside:
    """Inside from the inspector's stdout (the last line that is a JSON object)."""
    line = next((ln for ln in reversed(text.strip().splitlines()) if ln.startswith("{")), "")
    try:
        d = json.loads(line)
    except json.JSONDecodeError as e:
        raise InspectorError(f"inspector output is not JSON ({e}): {text[-500:]!r}") from None
    hexed = d.get("etc_hostname_hex", "")
    env = {}
    for item in d.get("env", []):
        k, _, v = item.partition("=")
        env[k] = v
    return Inside(
        pid=int(d["pid"]),
        ppid=int(d["ppid"]),
        pid1_ppid=int(d["pid1_ppid"]),
        hostname=d["hostname"],
        etc_hostname=bytes.fromhex(hexed) if d.get("etc_hostname_exists") else None,
        ns={k: _dev_ino(v["id"]) for k, v in d["ns"].items() if v.get("id")},
        ns_links={k: v["link"] for k, v in d["ns"].items()},
        uid_map=_map(d["uid_map"]),
        gid_map=_map(d["gid_map"]),
        setgroups=d["setgroups"],
        cgroup=d["cgroup"],
        mountinfo=d["mountinfo"],
        interfaces=d["interfaces"],
        status=d["status"],
        pids=[int(p) for p in d["pids"]],
        self_link=d["self_link"],
        cwd=d["cwd"],
        uid=int(d["uid"]),
        gid=int(d["gid"]),
        env=env,
        raw=d,
    )
