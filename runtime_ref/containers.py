"""Container records: create (state dir, init layer, spec), look up, reconcile, remove."""

from __future__ import annotations

import contextlib
import os
import signal

from . import events, faults, procinfo
from .cgroups import Cgroup
from .errors import EXIT_RUNTIME, NotFound, RrefError, UsageError
from .images import ImageStore
from .rmtree import remove_tree
from .spec import ANN_OVERLAY, ANN_USER, default_spec, merge_env
from .state import Store, now_iso

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

NAME_PATTERN = r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$"
HOSTNAME_PATTERN = r"[A-Za-z0-9]([A-Za-z0-9.-]{0,62})"
ZERO_TIME = "0001-01-01T00:00:00Z"
_ADJ = ("brave", "calm", "eager", "fond", "keen", "lucid", "quiet", "sharp", "swift", "wise")
_NOUN = ("curie", "darwin", "euler", "gauss", "hopper", "lovelace", "noether", "turing")


class CreateOptions:
    """What `create`/`run` were asked for, before it is turned into a spec."""

    def __init__(
        self,
        image: str,
        command: list[str] | None = None,
        entrypoint: list[str] | None = None,
        name: str | None = None,
        hostname: str | None = None,
        env: list[str] | None = None,
        workdir: str | None = None,
        user: str | None = None,
        read_only: bool = False,
        network: str = "none",
        auto_remove: bool = False,
        interactive: bool = False,
        cap_add: list[str] | None = None,
        cap_drop: list[str] | None = None,
        uidmap: list[str] | None = None,
        gidmap: list[str] | None = None,
        userns_remap: str | None = None,
        volumes: list[str] | None = None,
        mounts: list[str] | None = None,
        tmpfs: list[str] | None = None,
        privileged: bool = False,
        security_opt: list[str] | None = None,
        resources: dict[str, str | bool | None] | None = None,
        publish: list[str] | None = None,
        bridge: str | None = None,
        bridge_subnet: str | None = None,
        cgroup_parent: str | None = None,
    ) -> None:
        self.image = image
        self.command = list(command or [])
        self.entrypoint = entrypoint
        self.name = name
        self.hostname = hostname
        self.env = list(env or [])
        self.workdir = workdir
        self.user = user
        self.read_only = read_only
        self.network = network
        self.auto_remove = auto_remove
        self.interactive = interactive
        self.cap_add = list(cap_add or [])
        self.cap_drop = list(cap_drop or [])
        self.uidmap = list(uidmap or [])
        self.gidmap = list(gidmap or [])
        self.userns_remap = userns_remap
        self.volumes = list(volumes or [])
        self.mounts = list(mounts or [])
        self.tmpfs = list(tmpfs or [])
        self.privileged = privileged
        self.security_opt = list(security_opt or [])
        self.resources = dict(resources or {})  # docker flag name -> CLI string
        self.publish = list(publish or [])
        self.bridge = bridge
        self.bridge_subnet = bridge_subnet
        self.cgroup_parent = cgroup_parent


