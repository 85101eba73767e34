"""Volumes: docker's -v / --mount / --tmpfs parsed into spec mounts, and the named
volume store under <root>/volumes/<name>/_data.

Targets are only validated here; they are resolved inside the rootfs by the
container's init (rootfs.secure_join), so a symlink in the image can never
make a mount land outside the rootfs.
"""

from __future__ import annotations

import os
import re

from .errors import NotFound, RrefError, UsageError
from .state import flock, now_iso, read_json, write_json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

VOLUME_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
_PROPAGATION = ("private", "rprivate", "shared", "rshared", "slave", "rslave")
DEFAULT_TMPFS = ["nosuid", "nodev", "noexec", "size=65536k"]


class VolumeStore:
    def __init__(self, root: str) -> None:
        self.root = os.path.join(os.path.abspath(root), "volumes")

    def lock(self) -> Any:
        os.makedirs(self.root, mode=0o711, exist_ok=True)
        return flock(os.path.join(self.root, ".lock"))

    def path(self, name: str) -> str:
        return os.path.join(self.root, name)

    def names(self) -> list[str]:
        try:
            return sorted(
                n
                for n in os.listdir(self.root)
                if os.path.isfile(os.path.join(self.root, n, "meta.json"))
            )
        except FileNotFoundError:
            return []

    def get(self, name: str) -> dict[str, Any]:
        try:
            return read_json(os.path.join(self.path(name), "meta.json"))
        except FileNotFoundError:
            raise NotFound(f"no such volume: {name}") from None
        except ValueError as e:
            raise RrefError(f"corrupted volume record {name}: {e}") from None

    def create(
        self, name: str | None = None, labels: dict[str, str] | None = None, anonymous: bool = False
    ) -> dict[str, Any]:
        """Create (or return the existing) volume; docker's create is idempotent."""
        if name is None:
            name = os.urandom(32).hex()
            anonymous = True
        if not VOLUME_NAME.match(name):
            raise UsageError(
                f'invalid volume name "{name}": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed'
            )
        with self.lock():
            if os.path.isfile(os.path.join(self.path(name), "meta.json")):
                return self.get(name)
            data_dir = os.path.join(self.path(name), "_data")
            os.makedirs(data_dir, mode=0o755)
            os.chmod(self.path(name), 0o711)
            meta = {
                "CreatedAt": now_iso(),
                "Driver": "local",
                "Labels": labels or {},
                "Mountpoint": data_dir,
                "Name": name,
                "Options": {},
                "Scope": "local",
                "Anonymous": anonymous,
            }
            write_json(os.path.join(self.path(name), "meta.json"), meta)
            return meta

    def remove(self, name: str, users: list[str]) -> None:
        if users:
            in_use = ", ".join(u[:12] for u in users)
            raise RrefError(f"remove {name}: volume is in use - [{in_use}]")
        from .rmtree import remove_tree

        with self.lock():
            self.get(name)
            remove_tree(self.path(name))


def parse_volume_flag(spec: str, vols: VolumeStore | None = None) -> dict[str, Any]:
    """-v SRC:DST[:OPTS] | -v NAME:DST[:OPTS] | -v DST -> a Mounts entry (docker's shape)."""
    parts = spec.split(":")
    if not spec or len(parts) > 3 or any(p == "" for p in parts):
        raise UsageError(f"invalid volume specification: '{spec}'")
    if len(parts) == 1:
        src, dst, opts = "", parts[0], ""
    else:
        src, dst = parts[0], parts[1]
        opts = parts[2] if len(parts) == 3 else ""
    mode = [o for o in opts.split(",") if o]
    for o in mode:
        if o not in ("ro", "rw", "z", "Z", "nocopy", *_PROPAGATION):
            raise UsageError(f"invalid mode: {o}")
    kind = "bind" if src.startswith("/") else "volume"
    if src and kind == "volume" and not VOLUME_NAME.match(src):
        raise UsageError(
            f"invalid volume specification: '{spec}': '{src}' includes invalid "
            "characters for a local volume name"
        )
    return _mount(
        kind,
        src,
        dst,
        "ro" in mode,
        next((o for o in mode if o in _PROPAGATION), "rprivate"),
        create_src=True,
    )


