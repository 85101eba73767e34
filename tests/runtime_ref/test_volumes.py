"""Volumes on rref: bind, named, tmpfs, read-only, lifetime, and mount-target safety."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Rref, wait_for


@pytest.fixture
def host_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    d = tmp_path_factory.mktemp("rref-vol")
    yield d


def test_bind_volume_writes_land_on_host(rref: Rref, host_dir: Path) -> None:
    rref(
        "run",
        "--rm",
        "-v",
        f"{host_dir}:/data",
        "busybox",
        "sh",
        "-c",
        "echo from-container > /data/out",
    )
    assert (host_dir / "out").read_text() == "from-container\n"


def test_read_only_volume_rejects_writes(rref: Rref, host_dir: Path) -> None:
    out = rref.out(
        "run",
        "--rm",
        "-v",
        f"{host_dir}:/data:ro",
        "busybox",
        "sh",
        "-c",
        "{ echo x > /data/out; } 2>&1; echo rc=$?",
    )
    assert "Read-only file system" in out and "rc=1" in out
    assert not (host_dir / "out").exists()
    out = rref.out(
        "run",
        "--rm",
        "--mount",
        f"type=bind,source={host_dir},target=/d,readonly",
        "busybox",
        "sh",
        "-c",
        "{ touch /d/x; } 2>&1; echo rc=$?",
    )
    assert "Read-only file system" in out


def test_named_volume_outlives_container(rref: Rref) -> None:
    vol = f"rref-t-{uuid.uuid4().hex[:8]}"
    try:
        rref("run", "--rm", "-v", f"{vol}:/v", "busybox", "sh", "-c", "echo kept > /v/f")
        assert vol in rref.out("volume", "ls", "-q").split()
        assert (
            rref.out(
                "run",
                "--rm",
                "--mount",
                f"type=volume,source={vol},target=/w",
                "busybox",
                "cat",
                "/w/f",
            )
            == "kept\n"
        )
        mountpoint = json.loads(rref.out("volume", "inspect", vol))[0]["Mountpoint"]
        assert Path(mountpoint, "f").read_text() == "kept\n"
    finally:
        rref("volume", "rm", vol, check=False)
    assert vol not in rref.out("volume", "ls", "-q").split()


def test_volume_in_use_cannot_be_removed(rref: Rref) -> None:
    vol = f"rref-t-{uuid.uuid4().hex[:8]}"
    cid = rref.run_d("-v", f"{vol}:/v", "busybox", "sleep", "60")
    p = rref("volume", "rm", vol, check=False)
    assert p.returncode == 1 and "volume is in use" in p.stderr and cid[:12] in p.stderr
    rref("rm", "-f", cid)
    rref("volume", "rm", vol)


def test_anonymous_volume_goes_with_rm_flag(fresh_rref: Rref) -> None:
    fresh_rref("run", "--rm", "-v", "/anon", "busybox", "touch", "/anon/x")
    assert fresh_rref.out("volume", "ls", "-q") == ""


def test_tmpfs_mount(rref: Rref) -> None:
    out = rref.out(
        "run",
        "--rm",
        "--tmpfs",
        "/scratch:size=1m",
        "busybox",
        "sh",
        "-c",
        "grep ' /scratch ' /proc/self/mountinfo",
    )
    assert " - tmpfs " in out and "size=1024k" in out and "noexec" in out


def test_volume_data_is_not_in_the_writable_layer(rref: Rref, host_dir: Path) -> None:
    cid = rref.run_d(
        "-v",
        f"{host_dir}:/data",
        "busybox",
        "sh",
        "-c",
        "echo v > /data/file; echo u > /layer-file; sleep 60",
    )
    upper = Path(rref.inspect(cid, "{{.GraphDriver.Data.UpperDir}}"))
    wait_for(lambda: (host_dir / "file").exists() and (upper / "layer-file").exists(), "the writes")
    files = {str(p.relative_to(upper)) for p in upper.rglob("*")}
    assert "layer-file" in files
    # only the empty mount-point placeholder of the volume stands in the layer
    assert "data" in files and not any(f.startswith("data/") for f in files)


@pytest.mark.parametrize("link", ["/tmp/{esc}", "../../../../../../../tmp/{esc}"])
def test_symlinked_volume_target_stays_inside_rootfs(rref: Rref, host_dir: Path, link: str) -> None:
    """A symlink in the image must not redirect a mount outside the rootfs (VOL-05)."""
    from runtime_ref.images import ImageStore

    esc = f"conform-escape-{uuid.uuid4().hex[:8]}"
    outside = Path("/tmp") / esc
    store = ImageStore(rref.root)
    base = store.resolve("busybox")
    layer = Path(store.layers) / f".t-{uuid.uuid4().hex}"
    layer.mkdir()
    (layer / "escape").symlink_to(link.format(esc=esc))
    digest = store.add_layer_from_dir(str(layer))
    tag = f"rref-escape-{uuid.uuid4().hex[:8]}:latest"
    store.add_image(
        {
            **base.config,
            "rootfs": {"type": "layers", "diff_ids": [*base.config["rootfs"]["diff_ids"], digest]},
        },
        tag,
    )
    (host_dir / "payload").write_text("vol\n")
    out = rref.out(
        "run",
        "--rm",
        "-v",
        f"{host_dir}:/escape/sub",
        tag,
        "sh",
        "-c",
        "cat /escape/sub/payload; readlink /escape",
    )
    assert out.split("\n")[0] == "vol"
    assert not outside.exists(), "the mount target was created on the host"
