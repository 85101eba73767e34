"""Mount namespace and root filesystem (MNT-01..09).

MNT-01 mounts inside: only in a container whose mount namespace and root directory the host
saw are not its own (`support.gated`). MNT-09 writes nothing under /sys: its probe creates a
file in sysfs's top directory, which no sysfs can hold (a writable one says EACCES, a
read-only mount EROFS).
"""

from __future__ import annotations

import contextlib
import errno
import os

import pytest

from conformance import facts, hostops
from conformance.adapters.base import ContainerSpec, Volume
from conformance.adapters.ocispec import MASKED_PATHS, READONLY_PATHS
from conformance.errors import Unsupported
from conformance.tests.support import (
    gated,
    lines_with,
    own_namespace_seen_both_ways,
    ran,
    reported,
    sh,
    started,
    token,
    value,
)


@pytest.mark.behaviour("MNT-01")
@pytest.mark.requires("detach")
def test_inside_mounts_stay_inside(runtime, container):
    mark = token()
    s = gated(
        runtime,
        container,
        ContainerSpec(cap_add=["SYS_ADMIN"]),
        own=["mnt", "root"],
        then=f"mkdir -p /mnt/{mark} && mount -t tmpfs {mark} /mnt/{mark}",
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
    # the volume is asked for rprivate (docker's default for -v; the OCI adapter's options):
    # with slave propagation the host mount below would rightly appear inside
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
    host_root = facts.host_root_mount()
    old = [
        ln
        for ln in lines_with("mi=", out)
        if ln.split()[2] == host_root["devno"] and ln.split()[3] == host_root["root"]
    ]
    assert not old, f"the host's root filesystem is still mounted inside: {old}"


#: errnos saying the kernel cannot list another mount namespace's mounts (before 6.11).
NO_LISTMOUNT = (errno.ENOSYS, errno.EINVAL, errno.ENOTTY, errno.EOPNOTSUPP, errno.E2BIG)


@pytest.mark.behaviour("MNT-03")
@pytest.mark.requires("detach")
def test_old_root_is_detached_seen_from_the_host(runtime, container):
    """From the host: no mount of the container's mount namespace is the host's root
    filesystem, and none lies outside the container's root. /proc/<pid>/mountinfo shows only
    the mounts the init's root reaches (an old root left attached below a chroot, as with
    `runc run --no-pivot`, is not among them), so the whole namespace is listed with
    listmount(2)/statmount(2) and compared with it."""
    s = started(runtime, container, ContainerSpec())
    host_root = facts.host_root_mount()
    root_key = (host_root["devno"], host_root["root"])
    reachable = facts.parse_mountinfo(facts.mountinfo(s.pid))
    seen = [m for m in reachable if (m["devno"], m["root"]) == root_key]
    assert not seen, (
        f"the host's root filesystem ({host_root['source']}, {root_key[0]}) is mounted in the "
        f"container: {[m['mount_point'] for m in seen]}"
    )
    try:
        every = hostops.namespace_mounts(s.pid)
        hidden = facts.mounts_outside_root(s.pid)
    except OSError as e:
        if e.errno in NO_LISTMOUNT:
            raise Unsupported(
                "listmount(2) of another mount namespace (Linux 6.11): mounts "
                f"outside the container's root cannot be seen from the host ({e})"
            ) from None
        raise
    host_fs = [m for m in every if (m.dev, m.root) == root_key]
    assert not host_fs and not hidden, (
        f"the container's mount namespace still holds the old root: {len(hidden)} mount(s) "
        f"outside the container's root (host root filesystem {root_key[0]} among them: "
        f"{bool(host_fs)}), e.g. "
        + ", ".join(f"{m.fstype} {m.dev} {m.root} at {m.mount_point}" for m in hidden[:4])
    )


@pytest.mark.behaviour("MNT-04")
def test_proc_is_fresh_for_the_pid_namespace(runtime, observe):
    o = observe()
    procs = [m for m in o.inside.mounts() if m["mount_point"] == "/proc"]
    assert procs and procs[-1]["fstype"] == "proc", f"no procfs on /proc inside: {procs}"
    host_proc = next(ln.split()[2] for ln in facts.host_mountinfo() if ln.split()[4] == "/proc")
    assert procs[-1]["devno"] != host_proc, "/proc inside is the host's procfs superblock"
    outside = facts.ns_id(o.pid, "pid")
    assert outside != facts.host_ns_ids()["pid"], "the container shares the host's pid namespace"
    assert o.inside.ns_id("pid") == outside, (
        f"/proc inside does not show the container's pid namespace: /proc/self/ns/pid is "
        f"{o.inside.ns_links.get('pid')!r} inside, pid:[{outside[1]}] from the host"
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
        raise Unsupported("none of the masked paths exists on this host")
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
        raise Unsupported("no read-only path has a writable file on this host")
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
    own_namespace_seen_both_ways(observe(), "mnt")


def _read_only(m: dict[str, str]) -> bool:
    return "ro" in m["options"].split(",")


@pytest.mark.behaviour("MNT-09")
def test_sysfs_is_read_only(runtime):
    probe = f"/sys/{token('conform-probe')}"  # sysfs cannot hold it: nothing is ever created
    res = runtime.run(
        ContainerSpec(
            argv=sh(f"touch {probe}; echo rc=$?; sed 's/^/mi=/' /proc/self/mountinfo"),
        )
    )
    mounts = facts.parse_mountinfo(lines_with("mi=", res.stdout))
    sys_top = [m for m in mounts if m["mount_point"] == "/sys"]
    assert sys_top and sys_top[-1]["fstype"] == "sysfs", (
        f"no sysfs on /sys inside: {[(m['fstype'], m['source']) for m in sys_top]}"
    )
    # The kernel-object filesystems at or below /sys must be read-only mounts; a tmpfs there
    # (masks, runc's holder of cgroup v1 hierarchies) is the container's own unless the
    # host has the same filesystem mounted.
    host_devs = {m["devno"] for m in facts.parse_mountinfo(facts.host_mountinfo())}
    writable = [
        f"{m['mount_point']} ({m['fstype']}, {m['options']})"
        for m in mounts
        if (m["mount_point"] == "/sys" or m["mount_point"].startswith("/sys/"))
        and not _read_only(m)
        and (m["fstype"] != "tmpfs" or m["devno"] in host_devs)
    ]
    assert not writable, f"mounts at or below /sys are writable inside: {writable}"
    assert reported(res, "rc=") != "0", f"creating {probe} succeeded ({res.describe()})"
    assert "Read-only file system" in res.stderr, (
        f"creating {probe} did not fail with EROFS (a writable sysfs says EACCES): "
        f"{res.stderr.strip()!r}"
    )