def parse_mount_flag(spec: str) -> dict[str, Any]:
    """--mount type=bind|volume|tmpfs,source=...,target=...,readonly,... -> a Mounts entry."""
    fields: dict[str, str] = {}
    for item in spec.split(","):
        key, eq, value = item.partition("=")
        key = key.strip().lower()
        if not key:
            raise UsageError(f"invalid mount specification: '{spec}'")
        fields[key] = value if eq else "true"
    kind = fields.pop("type", "volume")
    src = fields.pop("source", fields.pop("src", ""))
    dst = fields.pop("target", fields.pop("destination", fields.pop("dst", "")))
    ro = fields.pop("readonly", fields.pop("ro", "false")).lower() in ("true", "1")
    prop = fields.pop("bind-propagation", "rprivate")
    size = fields.pop("tmpfs-size", "")
    mode = fields.pop("tmpfs-mode", "")
    fields.pop("volume-nocopy", None)
    if fields:
        raise UsageError(f"unexpected key '{next(iter(fields))}' in '{spec}'")
    if kind not in ("bind", "volume", "tmpfs"):
        raise UsageError(f"invalid mount type {kind!r}: want bind, volume or tmpfs")
    if not dst:
        raise UsageError("invalid mount config: target is required")
    if kind == "bind":
        if not src:
            raise UsageError('invalid mount config for type "bind": field Source must not be empty')
        if not os.path.exists(src):
            raise UsageError(
                f'invalid mount config for type "bind": bind source path does not exist: {src}'
            )
    if kind == "tmpfs":
        if src:
            raise UsageError('invalid mount config for type "tmpfs": source must be empty')
        return tmpfs_mount(
            dst, ([f"size={size}"] if size else []) + ([f"mode={mode}"] if mode else []), ro
        )
    if prop not in _PROPAGATION:
        raise UsageError(f"invalid bind-propagation {prop!r}")
    return _mount(kind, src, dst, ro, prop, create_src=False)


def parse_tmpfs_flag(spec: str) -> dict[str, Any]:
    dst, _, opts = spec.partition(":")
    return tmpfs_mount(dst, [o for o in opts.split(",") if o])


#: What the kernel's tmpfs takes for the options a user sets (anything else it refuses
#: only at mount time, inside the container being made).
_TMPFS_VALUES = {"size": r"\d+[kmgKMG%]?", "mode": r"[0-7]{1,4}", "nr_inodes": r"\d+[kmgKMG]?"}


def tmpfs_mount(dst: str, opts: list[str], ro: bool = False) -> dict[str, Any]:
    _check_target(dst)
    options = list(DEFAULT_TMPFS)
    for o in opts:
        key, _, value = o.partition("=")
        if not re.fullmatch(_TMPFS_VALUES.get(key, ".*"), value):
            raise UsageError(f'invalid mount config for type "tmpfs": invalid {key} {value!r}')
        options = [x for x in options if x.split("=")[0] != key]
        options.append(o)
    if ro:
        options.append("ro")
    return {
        "Type": "tmpfs",
        "Source": "",
        "Destination": os.path.normpath(dst),
        "Mode": "",
        "RW": not ro,
        "Propagation": "",
        "Options": options,
    }


def _check_target(dst: str) -> None:
    if not dst.startswith("/"):
        raise UsageError(f"invalid mount config: mount path must be absolute: {dst}")
    if os.path.normpath(dst) == "/":
        raise UsageError("invalid mount config: destination can't be '/'")


def _mount(kind: str, src: str, dst: str, ro: bool, prop: str, create_src: bool) -> dict[str, Any]:
    _check_target(dst)
    entry: dict[str, Any] = {
        "Type": kind,
        "Source": src,
        "Destination": os.path.normpath(dst),
        "Mode": "ro" if ro else "",
        "RW": not ro,
        "Propagation": prop,
    }
    if kind == "bind":
        entry["Source"] = os.path.normpath(src)
        entry["CreateSource"] = create_src
    else:
        entry["Name"] = src  # "" = anonymous, named at create time
        entry["Driver"] = "local"
    return entry


def check_duplicates(mounts: list[dict[str, Any]]) -> None:
    seen: set[str] = set()
    for m in mounts:
        if m["Destination"] in seen:
            raise UsageError(f"Duplicate mount point: {m['Destination']}")
        seen.add(m["Destination"])


def realize(
    mounts: list[dict[str, Any]], vols: VolumeStore, owner: tuple[int, int] | None = None
) -> list[dict[str, Any]]:
    """Create named/anonymous volumes and missing -v bind sources; return spec mounts.

    `owner` (uid, gid) is the host identity of container root under a user namespace:
    volumes made here are handed to it so container root can write them.
    """
    spec_mounts = []
    for m in mounts:
        if m["Type"] == "tmpfs":
            spec_mounts.append(
                {
                    "destination": m["Destination"],
                    "type": "tmpfs",
                    "source": "tmpfs",
                    "options": m.pop("Options"),
                }
            )
            continue
        if m["Type"] == "volume":
            fresh = not m["Name"] or m["Name"] not in vols.names()
            meta = vols.create(m["Name"] or None)
            m["Name"], m["Source"] = meta["Name"], meta["Mountpoint"]
            if fresh and owner:
                os.chown(m["Source"], *owner)
        elif m.pop("CreateSource", False) and not os.path.exists(m["Source"]):
            os.makedirs(m["Source"], mode=0o755)
        opts = ["rbind", m["Propagation"]] + (["ro"] if not m["RW"] else [])
        spec_mounts.append(
            {
                "destination": m["Destination"],
                "type": "bind",
                "source": m["Source"],
                "options": opts,
            }
        )
    return spec_mounts


def in_use(store: Any, name: str) -> list[str]:
    """Ids of containers (any state) whose config mounts volume `name`."""
    users = []
    for cid in store.ids():
        try:
            mounts = store.config(cid).get("Mounts", [])
        except RrefError:
            continue
        if any(m.get("Type") == "volume" and m.get("Name") == name for m in mounts):
            users.append(cid)
    return users
