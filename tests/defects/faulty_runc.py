"""A deliberately faulty runc: one named defect applied to config.json, then the real runc.

Why: a conformance suite is only as good as the defects it catches. This wrapper has runc's
command line, so the suite drives it as ``NAME=oci:/path/to/wrapper``; for ``run`` and
``create`` it loads the bundle's config.json, applies ONE defect (a small, documented change
a buggy runtime could make) and execs the real runc on the altered bundle. Every other
subcommand (exec, kill, delete, state, pause...) passes through unchanged.

    python faulty_runc.py [--runc PATH] [--log FILE] DEFECT [runc arguments...]

The suite's bundle is left as the suite wrote it: the altered config.json goes to
``<bundle>/conform-defect/config.json`` (a sub-directory, so it is removed with the bundle)
and runc is pointed at that directory; ``root.path`` is made absolute so the rootfs stays
the suite's. ``--log`` appends one line per altered bundle: ``DEFECT <bundle> <what>``
("unchanged" when the config had nothing the defect could alter).

``DEFECTS`` maps each name to a function that edits an OCI runtime-spec document in place
and returns what it changed; `faulty_rref.py` applies the same functions to rref's spec.
``RUN_FLAGS`` adds runc flags to `run`/`create` for defects that are not config edits
(``no-pivot``). ``none`` alters nothing: the control that proves the wrapping is harmless.
The test-side expectations (which behaviour IDs must fail) live in `test_defects.py`.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable
from typing import Any

Config = dict[str, Any]
DEFAULT_RUNC = "/usr/sbin/runc"
SUBDIR = "conform-defect"
#: runc global options that take a value (urfave/cli: `--opt value` or `--opt=value`).
GLOBAL_WITH_VALUE = {"--log", "--log-format", "--root", "--criu", "--rootless"}

DEFECTS: dict[str, Callable[[Config], str]] = {}
#: Defects that are extra flags of `run`/`create` rather than config edits (the config's
#: entry in DEFECTS then alters nothing but says what the flag does).
RUN_FLAGS: dict[str, list[str]] = {"no-pivot": ["--no-pivot"]}


def defect(name: str) -> Callable[[Callable[[Config], str]], Callable[[Config], str]]:
    def register(fn: Callable[[Config], str]) -> Callable[[Config], str]:
        DEFECTS[name] = fn
        return fn

    return register


def _drop_ns(cfg: Config, kind: str) -> bool:
    linux = cfg.setdefault("linux", {})
    before = linux.get("namespaces", [])
    linux["namespaces"] = [ns for ns in before if ns.get("type") != kind]
    return len(linux["namespaces"]) != len(before)


def _caps(cfg: Config) -> dict[str, list[str]]:
    return cfg.setdefault("process", {}).setdefault("capabilities", {})


def _all_caps() -> list[str]:
    """Every capability of this process's bounding set (what `--privileged` would grant)."""
    names = [
        "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID",
        "SETUID", "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST",
        "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO",
        "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
        "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE",
        "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM",
        "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
    ]  # fmt: skip
    bnd = 0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapBnd:"):
                bnd = int(line.split()[1], 16)
    return [f"CAP_{n}" for i, n in enumerate(names) if bnd >> i & 1]


# ------------------------------------------------------------------------------ namespaces


@defect("no-pidns")
def no_pidns(cfg: Config) -> str:
    """The container shares the host's pid namespace (no `pid` in linux.namespaces)."""
    return "dropped the pid namespace" if _drop_ns(cfg, "pid") else ""


@defect("no-utsns")
def no_utsns(cfg: Config) -> str:
    """No uts namespace; the hostname is dropped too (runc refuses one without a uts ns),
    so the container keeps, and may change, its host's name."""
    dropped = _drop_ns(cfg, "uts")
    if cfg.get("hostname"):
        cfg["hostname"] = ""
    return "dropped the uts namespace and the hostname" if dropped else ""


