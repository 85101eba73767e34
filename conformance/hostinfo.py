"""Host-capability probe: what this kernel and machine can actually do.

Why this module exists: conformance tests exercise kernel features (namespaces, cgroup
controllers, overlayfs, seccomp, BPF tracing) that differ from host to host.  Rather than
letting each test discover a missing feature by failing, the harness probes the host once,
records the facts in a typed `HostInfo`, and turns them into capability tokens
(`capability_tokens`) that tests can require.  `conform doctor` prints the same facts.

Rules the probes follow:

* Stdlib only, and cheap to import: nothing is probed at import time.
* Facts are tested for real where that is cheap and side-effect free (unshare(2) in a forked
  child, an overlay mount inside a private mount namespace, a throw-away BPF map), not guessed
  from version numbers.  Where the evidence is unclear a check reports ``ok=None`` (unknown).
* Every probe is guarded: an exception becomes an error string on that item (or in
  `HostInfo.errors`), never a crash.
* The parsers (`parse_mountinfo`, `parse_cgroup_mounts`, `parse_proc_cgroup`, ...) are pure
  functions over text so they can be tested on literal layouts.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import errno
import functools
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "CAP_NAMES",
    "KNOWN_TOKENS",
    "NAMESPACES",
    "BpfInfo",
    "CgroupInfo",
    "CgroupMembership",
    "CgroupMount",
    "Check",
    "ControllerInfo",
    "FilesystemInfo",
    "HostInfo",
    "KernelInfo",
    "MountInfoEntry",
    "NamespaceInfo",
    "PrivilegeInfo",
    "SecurityInfo",
    "ToolInfo",
    "UserNsInfo",
    "capability_tokens",
    "cgroup_mode",
    "controller_versions",
    "get_host_info",
    "missing_capabilities",
    "parse_cap_mask",
    "parse_cgroup_mounts",
    "parse_kernel_config",
    "parse_kernel_release",
    "parse_mountinfo",
    "parse_proc_cgroup",
    "parse_proc_cgroups",
    "parse_status",
    "probe_host",
]

# --------------------------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------------------------

#: Capability names by number (linux/capability.h), lower-case without the CAP_ prefix.
# fmt: off
CAP_NAMES: tuple[str, ...] = (
    "chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid", "setuid",
    "setpcap", "linux_immutable", "net_bind_service", "net_broadcast", "net_admin", "net_raw",
    "ipc_lock", "ipc_owner", "sys_module", "sys_rawio", "sys_chroot", "sys_ptrace", "sys_pacct",
    "sys_admin", "sys_boot", "sys_nice", "sys_resource", "sys_time", "sys_tty_config", "mknod",
    "lease", "audit_write", "audit_control", "setfcap", "mac_override", "mac_admin", "syslog",
    "wake_alarm", "block_suspend", "audit_read", "perfmon", "bpf", "checkpoint_restore",
)
# fmt: on

#: Namespaces probed, with their CLONE_NEW* flag.
NAMESPACES: dict[str, int] = {
    "pid": 0x20000000,
    "mnt": 0x00020000,
    "uts": 0x04000000,
    "ipc": 0x08000000,
    "net": 0x40000000,
    "user": 0x10000000,
    "cgroup": 0x02000000,
    "time": 0x00000080,
}

#: Cgroup controllers the probe knows by name (v1 and v2 spellings; "io" is v2's blkio).
# fmt: off
CGROUP_CONTROLLERS: tuple[str, ...] = (
    "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "io", "pids",
    "hugetlb", "net_cls", "net_prio", "perf_event", "rdma", "misc", "dmem", "debug",
)
# fmt: on

#: External tools whose presence and version are reported.
TOOLS: tuple[str, ...] = ("runc", "crun", "youki", "podman", "docker", "bpftrace", "busybox")

# Arguments that make each tool print its version on the first line.  busybox has no
# --version; run without arguments it prints "BusyBox v1.xx ..." first and exits 0.
_VERSION_ARGS: dict[str, list[str]] = {"busybox": []}

_FIXED_TOKENS = frozenset(
    {
        "root",  # effective uid 0
        "userns",  # an unprivileged-style user namespace (dropped uid, own uid_map) works
        "cgroup:v1",  # a cgroup v1 hierarchy with at least one controller is mounted
        "cgroup:v2",  # a cgroup2 (unified) hierarchy is mounted
        "overlay",  # a real overlay mount worked (private mount namespace)
        "seccomp",  # a seccomp filter could be installed (forked child)
        "python-seccomp",  # `import seccomp` works in this interpreter
        "bpf",  # bpf(2) created a map
        "btf",  # /sys/kernel/btf/vmlinux exists
        "tracefs",  # tracefs is mounted now (events/ readable)
        "tracepoints",  # syscall tracepoints exist (mounted or mountable tracefs)
        "kprobes",  # kprobe events are available
        "kernel-headers",  # /lib/modules/<release>/build exists and matches the kernel
        "bcc",  # `import bcc` works in this interpreter
        "docker-engine",  # `docker info` answered
        "rref",  # the reference runtime is installed
    }
)

#: Every token `capability_tokens` can return.  Tokens not listed here are unknown.
#:
#: * ``ns:<name>`` -- unshare(2) of that namespace worked (as this process's user).
#: * ``cgroup:<ctrl>`` -- the controller is served by some hierarchy;
#:   ``cgroup:v1:<ctrl>`` / ``cgroup:v2:<ctrl>`` -- ... by that version.  ``cgroup:blkio`` is
#:   also given when v2's ``io`` serves block I/O (it is the same controller, renamed).
#: * ``cap:<name>`` -- the capability is in this process's effective set.
#: * ``tool:<name>`` -- the tool is on PATH and ``<tool> --version`` succeeded.
KNOWN_TOKENS: frozenset[str] = frozenset(
    _FIXED_TOKENS
    | {f"ns:{n}" for n in NAMESPACES}
    | {f"cgroup:{c}" for c in CGROUP_CONTROLLERS}
    | {f"cgroup:v1:{c}" for c in CGROUP_CONTROLLERS}
    | {f"cgroup:v2:{c}" for c in CGROUP_CONTROLLERS}
    | {f"cap:{c}" for c in CAP_NAMES}
    | {f"tool:{t}" for t in TOOLS}
)

# Kernel config options worth showing (when /proc/config.gz or /boot/config-* is readable).
_CONFIG_KEYS: tuple[str, ...] = (
    "CONFIG_USER_NS",
    "CONFIG_TIME_NS",
    "CONFIG_CGROUPS",
    "CONFIG_OVERLAY_FS",
    "CONFIG_SECCOMP_FILTER",
    "CONFIG_BPF_SYSCALL",
    "CONFIG_DEBUG_INFO_BTF",
    "CONFIG_FTRACE_SYSCALLS",
    "CONFIG_KPROBES",
    "CONFIG_KPROBE_EVENTS",
    "CONFIG_IKHEADERS",
)

_CMD_TIMEOUT = 5.0  # seconds, for every external command
_FORK_TIMEOUT = 5.0  # seconds, for every forked probe child

# --------------------------------------------------------------------------------------------
# Data model
# --------------------------------------------------------------------------------------------


@dataclass
class Check:
    """One yes/no fact.  ``ok`` is True (works), False (absent/refused) or None (unknown).

    ``error`` is set only when the probe itself failed (an exception in our code); the
    kernel refusing something is ``ok=False`` with the reason in ``detail``.
    """

    ok: bool | None
    detail: str = ""
    error: str | None = None


@dataclass
class KernelInfo:
    release: str = ""
    version: str = ""
    machine: str = ""
    release_tuple: tuple[int, int, int] | None = None
    config_source: str | None = None
    config: dict[str, str] = field(default_factory=dict)


@dataclass
class PrivilegeInfo:
    uid: int = -1
    euid: int = -1
    is_root: bool = False
    cap_eff: int | None = None
    cap_last_cap: int | None = None
    effective: list[str] = field(default_factory=list)  # CAP_* names
    missing: list[str] = field(default_factory=list)  # CAP_* names up to cap_last_cap


@dataclass
class MountInfoEntry:
    mount_id: int
    parent_id: int
    devno: str
    root: str
    mount_point: str
    options: tuple[str, ...]
    fstype: str
    source: str
    super_options: tuple[str, ...]


@dataclass
class CgroupMount:
    version: int  # 1 or 2
    mount_point: str
    root: str
    controllers: tuple[str, ...] = ()  # v1: from the mount options; v2: empty here
    name: str | None = None  # v1 named hierarchy (name=systemd)


@dataclass
class CgroupMembership:
    hierarchy_id: int
    controllers: tuple[str, ...]
    path: str

    @property
    def key(self) -> str:
        """A stable label: the controller list, ``name=...``, or ``unified`` for v2."""
        if self.hierarchy_id == 0 and not self.controllers:
            return "unified"
        return ",".join(self.controllers)


@dataclass
class ControllerInfo:
    version: str  # "v1" or "v2"
    mount_point: str


@dataclass
class CgroupInfo:
    mode: str = "none"  # "v1", "v2", "hybrid" or "none"
    mounts: list[CgroupMount] = field(default_factory=list)
    v2_mount: str | None = None
    v2_controllers: list[str] = field(default_factory=list)
    controllers: dict[str, ControllerInfo] = field(default_factory=dict)
    kernel_controllers: dict[str, bool] = field(default_factory=dict)  # /proc/cgroups
    self_paths: dict[str, str] = field(default_factory=dict)  # /proc/self/cgroup


@dataclass
class NamespaceInfo:
    name: str
    present: bool
    unshare: Check


@dataclass
class UserNsInfo:
    max_user_namespaces: int | None = None
    sysctls: dict[str, str] = field(default_factory=dict)
    unprivileged: Check = field(default_factory=lambda: Check(None, "not probed"))


@dataclass
class FilesystemInfo:
    overlay_listed: bool = False
    overlay_mount: Check = field(default_factory=lambda: Check(None, "not probed"))
    idmapped_mounts: Check = field(default_factory=lambda: Check(None, "not probed"))


@dataclass
class SecurityInfo:
    seccomp_field: bool = False
    seccomp_mode: int | None = None
    seccomp_actions: list[str] = field(default_factory=list)
    seccomp_filter: Check = field(default_factory=lambda: Check(None, "not probed"))
    python_seccomp: Check = field(default_factory=lambda: Check(None, "not probed"))


@dataclass
class BpfInfo:
    bpf_syscall: Check = field(default_factory=lambda: Check(None, "not probed"))
    btf: Check = field(default_factory=lambda: Check(None, "not probed"))
    tracefs: Check = field(default_factory=lambda: Check(None, "not probed"))
    tracefs_path: str | None = None
    syscall_tracepoints: Check = field(default_factory=lambda: Check(None, "not probed"))
    kprobes: Check = field(default_factory=lambda: Check(None, "not probed"))
    headers_path: str | None = None
    headers_release: str | None = None
    kernel_headers: Check = field(default_factory=lambda: Check(None, "not probed"))
    bcc: Check = field(default_factory=lambda: Check(None, "not probed"))


@dataclass
class ToolInfo:
    name: str
    path: str | None = None
    version: str | None = None
    error: str | None = None  # the version command failed (text of the failure)
    engine: Check | None = None  # docker only: does an engine answer `docker info`?

    @property
    def usable(self) -> bool:
        return self.path is not None and self.error is None


@dataclass
class HostInfo:
    kernel: KernelInfo = field(default_factory=KernelInfo)
    privileges: PrivilegeInfo = field(default_factory=PrivilegeInfo)
    cgroups: CgroupInfo = field(default_factory=CgroupInfo)
    namespaces: dict[str, NamespaceInfo] = field(default_factory=dict)
    userns: UserNsInfo = field(default_factory=UserNsInfo)
    filesystems: FilesystemInfo = field(default_factory=FilesystemInfo)
    security: SecurityInfo = field(default_factory=SecurityInfo)
    bpf: BpfInfo = field(default_factory=BpfInfo)
    tools: dict[str, ToolInfo] = field(default_factory=dict)
    rref_path: str | None = None
    errors: dict[str, str] = field(default_factory=dict)  # section -> probe failure
    probe_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict of every fact, plus the derived ``tokens`` list."""
        data = dataclasses.asdict(self)
        data["tokens"] = sorted(capability_tokens(self))
        return data