def _check_options(o: CreateOptions) -> dict[str, Any]:
    """Refuse bad options before anything exists; return what was parsed on the way."""
    if o.name is not None or o.hostname is not None:
        import re
    if o.name is not None and not re.match(NAME_PATTERN, o.name):
        raise UsageError(
            f"invalid container name ({o.name}): only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )
    if o.hostname is not None and not re.fullmatch(HOSTNAME_PATTERN, o.hostname):
        raise UsageError(f"invalid hostname {o.hostname!r}")
    if o.workdir is not None and not o.workdir.startswith("/"):
        raise UsageError(
            f"the working directory '{o.workdir}' is invalid, it needs to be an absolute path"
        )
    if o.network not in ("none", "host", "bridge"):
        raise UsageError(f"invalid network mode {o.network!r}: use none, host or bridge")
    if o.cgroup_parent is not None and (
        ".." in o.cgroup_parent.split("/") or not o.cgroup_parent.strip("/")
    ):
        raise UsageError(
            f"invalid --cgroup-parent {o.cgroup_parent!r}: want a path like "
            "/rref or /system.slice/rref, without '..'"
        )
    if o.publish and o.network != "bridge":
        raise UsageError("publishing ports needs --network bridge")
    from . import caps

    for c in [*o.cap_add, *o.cap_drop]:
        if c.upper() != "ALL" and caps.normalize(c) not in caps.CAP_NUMBERS:
            raise UsageError(f"unknown capability: {c!r}")
    for e in o.env:
        if not e or e.startswith("="):
            raise UsageError(f"invalid environment variable: {e!r}")
    if o.user:
        from .users import check_ids

        check_ids(o.user)
    return {
        "ports": _port_bindings(o),
        "maps": _userns_maps(o),
        "mounts": _user_mounts(o),
        "security": _security(o),
        "resources": _resources(o),
    }


def _port_bindings(o: CreateOptions) -> dict[str, list[dict[str, str]]]:
    """-p flags in docker's HostConfig.PortBindings shape (loopback host addresses only)."""
    if not o.publish:
        return {}
    from .portproxy import parse_publish

    out: dict[str, list[dict[str, str]]] = {}
    for p in o.publish:
        host_ip, host_port, ctr_port, proto = parse_publish(p)
        out.setdefault(f"{ctr_port}/{proto}", []).append(
            {"HostIp": host_ip, "HostPort": str(host_port) if host_port else ""}
        )
    return out


def _resources(o: CreateOptions) -> dict[str, Any]:
    """OCI linux.resources from the flags, checked against the host before anything exists."""
    from . import limits
    from .cgroups import CgroupError, validate

    res = limits.build(o.resources)
    try:
        validate(res)
    except CgroupError as e:
        raise UsageError(str(e)) from None
    return res


def _security(o: CreateOptions) -> dict[str, Any]:
    """--security-opt: no-new-privileges[=bool], seccomp=unconfined|PROFILE.json."""
    out: dict[str, Any] = {"no_new_privs": False, "seccomp": "default"}
    for opt in o.security_opt:
        key, sep, value = opt.replace(":", "=", 1).partition("=")
        if key == "no-new-privileges":
            if value not in ("", "true", "false"):
                raise UsageError(
                    f"invalid --security-opt {opt!r}: no-new-privileges takes true or false"
                )
            out["no_new_privs"] = value != "false"
        elif key == "seccomp" and sep and value:
            if value != "unconfined" and not os.path.isfile(value):
                raise UsageError(f"opening seccomp profile ({value}) failed: no such file")
            out["seccomp"] = value
        elif key in ("apparmor", "label") and sep:
            out[key] = value  # no LSM is enforced by rref; accepted like docker on such hosts
        else:
            raise UsageError(f"invalid --security-opt: {opt!r}")
    if o.privileged:
        out["seccomp"] = "unconfined"
    return out


def _user_mounts(o: CreateOptions) -> list[dict[str, Any]]:
    """-v, --mount and --tmpfs, parsed and checked (nothing is created here)."""
    from . import volumes

    mounts = (
        [volumes.parse_volume_flag(v) for v in o.volumes]
        + [volumes.parse_mount_flag(m) for m in o.mounts]
        + [volumes.parse_tmpfs_flag(t) for t in o.tmpfs]
    )
    volumes.check_duplicates(mounts)
    return mounts


def _userns_maps(o: CreateOptions) -> tuple[list[dict[str, int]], list[dict[str, int]]] | None:
    """The id maps asked for by --userns-remap or --uidmap/--gidmap (None: no user ns)."""
    from . import idmap

    if o.userns_remap and (o.uidmap or o.gidmap):
        raise UsageError("--userns-remap and --uidmap/--gidmap cannot be combined")
    if o.userns_remap:
        user = "rref" if o.userns_remap == "default" else o.userns_remap
        return ([idmap.subordinate(user, "/etc/subuid")], [idmap.subordinate(user, "/etc/subgid")])
    if not o.uidmap and not o.gidmap:
        return None
    uidmap = [idmap.parse_map(m) for m in o.uidmap or o.gidmap]
    gidmap = [idmap.parse_map(m) for m in o.gidmap or o.uidmap]
    idmap.check_overlaps(uidmap, "--uidmap")
    idmap.check_overlaps(gidmap, "--gidmap")
    if idmap.to_host(0, uidmap) == idmap.OVERFLOW_ID:
        raise UsageError("invalid --uidmap: container uid 0 must be mapped")
    return uidmap, gidmap


def _random_name(taken: dict[str, str]) -> str:
    while True:
        r = os.urandom(4)
        name = f"{_ADJ[r[0] % len(_ADJ)]}_{_NOUN[r[1] % len(_NOUN)]}_{r[2:].hex()}"
        if name not in taken:
            return name


def _expand_env(items: list[str]) -> list[str]:
    """`-e KEY` takes the caller's value, and is dropped when the caller has none."""
    out = []
    for e in items:
        if "=" in e:
            out.append(e)
        elif e in os.environ:
            out.append(f"{e}={os.environ[e]}")
    return out


def _host_resolv() -> str:
    try:
        with open("/etc/resolv.conf") as f:
            lines = f.read().splitlines()
    except OSError:
        return ""
    keep = [
        ln for ln in lines if not (ln.startswith("nameserver") and (" 127." in ln or " ::1" in ln))
    ]
    return "\n".join(keep) + "\n"


def _write(path: str, text: str, mode: int = 0o644) -> None:
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def _make_init_layer(path: str) -> None:
    """Read-only placeholders for the per-container files and kernel mount points."""
    for d in ("etc", "dev", "proc", "sys"):
        os.makedirs(os.path.join(path, d), exist_ok=True)
    for f in ("etc/hosts", "etc/hostname", "etc/resolv.conf"):
        _write(os.path.join(path, f), "")
    os.symlink("/proc/mounts", os.path.join(path, "etc/mtab"))


def create(store: Store, images: ImageStore, o: CreateOptions) -> str:
    parsed = _check_options(o)
    image = images.resolve(o.image)
    icfg = image.config.get("config", {}) or {}
    entry = o.entrypoint if o.entrypoint is not None else (icfg.get("Entrypoint") or [])
    cmd = o.command or ([] if o.entrypoint is not None else (icfg.get("Cmd") or []))
    args = [*entry, *cmd]
    if not args:
        raise RrefError("no command specified", EXIT_RUNTIME)
    with store.names_lock():
        taken = store.names()
        name = (o.name or "").lstrip("/") or _random_name(taken)
        if name in taken:
            raise RrefError(
                f'Conflict. The container name "/{name}" is already in use by '
                f'container "{taken[name]}". You have to remove (or rename) that '
                "container to be able to reuse that name."
            )
        cid = store.new_id()
        with store.claim(cid) as cdir:
            faults.point("create.dir")
            try:
                cfg = _build(
                    store, images, cid, cdir, name, image, icfg, args, entry, cmd, o, parsed
                )
                faults.point("create.built")
                store.save_config(cid, cfg)
                store.save_state(cid, _initial_state())
            except BaseException:
                with contextlib.suppress(OSError):
                    remove_tree(store.bury(cid))
                raise
    events.emit(store.root, "create", cid, event_attrs(cfg))
    return cid


def _initial_state() -> dict[str, Any]:
    return {
        "Status": "created",
        "Running": False,
        "Paused": False,
        "OOMKilled": False,
        "Dead": False,
        "Pid": 0,
        "PidStart": 0,
        "MonitorPid": 0,
        "MonitorStart": 0,
        "ExitCode": 0,
        "Error": "",
        "StartedAt": ZERO_TIME,
        "FinishedAt": ZERO_TIME,
    }


def event_attrs(cfg: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"image": cfg.get("ImageRef", ""), "name": cfg.get("Name", "").lstrip("/"), **extra}


def _build(
    store: Store,
    images: ImageStore,
    cid: str,
    cdir: str,
    name: str,
    image: Any,
    icfg: dict[str, Any],
    args: list[str],
    entry: list[str],
    cmd: list[str],
    o: CreateOptions,
    parsed: dict[str, Any],
) -> dict[str, Any]:
    hostname = o.hostname or cid[:12]
    if o.network == "host":
        hostname = o.hostname or os.uname().nodename
    for d in ("upper", "work", "merged"):
        os.mkdir(os.path.join(cdir, d), 0o755)
    init_dir = os.path.join(cdir, "init")
    _make_init_layer(init_dir)
    _write(os.path.join(cdir, "hostname"), hostname + "\n")
    _write(
        os.path.join(cdir, "hosts"),
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        "fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n"
        "ff02::2\tip6-allrouters\n",
    )
    _write(os.path.join(cdir, "resolv.conf"), _host_resolv())
    upper, work, merged = (os.path.join(cdir, d) for d in ("upper", "work", "merged"))
    layer_dirs = image.layer_dirs
    maps = parsed["maps"]
    if maps:
        layer_dirs = images.remapped_layer_dirs(image, *maps)
        _give_to_container_root(cdir, maps)
        store.make_traversable(cid)
    lower = [init_dir, *reversed(layer_dirs)]
    overlay = f"lowerdir={':'.join(lower)},upperdir={upper},workdir={work}"

    spec = default_spec(args, merged)
    proc = spec["process"]
    env = merge_env(icfg.get("Env") or [], [f"HOSTNAME={hostname}"])
    proc["env"] = merge_env(env, _expand_env(o.env))
    proc["cwd"] = o.workdir or icfg.get("WorkingDir") or "/"
    user = o.user if o.user is not None else (icfg.get("User") or "")
    if user:
        spec["annotations"][ANN_USER] = user
    spec["annotations"][ANN_OVERLAY] = overlay
    spec["root"]["readonly"] = o.read_only
    proc["capabilities"] = _capabilities(["ALL"] if o.privileged else o.cap_add, o.cap_drop)
    security = parsed["security"]
    proc["noNewPrivileges"] = security["no_new_privs"]
    if security["seccomp"] != "unconfined":
        from .seccomp import profile_for

        spec["linux"]["seccomp"] = profile_for(
            security["seccomp"], proc["capabilities"]["bounding"]
        )
    spec["linux"]["resources"].update(parsed["resources"])
    if o.privileged:
        _make_privileged(spec)
    spec["hostname"] = hostname
    if o.network == "host":
        spec["linux"]["namespaces"] = [
            ns for ns in spec["linux"]["namespaces"] if ns["type"] not in ("network", "uts")
        ]
        spec["mounts"] = [m for m in spec["mounts"] if m["destination"] != "/sys"] + [
            {
                "destination": "/sys",
                "type": "bind",
                "source": "/sys",
                "options": ["rbind", "ro", "nosuid", "noexec", "nodev"],
            }
        ]
    for f in ("hostname", "hosts", "resolv.conf"):
        spec["mounts"].append(
            {
                "destination": f"/etc/{f}",
                "type": "bind",
                "source": os.path.join(cdir, f),
                "options": ["rbind", "rprivate"],
            }
        )
    if maps:
        spec["linux"]["namespaces"].append({"type": "user"})
        spec["linux"]["uidMappings"], spec["linux"]["gidMappings"] = maps
    user_mounts = parsed["mounts"]
    if user_mounts:
        from . import volumes
        from .idmap import to_host

        owner = (to_host(0, maps[0]), to_host(0, maps[1])) if maps else None
        spec["mounts"] += volumes.realize(user_mounts, volumes.VolumeStore(store.root), owner)
    parent = "/" + o.cgroup_parent.strip("/") if o.cgroup_parent else None
    cgroup = Cgroup.plan(f"rref-{cid}", parent)
    return {
        "Id": cid,
        "Name": "/" + name,
        "Created": now_iso(),
        "Path": args[0],
        "Args": args[1:],
        "Image": image.id,
        "ImageRef": o.image,
        "Config": {
            "Hostname": hostname,
            "Env": proc["env"],
            "Cmd": cmd,
            "Entrypoint": entry or None,
            "WorkingDir": proc["cwd"],
            "User": user,
            "Image": o.image,
            "OpenStdin": o.interactive,
            "Tty": False,
        },
        "HostConfig": {
            "AutoRemove": o.auto_remove,
            "ReadonlyRootfs": o.read_only,
            "NetworkMode": o.network,
            "Privileged": o.privileged,
            "SecurityOpt": o.security_opt,
            "CapAdd": o.cap_add,
            "CapDrop": o.cap_drop,
            "PortBindings": parsed["ports"],
            "CgroupParent": o.cgroup_parent or "",
            **host_config_resources(spec),
        },
        "Bridge": _bridge_of(o) if o.network == "bridge" else None,
        "Spec": spec,
        "Cgroup": cgroup.paths,
        "CgroupBases": cgroup.bases,
        "GraphDriver": {
            "Name": "overlay",
            "Data": {
                "LowerDir": ":".join(lower),
                "UpperDir": upper,
                "WorkDir": work,
                "MergedDir": merged,
            },
        },
        "HostnamePath": os.path.join(cdir, "hostname"),
        "HostsPath": os.path.join(cdir, "hosts"),
        "ResolvConfPath": os.path.join(cdir, "resolv.conf"),
        "LogPath": os.path.join(cdir, "container.log"),
        "Mounts": user_mounts,
    }


def host_config_resources(spec: dict[str, Any]) -> dict[str, Any]:
    """docker's HostConfig resource fields, derived from the spec (0 = not set)."""
    from .resources import host_config

    return host_config(spec["linux"].get("resources", {}))


def _bridge_of(o: CreateOptions) -> dict[str, str]:
    from .network import DEFAULT_BRIDGE, DEFAULT_SUBNET

    return {"Name": o.bridge or DEFAULT_BRIDGE, "Subnet": o.bridge_subnet or DEFAULT_SUBNET}


def _make_privileged(spec: dict[str, Any]) -> None:
    """docker --privileged: no masks, /sys writable, every host device, devices cgroup open."""
    import stat as st

    linux = spec["linux"]
    linux["maskedPaths"], linux["readonlyPaths"] = [], []
    for m in spec["mounts"]:
        if m["destination"] == "/sys":
            m["options"] = [x for x in m["options"] if x != "ro"]
    known = {d["path"] for d in linux["devices"]}
    for dirpath, dirnames, filenames in os.walk("/dev"):
        dirnames[:] = [d for d in dirnames if d not in ("pts", "shm", "mqueue", "fd")]
        for f in filenames:
            path = os.path.join(dirpath, f)
            try:
                s = os.lstat(path)
            except OSError:
                continue
            if (st.S_ISCHR(s.st_mode) or st.S_ISBLK(s.st_mode)) and path not in known:
                linux["devices"].append(
                    {
                        "path": path,
                        "type": "c" if st.S_ISCHR(s.st_mode) else "b",
                        "major": os.major(s.st_rdev),
                        "minor": os.minor(s.st_rdev),
                        "fileMode": st.S_IMODE(s.st_mode),
                        "uid": s.st_uid,
                        "gid": s.st_gid,
                    }
                )
    linux["resources"]["devices"] = [
        {"allow": True, "type": "a", "major": None, "minor": None, "access": "rwm"}
    ]


def _give_to_container_root(
    cdir: str, maps: tuple[list[dict[str, int]], list[dict[str, int]]]
) -> None:
    """The writable layer and per-container files belong to the mapped root."""
    from .idmap import to_host

    uid, gid = to_host(0, maps[0]), to_host(0, maps[1])
    for name in ("upper", "work", "init", "hostname", "hosts", "resolv.conf"):
        top = os.path.join(cdir, name)
        os.lchown(top, uid, gid)
        for dirpath, dirnames, filenames in os.walk(top):
            for n in dirnames + filenames:
                os.lchown(os.path.join(dirpath, n), uid, gid)


def _capabilities(add: list[str], drop: list[str]) -> dict[str, list[str]]:
    """docker's rule: start from the default set, drop first ("ALL" empties it), then add."""
    from . import caps
    from .spec import DEFAULT_CAPS

    names = list(DEFAULT_CAPS)
    if any(c.upper() == "ALL" for c in drop):
        names = []
    names = [c for c in names if c not in {caps.normalize(d) for d in drop}]
    if any(c.upper() == "ALL" for c in add):
        names = caps.available()
    names += [
        caps.normalize(a) for a in add if a.upper() != "ALL" and caps.normalize(a) not in names
    ]
    return {k: list(names) for k in ("bounding", "effective", "permitted")}


FREEZE_OWNER = "freeze.lock"  # held by a command that froze the container for a moment


@contextlib.contextmanager
def frozen_by_me(store: Store, cid: str) -> Iterator[None]:
    """Hold the container's freeze-owner lock for the block (commit's snapshot).

    The lock file exists only while a command has the container frozen; one
    left behind by a killed command is found unlocked by the next reader, which
    thaws the container (`_thaw_abandoned`).
    """
    import fcntl

    path = store.path(cid, FREEZE_OWNER)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                break  # not unlinked by a reader that found it unlocked meanwhile
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)