@defect("no-netns")
def no_netns(cfg: Config) -> str:
    """The container shares the host's network stack (no `network` namespace)."""
    return "dropped the network namespace" if _drop_ns(cfg, "network") else ""


@defect("no-ipcns")
def no_ipcns(cfg: Config) -> str:
    """SysV IPC and POSIX mqueues of the host are shared (no `ipc` namespace)."""
    return "dropped the ipc namespace" if _drop_ns(cfg, "ipc") else ""


@defect("no-cgroupns")
def no_cgroupns(cfg: Config) -> str:
    """No cgroup namespace: /proc/self/cgroup shows host paths."""
    return "dropped the cgroup namespace" if _drop_ns(cfg, "cgroup") else ""


@defect("no-userns")
def no_userns(cfg: Config) -> str:
    """uid/gid maps ignored: no user namespace, container root is host root."""
    linux = cfg.setdefault("linux", {})
    had_maps = bool(linux.pop("uidMappings", None)) | bool(linux.pop("gidMappings", None))
    return "dropped the user namespace and id maps" if _drop_ns(cfg, "user") or had_maps else ""


@defect("uid-map-off-by-one")
def uid_map_off_by_one(cfg: Config) -> str:
    """A subtle mapping bug: every uid range starts one host uid too high (gids correct)."""
    maps = cfg.get("linux", {}).get("uidMappings") or []
    for m in maps:
        m["hostID"] += 1
    return "shifted uidMappings hostID by +1" if maps else ""


# ------------------------------------------------------------------------------ mounts


@defect("rw-rootfs")
def rw_rootfs(cfg: Config) -> str:
    """root.readonly ignored: the rootfs is mounted read-write."""
    root = cfg.setdefault("root", {})
    if not root.get("readonly"):
        return ""
    root["readonly"] = False
    return "root.readonly true -> false"


@defect("no-masked-paths")
def no_masked_paths(cfg: Config) -> str:
    """linux.maskedPaths ignored: /proc/kcore, /proc/keys, /sys/firmware... readable."""
    linux = cfg.setdefault("linux", {})
    n = len(linux.get("maskedPaths") or [])
    linux["maskedPaths"] = []
    return f"emptied maskedPaths ({n})" if n else ""


@defect("no-readonly-paths")
def no_readonly_paths(cfg: Config) -> str:
    """linux.readonlyPaths ignored: /proc/sys, /proc/sysrq-trigger... writable."""
    linux = cfg.setdefault("linux", {})
    n = len(linux.get("readonlyPaths") or [])
    linux["readonlyPaths"] = []
    return f"emptied readonlyPaths ({n})" if n else ""


@defect("rw-volumes")
def rw_volumes(cfg: Config) -> str:
    """The `ro` option of bind mounts (volumes) is dropped: read-only volumes are writable."""
    n = 0
    for m in cfg.get("mounts", []):
        if m.get("type") == "bind" and "ro" in m.get("options", []):
            m["options"] = [o for o in m["options"] if o != "ro"]
            n += 1
    return f"dropped `ro` from {n} bind mount(s)" if n else ""


@defect("host-etc-files")
def host_etc_files(cfg: Config) -> str:
    """An engine's per-container /etc/hosts, /etc/hostname, /etc/resolv.conf are bind
    mounts of the HOST's own files (read-only, so nothing can write through them)."""
    n = 0
    for m in cfg.get("mounts", []):
        dest = m.get("destination", "")
        if dest in ("/etc/hosts", "/etc/hostname", "/etc/resolv.conf") and os.path.exists(dest):
            m["source"] = dest
            m["options"] = [*(o for o in m.get("options", []) if o != "rw"), "ro"]
            n += 1
    return f"bound {n} host /etc file(s)" if n else ""


@defect("rw-sysfs")
def rw_sysfs(cfg: Config) -> str:
    """/sys (and /sys/fs/cgroup) mounted read-write."""
    n = 0
    for m in cfg.get("mounts", []):
        if m.get("destination") in ("/sys", "/sys/fs/cgroup") and "ro" in m.get("options", []):
            m["options"] = [o for o in m["options"] if o != "ro"]
            n += 1
    return f"dropped `ro` from {n} of /sys, /sys/fs/cgroup" if n else ""


