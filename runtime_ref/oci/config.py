"""A bundle's config.json, read and checked before anything is created.

Why: a runtime that fails half-way leaves cgroups, mounts and state behind, so
every field rref-oci understands is checked here first and every field it knows
but does not implement is refused with a one-line reason (never silently
ignored). Properties the runtime-spec does not define are ignored, as the spec
requires. The result is rref's own internal model (`runtime_ref.spec`): the
same document, with the rootfs made absolute and the default devices added.
"""

from __future__ import annotations

import fcntl
import os

from .. import jsonc as json
from ..errors import RrefError
from ..spec import DEFAULT_DEVICES

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

    from ..spec import Spec

NS_TYPES = ("pid", "network", "mount", "ipc", "uts", "user", "cgroup")
HOOK_KINDS = (
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
)
# CLONE_NEW* values NS_GET_NSTYPE returns, by OCI type.
_CLONE = {
    "mount": 0x00020000,
    "uts": 0x04000000,
    "ipc": 0x08000000,
    "user": 0x10000000,
    "pid": 0x20000000,
    "network": 0x40000000,
    "cgroup": 0x02000000,
}
_NS_GET_NSTYPE = 0xB703
RLIMITS = (
    "RLIMIT_AS",
    "RLIMIT_CORE",
    "RLIMIT_CPU",
    "RLIMIT_DATA",
    "RLIMIT_FSIZE",
    "RLIMIT_LOCKS",
    "RLIMIT_MEMLOCK",
    "RLIMIT_MSGQUEUE",
    "RLIMIT_NICE",
    "RLIMIT_NOFILE",
    "RLIMIT_NPROC",
    "RLIMIT_RSS",
    "RLIMIT_RTPRIO",
    "RLIMIT_RTTIME",
    "RLIMIT_SIGPENDING",
    "RLIMIT_STACK",
)
# Known to the runtime-spec, not implemented here: refused when set.
_UNSUPPORTED_PROCESS = (
    "apparmorProfile",
    "selinuxLabel",
    "ioPriority",
    "scheduler",
    "execCPUAffinity",
)
_UNSUPPORTED_LINUX = ("intelRdt", "personality", "timeOffsets", "mountLabel")
_UNSUPPORTED_TOP = ("windows", "solaris", "vm", "zos")
_RESOURCE_KEYS = {
    "memory": ("limit", "swap", "reservation", "disableOOMKiller"),
    "cpu": ("shares", "period", "quota", "cpus", "mems"),
    "pids": ("limit",),
    "blockIO": ("weight",),
}
# Sysctls that belong to a namespace (runc's list); anything else would change the host.
_SYSCTL_IPC = (
    *("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem"),
    *("kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"),
)


class ConfigError(RrefError):
    """config.json cannot be used: one line naming the field and the problem."""

    def __init__(self, message: str) -> None:
        super().__init__(f"config.json: {message}", 1)


def _is(value: Any, kind: type | tuple[type, ...]) -> bool:
    wants_int = kind is int or (isinstance(kind, tuple) and int in kind)
    if wants_int and isinstance(value, bool):
        return False
    return isinstance(value, kind)


