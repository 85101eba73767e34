"""diff, commit and import: a container's writable layer becomes an image layer.

What is never part of a diff or a commit: the per-container files of the
init layer (/etc/hostname, /etc/hosts, /etc/resolv.conf) and everything
below the container's volume and tmpfs mount points. The upper layer is
read while the container is paused (docker's default), so the snapshot is
consistent; a container that was already paused stays paused.
"""

from __future__ import annotations

import contextlib
import os
import time

from . import containers, events, faults, scratch
from .errors import UsageError
from .images import ImageStore, normalize_ref
from .state import Store

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

INIT_FILES = ("etc/hostname", "etc/hosts", "etc/resolv.conf")
CHANGE_KEYS = (
    "CMD",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "LABEL",
    "USER",
    "WORKDIR",
    "VOLUME",
    "STOPSIGNAL",
)


def excluded_paths(cfg: dict[str, Any]) -> list[str]:
    """Container-relative paths whose content never leaves the container."""
    mounts = [m["Destination"].lstrip("/") for m in cfg.get("Mounts", [])]
    return [*INIT_FILES, *mounts]


def _layer_context(
    store: Store, images: ImageStore, cid: str
) -> tuple[dict[str, Any], str, list[str]]:
    cfg = store.config(cid)
    upper = cfg["GraphDriver"]["Data"]["UpperDir"]
    lowers = [
        d for d in cfg["GraphDriver"]["Data"]["LowerDir"].split(":") if not d.endswith("/init")
    ]
    return cfg, upper, lowers


def diff(store: Store, images: ImageStore, cid: str) -> list[tuple[str, str]]:
    from . import layers

    cfg, upper, lowers = _layer_context(store, images, cid)
    return layers.changes(upper, lowers=lowers, exclude=excluded_paths(cfg))


@contextlib.contextmanager
def _paused(store: Store, cid: str, pause: bool) -> Iterator[None]:
    """Freeze a running container for the snapshot unless told not to."""
    from . import lifecycle

    st = containers.status(store, cid)
    freeze = pause and st.get("Status") == "running" and containers.is_running(st)
    if not freeze:
        yield
        return
    with containers.frozen_by_me(store, cid):  # a killed commit's freeze is undone by others
        lifecycle._cgroup(store, cid).freeze()
        try:
            yield
        finally:
            lifecycle._cgroup(store, cid).thaw()


def parse_changes(changes: list[str], base: dict[str, Any]) -> dict[str, Any]:
    """Apply `-c 'CMD ["x"]'`-style Dockerfile instructions to an image config's `config`."""
    import json
    import shlex

    out = dict(base)
    for ch in changes:
        key, _, rest = ch.strip().partition(" ")
        key, rest = key.upper(), rest.strip()
        if key not in CHANGE_KEYS or not rest:
            raise UsageError(
                f"invalid change {ch!r}: want one of {', '.join(CHANGE_KEYS)} with a value"
            )

        def words(text: str = rest, key: str = key, ch: str = ch) -> list[str]:
            if text.startswith("["):
                try:
                    val = json.loads(text)
                except ValueError:
                    raise UsageError(f"invalid JSON in change {ch!r}") from None
                if not isinstance(val, list) or not all(isinstance(v, str) for v in val):
                    raise UsageError(f"invalid change {ch!r}: want a JSON list of strings")
                return val
            return ["/bin/sh", "-c", text] if key in ("CMD", "ENTRYPOINT") else shlex.split(text)

        if key in ("CMD", "ENTRYPOINT"):
            out["Cmd" if key == "CMD" else "Entrypoint"] = words()
        elif key == "ENV":
            env = {e.partition("=")[0]: e for e in out.get("Env") or []}
            pairs = shlex.split(rest)
            if len(pairs) == 2 and "=" not in pairs[0]:
                pairs = [f"{pairs[0]}={pairs[1]}"]
            for p in pairs:
                if "=" not in p:
                    raise UsageError(f"invalid change {ch!r}: ENV wants KEY=VALUE")
                env[p.partition("=")[0]] = p
            out["Env"] = list(env.values())
        elif key == "LABEL":
            labels = dict(out.get("Labels") or {})
            for p in shlex.split(rest):
                k, eq, v = p.partition("=")
                if not eq:
                    raise UsageError(f"invalid change {ch!r}: LABEL wants KEY=VALUE")
                labels[k] = v
            out["Labels"] = labels
        elif key == "EXPOSE":
            ports = dict(out.get("ExposedPorts") or {})
            for p in rest.split():
                ports[p if "/" in p else f"{p}/tcp"] = {}
            out["ExposedPorts"] = ports
        elif key == "VOLUME":
            vols = dict(out.get("Volumes") or {})
            for v in words() if rest.startswith("[") else rest.split():
                vols[v] = {}
            out["Volumes"] = vols
        elif key == "WORKDIR":
            out["WorkingDir"] = rest
        elif key == "USER":
            out["User"] = rest
        elif key == "STOPSIGNAL":
            out["StopSignal"] = rest
    return out