# --------------------------------------------------------------------------------------------
# Pure parsers (text in, data out)
# --------------------------------------------------------------------------------------------

_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


def _unescape(path: str) -> str:
    """Undo the kernel's octal escaping of spaces, tabs, newlines and backslashes."""
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), path)


def parse_mountinfo(text: str) -> list[MountInfoEntry]:
    """Parse /proc/<pid>/mountinfo text.  Malformed lines are skipped."""
    entries: list[MountInfoEntry] = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        sep = fields.index("-")
        if sep < 6 or len(fields) < sep + 3:
            continue
        try:
            mount_id, parent_id = int(fields[0]), int(fields[1])
        except ValueError:
            continue
        super_opts = fields[sep + 3] if len(fields) > sep + 3 else ""
        entries.append(
            MountInfoEntry(
                mount_id=mount_id,
                parent_id=parent_id,
                devno=fields[2],
                root=_unescape(fields[3]),
                mount_point=_unescape(fields[4]),
                options=tuple(fields[5].split(",")),
                fstype=fields[sep + 1],
                source=_unescape(fields[sep + 2]),
                super_options=tuple(o for o in super_opts.split(",") if o),
            )
        )
    return entries


def parse_cgroup_mounts(
    mountinfo_text: str, known_controllers: Iterable[str] = CGROUP_CONTROLLERS
) -> list[CgroupMount]:
    """The cgroup (v1) and cgroup2 mounts in mountinfo text.

    A v1 hierarchy's controllers are the super-block options that name a known controller
    (pass the names from /proc/cgroups to recognise controllers this module has never heard
    of).  A hierarchy mounted twice (bind mounts) is reported once, at its first mount point.
    """
    known = set(known_controllers)
    mounts: list[CgroupMount] = []
    seen: set[tuple[int, str]] = set()
    for entry in parse_mountinfo(mountinfo_text):
        if entry.fstype == "cgroup2":
            version = 2
            controllers: tuple[str, ...] = ()
            name = None
        elif entry.fstype == "cgroup":
            version = 1
            controllers = tuple(o for o in entry.super_options if o in known)
            name = next(
                (o.partition("=")[2] for o in entry.super_options if o.startswith("name=")),
                None,
            )
        else:
            continue
        if (version, entry.devno) in seen:
            continue
        seen.add((version, entry.devno))
        mounts.append(
            CgroupMount(
                version=version,
                mount_point=entry.mount_point,
                root=entry.root,
                controllers=controllers,
                name=name,
            )
        )
    return mounts