def _need(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = obj.get(key)
    if not _is(value, kind):
        name = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise ConfigError(f"{where}{key}: {value!r} is not a {_NAMES.get(name, name)}")
    return value


_NAMES = {"str": "string", "int": "integer", "dict": "JSON object", "list": "list", "bool": "bool"}


def _opt(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    return None if obj.get(key) is None else _need(obj, key, kind, where)


def _strings(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: {value!r} is not a list of strings")
    return value


def read(bundle: str) -> dict[str, Any]:
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise RrefError(f"bundle {bundle}: no config.json", 1) from None
    except OSError as e:
        raise RrefError(f"bundle {bundle}: cannot read config.json: {e.strerror}", 1) from None
    try:
        doc = json.loads(raw)
    except ValueError as e:
        raise ConfigError(f"invalid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise ConfigError("not a JSON object")
    return doc


def load(bundle: str, need_process: bool = True) -> Spec:
    """The checked spec of the bundle at `bundle` (an absolute directory)."""
    if not os.path.isdir(bundle):
        raise RrefError(f"bundle {bundle}: not a directory", 1)
    doc = read(bundle)
    version = _need(doc, "ociVersion", str, "")
    if not version.startswith("1."):
        raise ConfigError(f"ociVersion {version!r}: only runtime-spec 1.x is supported")
    for key in _UNSUPPORTED_TOP:
        if doc.get(key):
            raise ConfigError(f"{key}: not supported (rref-oci runs Linux containers)")
    _root(doc, bundle)
    if need_process or doc.get("process") is not None:
        check_process(_need(doc, "process", dict, ""), "process.")
    _opt(doc, "hostname", str, "")
    _opt(doc, "domainname", str, "")
    _mounts(doc.get("mounts"))
    _hooks(doc.get("hooks"))
    ann = _opt(doc, "annotations", dict, "")
    if ann and not all(isinstance(v, str) for v in ann.values()):
        raise ConfigError("annotations: every value must be a string")
    linux = doc.setdefault("linux", {})
    if not isinstance(linux, dict):
        raise ConfigError("linux: not a JSON object")
    _linux(doc, linux)
    return doc


def _root(doc: dict[str, Any], bundle: str) -> None:
    root = _need(doc, "root", dict, "")
    path = _need(root, "path", str, "root.")
    _opt(root, "readonly", bool, "root.")
    full = os.path.normpath(os.path.join(bundle, path))
    if not os.path.isdir(full):
        raise RrefError(f"rootfs {full}: no such directory", 1)
    root["path"] = full


def check_process(proc: dict[str, Any], where: str) -> None:
    """A process object (config.json's, or `exec --process`'s)."""
    args = _strings(proc.get("args"), f"{where}args")
    if not args:
        raise ConfigError(f"{where}args: empty (there is no program to run)")
    for item in _strings(proc.get("env", []), f"{where}env"):
        if "=" not in item:
            raise ConfigError(f"{where}env: {item!r} is not KEY=VALUE")
    cwd = _need(proc, "cwd", str, where)
    if not cwd.startswith("/"):
        raise ConfigError(f"{where}cwd: {cwd!r} is not an absolute path")
    _opt(proc, "terminal", bool, where)  # needs --console-socket: see console.check
    for key in _UNSUPPORTED_PROCESS:
        if proc.get(key):
            raise ConfigError(f"{where}{key}: not supported by rref-oci")
    user = _need(proc, "user", dict, where)
    for key in ("uid", "gid"):
        if not _is(user.get(key), int) or user[key] < 0:
            raise ConfigError(f"{where}user.{key}: {user.get(key)!r} is not an id")
    extra = user.get("additionalGids") or []
    if not isinstance(extra, list) or not all(_is(g, int) and g >= 0 for g in extra):
        raise ConfigError(f"{where}user.additionalGids: {extra!r} is not a list of ids")
    umask = _opt(user, "umask", int, f"{where}user.")
    if umask is not None and not 0 <= umask <= 0o777:
        raise ConfigError(f"{where}user.umask: {umask} is out of range")
    _opt(proc, "noNewPrivileges", bool, where)
    oom = _opt(proc, "oomScoreAdj", int, where)
    if oom is not None and not -1000 <= oom <= 1000:
        raise ConfigError(f"{where}oomScoreAdj: {oom} is not in -1000..1000")
    _capabilities(_opt(proc, "capabilities", dict, where) or {}, where)
    for i, rl in enumerate(_opt(proc, "rlimits", list, where) or []):
        at = f"{where}rlimits[{i}]"
        if not isinstance(rl, dict) or rl.get("type") not in RLIMITS:
            got = rl.get("type") if isinstance(rl, dict) else rl
            raise ConfigError(f"{at}.type: unknown rlimit {got!r}")
        for key in ("soft", "hard"):
            if not _is(rl.get(key), int) or rl[key] < 0:
                raise ConfigError(f"{at}.{key}: {rl.get(key)!r} is not a limit")
        if rl["soft"] > rl["hard"]:
            raise ConfigError(f"{at}: soft limit {rl['soft']} is above hard {rl['hard']}")


def _capabilities(capset: dict[str, Any], where: str) -> None:
    from ..caps import CAP_NAMES

    known = set(CAP_NAMES)
    for kind, names in capset.items():
        if kind not in ("bounding", "effective", "permitted", "inheritable", "ambient"):
            raise ConfigError(f"{where}capabilities.{kind}: not a capability set")
        if kind == "ambient" and names:
            raise ConfigError(
                f"{where}capabilities.ambient: ambient capabilities are not supported"
            )
        for name in _strings(names, f"{where}capabilities.{kind}"):
            if name not in known:
                raise ConfigError(f"{where}capabilities.{kind}: unknown capability {name!r}")


def _objects(items: Any, where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(`where[i].`, item) for each item of a JSON list that must hold objects."""
    if not isinstance(items, list):
        raise ConfigError(f"{where}: not a list")
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ConfigError(f"{where}[{i}]: not a JSON object")
        yield f"{where}[{i}].", item


def read_object(path: str, option: str) -> dict[str, Any]:
    """The JSON object in file ``path`` ("-": stdin) given by ``option``; one-line errors."""
    import sys

    try:
        with open(path) if path != "-" else sys.stdin as f:
            doc = json.load(f)
    except OSError as e:
        raise RrefError(f"{option} {path}: {e.strerror}", 1) from None
    except ValueError as e:
        raise RrefError(f"{option} {path}: invalid JSON: {e}", 1) from None
    if not isinstance(doc, dict):
        raise RrefError(f"{option} {path}: not a JSON object", 1)
    return doc


def _mounts(mounts: Any) -> None:
    if mounts is None:
        return
    for at, m in _objects(mounts, "mounts"):
        dest = _need(m, "destination", str, at)
        if not dest.startswith("/"):
            raise ConfigError(f"{at}destination: {dest!r} is not an absolute path")
        _opt(m, "type", str, at)
        _opt(m, "source", str, at)
        _strings(m.get("options", []), f"{at}options")
        if m.get("uidMappings") or m.get("gidMappings"):
            raise ConfigError(f"{at}uidMappings: id-mapped mounts are not supported")


def _hooks(hooks: Any) -> None:
    if hooks is None:
        return
    if not isinstance(hooks, dict):
        raise ConfigError("hooks: not a JSON object")
    for kind, entries in hooks.items():
        if kind not in HOOK_KINDS:
            raise ConfigError(f"hooks.{kind}: not a hook kind ({', '.join(HOOK_KINDS)})")
        for at, h in _objects(entries, f"hooks.{kind}"):
            path = _need(h, "path", str, at)
            if not path.startswith("/"):
                raise ConfigError(f"{at}path: {path!r} is not an absolute path")
            _strings(h.get("args", []), f"{at}args")
            _strings(h.get("env", []), f"{at}env")
            timeout = _opt(h, "timeout", int, at)
            if timeout is not None and timeout <= 0:
                raise ConfigError(f"{at}timeout: {timeout} must be positive")


def _linux(doc: dict[str, Any], linux: dict[str, Any]) -> None:
    for key in _UNSUPPORTED_LINUX:
        if linux.get(key):
            raise ConfigError(f"linux.{key}: not supported by rref-oci")
    types = _namespaces(linux.setdefault("namespaces", []))
    new = {ns["type"] for ns in linux["namespaces"] if not ns.get("path")}
    if doc.get("hostname") and "uts" not in types:
        raise ConfigError("hostname: setting it needs a uts namespace")
    if doc.get("domainname") and "uts" not in types:
        raise ConfigError("domainname: setting it needs a uts namespace")
    maps = [_idmap(linux.get(k), f"linux.{k}") for k in ("uidMappings", "gidMappings")]
    if "user" in new and not (maps[0] and maps[1]):
        raise ConfigError("linux.uidMappings: a new user namespace needs uid and gid mappings")
    if "user" in new and any(ns.get("path") for ns in linux["namespaces"]):
        raise ConfigError(
            "linux.namespaces: joining a namespace by path with a new user namespace "
            "is not supported"
        )
    if any(maps) and "user" not in new:
        raise ConfigError("linux.uidMappings: mappings given without a new user namespace")
    if linux.get("resources") is not None:
        _resources(_need(linux, "resources", dict, "linux."))
    _opt(linux, "cgroupsPath", str, "linux.")
    for key in ("maskedPaths", "readonlyPaths"):
        for p in _strings(linux.get(key, []), f"linux.{key}"):
            if not p.startswith("/"):
                raise ConfigError(f"linux.{key}: {p!r} is not an absolute path")
    sysctl = _opt(linux, "sysctl", dict, "linux.") or {}
    for key, value in sysctl.items():
        if not isinstance(value, str):
            raise ConfigError(f"linux.sysctl.{key}: {value!r} is not a string")
        _check_sysctl(key, new)
    prop = linux.get("rootfsPropagation") or ""
    if prop not in ("", "private", "rprivate"):
        raise ConfigError(f"linux.rootfsPropagation: {prop!r} is not supported (only private)")
    seccomp = linux.get("seccomp")
    if seccomp is not None:
        from ..seccomp import check

        if isinstance(seccomp, dict) and seccomp.get("listenerPath"):
            raise ConfigError("linux.seccomp.listenerPath: seccomp notify is not supported")
        try:
            check(seccomp, "linux.seccomp")
        except RrefError as e:
            raise ConfigError(str(e)) from None
    _devices(linux)


def _namespaces(namespaces: Any) -> set[str]:
    if not isinstance(namespaces, list):
        raise ConfigError("linux.namespaces: not a list")
    seen: set[str] = set()
    for i, ns in enumerate(namespaces):
        at = f"linux.namespaces[{i}]"
        if not isinstance(ns, dict) or ns.get("type") not in NS_TYPES:
            got = ns.get("type") if isinstance(ns, dict) else ns
            raise ConfigError(f"{at}.type: unknown namespace type {got!r}")
        if ns["type"] in seen:
            raise ConfigError(f"{at}: namespace {ns['type']} given twice")
        seen.add(ns["type"])
        path = _opt(ns, "path", str, f"{at}.")
        if path:
            check_ns_path(ns["type"], path)
    return seen


def check_ns_path(kind: str, path: str) -> None:
    """`path` must be a namespace file of type `kind` (NS_GET_NSTYPE says which)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise RrefError(f"{kind} namespace path {path}: {e.strerror}", 1) from None
    try:
        got = fcntl.ioctl(fd, _NS_GET_NSTYPE)
    except OSError:
        raise RrefError(f"{kind} namespace path {path}: not a namespace", 1) from None
    finally:
        os.close(fd)
    if got != _CLONE[kind]:
        real = next((k for k, v in _CLONE.items() if v == got), hex(got))
        raise RrefError(f"{kind} namespace path {path}: is a {real} namespace", 1)


def _idmap(value: Any, where: str) -> list[dict[str, int]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(f"{where}: not a list")
    for i, m in enumerate(value):
        if not isinstance(m, dict) or not all(
            _is(m.get(k), int) and m[k] >= 0 for k in ("containerID", "hostID", "size")
        ):
            raise ConfigError(f"{where}[{i}]: needs containerID, hostID and size as integers")
    return value


def _resources(res: dict[str, Any]) -> None:
    from ..cgroups import validate

    for section, value in res.items():
        if value is None or value == [] or value == {}:
            continue
        if section == "devices":
            continue
        if section not in _RESOURCE_KEYS:
            raise ConfigError(f"linux.resources.{section}: not supported by rref-oci")
        if not isinstance(value, dict):
            raise ConfigError(f"linux.resources.{section}: not a JSON object")
        for key, v in value.items():
            if v is not None and key not in _RESOURCE_KEYS[section]:
                raise ConfigError(f"linux.resources.{section}.{key}: not supported by rref-oci")
    try:
        validate(res)
    except RrefError as e:
        raise ConfigError(f"linux.resources: {e}") from None


def _check_sysctl(key: str, new: set[str]) -> None:
    if key in _SYSCTL_IPC or key.startswith("fs.mqueue."):
        if "ipc" not in new:
            raise ConfigError(f"linux.sysctl.{key}: needs a new ipc namespace")
    elif key.startswith("net."):
        if "network" not in new:
            raise ConfigError(f"linux.sysctl.{key}: needs a new network namespace")
    elif key in ("kernel.hostname", "kernel.domainname"):
        if "uts" not in new:
            raise ConfigError(f"linux.sysctl.{key}: needs a new uts namespace")
    else:
        raise ConfigError(f"linux.sysctl.{key}: not a namespaced sysctl (it would change the host)")
    if "/" in key or ".." in key:
        raise ConfigError(f"linux.sysctl.{key}: not a sysctl name")


def _devices(linux: dict[str, Any]) -> None:
    """Check linux.devices and add the spec's default devices the config does not list."""
    devices = linux.setdefault("devices", [])
    for at, d in _objects(devices, "linux.devices"):
        path = _need(d, "path", str, at)
        if not path.startswith("/dev/"):
            raise ConfigError(f"{at}path: {path!r} is not below /dev")
        if d.get("type") not in ("c", "b", "u", "p"):
            raise ConfigError(f"{at}type: {d.get('type')!r} is not c, b, u or p")
        if d["type"] == "p":
            raise ConfigError(f"{at}type: fifo devices are not supported")
        for key in ("major", "minor"):
            _need(d, key, int, at)
        if d["type"] == "u":
            d["type"] = "c"
    have = {d["path"] for d in devices}
    for path, kind, major, minor, mode in DEFAULT_DEVICES:
        if path not in have:
            devices.append(
                {"path": path, "type": kind, "major": major, "minor": minor, "fileMode": mode}
            )
    # as runc does: the devices the container is given (and pts, ptmx) may be used
    # whatever the config's device rules say, after them
    res = linux.get("resources")
    if isinstance(res, dict) and res.get("devices"):
        rules = res["devices"]
        for d in devices:
            rules.append(
                {"allow": True, "type": d["type"], "major": d["major"], "minor": d["minor"]}
                | {"access": "rwm"}
            )
        rules.append({"allow": True, "type": "c", "major": 136, "access": "rwm"})
        rules.append({"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"})
