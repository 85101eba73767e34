"""Security defaults (SEC-01..04): bounded capabilities, no_new_privs, device access, and a
seccomp profile of the test's own."""

from __future__ import annotations

import json
import os

import pytest

from conformance import facts
from conformance.adapters.base import ContainerSpec
from conformance.adapters.ocispec import DEFAULT_CAPS
from conformance.errors import Unsupported
from conformance.tests.support import gated, reported, sh, token

#: docker's default set (lower case, no CAP_): the bound a default container must stay in.
DEFAULT_SET = {c.removeprefix("CAP_").lower() for c in DEFAULT_CAPS}
#: Capabilities that give the host away; named by the behaviour text and moby's defaults.
FORBIDDEN = {
    "sys_admin",
    "sys_module",
    "sys_rawio",
    "sys_ptrace",
    "sys_boot",
    "sys_time",
    "net_admin",
    "mac_admin",
    "mac_override",
    "bpf",
    "perfmon",
    "syslog",
    "dac_read_search",
    "linux_immutable",
    "sys_resource",
    "audit_control",
    "checkpoint_restore",
}


@pytest.mark.behaviour("SEC-01")
def test_default_capabilities_are_bounded(runtime, inspect_inside):
    inside = inspect_inside()
    bnd, eff = inside.caps("CapBnd"), inside.caps("CapEff")
    assert not bnd & FORBIDDEN, f"default bounding set holds {sorted(bnd & FORBIDDEN)}"
    assert bnd <= DEFAULT_SET, f"bounding set exceeds docker's default: {sorted(bnd - DEFAULT_SET)}"
    assert eff <= bnd, f"effective caps outside the bounding set: {sorted(eff - bnd)}"


@pytest.mark.behaviour("SEC-02")
def test_no_new_privs_when_configured(runtime, inspect_inside):
    inside = inspect_inside(no_new_privs=True)
    assert inside.status.get("NoNewPrivs") == "1", (
        f"NoNewPrivs: {inside.status.get('NoNewPrivs')} (want 1)"
    )


#: Device nodes outside the default set, harmless to open: (type, major, minor, host path).
PROBES = (("b", 7, 0, "/dev/loop0"), ("c", 1, 11, "/dev/kmsg"), ("c", 10, 237, "/dev/loop-control"))


def _host_openable() -> list[tuple[str, int, int, str]]:
    """Probe devices the harness itself can open on this host (the positive control: a
    sandboxed host may deny some devices to everyone, which would prove nothing)."""
    out = []
    for kind, major, minor, path in PROBES:
        try:
            st = os.stat(path)
            if (os.major(st.st_rdev), os.minor(st.st_rdev)) != (major, minor):
                continue
            os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
        except OSError:
            continue
        out.append((kind, major, minor, path))
    return out


@pytest.mark.behaviour("SEC-03")
@pytest.mark.requires("cgroup:devices", "detach")
def test_devices_beyond_default_set_are_denied(runtime, container):
    probes = _host_openable()
    if not probes:
        raise Unsupported("no probe device node the host itself can open")
    # /dev is a tmpfs without nodev: the devices cgroup is what must say no. The nodes are
    # made only in a /dev the host saw is not its own (nor in its mount namespace).
    script = "; ".join(
        f"mknod /dev/conform-{i} {kind} {major} {minor}; "
        f"head -c 1 /dev/conform-{i} > /dev/null; echo open{i}=$?; rm -f /dev/conform-{i}"
        for i, (kind, major, minor, _) in enumerate(probes)
    )
    res = gated(
        runtime,
        container,
        ContainerSpec(),
        own=["mnt", "root", "/dev"],
        then=f"{script}; head -c 1 /dev/zero > /dev/null; echo zero=$?",
    ).result
    assert reported(res, "zero=") == "0", f"default devices unusable: {res.describe()}"
    opened = [path for i, (_, _, _, path) in enumerate(probes) if reported(res, f"open{i}=") == "0"]
    assert not opened, f"device nodes outside the default set opened inside: {opened}"


#: Allow everything but mkdir/mkdirat, which fail with EPERM (docker's format; the fields
#: are OCI's too).
MKDIR_PROFILE = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
}


@pytest.mark.behaviour("SEC-04")
@pytest.mark.requires("seccomp-profile")  # ("seccomp" would name the adapter's default profile)
def test_seccomp_profile_blocks_with_eperm(runtime, workspace):
    if facts.status_field("self", "Seccomp_filters") is None:
        raise Unsupported("seccomp filters (no CONFIG_SECCOMP_FILTER)")
    profile = workspace.path(token("conform-seccomp")) / "profile.json"
    profile.write_text(json.dumps(MKDIR_PROFILE))
    res = runtime.run(
        ContainerSpec(
            seccomp_profile=str(profile),
            argv=sh("mkdir /tmp/conform-d; echo mkdir=$?; touch /tmp/conform-f; echo touch=$?"),
        )
    )
    assert reported(res, "touch=") == "0", f"the profile blocked more than mkdir: {res.stderr}"
    assert reported(res, "mkdir=") != "0", "mkdir succeeded under a profile that denies it"
    assert "Operation not permitted" in res.stderr, (
        f"mkdir denied by the profile did not fail with EPERM: {res.stderr.strip()!r}"
    )