@defect("host-proc")
def host_proc(cfg: Config) -> str:
    """/proc is a bind mount of the host's /proc, not a procfs of the container's pid ns."""
    for m in cfg.get("mounts", []):
        if m.get("destination") == "/proc" and m.get("type") == "proc":
            m.update(type="bind", source="/proc", options=["rbind", "nosuid", "noexec", "nodev"])
            return "/proc: rbind of the host's /proc"
    return ""


@defect("gid-map-off-by-one")
def gid_map_off_by_one(cfg: Config) -> str:
    """Like uid-map-off-by-one, for gids only (uids correct)."""
    maps = cfg.get("linux", {}).get("gidMappings") or []
    for m in maps:
        m["hostID"] += 1
    return "shifted gidMappings hostID by +1" if maps else ""


# ------------------------------------------------------------------------------ security


@defect("all-caps")
def all_caps(cfg: Config) -> str:
    """Every capability in every set, whatever the spec asked for."""
    caps = _caps(cfg)
    full = _all_caps()
    for k in ("bounding", "effective", "permitted"):
        caps[k] = list(full)
    return f"granted all {len(full)} capabilities"


@defect("cap-sys-admin")
def cap_sys_admin(cfg: Config) -> str:
    """A subtle one: CAP_SYS_ADMIN added to the bounding set only (not effective)."""
    bnd = _caps(cfg).setdefault("bounding", [])
    if "CAP_SYS_ADMIN" in bnd:
        return ""
    bnd.append("CAP_SYS_ADMIN")
    return "added CAP_SYS_ADMIN to the bounding set"


@defect("no-nnp")
def no_nnp(cfg: Config) -> str:
    """process.noNewPrivileges ignored."""
    proc = cfg.setdefault("process", {})
    if not proc.get("noNewPrivileges"):
        return ""
    proc["noNewPrivileges"] = False
    return "noNewPrivileges true -> false"


@defect("all-devices")
def all_devices(cfg: Config) -> str:
    """The devices cgroup allows every device (rwm), as for a privileged container."""
    res = cfg.setdefault("linux", {}).setdefault("resources", {})
    res["devices"] = [{"allow": True, "access": "rwm"}]
    return "devices cgroup: allow all"


@defect("no-seccomp")
def no_seccomp(cfg: Config) -> str:
    """linux.seccomp ignored: a configured profile is never loaded."""
    return "dropped linux.seccomp" if cfg.get("linux", {}).pop("seccomp", None) else ""


# ------------------------------------------------------------------------------ cgroups


def _resources(cfg: Config) -> dict[str, Any]:
    return cfg.setdefault("linux", {}).setdefault("resources", {})


@defect("no-memory-limit")
def no_memory_limit(cfg: Config) -> str:
    """linux.resources.memory ignored."""
    return "dropped resources.memory" if _resources(cfg).pop("memory", None) else ""


@defect("memory-limit-doubled")
def memory_limit_doubled(cfg: Config) -> str:
    """A subtle one: the memory limit written is twice the requested one."""
    mem = _resources(cfg).get("memory") or {}
    if not mem.get("limit"):
        return ""
    mem["limit"] *= 2
    if mem.get("swap"):
        mem["swap"] *= 2
    return f"memory limit doubled to {mem['limit']}"


@defect("no-pids-limit")
def no_pids_limit(cfg: Config) -> str:
    """linux.resources.pids ignored."""
    return "dropped resources.pids" if _resources(cfg).pop("pids", None) else ""


@defect("no-cpu-quota")
def no_cpu_quota(cfg: Config) -> str:
    """CFS quota and period ignored (cpuset, if any, kept)."""
    cpu = _resources(cfg).get("cpu") or {}
    gone = [k for k in ("quota", "period") if cpu.pop(k, None) is not None]
    return f"dropped cpu {'/'.join(gone)}" if gone else ""


