"""Userland TCP port publishing (`-p 127.0.0.1:8080:80`), docker-proxy's job.

A `PortProxy` listens on a loopback address of the host and forwards every
connection to the container's address. It never blocks and owns no thread: an
existing single-threaded select() loop drives it::

    proxy = PortProxy("127.0.0.1", 8080, "172.31.240.2", 80)
    proxy.listen()
    while running:
        r, w, _ = select.select(proxy.fds(), proxy.wfds(), [], timeout)
        proxy.handle(r, w)

(`pump([proxy, ...], timeout)` is that loop body for several proxies.) A loop
that only watches `fds()` for reading may call `handle(r)` without the second
argument: the proxy then polls its pending writers itself, so it still makes
progress each time it is called (call it on every select timeout as well).

Each connection has one buffer per direction, capped at `HIGH_WATER` (a full
buffer stops reading from its source, so a slow reader slows the writer).
The connect to the target is non-blocking. EOF is passed on as a half-close
(shutdown(SHUT_WR) once the buffer is flushed) and both sockets are closed when
both directions are finished, or at once on any error.

Only loopback publishing is supported: nothing here ever listens on an address
reachable from outside the host.
"""

from __future__ import annotations

import errno
import ipaddress
import select
import socket

from .network import NetworkError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

BUFSIZE = 65536
HIGH_WATER = 256 * 1024
ACCEPT_BATCH = 64
BACKLOG = 128
LOOPBACK_ONLY = "only loopback publishing is supported (127.0.0.0/8 or ::1)"


