"""The v2 lane's parts on this host: the initramfs archive, module order, the guest script,
qemu's deadline and the results it reads back. The lane itself (a guest booted and tests
run in it) is `make test-v2`; here only the pieces that can fail on their own."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lanes import initramfs, kernel, qemu, v2
from lanes.kernel import LaneError


def unpack_newc(data: bytes) -> dict[str, tuple[int, bytes, int]]:
    """name -> (mode, body, rdev major<<8|minor) of a newc archive, as the kernel reads it."""
    out: dict[str, tuple[int, bytes, int]] = {}
    at = 0
    while True:
        assert data[at : at + 6] == b"070701", f"bad magic at {at}"
        f = [int(data[at + 6 + 8 * i : at + 14 + 8 * i], 16) for i in range(13)]
        mode, size, rmaj, rmin, namesize = f[1], f[6], f[9], f[10], f[11]
        at += 110
        name = data[at : at + namesize - 1].decode()
        at += namesize + (-(110 + namesize) % 4)
        body = data[at : at + size]
        at += size + (-size % 4)
        if name == "TRAILER!!!":
            assert at == len(data)
            return out
        out[name] = (mode, body, (rmaj << 8) | rmin)


def test_initramfs_holds_init_busybox_console_and_modules(tmp_path: Path) -> None:
    mods = []
    for name in ("virtio.ko", "9p.ko"):
        p = tmp_path / name
        p.write_bytes(b"\x7fELF" + name.encode())
        mods.append(str(p))
    fake_busybox = tmp_path / "busybox"
    fake_busybox.write_bytes(b"#!busybox")
    files = unpack_newc(initramfs.build(str(fake_busybox), tuple(mods), "/srv/rref-checkout"))
    mode, body, _ = files["init"]
    assert stat.S_ISREG(mode) and mode & 0o111
    assert body.startswith(b"#!/bin/busybox sh")
    assert b"mount -t cgroup2" in body and b"exec switch_root" in body
    # no chroot: inside one the kernel refuses new user namespaces
    assert not [ln for ln in body.decode().splitlines() if ln.strip().startswith("chroot")]
    assert files["bin/busybox"][1] == b"#!busybox"
    assert stat.S_ISLNK(files["bin/sh"][0]) and files["bin/sh"][1] == b"busybox"
    mode, _, rdev = files["dev/console"]
    assert stat.S_ISCHR(mode) and rdev == (5 << 8) | 1
    assert files["modules/load-order"][1].decode().split() == ["virtio.ko", "9p.ko"]
    assert files["modules/9p.ko"][1] == b"\x7fELF9p.ko"
    assert files["lane/repo"][1] == b"/srv/rref-checkout"
    # every tag /init mounts is one qemu shares
    cmd = " ".join(qemu.command(qemu.Boot("k", "i", "/o", "/r", "/c")))
    for tag in (initramfs.ROOT_TAG, initramfs.OUT_TAG, initramfs.REPO_TAG):
        assert f"mount_tag={tag}," in cmd
        assert tag.encode() in body
    assert "-nic none" in cmd  # the guest has no network at all


def test_modules_load_after_what_they_depend_on() -> None:
    deps = {
        "9p": ["9pnet", "netfs", "fscache"],
        "9pnet": [],
        "netfs": [],
        "fscache": ["netfs"],
        "9pnet_virtio": ["9pnet", "virtio", "virtio_ring"],
        "virtio": [],
        "virtio_ring": [],
    }
    order = kernel.resolve(deps, ("9pnet_virtio", "9p"))
    assert sorted(order) == sorted(deps)
    for mod, needs in deps.items():
        assert all(order.index(n) < order.index(mod) for n in needs), (mod, order)
    with pytest.raises(LaneError, match=r"modules have no llc \(needed by stp\)$"):
        kernel.resolve({"stp": ["llc"]}, ("stp",))
    with pytest.raises(LaneError, match="loop through a"):
        kernel.resolve({"a": ["b"], "b": ["a"]}, ("a",))


def test_modinfo_depends_is_read_from_the_module() -> None:
    ko = b"\x7fELF...\0license=GPL\0depends=virtio,virtio-ring\0vermagic=6.1\0"
    assert kernel.modinfo_depends(ko) == ["virtio", "virtio_ring"]
    assert kernel.modinfo_depends(b"\0depends=\0") == []
    assert kernel.modinfo_depends(b"no modinfo here") == []


def test_release_comes_from_the_package_name() -> None:
    assert kernel._release("/c/linux-image-6.1.0-57-amd64_6.1.192-3_amd64.deb") == (
        "6.1.0-57-amd64"
    )
    with pytest.raises(LaneError, match="is not a linux-image package"):
        kernel._release("/c/busybox_1.35_amd64.deb")


def test_guest_script_bounds_every_step_and_records_it() -> None:
    plan = v2.steps("/srv/checkout")
    assert [s.name for s in plan] == ["project", "conformance"]
    script = v2.guest_script("/srv/checkout", plan)
    assert script.count("timeout -k 10 900 ") == 2
    assert 'echo "project $rc' in script and 'echo "conformance $rc' in script
    assert "CONFORM_LANE=v2" in script and "cd /srv/checkout" in script
    suite = plan[1].argv
    ids = suite[suite.index("--behaviour") + 1].split(",")
    assert {"CG-01", "CG-11", "CGNS-01", "SEC-03", "USR-01", "PID-01", "LIFE-01"} <= set(ids)
    assert not any(i.startswith(("NET-", "SEC-01", "OVL-")) for i in ids)
    assert suite[suite.index("--runtime") + 1] == "ref,runc"
    assert suite[suite.index("--runner-label") + 1] == "cgroup-v2"
    assert [s.name for s in v2.steps("/x", only="project")] == ["project"]


def test_results_and_boot_time_are_read_back(tmp_path: Path) -> None:
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "junit.xml").write_text("<testsuites/>")
    (tmp_path / "steps").write_text("project 0 301\nconformance 1 402\ngarbage\n")
    got = v2.read_results(str(tmp_path))
    assert [(r.name, r.code, r.seconds) for r in got] == [
        ("project", 0, 301),
        ("conformance", 1, 402),
    ]
    assert got[0].junit and got[1].junit is None
    assert not v2.Outcome(9.0, 700.0, got).ok
    assert v2.Outcome(9.0, 700.0, got[:1]).ok
    assert not v2.Outcome(9.0, 700.0, []).ok
    console = tmp_path / "console.log"
    console.write_text("SeaBIOS\nconform-lane: guest up: 4.67s\nconform-lane: guest done: rc 0\n")
    assert v2.boot_seconds(str(console)) == 4.67
    assert v2.read_results(str(tmp_path / "nothing")) == []


def test_missing_qemu_is_a_clear_error(tmp_path: Path) -> None:
    b = qemu.Boot("k", "i", str(tmp_path), str(tmp_path), str(tmp_path / "c"))
    with pytest.raises(LaneError, match=r"^qemu-rref-missing is not installed"):
        qemu.run(b, 5, qemu="qemu-rref-missing")


def test_a_guest_past_its_deadline_is_killed_with_a_clear_error(tmp_path: Path) -> None:
    """A real boot given 3 s (it needs about 9): LaneError names the deadline and the
    console, and no qemu is left running."""
    k = kernel.prepare()
    initrd = tmp_path / "initrd"
    initrd.write_bytes(initramfs.build("/bin/busybox", k.modules, str(tmp_path)))
    console = tmp_path / "console.log"
    b = qemu.Boot(k.vmlinuz, str(initrd), str(tmp_path), str(tmp_path), str(console), cpus=1)
    t0 = time.monotonic()
    with pytest.raises(LaneError) as e:
        qemu.run(b, 3)
    assert time.monotonic() - t0 < 30
    assert str(e.value) == f"the guest did not power off within 3s (its console is in {console})"
    left = subprocess.run(["pgrep", "-f", f"initrd {initrd}"], capture_output=True, text=True)
    assert left.stdout == ""


def test_lane_command_refuses_bad_usage() -> None:
    conform = [sys.executable, "-m", "conformance.cli"]
    p = subprocess.run([*conform, "lane", "v3"], capture_output=True, text=True)
    assert p.returncode == 2 and "invalid choice: 'v3'" in p.stderr
    p = subprocess.run([*conform, "lane", "v2", "--timeout", "0"], capture_output=True, text=True)
    assert p.returncode == 2
    assert p.stderr.strip() == "conform: error: --timeout 0: must be more than 0"
    assert os.path.exists(os.path.join(os.path.dirname(v2.__file__), "v2.py"))
