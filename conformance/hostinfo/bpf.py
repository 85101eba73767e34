"""BPF and tracing facts: bpf(2) map creation, BTF, tracefs and syscall tracepoints,
kprobes, kernel headers for bcc."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

from conformance.hostinfo.model import BpfInfo, Check, KernelInfo, PrivilegeInfo
from conformance.hostinfo.parse import _parse_utsrelease_h
from conformance.hostinfo.runner import (
    _check,
    _describe,
    _libc,
    _libc_check,
    _LibcError,
    _mount,
    _private_mount_ns,
    _read_or_none,
    _run_forked,
)

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
