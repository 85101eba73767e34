"""The safety checks behaviour tests make before they act inside a container, and the
outside view of a mount namespace, on host processes set up to look like faulty containers
(no runtime involved): a process sharing the harness's namespaces, one in namespaces of its
own, and one that chroot()ed inside a new mount namespace (the old root stays attached,
as with `runc run --no-pivot`)."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conformance import facts, hostops
from conformance.tests.support import (
    require_own_filesystem,
    require_own_namespace,
    require_own_root,
)

CLONE_NEWNS = 0x00020000


@contextlib.contextmanager
def _chrooted(root: Path) -> Iterator[int]:
    """A child in a new mount namespace that chroot()ed into ``root`` and sleeps."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(r)
            if ctypes.CDLL(None, use_errno=True).unshare(CLONE_NEWNS) != 0:
                os._exit(2)
            os.chroot(str(root))
            os.write(w, b"ok")
            time.sleep(60)
        finally:
            os._exit(0)
    os.close(w)
    try:
        assert os.read(r, 2) == b"ok", "the chrooted child did not start"
        yield pid
    finally:
        os.close(r)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


@contextlib.contextmanager
def _unshared(*flags: str) -> Iterator[int]:
    """A sleeping process in new namespaces (`unshare FLAGS sleep`), once it is in them."""
    proc = subprocess.Popen(["unshare", *flags, "sleep", "60"])
    try:
        facts.wait_for(
            lambda: facts.ns_id(proc.pid, "uts") != facts.ns_id("self", "uts"),
            what="unshare to exec sleep",
        )
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_shared_namespace_is_a_failure_that_says_so():
    for kind in ("uts", "ipc", "pid", "net", "network", "mnt"):
        with pytest.raises(AssertionError, match=r"shares the host's .* namespace") as e:
            require_own_namespace(None, os.getpid(), kind)  # type: ignore[arg-type]
        assert "the test stops here rather than change" in str(e.value)


def test_own_namespace_passes_and_returns_its_id():
    with _unshared("--uts", "--ipc") as pid:
        assert require_own_namespace(None, pid, "uts") == facts.ns_id(pid, "uts")  # type: ignore[arg-type]
        require_own_namespace(None, pid, "ipc")  # type: ignore[arg-type]
        with pytest.raises(AssertionError, match="shares the host's net namespace"):
            require_own_namespace(None, pid, "net")  # type: ignore[arg-type]


def test_root_and_filesystem_checks(tmp_path):
    with pytest.raises(AssertionError, match="root directory is the host's /"):
        require_own_root(None, os.getpid())  # type: ignore[arg-type]
    with pytest.raises(AssertionError, match="/dev inside the container is the host's /dev"):
        require_own_filesystem(None, os.getpid(), "/dev")  # type: ignore[arg-type]
    with _chrooted(tmp_path) as pid:
        require_own_root(None, pid)  # type: ignore[arg-type]


def test_an_old_root_below_a_chroot_is_seen_from_the_host(tmp_path):
    """/proc/<pid>/mountinfo of a chrooted process hides the mounts above its root; the
    whole namespace (listmount) still holds them, the host's root filesystem among them."""
    try:
        assert facts.mounts_outside_root(os.getpid()) == []
    except OSError as e:
        pytest.skip(f"listmount(2) of a mount namespace is not available here: {e}")
    host_root = facts.host_root_mount()
    with _chrooted(tmp_path) as pid:
        visible = facts.parse_mountinfo(facts.mountinfo(pid))
        assert not [m for m in visible if m["mount_point"] == "/" and m["root"] == "/"]
        hidden = facts.mounts_outside_root(pid)
        assert hidden, "the old root of a chrooted process is not found"
        assert any((m.dev, m.root) == (host_root["devno"], host_root["root"]) for m in hidden)
        every = hostops.namespace_mounts(pid)
        assert len(every) == len(hidden) + len(visible)


def test_a_renamed_host_is_reported(tmp_path):
    """A runtime that applies a container's hostname in the host's uts namespace renames
    the host: the session reports it (checked in a child with a uts namespace of its own)."""
    out = tmp_path / "out"
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            if ctypes.CDLL(None, use_errno=True).unshare(0x04000000) == 0:  # CLONE_NEWUTS
                from conformance.session import State

                state = State("fake", None, None)
                before = state.renamed_host()
                import socket

                socket.sethostname("conform-renamed")
                out.write_text(json.dumps([before, state.renamed_host()]))
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    before, after = json.loads(out.read_text())
    assert before == [] and len(after) == 1 and "'conform-renamed'" in after[0], after
