"""IPC namespace (IPC-01..03): SysV objects and POSIX mqueues are per container."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from conformance import hostops
from conformance.adapters.base import ContainerSpec
from conformance.tests.support import ran, sh, started, token


def _key() -> int:
    return random.randint(0x10000000, 0x7FFFFFFF)


@pytest.mark.behaviour("IPC-01")
def test_host_shm_invisible_inside(runtime):
    key = _key()
    shmid = hostops.shm_create(key, 4096)
    try:
        assert key in hostops.shm_keys_sizes(Path("/proc/sysvipc/shm").read_text())
        res = ran(runtime, ContainerSpec(argv=sh("cat /proc/sysvipc/shm")))
    finally:
        hostops.shm_remove(shmid)
    inside = hostops.shm_keys_sizes(res.stdout)
    assert key not in inside, f"host shm key {key:#x} is visible inside"


def _shm_in_ns(size: int, key: int) -> dict[str, int]:
    hostops.shm_create(key, size)
    return {
        str(k): v for k, v in hostops.shm_keys_sizes(Path("/proc/sysvipc/shm").read_text()).items()
    }


@pytest.mark.behaviour("IPC-02")
@pytest.mark.requires("detach")
def test_same_key_two_objects(runtime, container):
    key = _key()
    a = started(runtime, container, ContainerSpec())
    b = started(runtime, container, ContainerSpec())
    in_a = hostops.run_in_namespaces(a.pid, ["ipc"], lambda: _shm_in_ns(4096, key))
    in_b = hostops.run_in_namespaces(b.pid, ["ipc"], lambda: _shm_in_ns(8192, key))
    assert in_a.get(str(key)) == 4096 and in_b.get(str(key)) == 8192, (
        f"one SysV key in two containers is not two objects: {in_a} / {in_b}"
    )
    host = hostops.shm_keys_sizes(Path("/proc/sysvipc/shm").read_text())
    assert key not in host, "a container's shm segment shows on the host"


@pytest.mark.behaviour("IPC-03")
@pytest.mark.requires("detach")
def test_posix_mqueues_are_isolated(runtime, container):
    host_q, inner_q = "/" + token(), "/" + token()
    hostops.mq_create(host_q)
    try:
        s = started(runtime, container, ContainerSpec())
        listing = os.listdir(f"/proc/{s.pid}/root/dev/mqueue")
        assert host_q[1:] not in listing, f"host mqueue {host_q} visible in /dev/mqueue inside"
        hostops.run_in_namespaces(s.pid, ["ipc"], lambda: hostops.mq_create(inner_q))
        assert inner_q[1:] in os.listdir(f"/proc/{s.pid}/root/dev/mqueue"), (
            "/dev/mqueue inside is not the container's own mqueue filesystem"
        )
        assert not hostops.mq_exists(inner_q), "a container's mqueue is visible on the host"
    finally:
        hostops.mq_unlink(host_q)
