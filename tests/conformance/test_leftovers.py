"""The leak scan finds mounts, cgroups and processes by the session's markers only."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

from conformance import facts, hostops, leftovers


def test_scan_finds_marked_mount_cgroup_and_process(tmp_path):
    marker = f"conform-{uuid.uuid4().hex}"
    target = tmp_path / marker
    target.mkdir()
    hostops.mount(marker, str(target), "tmpfs")
    memory = facts.hierarchies().get("memory") or facts.hierarchies().get("")
    own = Path(
        memory.mount_point
        + facts.cgroup_paths("self")
        .get("memory", facts.cgroup_paths("self").get("", "/"))
        .rstrip("/")
    )
    cgroup = own / marker  # created by this test below its own cgroup, removed below
    cgroup.mkdir()
    proc = subprocess.Popen(["sh", "-c", "sleep 60", marker])
    try:  # the child shows the marker once it has exec'd
        facts.wait_for(
            lambda: marker.encode() in Path(f"/proc/{proc.pid}/cmdline").read_bytes(),
            what="the marked process to exec",
        )
        found = leftovers.scan({marker})
        assert f"mount: {target}" in found
        assert f"cgroup: {cgroup}" in found
        assert any(f.startswith(f"process: {proc.pid} ") for f in found)
        assert leftovers.scan({f"conform-{uuid.uuid4().hex}"}) == []
    finally:
        proc.kill()
        proc.wait()
        hostops.umount(str(target))
        os.rmdir(cgroup)


def test_scan_finds_a_marked_interface():
    name = f"conform{uuid.uuid4().hex[:8]}"  # 15 characters: IFNAMSIZ
    subprocess.run(["ip", "link", "add", name, "type", "bridge"], check=True, timeout=20)
    try:
        assert f"interface: {name}" in leftovers.scan({name})
    finally:
        subprocess.run(["ip", "link", "del", name], check=True, timeout=20)
    assert f"interface: {name}" not in leftovers.scan({name})
