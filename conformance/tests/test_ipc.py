"""IPC namespace (IPC-01..03): SysV objects and POSIX mqueues are per container.

Objects are made with the session's own keys and names (`Workspace.ipc_key`,
`Workspace.mqueue_name`), so the session's leak check finds any left on the host. Nothing is
created in a container's ipc namespace before the host saw that it is not the host's own
(`require_own_namespace`): against a runtime that shares it, the tests FAIL without creating
anything there. What a test creates it removes, also when it fails.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest

from conformance import facts, hostops
from conformance.adapters.base import ContainerSpec
from conformance.tests.support import ran, require_own_namespace, sh, started


@pytest.mark.behaviour("IPC-01")
def test_host_shm_invisible_inside(runtime, workspace):
    key = workspace.ipc_key()
    shmid = hostops.shm_create(key, 4096)
    try:
        assert key in hostops.shm_keys_sizes(open("/proc/sysvipc/shm").read())  # noqa: SIM115
        res = ran(runtime, ContainerSpec(argv=sh("cat /proc/sysvipc/shm")))
    finally:
        hostops.shm_remove(shmid)
    inside = hostops.shm_keys_sizes(res.stdout)
    assert key not in inside, f"host shm key {key:#x} is visible inside"


def _shm_in_ns(size: int, key: int) -> tuple[int, dict[str, int]]:
    """Create a segment of ``key`` here; its id and every key's size here."""
    shmid = hostops.shm_create(key, size)
    with open("/proc/sysvipc/shm") as f:
        sizes = hostops.shm_keys_sizes(f.read())
    return shmid, {str(k): v for k, v in sizes.items()}


def _shm_remove_in_ns(shmid: int) -> None:
    with contextlib.suppress(OSError):
        hostops.shm_remove(shmid)


@contextlib.contextmanager
def _segment(pid: int, size: int, key: int) -> Iterator[dict[str, int]]:
    """A segment of ``key`` in the ipc namespace of ``pid`` (removed on the way out)."""
    shmid, sizes = hostops.run_in_namespaces(pid, ["ipc"], lambda: _shm_in_ns(size, key))
    try:
        yield sizes
    finally:
        if facts.alive(pid):
            hostops.run_in_namespaces(pid, ["ipc"], lambda: _shm_remove_in_ns(shmid))


@pytest.mark.behaviour("IPC-02")
@pytest.mark.requires("detach")
def test_same_key_two_objects(runtime, container, workspace):
    key = workspace.ipc_key()
    a = started(runtime, container, ContainerSpec())
    b = started(runtime, container, ContainerSpec())
    ns_a = require_own_namespace(runtime, a, "ipc")
    ns_b = require_own_namespace(runtime, b, "ipc")
    assert ns_a != ns_b, f"the two containers share one ipc namespace (ipc:[{ns_a[1]}])"
    with _segment(a.pid, 4096, key) as in_a, _segment(b.pid, 8192, key) as in_b:
        assert in_a.get(str(key)) == 4096 and in_b.get(str(key)) == 8192, (
            f"one SysV key in two containers is not two objects: {in_a} / {in_b}"
        )
        host = dict(hostops.sysv_objects("shm"))
        assert key not in host, "a container's shm segment shows on the host"


@pytest.mark.behaviour("IPC-03")
@pytest.mark.requires("detach")
def test_posix_mqueues_are_isolated(runtime, container, workspace):
    host_q, inner_q = workspace.mqueue_name(), workspace.mqueue_name()
    s = started(runtime, container, ContainerSpec())
    require_own_namespace(runtime, s, "ipc")
    hostops.mq_create(host_q)
    try:
        listing = os.listdir(f"/proc/{s.pid}/root/dev/mqueue")
        assert host_q[1:] not in listing, f"host mqueue {host_q} visible in /dev/mqueue inside"
        hostops.run_in_namespaces(s.pid, ["ipc"], lambda: hostops.mq_create(inner_q))
        assert inner_q[1:] in os.listdir(f"/proc/{s.pid}/root/dev/mqueue"), (
            "/dev/mqueue inside is not the container's own mqueue filesystem"
        )
        assert not hostops.mq_exists(inner_q), "a container's mqueue is visible on the host"
    finally:
        hostops.mq_unlink(host_q)
        if hostops.mq_exists(inner_q):  # only if it leaked to the host
            hostops.mq_unlink(inner_q)
