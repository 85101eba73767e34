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

This front re-exports the package's public names; the work is split by job: `model` (the
vocabulary and the typed facts), `parse` (pure parsers; mountinfo is `conformance.mountinfo`),
`runner` (guarded calls, forked children, ctypes, commands with timeouts), `probes` (one
probe per area and `probe_host`), `bpf` (BPF and tracing checks), `tokens` (facts ->
capability tokens).
"""

from __future__ import annotations

from conformance.hostinfo.model import (
    CAP_NAMES,
    CGROUP_CONTROLLERS,
    NAMESPACES,
    TOOLS,
    BpfInfo,
    CgroupInfo,
    CgroupMembership,
    CgroupMount,
    Check,
    ControllerInfo,
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
from conformance.hostinfo.probes import get_host_info, probe_host
from conformance.hostinfo.tokens import KNOWN_TOKENS, capability_tokens, host_dict
from conformance.mountinfo import MountInfoEntry, parse_mountinfo

__all__ = [
    "CAP_NAMES",
    "CGROUP_CONTROLLERS",
    "KNOWN_TOKENS",
    "NAMESPACES",
    "TOOLS",
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
    "host_dict",
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