def cgroup_mode(mounts: Iterable[CgroupMount]) -> str:
    """``"v1"``, ``"v2"``, ``"hybrid"`` (both mounted) or ``"none"``.

    Only v1 hierarchies that carry a controller count: a lone ``name=systemd`` hierarchy next
    to cgroup2 does not make a host hybrid.
    """
    mounts = list(mounts)
    has_v1 = any(m.version == 1 and m.controllers for m in mounts)
    has_v2 = any(m.version == 2 for m in mounts)
    if has_v1 and has_v2:
        return "hybrid"
    if has_v1:
        return "v1"
    if has_v2:
        return "v2"
    return "none"


def controller_versions(
    mounts: Iterable[CgroupMount], v2_controllers: Iterable[str]
) -> dict[str, ControllerInfo]:
    """Which cgroup version (and mount point) serves each controller.

    ``v2_controllers`` is the content of the v2 root's ``cgroup.controllers``.  The kernel
    binds a controller to one version at a time; if both claim one, the v1 mount wins.
    """
    mounts = list(mounts)
    result: dict[str, ControllerInfo] = {}
    for m in mounts:
        if m.version == 1:
            for c in m.controllers:
                result.setdefault(c, ControllerInfo("v1", m.mount_point))
    v2_mount = next((m for m in mounts if m.version == 2), None)
    if v2_mount is not None:
        for c in v2_controllers:
            result.setdefault(c, ControllerInfo("v2", v2_mount.mount_point))
    return dict(sorted(result.items()))


def parse_proc_cgroup(text: str) -> list[CgroupMembership]:
    """Parse /proc/<pid>/cgroup (``hierarchy-id:controllers:path`` per line)."""
    result: list[CgroupMembership] = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        try:
            hid = int(parts[0])
        except ValueError:
            continue
        controllers = tuple(c for c in parts[1].split(",") if c)
        result.append(CgroupMembership(hid, controllers, parts[2]))
    return result


def parse_proc_cgroups(text: str) -> dict[str, bool]:
    """Parse /proc/cgroups: controller name -> enabled (compiled in and not disabled)."""
    result: dict[str, bool] = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        fields = line.split()
        if len(fields) >= 4:
            result[fields[0]] = fields[3] == "1"
    return result


