"""Capability tokens: the `requires` vocabulary of host facts, and how a `HostInfo`
becomes the set of tokens this host provides."""

from __future__ import annotations

from typing import Any

from conformance.hostinfo.model import CAP_NAMES, CGROUP_CONTROLLERS, NAMESPACES, TOOLS, HostInfo
from conformance.hostinfo.parse import parse_cap_mask

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
    # cgroup v2 has no devices controller: device access is an eBPF program attached to the
    # cgroup (BPF_PROG_TYPE_CGROUP_DEVICE), so cgroup2 and bpf(2) are what it takes
    if "devices" not in cg.controllers and cg.v2_mount and info.bpf.bpf_syscall.ok is True:
        add("cgroup:devices")
        add("cgroup:v2:devices")

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


def host_dict(info: HostInfo) -> dict[str, Any]:
    """Every fact of `info` plus the derived ``tokens`` list: what `conform doctor --json`
    prints (the tokens live here, not in the model, so the model imports nothing back)."""
    data = info.to_dict()
    data["tokens"] = sorted(capability_tokens(info))
    return data
