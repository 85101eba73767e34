"""The leak scan finds mounts, cgroups and processes by the session's markers only."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

from conformance import facts, hostops, leftovers
from conformance.workspace import Workspace


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


def test_scan_finds_the_sessions_sysv_objects_and_mqueues(tmp_path):
    """SysV shm, sem and msg objects with a key the session handed out, and its POSIX
    mqueues, are leftovers; objects of other keys are not the session's business."""
    ws = Workspace(str(tmp_path))
    try:
        keys = [ws.ipc_key() for _ in range(3)]
        assert all(k in hostops.CONFORM_KEYS for k in keys) and len(set(keys)) == 3
        queue = ws.mqueue_name()
        assert queue.startswith("/conform-")
        made = [
            ("shm", hostops.shm_create(keys[0], 4096), hostops.shm_remove),
            ("sem", hostops.sem_create(keys[1]), hostops.sem_remove),
            ("msg", hostops.msg_create(keys[2]), hostops.msg_remove),
        ]
        hostops.mq_create(queue)
        try:
            found = leftovers.scan(set(), sysv_keys=ws.sysv_keys, mqueues=ws.mqueues)
            for (kind, ident, _), key in zip(made, keys, strict=True):
                assert f"sysv {kind}: key {key:#x} id {ident}" in found, found
            assert f"mqueue: {queue}" in found
            assert leftovers.scan(set(), sysv_keys={keys[0] ^ 1}, mqueues=set()) == []
        finally:
            for _, ident, remove in made:
                remove(ident)
            hostops.mq_unlink(queue)
        assert leftovers.scan(set(), sysv_keys=ws.sysv_keys, mqueues=ws.mqueues) == []
    finally:
        ws.close()


def test_sysv_objects_parse():
    text = (
        "       key      shmid perms                  size  cpid  lpid nattch   uid   gid\n"
        " 1131347968         12   600                  4096  1234     0      0     0     0\n"
        "         -1         13   600                  4096  1234     0      0     0     0\n"
    )
    assert hostops.sysv_objects("shm", text) == [(0x436F0000, 12), (0xFFFFFFFF, 13)]