def parse_status(text: str) -> dict[str, str]:
    """Parse /proc/<pid>/status into a field -> value dict."""
    result: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            result[key.strip()] = value.strip()
    return result


def parse_cap_mask(hex_mask: str) -> set[int]:
    """Capability numbers set in a CapEff-style hex mask."""
    value = int(hex_mask, 16)
    return {bit for bit in range(value.bit_length()) if value >> bit & 1}


def _cap_display(bit: int) -> str:
    return f"CAP_{CAP_NAMES[bit].upper()}" if bit < len(CAP_NAMES) else f"CAP_{bit}"


def missing_capabilities(cap_eff: int, cap_last_cap: int) -> list[str]:
    """CAP_* names in 0..cap_last_cap that are not in the effective mask."""
    return [_cap_display(b) for b in range(cap_last_cap + 1) if not cap_eff >> b & 1]


def parse_kernel_config(text: str) -> dict[str, str]:
    """Parse a kernel .config: ``CONFIG_X=y`` -> {"CONFIG_X": "y"}; "is not set" -> "n"."""
    result: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("# CONFIG_") and line.endswith(" is not set"):
            result[line[2:].split()[0]] = "n"
        elif line.startswith("CONFIG_") and "=" in line:
            key, _, value = line.partition("=")
            result[key] = value.strip('"')
    return result


def parse_kernel_release(release: str) -> tuple[int, int, int] | None:
    """``"6.18.44-fc-v595"`` -> (6, 18, 44); None when it does not start with a version."""
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", release)
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def _parse_utsrelease_h(text: str) -> str | None:
    m = re.search(r'#define\s+UTS_RELEASE\s+"([^"]*)"', text)
    return m.group(1) if m else None


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def _describe(exc: BaseException) -> str:
    if isinstance(exc, _LibcError):
        return exc.strerror or str(exc)
    if isinstance(exc, (_Refusal, _ChildError)):
        return str(exc)
    if isinstance(exc, subprocess.TimeoutExpired):
        return f"timed out after {exc.timeout:g}s"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _read(path: str | Path) -> str:
    return Path(path).read_text(encoding="utf-8", errors="replace")


def _read_or_none(path: str | Path) -> str | None:
    try:
        return _read(path).strip()
    except OSError:
        return None


def _guard(errors: dict[str, str], key: str, fn: Callable[[], Any], default: Any) -> Any:
    """Run one probe; an exception is recorded under ``key`` and ``default`` returned."""
    try:
        return fn()
    except Exception as exc:
        errors[key] = _describe(exc)
        return default


def _check(fn: Callable[[], Check]) -> Check:
    """Run one check; an exception becomes ``Check(None, error=...)``."""
    try:
        return fn()
    except Exception as exc:
        return Check(None, "probe failed", error=_describe(exc))


def _first_line(text: str) -> str:
    return next((ln.strip() for ln in text.splitlines() if ln.strip()), "")


class _LibcError(OSError):
    """A failed libc call; ``strerror`` is a ready-made "call: EPERM (...)" text."""


class _Refusal(Exception):
    """A probe's own verification found that the feature does not work."""


class _ChildError(RuntimeError):
    """An unexpected exception in a forked probe child (message already formatted)."""


@functools.cache
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.unshare.argtypes = [ctypes.c_int]
    libc.mount.argtypes = [
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_ulong,
        ctypes.c_void_p,
    ]
    libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
    libc.syscall.restype = ctypes.c_long
    return libc


def _libc_check(call: str, result: int) -> int:
    if result == -1:
        err = ctypes.get_errno()
        name = errno.errorcode.get(err, str(err))
        raise _LibcError(err, f"{call}: {name} ({os.strerror(err)})")
    return result


def _unshare(flags: int) -> None:
    _libc_check("unshare", _libc().unshare(flags))


_MS_REC = 0x4000
_MS_PRIVATE = 1 << 18


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None):
    def enc(s: str | None) -> bytes | None:
        return None if s is None else s.encode()

    data_buf = ctypes.c_char_p(enc(data)) if data is not None else None
    _libc_check(
        f"mount({fstype or source})",
        _libc().mount(enc(source), enc(target), enc(fstype), flags, data_buf),
    )


def _private_mount_ns() -> None:
    """In a forked child: new mount namespace whose mounts never propagate back."""
    _unshare(NAMESPACES["mnt"])
    _mount(None, "/", None, _MS_REC | _MS_PRIVATE, None)


