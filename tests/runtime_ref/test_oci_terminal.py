"""Terminals: with process.terminal and --console-socket, rref-oci makes a pty inside the
container, sends the master over the socket (SCM_RIGHTS, as runc) and the program has the
slave as stdio and controlling terminal; exec --tty the same; podman run -t on rref-oci."""

from __future__ import annotations

import array
import errno
import os
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from ocikit import RREF_OCI, Oci
from test_oci_podman import LIMITS, PODMAN, image, podman  # noqa: F401 - the image fixture

# tty_nr of the shell (field 7 of its stat): its controlling terminal, 136:0 = pts/0
PROBE = "tty; [ -t 0 ] && [ -t 1 ] && [ -t 2 ] && echo all-ttys; cut -d' ' -f7 /proc/$$/stat"
PTS0 = str(136 << 8)


@pytest.fixture
def console(oci: Oci) -> Iterator[tuple[Path, socket.socket]]:
    path = oci.work / f"rref-console-{uuid.uuid4().hex[:6]}.sock"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen(2)
    srv.settimeout(30)
    try:
        yield path, srv
    finally:
        srv.close()


def receive_master(srv: socket.socket) -> tuple[bytes, int]:
    conn, _ = srv.accept()
    with conn:
        fds = array.array("i")
        msg, anc, _flags, _addr = conn.recvmsg(256, socket.CMSG_LEN(fds.itemsize))
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
    assert len(fds) == 1, f"no fd received (payload {msg!r})"
    return msg, fds[0]


def read_all(master: int) -> str:
    out = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError as e:  # EIO: every slave fd is closed
            assert e.errno == errno.EIO
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    return out.decode(errors="replace").replace("\r\n", "\n")


def test_create_sends_the_pty_master_and_start_runs_on_it(
    oci: Oci, console: tuple[Path, socket.socket]
) -> None:
    path, srv = console
    cid = oci.new_id()
    b = oci.bundle(["sh", "-c", PROBE + "; echo rref-done"], process_terminal=True)
    oci("create", "--console-socket", str(path), "-b", str(b), cid)
    payload, master = receive_master(srv)
    assert payload == b"/dev/ptmx" and os.isatty(master)
    assert oci.state(cid)["status"] == "created"
    oci("start", cid)
    out = read_all(master).splitlines()
    assert out[0] == "/dev/pts/0" and out[1] == "all-ttys", out
    assert out[2] == PTS0, out  # the controlling terminal of pid 1
    assert out[-1] == "rref-done"
    oci("delete", "--force", cid)


def test_exec_tty_gets_its_own_pty(oci: Oci, console: tuple[Path, socket.socket]) -> None:
    path, srv = console
    cid = oci.new_id()
    oci("run", "-d", "-b", str(oci.bundle(["sleep", "30"])), cid)
    argv = [RREF_OCI, "--root", str(oci.root), "exec", "--tty", "--console-socket", str(path)]
    p = subprocess.Popen([*argv, cid, "sh", "-c", PROBE], stdin=subprocess.DEVNULL)
    try:
        _, master = receive_master(srv)
        out = read_all(master).splitlines()
        assert p.wait(timeout=30) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert out[:3] == ["/dev/pts/0", "all-ttys", PTS0], out
    oci("delete", "--force", cid)


def test_terminal_without_a_console_socket_is_refused(
    oci: Oci, console: tuple[Path, socket.socket]
) -> None:
    path, _ = console
    cid = oci.new_id()
    b = oci.bundle(["true"], process_terminal=True)
    p = oci("create", "-b", str(b), cid, check=False)
    assert p.returncode == 1 and "process.terminal needs --console-socket" in p.stderr
    p = oci(
        "create", "--console-socket", str(path), "-b", str(oci.bundle(["true"])), cid, check=False
    )
    assert p.returncode == 1 and "--console-socket without a terminal" in p.stderr
    p = oci("create", "--console-socket", str(path) + "-missing", "-b", str(b), cid, check=False)
    assert p.returncode == 1 and "-missing" in p.stderr.strip().splitlines()[-1]
    assert not (oci.root / cid).exists()


@pytest.mark.skipif(PODMAN is None, reason="podman is not installed")
def test_podman_run_t(image: str) -> None:  # noqa: F811 - the fixture
    p = podman("run", "--rm", "-t", *LIMITS, image, "sh", "-c", PROBE)
    out = p.stdout.replace("\r\n", "\n").splitlines()
    assert out[:2] == ["/dev/pts/0", "all-ttys"], p.stdout


@pytest.mark.skipif(PODMAN is None, reason="podman is not installed")
def test_podman_exec_t(image: str) -> None:  # noqa: F811 - the fixture
    name = f"rref-oci-tty-{uuid.uuid4().hex[:8]}"
    try:
        podman("run", "-d", "--name", name, *LIMITS, image, "sleep", "60")
        p = podman("exec", "-t", name, "sh", "-c", PROBE)
        assert p.stdout.replace("\r\n", "\n").splitlines()[:3] == ["/dev/pts/0", "all-ttys", PTS0]
    finally:
        podman("rm", "-f", "-t", "0", name, check=False)