def new_image_config(
    base: dict[str, Any],
    diff_id: str | None,
    config: dict[str, Any],
    created_by: str,
    comment: str = "",
    author: str = "",
    empty_layer: bool = False,
) -> dict[str, Any]:
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    diff_ids = list(base.get("rootfs", {}).get("diff_ids", []))
    if diff_id:
        diff_ids.append(diff_id)
    hist: dict[str, Any] = {"created": created, "created_by": created_by}
    if comment:
        hist["comment"] = comment
    if author:
        hist["author"] = author
    if empty_layer:
        hist["empty_layer"] = True
    out = {
        "architecture": base.get("architecture") or _arch(),
        "os": base.get("os", "linux"),
        "created": created,
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [*base.get("history", []), hist],
    }
    if author:
        out["author"] = author
    return out


def _arch() -> str:
    m = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(m, m)


def add_changeset(
    images: ImageStore,
    upper: str,
    lowers: list[str],
    exclude: list[str],
    maps: tuple[list[Any], list[Any]] | None = None,
) -> str | None:
    """Write the OCI changeset of `upper` and store it as a layer; None if it is empty.

    `maps` (uid map, gid map) of a user-namespaced container: its upper layer holds
    host ids, which are shifted back to the ids the container saw.
    """
    from . import layers

    if not layers.changes(upper, lowers=lowers, exclude=exclude):
        return None
    images.ensure()
    tmp = scratch.path(images.layers, ".commit", ".tar")
    try:
        with open(tmp, "wb") as out:
            layers.write_changeset(upper, out, lowers=lowers, exclude=exclude)
        faults.point("commit.changeset")
        if maps:
            _unshift_owners(tmp, maps)
        with open(tmp, "rb") as src:
            return images.add_layer_tar(src)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _unshift_owners(path: str, maps: tuple[list[Any], list[Any]]) -> None:
    """Rewrite a tar's owners from host ids to container ids (unmapped: 65534)."""
    import tarfile

    from .idmap import OVERFLOW_ID

    def back(host: int, mapping: list[Any]) -> int:
        for m in mapping:
            if m["hostID"] <= host < m["hostID"] + m["size"]:
                return m["containerID"] + host - m["hostID"]
        return OVERFLOW_ID

    tmp = scratch.name(path)
    with tarfile.open(path, "r:") as src, tarfile.open(tmp, "w:", format=tarfile.PAX_FORMAT) as dst:
        for ti in src:
            ti.uid, ti.gid = back(ti.uid, maps[0]), back(ti.gid, maps[1])
            dst.addfile(ti, src.extractfile(ti) if ti.isreg() else None)
    os.replace(tmp, path)


def commit(
    store: Store,
    images: ImageStore,
    cid: str,
    ref: str | None,
    message: str = "",
    author: str = "",
    changes: list[str] | None = None,
    pause: bool = True,
) -> str:
    cfg, upper, lowers = _layer_context(store, images, cid)
    linux = cfg["Spec"]["linux"]
    maps = (linux["uidMappings"], linux["gidMappings"]) if linux.get("uidMappings") else None
    base_id = cfg["Image"]
    base = images.get(base_id).config
    config = parse_changes(changes or [], _container_config(cfg, base))
    if ref is not None:
        _check_ref(ref)
    with _paused(store, cid, pause):
        diff_id = add_changeset(images, upper, lowers, excluded_paths(cfg), maps)
    cmd = " ".join([cfg.get("Path", ""), *cfg.get("Args", [])])
    image_id = images.add_image(
        new_image_config(base, diff_id, config, cmd, message, author, empty_layer=diff_id is None),
        ref,
    )
    events.emit(store.root, "commit", cid, containers.event_attrs(cfg, imageID=image_id))
    return image_id


def _container_config(cfg: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """docker commit keeps the container's own Cmd/Entrypoint/Env/WorkingDir/User."""
    c = dict(base.get("config") or {})
    cc = cfg.get("Config", {})
    env = [e for e in cc.get("Env", []) if not e.startswith("HOSTNAME=")]
    c.update(
        {
            "Env": env,
            "Cmd": cc.get("Cmd") or None,
            "Entrypoint": cc.get("Entrypoint"),
            "WorkingDir": cc.get("WorkingDir", "")
            if cc.get("WorkingDir") != "/"
            else c.get("WorkingDir", ""),
            "User": cc.get("User", ""),
        }
    )
    return {k: v for k, v in c.items() if v not in (None, "", [], {})}


def _check_ref(ref: str) -> None:
    import re

    name = normalize_ref(ref)
    repo, _, tag = name.rpartition(":")
    if not re.fullmatch(r"[a-z0-9]+(?:[._/:-][a-z0-9]+)*", repo) or not re.fullmatch(
        r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", tag
    ):
        raise UsageError(f"invalid reference format: {ref!r}")
    if len(repo) > 255:
        raise UsageError(
            "invalid reference format: repository name must not be more than 255 characters"
        )


def import_tar(
    images: ImageStore,
    src: Any,
    ref: str | None,
    message: str = "",
    changes: list[str] | None = None,
) -> str:
    """`rref import`: a root filesystem tar becomes a one-layer image."""
    if ref is not None:
        _check_ref(ref)
    diff_id = images.add_layer_tar(src)
    config = parse_changes(changes or [], {})
    return images.add_image(new_image_config({}, diff_id, config, "rref import", message), ref)
