"""Read-only views: `ps`, `inspect` and `images`, shaped like docker's output."""

from __future__ import annotations

import calendar
import json
import sys
import time

from . import containers
from .errors import NotFound, RrefError
from .images import ImageStore
from .state import Store
from .template import render

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _parse_iso(ts: str) -> float:
    if not ts or ts.startswith("0001"):
        return 0.0
    return calendar.timegm(time.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S"))


def human_ago(ts: str) -> str:
    secs = max(0, int(time.time() - _parse_iso(ts)))
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if secs >= size:
            n = secs // size
            return f"{n} {unit}{'s' if n > 1 else ''}"
    return "Less than a second" if secs < 1 else f"{secs} seconds"


def status_text(st: dict[str, Any]) -> str:
    s = st.get("Status")
    if s == "running":
        return f"Up {human_ago(st.get('StartedAt', ''))}"
    if s == "paused":
        return f"Up {human_ago(st.get('StartedAt', ''))} (Paused)"
    if s == "exited":
        return f"Exited ({st.get('ExitCode', 0)}) {human_ago(st.get('FinishedAt', ''))} ago"
    if s == "dead":
        return "Dead"
    return "Created"


def ps(store: Store, all_: bool = False, quiet: bool = False, no_trunc: bool = False) -> None:
    rows = []
    for cid in store.ids():
        try:
            cfg, st = containers.load(store, cid)
        except NotFound:
            continue  # removed while we listed, or still being made
        except RrefError as e:
            print(f"rref: {e}", file=sys.stderr)
            continue
        if not all_ and st.get("Status") not in ("running", "paused"):
            continue
        rows.append((cfg, st))
    rows.sort(key=lambda r: r[0].get("Created", ""), reverse=True)
    if quiet:
        for cfg, _ in rows:
            print(cfg["Id"] if no_trunc else cfg["Id"][:12])
        return
    table = [("CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES")]
    for cfg, st in rows:
        command = " ".join([cfg.get("Path", ""), *cfg.get("Args", [])])
        if not no_trunc and len(command) > 20:
            command = command[:19] + "…"
        table.append(
            (
                cfg["Id"] if no_trunc else cfg["Id"][:12],
                cfg.get("ImageRef", ""),
                f'"{command}"',
                f"{human_ago(cfg.get('Created', ''))} ago",
                status_text(st),
                "",
                cfg["Name"].lstrip("/"),
            )
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    for r in table:
        print("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def container_view(store: Store, cid: str) -> dict[str, Any]:
    cfg, st = containers.load(store, cid)
    state = {
        k: st.get(k)
        for k in (
            "Status",
            "Running",
            "Paused",
            "OOMKilled",
            "Dead",
            "Pid",
            "ExitCode",
            "Error",
            "StartedAt",
            "FinishedAt",
        )
    }
    state["Restarting"] = False
    return {
        "Id": cfg.get("Id"),
        "Created": cfg.get("Created"),
        "Path": cfg.get("Path"),
        "Args": cfg.get("Args"),
        "State": state,
        "Image": cfg.get("Image"),
        "Name": cfg.get("Name"),
        "ResolvConfPath": cfg.get("ResolvConfPath"),
        "HostnamePath": cfg.get("HostnamePath"),
        "HostsPath": cfg.get("HostsPath"),
        "LogPath": cfg.get("LogPath"),
        "Driver": "overlay",
        "HostConfig": cfg.get("HostConfig"),
        "GraphDriver": cfg.get("GraphDriver"),
        "Mounts": cfg.get("Mounts", []),
        "Config": cfg.get("Config"),
        "CgroupPaths": cfg.get("Cgroup", {}),
        "NetworkSettings": _network_settings(cfg, st),
    }


def _network_settings(cfg: dict[str, Any], st: dict[str, Any]) -> dict[str, Any]:
    ns = st.get("NetworkSettings") or {}
    running = st.get("Status") in ("running", "paused")
    out = {
        "IPAddress": ns.get("IPAddress", "") if running else "",
        "IPPrefixLen": ns.get("IPPrefixLen", 0) if running else 0,
        "Gateway": ns.get("Gateway", "") if running else "",
        "MacAddress": ns.get("MacAddress", "") if running else "",
        "Ports": ns.get("Ports", {}) if running else {},
        "Networks": {},
    }
    mode = cfg.get("HostConfig", {}).get("NetworkMode", "none")
    out["Networks"][mode] = {
        k: out[k] for k in ("IPAddress", "IPPrefixLen", "Gateway", "MacAddress")
    }
    return out


def image_view(images: ImageStore, ref: str) -> dict[str, Any]:
    img = images.resolve(ref)
    cfg = img.config
    return {
        "Id": img.id,
        "RepoTags": img.tags,
        "Created": cfg.get("created", ""),
        "Architecture": cfg.get("architecture", ""),
        "Os": cfg.get("os", ""),
        "Config": cfg.get("config", {}),
        "RootFS": {"Type": "layers", "Layers": cfg["rootfs"]["diff_ids"]},
        "GraphDriver": {"Name": "overlay", "Data": {"LowerDir": ":".join(img.layer_dirs)}},
    }


def inspect(
    store: Store, images: ImageStore, refs: list[str], fmt: str | None, kind: str | None
) -> int:
    out: list[Any] = []
    code = 0
    for ref in refs:
        try:
            if kind != "image":
                try:
                    out.append(container_view(store, store.resolve(ref)))
                    continue
                except NotFound:
                    if kind == "container":
                        raise
            out.append(image_view(images, ref))
        except NotFound:
            print(f"rref: No such object: {ref}", file=sys.stderr)
            code = 1
    if fmt:
        for obj in out:
            print(render(fmt, obj))
    else:
        print(json.dumps(out, indent=4))
    return code


def images(
    store: ImageStore, quiet: bool = False, all_: bool = False, filters: list[str] | None = None
) -> None:
    """docker images: tagged and dangling images; build intermediates only with -a."""
    from .errors import UsageError
    from .imagemgmt import intermediate_images

    want_dangling: bool | None = None
    refs: list[str] = []
    for f in filters or []:
        key, _, value = f.partition("=")
        if key == "dangling" and value in ("true", "false"):
            want_dangling = value == "true"
        elif key == "reference" and value:
            refs.append(value)
        else:
            raise UsageError(f"invalid filter {f!r}: want dangling=true|false or reference=NAME")
    hidden = set() if all_ else intermediate_images(store)
    rows = []
    for image_id in store.image_ids():
        img = store.get(image_id)
        if image_id in hidden and not img.tags:
            continue
        if want_dangling is not None and (not img.tags) != want_dangling:
            continue
        size = store.image_size(img)
        for tag in img.tags or ["<none>:<none>"]:
            repo, _, t = tag.rpartition(":")
            if refs and not any(_ref_match(tag, r) for r in refs):
                continue
            rows.append((repo, t, image_id[7:19], img.config.get("created", ""), size))
    if quiet:
        for r in dict.fromkeys(r[2] for r in rows):
            print(r)
        return
    print(f"{'REPOSITORY':<32}{'TAG':<12}{'IMAGE ID':<15}{'CREATED':<26}SIZE")
    for repo, tag, iid, created, size in rows:
        print(f"{repo:<32}{tag:<12}{iid:<15}{human_ago(created) + ' ago':<26}{size / 1e6:.1f}MB")


def _ref_match(tag: str, pattern: str) -> bool:
    import fnmatch

    return fnmatch.fnmatch(tag, pattern) or fnmatch.fnmatch(tag, pattern + ":*")
