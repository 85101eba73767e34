"""User namespaces on rref: container root is an unprivileged host uid (USR-*)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Rref

MAP = "0:200000:65536"
HOST_ROOT = 200000


@pytest.fixture
def vol() -> Iterator[Path]:
    """A host dir the mapped root can reach (pytest's own tmp tree is 0700)."""
    d = Path(tempfile.mkdtemp(prefix="rref-userns-"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_uid_map_inside(rref: Rref) -> None:
    out = rref.out(
        "run",
        "--rm",
        "--uidmap",
        MAP,
        "busybox",
        "sh",
        "-c",
        "id -u; cat /proc/self/uid_map /proc/self/gid_map",
    )
    lines = [ln.split() for ln in out.strip().split("\n")]
    assert lines[0] == ["0"]
    assert lines[1] == ["0", str(HOST_ROOT), "65536"]
    assert lines[2] == ["0", str(HOST_ROOT), "65536"]


def test_image_files_still_belong_to_root_inside(rref: Rref) -> None:
    out = rref.out(
        "run",
        "--rm",
        "--uidmap",
        MAP,
        "busybox",
        "sh",
        "-c",
        "stat -c '%u %g' /bin/busybox /etc/passwd",
    )
    assert out.split() == ["0", "0", "0", "0"]


def test_user_ns_inode_differs_and_init_runs_as_mapped_uid(rref: Rref) -> None:
    cid = rref.run_d("--uidmap", MAP, "busybox", "sleep", "60")
    pid = rref.pid(cid)
    assert os.readlink(f"/proc/{pid}/ns/user") != os.readlink("/proc/self/ns/user")
    assert os.stat(f"/proc/{pid}").st_uid == HOST_ROOT
    status = Path(f"/proc/{pid}/status").read_text()
    uid_line = next(ln for ln in status.splitlines() if ln.startswith("Uid:"))
    assert uid_line.split()[1:] == [str(HOST_ROOT)] * 4


def test_files_written_to_a_volume_belong_to_the_mapped_uid(rref: Rref, vol: Path) -> None:
    os.chown(vol, HOST_ROOT, HOST_ROOT)
    rref(
        "run",
        "--rm",
        "--uidmap",
        MAP,
        "-v",
        f"{vol}:/data",
        "busybox",
        "sh",
        "-c",
        "echo x > /data/made-inside; mkdir /data/dir",
    )
    st = (vol / "made-inside").stat()
    assert (st.st_uid, st.st_gid) == (HOST_ROOT, HOST_ROOT)
    assert (vol / "dir").stat().st_uid == HOST_ROOT


def test_unmapped_owner_shows_as_overflow(rref: Rref, vol: Path) -> None:
    (vol / "host-file").write_text("host\n")  # owned by host root: not in the map
    out = rref.out(
        "run",
        "--rm",
        "--uidmap",
        MAP,
        "-v",
        f"{vol}:/data",
        "busybox",
        "sh",
        "-c",
        "stat -c '%u %g' /data/host-file",
    )
    assert out.split() == ["65534", "65534"]


def test_container_root_cannot_write_host_root_files(rref: Rref, vol: Path) -> None:
    target = vol / "host-owned"
    target.write_text("original\n")
    os.chmod(target, 0o644)
    out = rref.out(
        "run",
        "--rm",
        "--uidmap",
        MAP,
        "-v",
        f"{vol}:/data",
        "busybox",
        "sh",
        "-c",
        "{ echo pwned > /data/host-owned; } 2>&1; echo rc=$?; "
        "{ touch /data/new; } 2>&1; echo rc2=$?",
    )
    assert "Permission denied" in out and "rc=1" in out and "rc2=1" in out
    assert target.read_text() == "original\n"
    assert not (vol / "new").exists()


def test_exec_joins_the_user_namespace(rref: Rref) -> None:
    cid = rref.run_d("--uidmap", MAP, "busybox", "sleep", "60")
    pid = rref.pid(cid)
    out = rref.out("exec", cid, "sh", "-c", "id -u; readlink /proc/self/ns/user; echo $$")
    uid, ns, inner = out.split()
    assert inner != "1"
    assert uid == "0"
    assert ns == os.readlink(f"/proc/{pid}/ns/user")


def test_named_volume_is_handed_to_mapped_root(rref: Rref) -> None:
    import json
    import uuid

    name = f"rref-t-{uuid.uuid4().hex[:8]}"
    try:
        rref("run", "--rm", "--uidmap", MAP, "-v", f"{name}:/v", "busybox", "touch", "/v/f")
        mp = json.loads(rref.out("volume", "inspect", name))[0]["Mountpoint"]
        assert os.stat(os.path.join(mp, "f")).st_uid == HOST_ROOT
    finally:
        rref("volume", "rm", name, check=False)


@pytest.mark.parametrize(
    ("flag", "needle"),
    [
        ("0:100000", "want CONTAINER_ID:HOST_ID:SIZE"),
        ("1:100000:10", "container uid 0 must be mapped"),
        ("x:1:2", "want CONTAINER_ID:HOST_ID:SIZE"),
    ],
)
def test_bad_maps_are_refused(rref: Rref, flag: str, needle: str) -> None:
    p = rref("run", "--rm", "--uidmap", flag, "busybox", "true", check=False)
    assert p.returncode == 125 and needle in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def test_bind_source_under_a_0700_root_dir_is_mounted(rref: Rref, tmp_path: Path) -> None:
    """The host opens the source before the user namespace, as runc >= 1.2 and crun do."""
    os.chmod(tmp_path.parent, 0o700)  # unreachable for the container's root: mktemp -d
    os.chmod(tmp_path, 0o755)  # the source itself is readable to all
    (tmp_path / "f").write_text("from the host\n")
    (tmp_path / "file").write_text("a file\n")
    out = rref.out(
        "run",
        "--rm",
        "--uidmap",
        MAP,
        "-v",
        f"{tmp_path}:/data",
        "-v",
        f"{tmp_path / 'file'}:/file:ro",
        "busybox",
        "sh",
        "-c",
        "cat /data/f /file; echo x > /file 2>/dev/null || echo read-only",
    )
    assert out == "from the host\na file\nread-only\n"


def test_state_root_under_a_0700_root_dir_works(tmp_path: Path) -> None:
    """The overlay is reached from the state root the host entered, not through its parents."""
    os.chmod(tmp_path, 0o700)
    r = Rref(str(tmp_path / "rref-root"))
    try:
        out = r.out(
            "run", "--rm", "--uidmap", MAP, "busybox", "sh", "-c", "id -u; cat /etc/hostname"
        )
        assert out.splitlines()[0] == "0"
        assert r.out("run", "--rm", "busybox", "echo", "plain") == "plain\n"
    finally:
        r.cleanup()


def test_missing_bind_source_is_a_clear_error(rref: Rref, tmp_path: Path) -> None:
    p = rref(
        "run",
        "--rm",
        "--uidmap",
        MAP,
        "--mount",
        f"type=bind,src={tmp_path}/nope,dst=/d",
        "busybox",
        "true",
        check=False,
    )
    assert p.returncode == 125
    assert len(p.stderr.strip().splitlines()) == 1 and "nope" in p.stderr, p.stderr


def test_commit_of_a_user_namespaced_container_keeps_container_ids(rref: Rref) -> None:
    import uuid

    n = rref.name()
    rref(
        "run",
        "--name",
        n,
        "--uidmap",
        MAP,
        "busybox",
        "sh",
        "-c",
        "echo x > /rootfile; touch /userfile; chown 1000:1000 /userfile",
    )
    image = f"rref-t-{uuid.uuid4().hex[:8]}:u"
    rref("commit", n, image)
    out = rref.out("run", "--rm", image, "stat", "-c", "%u %g", "/rootfile", "/userfile")
    assert out.split("\n")[:2] == ["0 0", "1000 1000"]  # not the host's 200000/201000
