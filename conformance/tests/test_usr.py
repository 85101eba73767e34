"""User namespace (USR-01, USR-03, USR-06): id maps, overflow ids, a separate user ns."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conformance import facts
from conformance.adapters.base import ContainerSpec, IdMap, Volume
from conformance.tests.support import own_namespace_seen_both_ways, ran, reported, sh, token

HOST_BASE = 200000
SIZE = 65536


def _mapped(**kw):
    m = [IdMap(0, HOST_BASE, SIZE)]
    return ContainerSpec(uid_map=m, gid_map=m, **kw)


@pytest.mark.behaviour("USR-01")
@pytest.mark.requires("userns-map", "ns:user")
def test_uid_0_maps_to_configured_host_uid(runtime, observe):
    o = observe(_mapped())
    assert o.inside.uid_map == [(0, HOST_BASE, SIZE)], f"uid_map inside: {o.inside.uid_map}"
    assert o.inside.uid == 0, f"the init runs as uid {o.inside.uid} inside, not 0"
    host_uid = (facts.status_field(o.pid, "Uid") or "").split()
    assert host_uid and int(host_uid[0]) == HOST_BASE, (
        f"the init runs as host uid {host_uid}, want {HOST_BASE}"
    )


@pytest.mark.behaviour("USR-03")
@pytest.mark.requires("userns-map", "ns:user", "volumes")
def test_unmapped_ids_are_overflow(runtime, workspace):
    vol = workspace.path(token("conform-usr"))
    (vol / "host-root").write_text("x")
    (vol / "mapped-root").write_text("x")
    os.chown(vol / "mapped-root", HOST_BASE, HOST_BASE)
    res = ran(
        runtime,
        _mapped(
            volumes=[Volume(str(vol), "/vol", readonly=True)],
            argv=sh("stat -c '%n=%u:%g' /vol/host-root /vol/mapped-root"),
        ),
    )
    over = [Path(f"/proc/sys/kernel/overflow{k}id").read_text().strip() for k in "ug"]
    want = f"/vol/host-root={over[0]}:{over[1]}"
    assert want in res.stdout, (
        f"a file of unmapped host uid 0 must show as the overflow ids {over}: {res.stdout}"
    )
    assert "/vol/mapped-root=0:0" in res.stdout, (
        f"a file of host uid {HOST_BASE} must show as root: {res.stdout}"
    )


@pytest.mark.behaviour("USR-06")
@pytest.mark.requires("userns-map", "ns:user")
def test_user_ns_differs_from_host(runtime, observe):
    own_namespace_seen_both_ways(observe(_mapped()), "user")


@pytest.mark.behaviour("USR-02")
@pytest.mark.requires("userns-map", "ns:user", "volumes")
def test_files_of_container_root_belong_to_mapped_uid(runtime, workspace):
    vol = workspace.path(token("conform-usr"))
    os.chown(vol, HOST_BASE, HOST_BASE)  # container root may write here
    ran(runtime, _mapped(volumes=[Volume(str(vol), "/vol")], argv=sh("echo x > /vol/made-inside")))
    st = (vol / "made-inside").stat()
    assert (st.st_uid, st.st_gid) == (HOST_BASE, HOST_BASE), (
        f"a file made by container root is owned by {st.st_uid}:{st.st_gid} on the host, "
        f"want {HOST_BASE}:{HOST_BASE}"
    )


@pytest.mark.behaviour("USR-05")
@pytest.mark.requires("userns-map", "ns:user", "volumes")
def test_container_root_cannot_write_host_root_files(runtime, workspace):
    vol = workspace.path(token("conform-usr"))
    target = vol / "host-owned"
    target.write_text("host\n")
    os.chmod(target, 0o644)
    res = runtime.run(
        _mapped(
            volumes=[Volume(str(vol), "/vol")],
            argv=sh("echo container >> /vol/host-owned; echo rc=$?"),
        )
    )
    assert reported(res, "rc=") != "0", "container root appended to a host root-owned file"
    assert target.read_text() == "host\n", "the host root-owned file changed"
    assert "Permission denied" in res.stderr or "not permitted" in res.stderr, (
        f"want EACCES/EPERM, got: {res.stderr.strip()!r}"
    )
