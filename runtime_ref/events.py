"""Container events, docker's shape, appended as JSON lines to <root>/events.jsonl.

One O_APPEND write per event keeps concurrent rref processes from
interleaving records; `rref events` reads the file back, filters it by time
and attributes, and follows it when no --until is given.
"""

from __future__ import annotations

import os
import time

from . import jsonc as json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def log_path(root: str) -> str:
    return os.path.join(os.path.abspath(root), "events.jsonl")


def emit(root: str, action: str, cid: str, attrs: dict[str, Any] | None = None) -> None:
    """Record one event; never fails the caller (an unwritable log loses the event only)."""
    now = time.time_ns()
    record = {
        "status": action,
        "id": cid,
        "Type": "container",
        "Action": action,
        "Actor": {"ID": cid, "Attributes": {k: str(v) for k, v in (attrs or {}).items()}},
        "scope": "local",
        "time": now // 1_000_000_000,
        "timeNano": now,
    }
    if "image" in (attrs or {}):
        record["from"] = str(attrs["image"])  # type: ignore[index]
    line = (json.dumps(record) + "\n").encode()
    try:
        fd = os.open(log_path(root), os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return
    try:
        os.write(fd, line)
    except OSError:
        pass
    finally:
        os.close(fd)


def parse_time(text: str, now: float | None = None) -> float:
    """docker's --since/--until: unix seconds, RFC 3339, or a duration back from now."""
    import calendar
    import re

    from .errors import UsageError

    now = time.time() if now is None else now
    t = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", t):
        return float(t)
    m = re.fullmatch(r"((\d+(\.\d+)?)(h|m|s|ms))+", t)
    if m:
        total = 0.0
        for num, _, unit in re.findall(r"(\d+(\.\d+)?)(ms|h|m|s)", t):
            total += float(num) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001}[unit]
        return now - total
    m = re.fullmatch(r"(\d{4}-\d{2}-\d{2})(T(\d{2}:\d{2}:\d{2})(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?", t)
    if m:
        base = calendar.timegm(
            time.strptime(f"{m.group(1)}T{m.group(3) or '00:00:00'}", "%Y-%m-%dT%H:%M:%S")
        )
        frac = float(m.group(4)) if m.group(4) else 0.0
        tz = m.group(5) or "Z"
        offset = (
            0
            if tz == "Z"
            else (1 if tz[0] == "+" else -1) * (int(tz[1:3]) * 3600 + int(tz[4:6]) * 60)
        )
        return base + frac - offset
    raise UsageError(f"invalid time {text!r}: use unix seconds, RFC 3339 or a duration like 10m")


def parse_filters(items: list[str]) -> dict[str, set[str]]:
    from .errors import UsageError

    out: dict[str, set[str]] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or key not in ("container", "event", "type", "image"):
            raise UsageError(f"invalid filter {item!r}: want container=, event=, type= or image=")
        out.setdefault(key, set()).add(value)
    return out


def _value(ev: dict[str, Any], key: str) -> list[str]:
    """The values a filter key can match for one event."""
    attrs = ev.get("Actor", {}).get("Attributes", {})
    if key == "container":
        return [ev.get("id", ""), ev.get("id", "")[:12], attrs.get("name", "")]
    if key == "event":
        action = ev.get("Action", "")
        return [action, action.split(":")[0]]
    if key == "type":
        return [ev.get("Type", "")]
    return [attrs.get("image", "")]


def matches(ev: dict[str, Any], filters: dict[str, set[str]]) -> bool:
    """docker's rule: every key must match, any value of a key may."""
    return all(
        set(_value(ev, key)) & {w.lstrip("/") for w in wanted} for key, wanted in filters.items()
    )


def read(
    root: str, since: float | None, until: float | None, filters: dict[str, set[str]], follow: bool
) -> Any:
    """Yield events in order; with `follow`, keep reading new ones until `until` passes."""
    path = log_path(root)
    pos = 0
    while True:
        try:
            with open(path, "rb") as f:
                f.seek(pos)
                data = f.read()
        except FileNotFoundError:
            data = b""
        cut = data.rfind(b"\n") + 1
        pos += cut
        for raw in data[:cut].splitlines():
            try:
                ev = json.loads(raw)
            except ValueError:
                continue
            t = ev.get("timeNano", 0) / 1e9
            if since is not None and t < since:
                continue
            if until is not None and t > until:
                return
            if matches(ev, filters):
                yield ev
        if not follow or (until is not None and time.time() > until):
            return
        time.sleep(0.1)
