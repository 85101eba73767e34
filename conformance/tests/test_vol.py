"""Volumes (VOL-01..05): bind and named volumes, read-only volumes, volume data kept out of
diffs and commits, and symlinked targets that must not lead a mount out of the rootfs."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path

import pytest

from conformance import facts, hostops, layertar
from conformance.adapters.base import ContainerSpec, Volume
from conformance.tests.support import ran, reported, sh, started, token


@pytest.mark.behaviour("VOL-01")
@pytest.mark.requires("volumes")
def test_bind_volume_writes_reach_the_host(runtime, workspace):
    src, mark = workspace.path(token("conform-vol")), token()
    ran(
        runtime,
        ContainerSpec(
            volumes=[Volume(str(src), "/vol")],
            argv=sh(f"echo {mark} > /vol/f && mkdir -p /vol/d/e && echo {mark} > /vol/d/e/g"),
        ),
    )
    assert (src / "f").read_text().strip() == mark, "a file written inside is not on the host"
    assert (src / "d/e/g").read_text().strip() == mark, "a nested write is not on the host"


@pytest.mark.behaviour("VOL-02")
@pytest.mark.requires("volumes", "detach", "diff", "commit", "layer-tar")
def test_volume_data_not_in_diff_nor_commit(runtime, container, workspace):
    """Two bind volumes: /conform-vol (not in the image) and /home (an empty directory of
    the image). Nothing below either may be in the diff or the committed layer. An empty
    mount-point placeholder may remain (the catalogue allows it), in the diff and the
    layer: rref leaves none unless the image has the directory (so at most `home`); podman
    4.3 keeps the mount point of a target the image lacks (`A /conform-vol` in its diff, an
    empty `conform-vol/` in the committed layer)."""
    a, b = workspace.path(token("conform-vol")), workspace.path(token("conform-vol"))
    s = started(
        runtime,
        container,
        ContainerSpec(volumes=[Volume(str(a), "/conform-vol"), Volume(str(b), "/home")]),
        prepare="for d in /conform-vol /home; do mkdir -p $d/sub && echo x > $d/sub/f && "
        "echo y > $d/top; done",
    )
    assert (a / "sub/f").exists() and (b / "top").exists(), "the volume writes did not happen"
    below = ("/conform-vol/", "/home/")
    listed = [p for _, p in runtime.diff(s.container) if p.startswith(below)]
    assert not listed, f"diff lists volume data: {listed}"
    members = layertar.members(runtime.layer_tar(container.commit(s.container)))
    data = [n for n in members if n.startswith(("conform-vol/", "home/"))]
    assert not data, f"the committed layer holds volume data: {data}"
    for n in ("conform-vol", "home"):
        if n in members:
            assert members[n].kind == "dir", f"placeholder {n} is a {members[n].kind}"


@pytest.mark.behaviour("VOL-03")
@pytest.mark.requires("volumes")
def test_readonly_volume_rejects_writes(runtime, workspace):
    src = workspace.path(token("conform-vol"))
    (src / "existing").write_text("old\n")
    res = runtime.run(
        ContainerSpec(
            volumes=[Volume(str(src), "/vol", readonly=True)],
            argv=sh("touch /vol/new; echo rc=$?; echo x >> /vol/existing; echo rc2=$?"),
        )
    )
    assert reported(res, "rc=") != "0" and reported(res, "rc2=") != "0", (
        f"writes to a read-only volume succeeded: {res.describe()}"
    )
    assert res.stderr.count("Read-only file system") >= 2, (
        f"writes to a read-only volume did not fail with EROFS: {res.stderr.strip()!r}"
    )
    assert sorted(os.listdir(src)) == ["existing"] and (src / "existing").read_text() == "old\n"


@pytest.mark.behaviour("VOL-04")
@pytest.mark.requires("named-volumes")
def test_named_volume_outlives_its_container(runtime, container):
    name, mark = container.named_volume(), token()
    ran(runtime, ContainerSpec(volumes=[Volume(name, "/data")], argv=sh(f"echo {mark} > /data/f")))
    res = ran(runtime, ContainerSpec(volumes=[Volume(name, "/other")], argv=["cat", "/other/f"]))
    assert res.stdout.strip() == mark, f"a later container reads {res.stdout.strip()!r}"


@contextlib.contextmanager
def _host_paths_removed(*paths: Path):
    """Remove (unmounting first) host paths a non-conforming runtime may have created."""
    try:
        yield
    finally:
        for p in paths:
            if hostops.is_mountpoint(str(p)):
                hostops.umount(str(p))
            if p.is_symlink() or p.is_file():
                p.unlink()
            elif p.exists():
                shutil.rmtree(p, ignore_errors=True)


@pytest.mark.behaviour("VOL-05")
@pytest.mark.requires("volumes", "detach", "commit")
def test_symlinked_target_stays_inside_rootfs(runtime, container, workspace):
    """The image has /escape -> /tmp/conform-esc-<id> and a relative /escape-rel ->
    ../../../../tmp/conform-esc-<id>-rel; volumes on both must be mounted inside the rootfs
    (docker resolves the target in the rootfs's scope). A runtime that refuses such a
    target fails here with its own error."""
    host = Path(f"/tmp/conform-esc-{uuid.uuid4().hex[:12]}")
    rel = Path(f"{host}-rel")
    workspace.mark(host.name)
    with _host_paths_removed(host, rel):
        maker = started(
            runtime,
            container,
            ContainerSpec(),
            prepare=f"ln -s {host} /escape && ln -s ../../../..{rel} /escape-rel",
        )
        image = container.commit(maker.container)
        src, mark = workspace.path(token("conform-vol")), token()
        (src / "marker").write_text(mark)
        s = started(
            runtime,
            container,
            ContainerSpec(
                image=image,
                volumes=[Volume(str(src), "/escape"), Volume(str(src), "/escape-rel")],
            ),
            prepare="cat /escape/marker > /tmp/seen; cat /escape-rel/marker >> /tmp/seen",
        )
        assert not os.path.lexists(host) and not os.path.lexists(rel), (
            f"the volume target symlink made the runtime create {host} on the host"
        )
        leaked = [ln for ln in facts.host_mountinfo() if host.name in ln]
        assert not leaked, f"a volume mount landed on the host: {leaked}"
        assert (facts.read_in_root(s.pid, "/tmp/seen") or "") == mark * 2, (
            "the volume is not reachable through the symlinked targets inside"
        )
        inside = [ln.split()[4] for ln in facts.mountinfo(s.pid) if host.name in ln.split()[4]]
        assert len(inside) == 2, f"volume mounts inside the rootfs: {inside}"
