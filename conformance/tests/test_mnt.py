"""Mount namespace and root filesystem (MNT-01..08)."""

from __future__ import annotations

import contextlib
import os

import pytest

from conformance import facts, hostops
from conformance.adapters.base import ContainerSpec, Volume
from conformance.adapters.ocispec import MASKED_PATHS, READONLY_PATHS
from conformance.tests.support import lines_with, ran, reported, sh, started, token, value


@pytest.mark.behaviour("MNT-01")
@pytest.mark.requires("detach")
def test_inside_mounts_stay_inside(runtime, container):
    mark = token()
    s = started(
        runtime,
        container,
        ContainerSpec(cap_add=["SYS_ADMIN"]),
        prepare=f"mkdir -p /mnt/{mark} && mount -t tmpfs {mark} /mnt/{mark}",
    )
    inside = "\n".join(facts.mountinfo(s.pid))
    assert mark in inside, "the test's tmpfs did not mount inside (CAP_SYS_ADMIN given)"
    leaked = [ln for ln in facts.host_mountinfo() if mark in ln]
    assert not leaked, f"a mount made inside shows on the host: {leaked}"


@pytest.mark.behaviour("MNT-02")
@pytest.mark.requires("detach", "volumes")
def test_host_mounts_after_start_stay_out(runtime, container, workspace):
    src = workspace.path(token("conform-vol"))
    (src / "sub").mkdir()
    s = started(runtime, container, ContainerSpec(volumes=[Volume(str(src), "/vol")]))
    mark = token()
    hostops.mount("conform-" + mark, str(src / "sub"), "tmpfs")
    try:
        assert any(mark in ln for ln in facts.host_mountinfo()), "host mount did not happen"
        inside = facts.mountinfo(s.pid)
        assert any(ln.split()[4] == "/vol" for ln in inside), "the volume is not mounted inside"
        assert not [ln for ln in inside if mark in ln], (
            "a host mount made after start propagated into the container"
        )
    finally:
        hostops.umount(str(src / "sub"))


@pytest.mark.behaviour("MNT-03")
def test_old_root_is_gone(runtime, workspace):
    marker = workspace.path(token("conform-oldroot")) / "marker"
    marker.write_text("host\n")
    res = ran(
        runtime,
        ContainerSpec(
            argv=sh(
                f"[ -e {marker} ] && echo host-path=visible || echo host-path=hidden; "
                'echo "dotdot=$(cd /.. && pwd)"; echo "root=$(stat -c %d:%i /)"; '
                'echo "up=$(stat -c %d:%i /..)"; sed "s/^/mi=/" /proc/self/mountinfo'
            )
        ),
    )
    out = res.stdout
    assert value("host-path=", out) == "hidden", f"host path {marker} is reachable inside"
    assert value("dotdot=", out) == "/", f"`cd /..` lands in {value('dotdot=', out)!r}"
    assert value("root=", out) == value("up=", out), "/.. is not / inside"
    host_root = next(ln.split() for ln in facts.host_mountinfo() if ln.split()[4] == "/")
    old = [
        ln
        for ln in lines_with("mi=", out)
        if ln.split()[2] == host_root[2] and ln.split()[3] == "/"
    ]
    assert not old, f"the host's root filesystem is still mounted inside: {old}"


@pytest.mark.behaviour("MNT-04")
def test_proc_is_fresh_for_the_pid_namespace(runtime, observe):
    o = observe()
    procs = [m for m in o.inside.mounts() if m["mount_point"] == "/proc"]
    assert procs and procs[-1]["fstype"] == "proc", f"no procfs on /proc inside: {procs}"
    host_proc = next(ln.split()[2] for ln in facts.host_mountinfo() if ln.split()[4] == "/proc")
    assert procs[-1]["devno"] != host_proc, "/proc inside is the host's procfs superblock"
    assert o.inside.ns["pid"] == facts.ns_id(o.pid, "pid") != facts.host_ns_ids()["pid"], (
        "/proc inside does not show the container's pid namespace"
    )


@pytest.mark.behaviour("MNT-05")
def test_readonly_rootfs_rejects_writes(runtime):
    res = runtime.run(
        ContainerSpec(
            readonly_rootfs=True,
            argv=sh("touch /conform-ro-probe; echo rc=$?; mkdir /conform-ro-dir; echo rc2=$?"),
        )
    )
    assert reported(res, "rc=") != "0", f"write to / succeeded: {res.describe()}"
    assert value("rc2=", res.stdout) not in ("", "0"), f"mkdir in / succeeded: {res.describe()}"
    assert res.stderr.count("Read-only file system") >= 2, (
        f"writes to / did not fail with EROFS: {res.stderr.strip()}"
    )


@pytest.mark.behaviour("MNT-06")
def test_masked_paths_read_empty(runtime):
    paths = [p for p in MASKED_PATHS if os.path.exists(p)]
    if not paths:
        pytest.skip("unsupported: none of the masked paths exists on this host")
    script = "; ".join(
        f'if [ -d {p} ]; then echo "{p}=$(ls -A {p} 2>/dev/null | wc -l)"; '
        f'else echo "{p}=$(head -c 4096 {p} 2>/dev/null | wc -c)"; fi'
        for p in paths
    )
    res = ran(runtime, ContainerSpec(argv=sh(script)))
    leaks = {p: value(f"{p}=", res.stdout) for p in paths if value(f"{p}=", res.stdout) != "0"}
    assert not leaks, f"masked paths readable inside (bytes or entries): {leaks}"


def _writable_file(top: str) -> str | None:
    """A root-writable regular file at or below ``top`` on the host (sorted walk)."""
    if os.path.isfile(top):
        return top
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        for f in sorted(filenames):
            path = os.path.join(dirpath, f)
            with contextlib.suppress(OSError):
                if os.stat(path).st_mode & 0o200:
                    return path
        if dirpath.count("/") > top.count("/") + 3:
            dirnames.clear()
    return None


@pytest.mark.behaviour("MNT-07")
def test_readonly_paths_reject_writes(runtime):
    # Opening for append writes nothing, so a non-conforming runtime changes nothing either.
    targets = {p: f for p in READONLY_PATHS if os.path.exists(p) and (f := _writable_file(p))}
    if not targets:
        pytest.skip("unsupported: no read-only path has a writable file on this host")
    script = "; ".join(f'true >> {f}; echo "{p}=$?"' for p, f in targets.items())
    res = runtime.run(ContainerSpec(argv=sh(script)))
    writable = {p: f for p, f in targets.items() if reported(res, f"{p}=") == "0"}
    assert not writable, f"read-only paths accepted a write open: {writable}"
    errs = res.stderr.strip().splitlines()
    not_erofs = [ln for ln in errs if "Read-only file system" not in ln]
    assert len(errs) == len(targets) and not not_erofs, (
        f"writes below read-only paths must fail with EROFS: {errs}"
    )


@pytest.mark.behaviour("MNT-08")
def test_mnt_ns_differs_from_host(runtime, observe):
    o = observe()
    assert o.inside.ns["mnt"] != facts.host_ns_ids()["mnt"], (
        "the container shares the host's mount namespace"
    )
    assert facts.ns_id(o.pid, "mnt") == o.inside.ns["mnt"]
