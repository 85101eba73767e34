"""The probes: kernel, privileges, cgroups, namespaces, user namespaces, filesystems,
security and tools, and `probe_host`, which runs them all once (`get_host_info`)."""

from __future__ import annotations

import ctypes
import functools
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from conformance.hostinfo.bpf import _probe_bpf
from conformance.hostinfo.model import (
    CGROUP_CONTROLLERS,
    NAMESPACES,
    TOOLS,
    BpfInfo,
    CgroupInfo,
    Check,
    FilesystemInfo,
    HostInfo,
    KernelInfo,
    NamespaceInfo,
    PrivilegeInfo,
    SecurityInfo,
    ToolInfo,
    UserNsInfo,
)
from conformance.hostinfo.parse import (
    _cap_display,
    cgroup_mode,
    controller_versions,
    missing_capabilities,
    parse_cap_mask,
    parse_cgroup_mounts,
    parse_kernel_config,
    parse_kernel_release,
    parse_proc_cgroup,
    parse_proc_cgroups,
    parse_status,
)
from conformance.hostinfo.runner import (
    _CMD_TIMEOUT,
    _check,
    _describe,
    _first_line,
    _forked_check,
    _guard,
    _libc,
    _libc_check,
    _mount,
    _private_mount_ns,
    _read,
    _read_or_none,
    _Refusal,
    _run_command,
    _unshare,
)

# Arguments that make each tool print its version on the first line.  busybox has no
# --version; run without arguments it prints "BusyBox v1.xx ..." first and exits 0.
_VERSION_ARGS: dict[str, list[str]] = {"busybox": []}


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