def _thaw_abandoned(store: Store, cid: str) -> None:
    """Thaw a container that a killed command froze (its freeze-owner lock is free)."""
    import fcntl

    path = store.path(cid, FREEZE_OWNER)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return  # its owner is alive and will thaw it
    try:
        with contextlib.suppress(OSError, RrefError):
            cgroup_of(store.config(cid)).thaw()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    finally:
        os.close(fd)


def reconcile(store: Store, cid: str, st: dict[str, Any]) -> dict[str, Any]:
    """A 'running' container whose monitor and process are both gone is exited (lost);
    one left frozen by a killed commit is thawed; one whose monitor died while starting
    it is dead (whatever it started is in its cgroup, which rm -f kills)."""
    if st.get("Starting") and not procinfo.alive(
        st.get("MonitorPid", 0), st.get("MonitorStart", 0)
    ):
        return _died_starting(store, cid)
    if st.get("Status") not in ("running", "paused"):
        return st
    if st.get("Status") == "running" and os.path.exists(store.path(cid, FREEZE_OWNER)):
        _thaw_abandoned(store, cid)
    if procinfo.alive(st.get("MonitorPid", 0), st.get("MonitorStart", 0)):
        return st
    if procinfo.alive(st.get("Pid", 0), st.get("PidStart", 0)):
        return st
    with store.lock(cid):
        fresh = store.state(cid)
        if fresh.get("Status") in ("running", "paused") and not procinfo.alive(
            fresh.get("MonitorPid", 0), fresh.get("MonitorStart", 0)
        ):
            fresh.update(
                Status="exited",
                Running=False,
                Paused=False,
                Pid=0,
                ExitCode=255,
                Error="container monitor exited unexpectedly",
                FinishedAt=now_iso(),
            )
            with contextlib.suppress(OSError):  # a full or read-only root: the truth still shows
                store.save_state(cid, fresh)
        return fresh