def _run_forked(fn: Callable[[], Any], timeout: float = _FORK_TIMEOUT) -> Any:
    """Run ``fn`` in a forked child and return its (JSON-serializable) result.

    The child never returns into the caller's code: it writes a JSON result to a pipe and
    calls os._exit.  Exceptions in the child are re-raised here: _LibcError for failed libc
    calls, _Refusal for failed verifications, _ChildError for anything else.  A child that
    outlives ``timeout`` is killed (and _ChildError raised).
    """
    _libc()  # load libc before forking
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        status = 1
        try:
            os.close(read_fd)
            try:
                payload = {"ok": True, "value": fn()}
                status = 0
            except BaseException as exc:
                kind = "error"
                if isinstance(exc, _LibcError):
                    kind = "libc"
                elif isinstance(exc, _Refusal):
                    kind = "refusal"
                payload = {
                    "ok": False,
                    "kind": kind,
                    "errno": getattr(exc, "errno", None),
                    "error": _describe(exc),
                }
            os.write(write_fd, json.dumps(payload).encode()[:60000])
        finally:
            os._exit(status)
    os.close(write_fd)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    timed_out = False
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            ready, _, _ = select.select([read_fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(read_fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_fd)
        if timed_out:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):  # a SIGCHLD handler may have reaped it
            os.waitpid(pid, 0)
    if timed_out:
        raise _ChildError(f"probe child timed out after {timeout:g}s")
    if not chunks:
        raise _ChildError("probe child exited without a result")
    payload = json.loads(b"".join(chunks))
    if payload["ok"]:
        return payload["value"]
    if payload["kind"] == "libc":
        raise _LibcError(payload.get("errno") or 0, payload["error"])
    if payload["kind"] == "refusal":
        raise _Refusal(payload["error"])
    raise _ChildError(payload["error"])


def _refused(exc: BaseException) -> Check:
    """The kernel said no (libc error, failed verification) -> ok=False; else a probe error."""
    if isinstance(exc, (_LibcError, _Refusal)):
        return Check(False, _describe(exc))
    return Check(None, "probe failed", error=_describe(exc))


def _forked_check(fn: Callable[[], str]) -> Check:
    try:
        return Check(True, _run_forked(fn) or "")
    except Exception as exc:
        return _refused(exc)


# --------------------------------------------------------------------------------------------
# Probes
# --------------------------------------------------------------------------------------------


def _probe_kernel() -> KernelInfo:
    u = os.uname()
    info = KernelInfo(
        release=u.release,
        version=u.version,
        machine=u.machine,
        release_tuple=parse_kernel_release(u.release),
    )
    import gzip  # imported lazily, like tempfile and concurrent.futures

    for candidate in ("/proc/config.gz", f"/boot/config-{u.release}"):
        try:
            if candidate.endswith(".gz"):
                with gzip.open(candidate, "rt", encoding="utf-8", errors="replace") as fh:
                    text = fh.read()
            else:
                text = _read(candidate)
        except OSError:
            continue
        config = parse_kernel_config(text)
        info.config_source = candidate
        info.config = {k: config.get(k, "n") for k in _CONFIG_KEYS}
        break
    return info


def _probe_privileges() -> PrivilegeInfo:
    info = PrivilegeInfo(uid=os.getuid(), euid=os.geteuid())
    info.is_root = info.euid == 0
    status = parse_status(_read("/proc/self/status"))
    if "CapEff" in status:
        info.cap_eff = int(status["CapEff"], 16)
    last = _read_or_none("/proc/sys/kernel/cap_last_cap")
    if last is not None and last.isdigit():
        info.cap_last_cap = int(last)
    elif "CapBnd" in status:  # fall back to the highest bit of the bounding set
        info.cap_last_cap = max(parse_cap_mask(status["CapBnd"]) or {-1})
    if info.cap_eff is not None:
        info.effective = [_cap_display(b) for b in sorted(parse_cap_mask(hex(info.cap_eff)))]
        if info.cap_last_cap is not None:
            info.missing = missing_capabilities(info.cap_eff, info.cap_last_cap)
    return info


def _probe_cgroups() -> CgroupInfo:
    kernel_controllers: dict[str, bool] = {}
    text = _read_or_none("/proc/cgroups")
    if text is not None:
        kernel_controllers = parse_proc_cgroups(text)
    known = set(CGROUP_CONTROLLERS) | set(kernel_controllers)
    mounts = parse_cgroup_mounts(_read("/proc/self/mountinfo"), known)
    info = CgroupInfo(mode=cgroup_mode(mounts), mounts=mounts)
    info.kernel_controllers = kernel_controllers
    v2 = [m for m in mounts if m.version == 2]
    if v2:
        # Prefer a mount of the hierarchy root; inside a cgroup namespace any will do.
        chosen = next((m for m in v2 if m.root == "/"), v2[0])
        info.v2_mount = chosen.mount_point
        ctl = _read_or_none(os.path.join(chosen.mount_point, "cgroup.controllers"))
        info.v2_controllers = ctl.split() if ctl else []
    info.controllers = controller_versions(mounts, info.v2_controllers)
    memberships = parse_proc_cgroup(_read("/proc/self/cgroup"))
    info.self_paths = {m.key: m.path for m in memberships}
    return info


def _ns_child(name: str) -> Callable[[], str]:
    def child() -> str:
        link = f"/proc/self/ns/{name}"
        before = os.stat(link).st_ino
        _unshare(NAMESPACES[name])
        if name == "pid":
            # The new pid namespace is entered by the next child, which must be its pid 1.
            # (pid_for_children cannot be read before that child exists.)
            grandchild = os.fork()
            if grandchild == 0:
                ok = os.getpid() == 1 and os.stat(link).st_ino != before
                os._exit(0 if ok else 3)
            _, status = os.waitpid(grandchild, 0)
            if os.waitstatus_to_exitcode(status) != 0:
                raise _Refusal("first child in the new pid namespace is not pid 1 there")
            return "unshare ok; first child is pid 1"
        if name == "time" and os.path.exists(f"{link}_for_children"):
            link = f"{link}_for_children"  # the time namespace applies to children
        if os.stat(link).st_ino == before:
            raise _Refusal(f"{link} unchanged after unshare")
        return "unshare ok"

    return child


def _probe_namespaces() -> dict[str, NamespaceInfo]:
    result: dict[str, NamespaceInfo] = {}
    for name in NAMESPACES:
        present = os.path.exists(f"/proc/self/ns/{name}")
        if present:
            check = _forked_check(_ns_child(name))
        else:
            check = Check(False, f"/proc/self/ns/{name} does not exist")
        result[name] = NamespaceInfo(name, present, check)
    return result


_NOBODY = 65534
_PR_SET_DUMPABLE = 4


def _unprivileged_userns_child() -> str:
    if os.geteuid() == 0:
        # Become an ordinary user first, as an unprivileged runtime would be.
        os.setgroups([])
        os.setresgid(_NOBODY, _NOBODY, _NOBODY)
        os.setresuid(_NOBODY, _NOBODY, _NOBODY)
        # Changing uid clears "dumpable", which makes /proc/self/* root-owned.
        _libc_check("prctl", _libc().prctl(_PR_SET_DUMPABLE, 1, 0, 0, 0))
    uid, gid = os.geteuid(), os.getegid()
    _unshare(NAMESPACES["user"])
    Path("/proc/self/setgroups").write_text("deny")
    Path("/proc/self/uid_map").write_text(f"0 {uid} 1")
    Path("/proc/self/gid_map").write_text(f"0 {gid} 1")
    if os.geteuid() != 0:
        raise _Refusal("uid_map written but euid is not 0 inside the namespace")
    return f"uid {uid} mapped to root in a new user namespace"


def _probe_userns() -> UserNsInfo:
    info = UserNsInfo()
    value = _read_or_none("/proc/sys/user/max_user_namespaces")
    if value is not None and value.isdigit():
        info.max_user_namespaces = int(value)
    for path in (
        "/proc/sys/kernel/unprivileged_userns_clone",  # Debian/Ubuntu patch
        "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",  # Ubuntu 23.10+
    ):
        value = _read_or_none(path)
        if value is not None:
            info.sysctls[os.path.basename(path)] = value
    if not os.path.exists("/proc/self/ns/user"):
        info.unprivileged = Check(False, "kernel has no user namespaces")
    else:
        info.unprivileged = _forked_check(_unprivileged_userns_child)
    return info


def _overlay_child(base: str) -> Callable[[], str]:
    def child() -> str:
        _private_mount_ns()
        # A private tmpfs keeps the test independent of what /tmp lives on.
        _mount("tmpfs", base, "tmpfs", 0, "size=1m,mode=0700")
        for d in ("lower", "upper", "work", "merged"):
            os.mkdir(os.path.join(base, d))
        Path(base, "lower", "from-lower").write_text("lower")
        opts = f"lowerdir={base}/lower,upperdir={base}/upper,workdir={base}/work"
        _mount("overlay", f"{base}/merged", "overlay", 0, opts)
        if Path(base, "merged", "from-lower").read_text() != "lower":
            raise _Refusal("lower file not visible through the overlay")
        Path(base, "merged", "new").write_text("upper")
        if not Path(base, "upper", "new").exists():
            raise _Refusal("write through the overlay did not reach upperdir")
        return "mounted, lower visible, writes reach upperdir"

    return child


def _probe_filesystems(kernel: KernelInfo) -> FilesystemInfo:
    info = FilesystemInfo()
    filesystems = _read_or_none("/proc/filesystems") or ""
    info.overlay_listed = any(ln.split()[-1:] == ["overlay"] for ln in filesystems.splitlines())

    def overlay() -> Check:
        import tempfile

        base = tempfile.mkdtemp(prefix=f"conform-overlay-{os.getpid()}-", dir="/tmp")
        try:
            return _forked_check(_overlay_child(base))
        finally:
            shutil.rmtree(base, ignore_errors=True)

    info.overlay_mount = _check(overlay)

    rel = kernel.release_tuple
    if rel is None:
        info.idmapped_mounts = Check(None, "kernel version not parseable")
    else:
        likely = rel >= (5, 12, 0)
        info.idmapped_mounts = Check(
            likely, f"kernel {'>=' if likely else '<'} 5.12 (informative, not tested)"
        )
    return info


# seccomp: install an allow-everything filter in a child, proving filters work.
_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2
_SECCOMP_RET_ALLOW = 0x7FFF0000
_BPF_RET_K = 0x06


class _SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def _seccomp_child() -> str:
    libc = _libc()
    insns = (_SockFilter * 1)(_SockFilter(_BPF_RET_K, 0, 0, _SECCOMP_RET_ALLOW))
    prog = _SockFprog(1, insns)
    _libc_check("prctl(NO_NEW_PRIVS)", libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
    _libc_check(
        "prctl(SET_SECCOMP)",
        libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.addressof(prog), 0, 0),
    )
    mode = parse_status(_read("/proc/self/status")).get("Seccomp")
    if mode != "2":
        raise _Refusal(f"filter installed but Seccomp is {mode!r}")
    return "allow-all filter installed"


def _python_import(module: str, timeout: float = _CMD_TIMEOUT) -> Check:
    """Does ``import <module>`` work in this interpreter?  Tested in a subprocess so that a
    slow or crashing import cannot hurt the caller."""
    if not sys.executable:
        return Check(None, "sys.executable unknown")
    code = (
        f"import {module} as m, sys; "
        "sys.stdout.write(str(getattr(m, '__version__', '') or getattr(m, '__file__', '')))"
    )
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd="/",
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        return Check(False, _describe(exc))
    if proc.returncode == 0:
        return Check(True, proc.stdout.strip())
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    return Check(False, lines[-1].strip() if lines else f"exit status {proc.returncode}")


def _probe_security() -> SecurityInfo:
    info = SecurityInfo()
    status = parse_status(_read("/proc/self/status"))
    info.seccomp_field = "Seccomp" in status
    if info.seccomp_field and status["Seccomp"].isdigit():
        info.seccomp_mode = int(status["Seccomp"])
    actions = _read_or_none("/proc/sys/kernel/seccomp/actions_avail")
    info.seccomp_actions = actions.split() if actions else []
    if info.seccomp_field:
        info.seccomp_filter = _forked_check(_seccomp_child)
    else:
        info.seccomp_filter = Check(False, "no Seccomp field in /proc/self/status")
    return info


# bpf(2): create (and immediately close) a one-entry array map.
_BPF_SYSCALL_NR = {"x86_64": 321, "aarch64": 280, "riscv64": 280, "ppc64le": 361, "s390x": 351}
_BPF_MAP_CREATE = 0
_BPF_MAP_TYPE_ARRAY = 2


def _bpf_syscall_check(machine: str) -> Check:
    nr = _BPF_SYSCALL_NR.get(machine)
    if nr is None:
        if os.path.exists("/proc/sys/kernel/unprivileged_bpf_disabled"):
            return Check(None, f"bpf(2) not tested on {machine}; the sysctl exists")
        return Check(None, f"bpf(2) not tested on {machine}")
    attr = (ctypes.c_uint32 * 32)()  # zeroed union bpf_attr (128 bytes)
    attr[0], attr[1], attr[2], attr[3] = _BPF_MAP_TYPE_ARRAY, 4, 4, 1
    libc = _libc()
    fd = libc.syscall(ctypes.c_long(nr), ctypes.c_long(_BPF_MAP_CREATE), attr, ctypes.c_uint(128))
    try:
        _libc_check("bpf(BPF_MAP_CREATE)", fd)
    except _LibcError as exc:
        return Check(False, _describe(exc))
    os.close(fd)
    return Check(True, "created and closed an array map")


_TRACEFS_CANDIDATES = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
_SYSCALL_TP = "events/syscalls/sys_enter_unshare"


def _tracefs_facts(root: str) -> dict[str, bool]:
    kprobe_events = os.path.join(root, "kprobe_events")
    return {
        "syscall_tp": os.path.isdir(os.path.join(root, _SYSCALL_TP)),
        "kprobe_events": os.path.exists(kprobe_events),
        "kprobe_writable": os.access(kprobe_events, os.W_OK),
    }


def _tracefs_mount_child() -> dict[str, bool]:
    _private_mount_ns()
    _mount("nodev", _TRACEFS_CANDIDATES[0], "tracefs", 0, None)
    return _tracefs_facts(_TRACEFS_CANDIDATES[0])


def _probe_bpf(kernel: KernelInfo, privileges: PrivilegeInfo) -> BpfInfo:
    info = BpfInfo()
    info.bpf_syscall = _check(lambda: _bpf_syscall_check(kernel.machine))
    btf = os.path.exists("/sys/kernel/btf/vmlinux")
    info.btf = Check(btf, "/sys/kernel/btf/vmlinux" + ("" if btf else " absent"))

    # tracefs: use the mounted one; otherwise look inside a private mount, if we may.
    facts: dict[str, bool] | None = None
    source = ""
    for root in _TRACEFS_CANDIDATES:
        if os.path.isdir(os.path.join(root, "events")):
            info.tracefs_path = root
            break
    if info.tracefs_path:
        info.tracefs = Check(True, f"mounted at {info.tracefs_path}")
        facts = _tracefs_facts(info.tracefs_path)
        source = info.tracefs_path
    else:
        listed = "tracefs" in (_read_or_none("/proc/filesystems") or "")
        if not listed:
            info.tracefs = Check(False, "tracefs not supported by this kernel")
        elif not os.path.isdir(_TRACEFS_CANDIDATES[0]):
            info.tracefs = Check(False, f"not mounted; {_TRACEFS_CANDIDATES[0]} missing")
        elif not privileges.is_root:
            info.tracefs = Check(False, "not mounted (mounting it needs root)")
        else:
            try:
                facts = _run_forked(_tracefs_mount_child)
                source = "a private tracefs mount"
                info.tracefs = Check(
                    False,
                    f"not mounted (mountable: mount -t tracefs nodev {_TRACEFS_CANDIDATES[0]})",
                )
            except Exception as exc:
                info.tracefs = Check(False, f"not mounted; private mount failed: {_describe(exc)}")

    if facts is None:
        info.syscall_tracepoints = Check(None, "unknown: no tracefs to look in")
    elif facts["syscall_tp"]:
        info.syscall_tracepoints = Check(True, f"{_SYSCALL_TP} present (in {source})")
    else:
        info.syscall_tracepoints = Check(False, f"{_SYSCALL_TP} absent (in {source})")

    info.kprobes = _check(lambda: _kprobes_check(facts, source, kernel))
    _probe_headers(info, kernel)
    return info


def _kprobes_check(facts: dict[str, bool] | None, source: str, kernel: KernelInfo) -> Check:
    """kprobe events: only say yes/no on direct evidence, otherwise "unknown"."""
    if os.path.exists("/sys/bus/event_source/devices/kprobe"):
        return Check(True, "perf kprobe PMU present (/sys/bus/event_source/devices/kprobe)")
    if facts is not None and facts["kprobe_events"]:
        if facts["kprobe_writable"]:
            return Check(True, f"kprobe_events writable (in {source})")
        return Check(False, f"kprobe_events present but not writable (in {source})")
    config = kernel.config.get("CONFIG_KPROBE_EVENTS") if kernel.config_source else None
    if config in ("n", "m") or kernel.config.get("CONFIG_KPROBES") == "n":
        return Check(False, f"CONFIG_KPROBE_EVENTS not built in ({kernel.config_source})")
    if facts is not None:
        return Check(False, f"no kprobe_events (in {source}) and no kprobe PMU")
    return Check(None, "unknown: no tracefs, no kprobe PMU, no kernel config to consult")


def _probe_headers(info: BpfInfo, kernel: KernelInfo) -> None:
    build = Path("/lib/modules", kernel.release, "build")
    if not build.is_dir():
        info.kernel_headers = Check(False, f"{build} missing")
        return
    info.headers_path = str(build.resolve())
    version = _read_or_none(build / "include/config/kernel.release")
    if not version:
        text = _read_or_none(build / "include/generated/utsrelease.h")
        version = _parse_utsrelease_h(text) if text else None
    info.headers_release = version
    if version is None:
        info.kernel_headers = Check(None, f"{build} present, version unknown")
    elif version == kernel.release:
        info.kernel_headers = Check(True, f"{info.headers_path} ({version})")
    else:
        info.kernel_headers = Check(
            False, f"{info.headers_path} is for {version}, kernel is {kernel.release}"
        )


def _run_command(argv: list[str], timeout: float = _CMD_TIMEOUT) -> tuple[int, str, str]:
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    return proc.returncode, proc.stdout, proc.stderr


def _probe_tool(name: str) -> ToolInfo:
    info = ToolInfo(name)
    info.path = shutil.which(name)
    if info.path is None:
        return info
    try:
        rc, out, err = _run_command([info.path, *_VERSION_ARGS.get(name, ["--version"])])
        first = _first_line(out) or _first_line(err)
        if rc == 0 and first:
            info.version = first
        else:
            info.error = first or f"exit status {rc}"
    except Exception as exc:
        info.error = _describe(exc)
    if name == "docker":
        info.engine = _docker_engine(info.path)
    return info


def _docker_engine(path: str) -> Check:
    try:
        rc, out, err = _run_command([path, "info", "--format", "{{.ServerVersion}}"])
    except Exception as exc:
        return Check(False, _describe(exc))
    if rc == 0 and out.strip():
        return Check(True, f"engine {out.strip()}")
    return Check(False, _first_line(err) or _first_line(out) or f"exit status {rc}")


def _find_rref() -> str | None:
    # Also look next to the interpreter: a venv's bin/ is often not on PATH.
    return shutil.which("rref") or shutil.which("rref", path=os.path.dirname(sys.executable))


def probe_host() -> HostInfo:
    """Probe this host now (about a second) and return the facts.  Never raises."""
    import concurrent.futures  # imported lazily: it pulls in logging

    started = time.monotonic()
    info = HostInfo()
    errors = info.errors
    info.kernel = _guard(errors, "kernel", _probe_kernel, KernelInfo())
    info.privileges = _guard(errors, "privileges", _probe_privileges, PrivilegeInfo())
    info.cgroups = _guard(errors, "cgroups", _probe_cgroups, CgroupInfo())

    # Forking probes run first, while this process has no helper threads.
    info.namespaces = _guard(errors, "namespaces", _probe_namespaces, {})
    info.userns = _guard(errors, "userns", _probe_userns, UserNsInfo())
    info.filesystems = _guard(
        errors, "filesystems", lambda: _probe_filesystems(info.kernel), FilesystemInfo()
    )
    info.security = _guard(errors, "security", _probe_security, SecurityInfo())
    info.bpf = _guard(errors, "bpf", lambda: _probe_bpf(info.kernel, info.privileges), BpfInfo())

    # Subprocess probes run concurrently; the pool is joined before returning.
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(TOOLS) + 2) as pool:
        tool_futures = {name: pool.submit(_probe_tool, name) for name in TOOLS}
        seccomp_future = pool.submit(_python_import, "seccomp")
        bcc_future = pool.submit(_python_import, "bcc")
        for name, fut in tool_futures.items():
            info.tools[name] = _guard(errors, f"tools.{name}", fut.result, ToolInfo(name))
        info.security.python_seccomp = _check(seccomp_future.result)
        info.bpf.bcc = _check(bcc_future.result)

    info.rref_path = _guard(errors, "rref", _find_rref, None)
    info.probe_seconds = round(time.monotonic() - started, 3)
    return info