def _ip(text: str, what: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        raise NetworkError(f"invalid {what} {text!r}") from None


def _hostport(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _family(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> int:
    return socket.AF_INET6 if ip.version == 6 else socket.AF_INET


class _Conn:
    """One proxied connection: client <-> target, a buffer and an EOF flag per direction."""

    __slots__ = (
        "client",
        "client_eof",
        "connecting",
        "target",
        "target_eof",
        "to_client",
        "to_target",
        "wshut_client",
        "wshut_target",
    )

    def __init__(self, client: socket.socket, target: socket.socket, connecting: bool) -> None:
        self.client = client
        self.target = target
        self.connecting = connecting
        self.to_target = bytearray()
        self.to_client = bytearray()
        self.client_eof = False  # no more bytes will come from the client
        self.target_eof = False
        self.wshut_target = False  # we have shut down writing to the target
        self.wshut_client = False


class PortProxy:
    """Forwards TCP connections from host_ip:host_port (loopback) to target_ip:target_port."""

    def __init__(self, host_ip: str, host_port: int, target_ip: str, target_port: int) -> None:
        hip = _ip(host_ip, "host IP")
        if not hip.is_loopback:
            raise NetworkError(f"cannot publish on {hip}: {LOOPBACK_ONLY}")
        tip = _ip(target_ip, "target IP")
        for port, what, low in ((host_port, "host port", 0), (target_port, "target port", 1)):
            if not isinstance(port, int) or not low <= port <= 65535:
                raise NetworkError(f"invalid {what} {port!r}")
        self.host_ip = str(hip)
        self.host_port = host_port
        self.target_ip = str(tip)
        self.target_port = target_port
        self._family = _family(hip)
        self._target_family = _family(tip)
        self._sock: socket.socket | None = None
        self._conns: dict[int, tuple[_Conn, bool]] = {}  # fd -> (conn, is_client)

    def __repr__(self) -> str:
        return (
            f"PortProxy({_hostport(self.host_ip, self.host_port)} -> "
            f"{_hostport(self.target_ip, self.target_port)})"
        )

    @property
    def connections(self) -> int:
        """Number of connections currently open."""
        return len({id(c) for c, _ in self._conns.values()})

    def listen(self) -> int:
        """Bind and listen (port 0 picks a free port); return the port."""
        if self._sock is not None:
            return self.host_port
        sock = socket.socket(self._family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if self._family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((self.host_ip, self.host_port))
            sock.listen(BACKLOG)
            sock.setblocking(False)
        except OSError as e:
            sock.close()
            where = _hostport(self.host_ip, self.host_port)
            if e.errno == errno.EADDRINUSE:
                raise NetworkError(f"port is already allocated: {where}") from None
            raise NetworkError(f"cannot listen on {where}: {e.strerror or e}") from None
        self._sock = sock
        self.host_port = sock.getsockname()[1]
        return self.host_port

    def fds(self) -> list[int]:
        """Descriptors to watch for reading: the listener and sources with room to buffer."""
        out = [self._sock.fileno()] if self._sock is not None else []
        for fd, (c, is_client) in self._conns.items():
            if is_client:
                if not c.client_eof and len(c.to_target) < HIGH_WATER:
                    out.append(fd)
            elif not c.connecting and not c.target_eof and len(c.to_client) < HIGH_WATER:
                out.append(fd)
        return out

    def wfds(self) -> list[int]:
        """Descriptors to watch for writing: a connect in progress or output pending."""
        out = []
        for fd, (c, is_client) in self._conns.items():
            if is_client:
                if c.to_client:
                    out.append(fd)
            elif c.connecting or c.to_target:
                out.append(fd)
        return out

    def handle(self, readable: Iterable[int], writable: Iterable[int] | None = None) -> None:
        """Process ready descriptors (any fds not ours are ignored)."""
        rset = set(readable)
        if writable is None:
            pending = self.wfds()
            wset = set(select.select([], pending, [], 0)[1]) if pending else set()
        else:
            wset = set(writable)
        if self._sock is not None and self._sock.fileno() in rset:
            self._accept()
        for fd in sorted((rset | wset) & self._conns.keys()):
            if fd in wset and fd in self._conns:
                self._on_writable(fd)
            if fd in rset and fd in self._conns:
                self._on_readable(fd)

    def close(self) -> None:
        """Stop listening and drop every connection (idempotent)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        for c, _ in list(self._conns.values()):
            self._drop(c)

    def __enter__(self) -> PortProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ internals

    def _accept(self) -> None:
        assert self._sock is not None
        for _ in range(ACCEPT_BATCH):
            try:
                client, _addr = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # ECONNABORTED, EMFILE...: leave the rest for the next round
                return
            client.setblocking(False)
            target = socket.socket(self._target_family, socket.SOCK_STREAM)
            target.setblocking(False)
            for s in (client, target):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            err = target.connect_ex((self.target_ip, self.target_port))
            if err not in (0, errno.EINPROGRESS):
                client.close()
                target.close()
                continue
            c = _Conn(client, target, connecting=err != 0)
            self._conns[client.fileno()] = (c, True)
            self._conns[target.fileno()] = (c, False)

    def _drop(self, c: _Conn) -> None:
        for s in (c.client, c.target):
            if s.fileno() >= 0:
                self._conns.pop(s.fileno(), None)
                s.close()

    def _on_writable(self, fd: int) -> None:
        c, is_client = self._conns[fd]
        if not is_client and c.connecting:
            err = c.target.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._drop(c)
                return
            c.connecting = False
        self._flush(c, to_client=is_client)

    def _on_readable(self, fd: int) -> None:
        c, is_client = self._conns[fd]
        src = c.client if is_client else c.target
        try:
            data = src.recv(BUFSIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(c)
            return
        if is_client:
            if data:
                c.to_target += data
            else:
                c.client_eof = True
        elif data:
            c.to_client += data
        else:
            c.target_eof = True
        self._flush(c, to_client=not is_client)

    def _flush(self, c: _Conn, to_client: bool) -> None:
        """Send what is buffered toward one side; pass EOF on; close when both are done."""
        if to_client:
            dst, buf, src_eof = c.client, c.to_client, c.target_eof
        else:
            if c.connecting:
                return
            dst, buf, src_eof = c.target, c.to_target, c.client_eof
        try:
            while buf:
                n = dst.send(buf)
                del buf[:n]
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(c)
            return
        if src_eof:
            if to_client and not c.wshut_client:
                c.wshut_client = True
                self._shut(c, c.client)
            elif not to_client and not c.wshut_target:
                c.wshut_target = True
                self._shut(c, c.target)
            if c.wshut_client and c.wshut_target:
                self._drop(c)

    def _shut(self, c: _Conn, sock: socket.socket) -> None:
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._drop(c)


def pump(proxies: Iterable[PortProxy], timeout: float | None = None) -> None:
    """One select() round over several proxies (for a loop that has nothing else to do)."""
    proxies = list(proxies)
    owner: dict[int, PortProxy] = {}
    rfds: list[int] = []
    wfds: list[int] = []
    for p in proxies:
        for fd in p.fds():
            owner[fd] = p
            rfds.append(fd)
        for fd in p.wfds():
            owner[fd] = p
            wfds.append(fd)
    if not rfds and not wfds:
        return
    r, w, _ = select.select(rfds, wfds, [], timeout)
    for p in proxies:
        mine_r = [fd for fd in r if owner.get(fd) is p]
        mine_w = [fd for fd in w if owner.get(fd) is p]
        if mine_r or mine_w:
            p.handle(mine_r, mine_w)


def _port(text: str, what: str, allow_zero: bool) -> int:
    if "-" in text:
        raise NetworkError(f"port ranges are not supported: {what} {text!r}")
    low = 0 if allow_zero else 1
    if not (text.isascii() and text.isdigit()) or not low <= int(text) <= 65535:
        raise NetworkError(f"invalid {what} {text!r}")
    return int(text)


def parse_publish(spec: str) -> tuple[str, int, int, str]:
    """`-p` value -> (host_ip, host_port, container_port, "tcp"); host port 0 = any free one.

    Accepts "127.0.0.1:8080:80", "127.0.0.1::80", "[::1]:8080:80", "8080:80",
    "80" and any of these with "/tcp". The host IP defaults to 127.0.0.1 and
    must be a loopback address; udp and sctp are refused.
    """
    s = spec.strip()
    proto = "tcp"
    if "/" in s:
        s, proto = s.rsplit("/", 1)
        proto = proto.lower()
        if proto in ("udp", "sctp"):
            raise NetworkError(f"{proto} port publishing is not supported (tcp only): {spec!r}")
        if proto != "tcp":
            raise NetworkError(f"invalid protocol {proto!r} in {spec!r}")
    host_ip = "127.0.0.1"
    if s.startswith("["):
        end = s.find("]")
        if end < 0 or s[end + 1 : end + 2] != ":":
            raise NetworkError(f"invalid publish spec {spec!r}")
        host_ip, parts = s[1:end], s[end + 2 :].split(":")
        if len(parts) != 2:
            raise NetworkError(f"invalid publish spec {spec!r}: want [IP]:HOSTPORT:CTRPORT")
        host_s, ctr_s = parts
    else:
        parts = s.split(":")
        if len(parts) == 1:
            host_s, ctr_s = "", parts[0]
        elif len(parts) == 2:
            host_s, ctr_s = parts
        elif len(parts) == 3:
            host_ip, host_s, ctr_s = parts
        else:
            raise NetworkError(
                f"invalid publish spec {spec!r}: want [IP:][HOSTPORT:]CTRPORT "
                "(IPv6 addresses in brackets)"
            )
    ip = _ip(host_ip, "host IP")
    if not ip.is_loopback:
        raise NetworkError(
            f"cannot publish on {ip}: {LOOPBACK_ONLY}, e.g. -p 127.0.0.1:{host_s or ctr_s}:{ctr_s}"
        )
    host_port = _port(host_s, "host port", allow_zero=True) if host_s else 0
    return str(ip), host_port, _port(ctr_s, "container port", allow_zero=False), "tcp"
