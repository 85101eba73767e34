"""Terminals as runc gives them: the pty master travels over the --console-socket.

Why this protocol: the engine (conmon, containerd's shim) owns the terminal, so
the runtime only makes the pty inside the container and hands the master over.
`connect` runs on the host (the socket's path is not reachable from inside);
`attach` runs in the container's process after pivot_root: it opens a pty on the
container's own devpts (/dev/ptmx -> pts/ptmx), sends the master with SCM_RIGHTS
(runc's payload: the master's name), and makes the slave the process's stdin,
stdout, stderr and controlling terminal (the process is a session leader
already: setsid, then TIOCSCTTY). Everything is imported at load time: `attach`
runs where the host's Python tree is out of reach.
"""

from __future__ import annotations

import _socket
import fcntl
import os
import struct

from ..errors import RrefError

TIOCSCTTY = 0x540E


def check(terminal: bool, console_socket: str | None, what: str) -> None:
    """runc's refusals: a terminal needs a socket to send it to, and the other way round."""
    if terminal and not console_socket:
        raise RrefError(
            f"{what}: process.terminal needs --console-socket (rref-oci hands the pty "
            "to its caller and does not relay a terminal itself)",
            1,
        )
    if console_socket and not terminal:
        raise RrefError(
            f"{what}: --console-socket without a terminal (set process.terminal or --tty)", 1
        )


def connect(path: str) -> int:
    """A connected fd to the caller's console socket (closed by the caller after the fork)."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as e:
        sock.close()
        raise RrefError(f"--console-socket {path}: {e.strerror or e}", 1) from None
    return int(sock.detach())


def attach(sock_fd: int, uid: int) -> None:
    """In the container's process: new pty, master to the socket, slave as stdio + ctty."""
    try:
        master, slave = os.openpty()
    except OSError as e:
        raise RrefError(f"cannot allocate a terminal in the container: {e.strerror}") from None
    try:
        sock = _socket.socket(fileno=sock_fd)
        try:
            sock.sendmsg(
                [b"/dev/ptmx"],
                [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, struct.pack("i", master))],
            )
        except OSError as e:
            raise RrefError(f"cannot send the terminal to the console socket: {e}") from None
        finally:
            sock.close()
    finally:
        os.close(master)
    if uid:
        os.fchown(slave, uid, -1)
    for target in (0, 1, 2):
        os.dup2(slave, target, inheritable=True)
    os.close(slave)
    fcntl.ioctl(0, TIOCSCTTY, 0)