@functools.cache
def get_host_info() -> HostInfo:
    """The host facts, probed once per process (shared by the CLI and pytest plugins)."""
    return probe_host()


# --------------------------------------------------------------------------------------------
# Tokens
# --------------------------------------------------------------------------------------------


def capability_tokens(info: HostInfo) -> set[str]:
    """Capability tokens for ``info``; always a subset of KNOWN_TOKENS."""
    tokens: set[str] = set()

    def add(token: str, condition: object = True) -> None:
        if condition:
            tokens.add(token)

    priv = info.privileges
    add("root", priv.is_root)
    if priv.cap_eff is not None:
        for bit in parse_cap_mask(hex(priv.cap_eff)):
            if bit < len(CAP_NAMES):
                add(f"cap:{CAP_NAMES[bit]}")

    for name, ns in info.namespaces.items():
        add(f"ns:{name}", ns.present and ns.unshare.ok is True)
    add("userns", info.userns.unprivileged.ok is True)

    cg = info.cgroups
    add("cgroup:v1", cg.mode in ("v1", "hybrid"))
    add("cgroup:v2", any(m.version == 2 for m in cg.mounts))
    for ctrl, where in cg.controllers.items():
        if ctrl in CGROUP_CONTROLLERS:  # a controller newer than this module gets no token
            add(f"cgroup:{ctrl}")
            add(f"cgroup:{where.version}:{ctrl}")
    add("cgroup:blkio", "io" in cg.controllers)

    add("overlay", info.filesystems.overlay_mount.ok is True)
    add("seccomp", info.security.seccomp_filter.ok is True)
    add("python-seccomp", info.security.python_seccomp.ok is True)

    bpf = info.bpf
    add("bpf", bpf.bpf_syscall.ok is True)
    add("btf", bpf.btf.ok is True)
    add("tracefs", bpf.tracefs.ok is True)
    add("tracepoints", bpf.syscall_tracepoints.ok is True)
    add("kprobes", bpf.kprobes.ok is True)
    add("kernel-headers", bpf.kernel_headers.ok is True)
    add("bcc", bpf.bcc.ok is True)

    for name, tool in info.tools.items():
        add(f"tool:{name}", name in TOOLS and tool.usable)
        if tool.engine is not None:
            add("docker-engine", tool.engine.ok is True)
    add("rref", info.rref_path)

    return tokens