@defect("wrong-cpuset")
def wrong_cpuset(cfg: Config) -> str:
    """cpuset.cpus set to the online CPUs that were NOT asked for (all when none is left)."""
    cpu = _resources(cfg).get("cpu") or {}
    want = cpu.get("cpus")
    if not want:
        return ""
    asked = _parse_cpus(want)
    online = sorted(os.sched_getaffinity(0))
    other = [c for c in online if c not in asked] or online
    cpu["cpus"] = ",".join(map(str, other))
    return f"cpuset {want} -> {cpu['cpus']}"


def _parse_cpus(text: str) -> set[int]:
    out: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        if lo.strip():
            out.update(range(int(lo), int(hi or lo) + 1))
    return out


@defect("no-pivot")
def no_pivot(cfg: Config) -> str:
    """`runc run --no-pivot`: MS_MOVE + chroot instead of pivot_root; the old root is never
    detached (what DOCKER_RAMDISK does)."""
    return "run with --no-pivot"


# ------------------------------------------------------------------------------ the wrapper


def apply(name: str, cfg: Config) -> str:
    """Apply defect ``name`` to ``cfg`` in place; what changed ("" if nothing could)."""
    if name == "none":
        return ""
    return DEFECTS[name](cfg)


def split_argv(argv: list[str]) -> tuple[list[str], str | None, list[str]]:
    """runc's argv (without argv[0]) -> (global options, subcommand, its arguments)."""
    i = 0
    while i < len(argv):
        a = argv[i]
        if not a.startswith("-") or a == "-":
            return argv[:i], a, argv[i + 1 :]
        if a == "--":
            break
        i += 2 if a in GLOBAL_WITH_VALUE else 1
    return argv, None, []


def find_bundle(args: list[str]) -> tuple[str, int | None]:
    """(bundle dir, index of its value in ``args`` or None when implied by the cwd)."""
    for i, a in enumerate(args):
        if a in ("-b", "--bundle", "-bundle") and i + 1 < len(args):
            return args[i + 1], i + 1
        for prefix in ("--bundle=", "-b=", "-bundle="):
            if a.startswith(prefix):
                return a[len(prefix) :], i
    return os.getcwd(), None


def altered_bundle(name: str, bundle: str, log: str | None) -> str:
    """Write the defective copy of ``bundle``'s config.json; return the directory to use."""
    bundle = os.path.abspath(bundle)
    with open(os.path.join(bundle, "config.json")) as f:
        cfg = json.load(f)
    root = cfg.setdefault("root", {})
    root["path"] = os.path.join(bundle, root.get("path", "rootfs"))  # absolute stays absolute
    what = apply(name, cfg)
    out = os.path.join(bundle, SUBDIR)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    if log:
        with open(log, "a") as f:
            f.write(f"{name} {bundle} {what or 'unchanged'}\n")
    return out


def main(argv: list[str]) -> int:
    runc, log = DEFAULT_RUNC, None
    while argv and argv[0] in ("--runc", "--log"):
        if argv[0] == "--runc":
            runc = argv[1]
        else:
            log = argv[1]
        argv = argv[2:]
    if not argv or (argv[0] not in DEFECTS and argv[0] != "none"):
        print(
            f"faulty_runc: want a defect name first: {', '.join(sorted(DEFECTS))}, none",
            file=sys.stderr,
        )
        return 2
    name, rest = argv[0], argv[1:]
    if not os.path.isabs(runc):
        runc = shutil.which(runc) or runc
    glob, cmd, args = split_argv(rest)
    if cmd in ("run", "create"):
        bundle, idx = find_bundle(args)
        new = altered_bundle(name, bundle, log)
        if idx is None:
            args = ["--bundle", new, *args]
        elif args[idx] == bundle:
            args[idx] = new
        else:
            args[idx] = args[idx].split("=", 1)[0] + "=" + new
        rest = [*glob, cmd, *RUN_FLAGS.get(name, []), *args]
    os.execv(runc, [runc, *rest])
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