def _died_starting(store: Store, cid: str) -> dict[str, Any]:
    with store.lock(cid):
        fresh = store.state(cid)
        if fresh.get("Starting") and not procinfo.alive(
            fresh.get("MonitorPid", 0), fresh.get("MonitorStart", 0)
        ):
            fresh.update(
                Status="dead",
                Dead=True,
                Running=False,
                Starting=False,
                Pid=0,
                ExitCode=255,
                Error="container monitor died while starting the container",
                FinishedAt=now_iso(),
            )
            with contextlib.suppress(OSError):
                store.save_state(cid, fresh)
        return fresh


def status(store: Store, cid: str) -> dict[str, Any]:
    return reconcile(store, cid, store.state(cid))


ORPHAN_ERROR = "incomplete container record: the command that made or removed it was killed"


def load(store: Store, cid: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(config, reconciled state); an orphaned record comes back as a dead container.

    NotFound: removed meanwhile, or still being made by a live command.
    """
    try:
        return store.config(cid), status(store, cid)
    except NotFound:
        if not store.is_orphan(cid):
            raise
    try:
        cfg = store.config(cid)
    except RrefError:
        import time

        try:
            made = os.stat(store.path(cid)).st_mtime
        except OSError:
            made = 0.0
        cfg = {
            "Id": cid,
            "Name": "",
            "Created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(made)),
            "Path": "",
            "Args": [],
            "ImageRef": "",
            "Cgroup": Cgroup.plan(f"rref-{cid}").paths,
        }
    return cfg, {"Status": "dead", "Dead": True, "Pid": 0, "ExitCode": 0, "Error": ORPHAN_ERROR}


def is_running(st: dict[str, Any]) -> bool:
    return st.get("Status") in ("running", "paused") and procinfo.alive(
        st.get("Pid", 0), st.get("PidStart", 0)
    )


def cgroup_of(cfg: dict[str, Any]) -> Cgroup:
    return Cgroup(dict(cfg.get("Cgroup", {})), dict(cfg.get("CgroupBases", {})) or None)


def kill_cgroup(cg: Cgroup) -> None:
    """SIGKILL everything left in the cgroup (thawing it, so frozen tasks can die)."""
    from .cgroups import CgroupError

    if not cg.pids():
        return
    try:
        cg.kill_all()
    except CgroupError:
        for pid in cg.pids():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def release(store: Store, cid: str, cfg: dict[str, Any]) -> list[str]:
    """Free host resources of a stopped container (cgroups, veth, address); return leftovers."""
    cg = cgroup_of(cfg)
    kill_cgroup(cg)
    if cfg.get("Bridge"):
        from . import network

        network.detach(
            cid, network.Bridge(cfg["Bridge"]["Name"], cfg["Bridge"]["Subnet"]), store.root
        )
    return cg.remove()


def remove(store: Store, cid: str, force: bool = False, volumes: bool = False) -> None:
    """Delete a container; `volumes` (rm -v, run --rm) also drops its anonymous volumes."""
    try:
        cfg, st = load(store, cid)
    except NotFound:
        raise
    except RrefError:
        if not force:
            raise
        # a corrupted record: -f removes it, freeing the cgroups rref would have made
        cfg, st = {"Cgroup": Cgroup.plan(f"rref-{cid}").paths}, {}
    if is_running(st):
        if not force:
            raise RrefError(
                f"cannot remove container {cid[:12]}: container is running: "
                "stop the container before removing or force remove"
            )
        procinfo.signal_process(st["Pid"], st.get("PidStart", 0), signal.SIGKILL)
        procinfo.wait_gone(st["Pid"], st.get("PidStart", 0), 10)
    # let the monitor record the exit before the directory disappears under it
    if st.get("MonitorPid", 0) != os.getpid():
        procinfo.wait_gone(st.get("MonitorPid", 0), st.get("MonitorStart", 0), 10)
    with store.lock(cid):
        if not os.path.isdir(store.path(cid)):
            raise NotFound(f"No such container: {cid[:12]}")  # another rm won the race
        left = release(store, cid, cfg)
        faults.point("rm.released")
        if left:
            raise RrefError(f"cannot remove container {cid[:12]}: cgroup busy: {left[0]}")
        tomb = store.bury(cid)
    faults.point("rm.buried")
    remove_tree(tomb)
    events.emit(store.root, "destroy", cid, event_attrs(cfg))
    if volumes or cfg.get("HostConfig", {}).get("AutoRemove"):
        _remove_anonymous_volumes(store, cfg)


def _remove_anonymous_volumes(store: Store, cfg: dict[str, Any]) -> None:
    from . import volumes as vol

    vs = vol.VolumeStore(store.root)
    for m in cfg.get("Mounts", []):
        if m.get("Type") == "volume" and m.get("Name"):
            with contextlib.suppress(RrefError, OSError):
                if vs.get(m["Name"]).get("Anonymous") and not vol.in_use(store, m["Name"]):
                    vs.remove(m["Name"], [])
