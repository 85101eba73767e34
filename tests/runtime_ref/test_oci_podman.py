"""podman drives rref-oci as its OCI runtime: run, run -d + exec + logs + stop + rm,
memory and pids limits, a user namespace. The image is the suite's busybox tree."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from ocikit import RREF_OCI

from conformance.rootfs import write_tar

PODMAN = shutil.which("podman")
LIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", "--network", "none"]


@pytest.fixture(scope="module")
def image(busybox_tree: Path) -> Iterator[str]:
    if PODMAN is None:
        pytest.skip("podman is not installed")
    name = f"localhost/rref-oci-busybox-{uuid.uuid4().hex[:8]}:latest"
    with tempfile.TemporaryDirectory(prefix="rref-oci-img-") as d:
        write_tar(busybox_tree, Path(d) / "bb.tar")
        subprocess.run([PODMAN, "import", "-q", str(Path(d) / "bb.tar"), name], check=True)
    yield name
    subprocess.run([PODMAN, "rmi", "-f", name], capture_output=True)


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    assert PODMAN is not None
    p = subprocess.run(
        [PODMAN, "--runtime", RREF_OCI, *args], capture_output=True, text=True, timeout=90
    )
    if check and p.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} exited {p.returncode}: {p.stderr}")
    return p


def test_run_rm(image: str) -> None:
    p = podman("run", "--rm", *LIMITS, image, "sh", "-c", "echo hi; exit 5", check=False)
    assert (p.returncode, p.stdout) == (5, "hi\n")


def test_detached_exec_logs_stop_rm(image: str) -> None:
    name = f"rref-oci-pd-{uuid.uuid4().hex[:8]}"
    try:
        prog = "trap 'exit 0' TERM; echo logged; while :; do sleep 1; done"
        podman("run", "-d", "--name", name, *LIMITS, image, "sh", "-c", prog)
        assert podman("exec", name, "sh", "-c", "echo exec-ok").stdout == "exec-ok\n"
        podman("stop", "-t", "5", name)
        assert podman("logs", name).stdout == "logged\n"
        state = podman("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", name)
        assert state.stdout.split() == ["exited", "0"]
    finally:
        podman("rm", "-f", name, check=False)


def test_memory_and_pids_limits(image: str) -> None:
    read = "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max"
    p = podman(
        "run", "--rm", *LIMITS, "--memory", "64m", "--pids-limit", "20", image, "sh", "-c", read
    )
    assert p.stdout.split() == [str(64 * 1024 * 1024), "20"]


def test_user_namespace(image: str) -> None:
    maps = ["--uidmap", "0:300000:65536", "--gidmap", "0:300000:65536"]
    p = podman("run", "--rm", *LIMITS, *maps, image, "sh", "-c", "cat /proc/self/uid_map; id -u")
    assert p.stdout.split() == ["0", "300000", "65536", "0"]


def test_read_only_root(image: str) -> None:
    """podman --read-only: its tmpfs mounts on /tmp, /run... carry runc's tmpcopyup."""
    prog = "touch /rref-ro 2>/dev/null; echo root=$?; touch /tmp/rref-w; echo tmp=$?"
    p = podman("run", "--rm", *LIMITS, "--read-only", image, "sh", "-c", prog)
    assert p.stdout.split() == ["root=1", "tmp=0"]


def test_rm_after_the_runtime_state_is_gone(image: str) -> None:
    """The init died and rref-oci's state went with a reboot of /run: podman's cleanup
    runs `delete --force` on an id rref-oci no longer knows, which must succeed (as runc)."""
    name = f"rref-oci-pd-{uuid.uuid4().hex[:8]}"
    try:
        podman("run", "-d", "--name", name, *LIMITS, image, "sleep", "300")
        cid, pid = podman("inspect", "-f", "{{.Id}} {{.State.Pid}}", name).stdout.split()
        shutil.rmtree(f"/run/rref-oci/{cid}")  # podman's default --root for rref-oci
        os.kill(int(pid), signal.SIGKILL)
        podman("rm", "-f", name)
        assert name not in podman("ps", "-a", "--format", "{{.Names}}").stdout.split()
    finally:
        podman("rm", "-f", name, check=False)
