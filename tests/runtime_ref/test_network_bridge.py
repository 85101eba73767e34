"""Bridge networking and port publishing, against the real kernel (no mocks).

Every test gets its own tag: bridge `rref-t<tag>`, namespaces `conform-t<tag>-*`,
container ids starting with the tag (so host veths are `rref<tag>..`) and a
random /24 inside 172.31.0.0/16, so tests run in parallel under xdist. The
`lab` fixture tears everything down even when a test fails, then asserts that
no link or namespace carrying the tag is left. Traffic stays on loopback and
on the test's own bridge, veths and namespaces: no default route, no NAT.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import secrets
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime_ref.network import (
    IPAM,
    Bridge,
    NetworkError,
    attach,
    detach,
    mac_for,
    remove_bridge,
)
from runtime_ref.portproxy import PortProxy, parse_publish, pump

PY = sys.executable
REPO = str(Path(__file__).resolve().parents[2])
ENV = {**os.environ, "PYTHONPATH": REPO}

ECHO_SERVER = r"""
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(8)
print("ready", flush=True)
for _ in range(int(sys.argv[3])):
    c, _ = s.accept()
    while True:
        d = c.recv(65536)
        if not d:
            break
        c.sendall(d)
    c.close()
"""

CLIENT = r"""
import socket, sys, threading
payload = sys.stdin.buffer.read()
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
def send():
    c.sendall(payload)
    c.shutdown(socket.SHUT_WR)
t = threading.Thread(target=send)
t.start()
buf = bytearray()
while True:
    d = c.recv(65536)
    if not d:
        break
    buf += d
t.join()
sys.stdout.buffer.write(bytes(buf))
"""

CONFIGURE_INSIDE = (
    "import sys; from runtime_ref.network import configure_inside; "
    "configure_inside(sys.argv[1], sys.argv[2], int(sys.argv[3]))"
)


def run(*argv: str, input: bytes | None = None, timeout: float = 20) -> str:
    p = subprocess.run(
        argv,
        capture_output=True,
        input=input,
        timeout=timeout,
        env=ENV,
        stdin=None if input is not None else subprocess.DEVNULL,
    )
    if p.returncode != 0:
        raise AssertionError(
            f"{' '.join(argv)} exited {p.returncode}: {p.stderr.decode(errors='replace').strip()}"
        )
    return p.stdout.decode(errors="replace")


def host_links() -> list[str]:
    return os.listdir("/sys/class/net")


def netns_names() -> list[str]:
    return [line.split()[0] for line in run("ip", "netns", "list").splitlines() if line.strip()]


def ns_links(ns: str) -> dict[str, str]:
    """name -> the rest of `ip -o link` for every link in the namespace."""
    out = {}
    for line in run("ip", "-n", ns, "-o", "link").splitlines():
        _, name, rest = line.split(": ", 2)
        out[name.split("@")[0]] = rest
    return out


class Lab:
    """Owns every host resource of one test and removes them all in close()."""

    def __init__(self, state_dir: str) -> None:
        self.tag = secrets.token_hex(3)
        self.state_dir = state_dir
        self.bridge: Bridge | None = None
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        self.cids: list[str] = []

    def make_bridge(self) -> Bridge:
        """The test's bridge on a random free /24 of 172.31.0.0/16 (not rref0's .240)."""
        for _ in range(30):
            br = Bridge(f"rref-t{self.tag}", f"172.31.{random.randrange(0, 240)}.0/24")
            self.bridge = br  # before ensure(): close() must find a half-made bridge too
            try:
                br.ensure()
            except NetworkError as e:
                if "overlaps" not in str(e):
                    raise
                continue
            return br
        raise AssertionError("no free /24 left in 172.31.0.0/16")

    def cid(self) -> str:
        # 64 hex digits; the host veth is rref<tag><nn>: a counter, not 2 random digits, so
        # two containers of one lab never share it (1 in 256 runs did)
        c = self.tag + f"{len(self.cids):02x}" + secrets.token_hex(28)
        self.cids.append(c)
        return c

    def netns(self, suffix: str) -> tuple[str, int]:
        """A named netns with a sleeping process in it: (name, pid)."""
        name = f"conform-t{self.tag}-{suffix}"
        self.namespaces.append(name)
        run("ip", "netns", "add", name)
        p = subprocess.Popen(["ip", "netns", "exec", name, "sleep", "60"], stdin=subprocess.DEVNULL)
        self.procs.append(p)
        want = os.stat(f"/run/netns/{name}").st_ino
        deadline = time.monotonic() + 5
        while os.stat(f"/proc/{p.pid}/ns/net").st_ino != want:  # `ip` has not setns'd yet
            assert time.monotonic() < deadline, "ip netns exec did not enter the namespace"
            time.sleep(0.002)
        return name, p.pid

    def server(self, ns: str, ip: str, port: int, conns: int = 1) -> subprocess.Popen[bytes]:
        """An echo server in `ns`, once it is listening."""
        p = subprocess.Popen(
            ["ip", "netns", "exec", ns, PY, "-c", ECHO_SERVER, ip, str(port), str(conns)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=ENV,
        )
        self.procs.append(p)
        assert p.stdout is not None
        ready, _, _ = select.select([p.stdout], [], [], 10)
        assert ready and p.stdout.readline() == b"ready\n", p.stderr.read() if p.stderr else ""
        return p

    def leftovers(self) -> list[str]:
        links = [f"link {n}" for n in host_links() if n.startswith("rref") and self.tag in n]
        spaces = [f"netns {n}" for n in netns_names() if n.startswith(f"conform-t{self.tag}")]
        return links + spaces

    def close(self) -> None:
        errors: list[BaseException] = []
        if self.bridge is not None:
            for cid in self.cids:
                try:
                    detach(cid, self.bridge, self.state_dir)
                except Exception as e:
                    errors.append(e)
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()
            for f in (p.stdout, p.stderr):
                if f is not None:
                    f.close()
        for ns in self.namespaces:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        if self.bridge is not None:
            try:
                remove_bridge(self.bridge.name, force=True, state_dir=self.state_dir)
            except Exception as e:
                errors.append(e)
        deadline = time.monotonic() + 5  # netns teardown is asynchronous in the kernel
        while self.leftovers() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not self.leftovers(), f"left on the host: {self.leftovers()}"
        if errors:
            raise errors[0]


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    lb = Lab(str(tmp_path))
    try:
        yield lb
    finally:
        lb.close()


def sys_link(name: str, attr: str) -> str:
    return Path(f"/sys/class/net/{name}/{attr}").read_text().strip()


# ---------------------------------------------------------------- bridge


def test_bridge_ensure_is_idempotent_and_adds_only_the_subnet_route(lab: Lab) -> None:
    defaults_before = run("ip", "route", "show", "default")
    br = lab.make_bridge()
    index = br.ensure()
    assert br.ensure() == index
    assert br.exists()
    assert sys_link(br.name, "ifindex") == str(index)
    assert sys_link(br.name, "flags") != "" and int(sys_link(br.name, "flags"), 16) & 1  # UP
    assert sys_link(br.name, "address") == mac_for(br.gateway)
    addrs = run("ip", "-4", "-o", "addr", "show", "dev", br.name)
    assert f"inet {br.gateway}/24 " in addrs and len(addrs.splitlines()) == 1
    routes = run("ip", "-4", "route", "show", "dev", br.name).splitlines()
    assert [r.split()[0] for r in routes] == [br.subnet]
    assert run("ip", "route", "show", "default") == defaults_before
    assert br.ports() == []


def test_bridge_refuses_overlaps_bad_names_and_subnets(lab: Lab) -> None:
    br = lab.make_bridge()
    other = Bridge(f"rref-u{lab.tag}", br.subnet)
    with pytest.raises(
        NetworkError, match=f"subnet {br.subnet} overlaps {br.gateway}/24 on {br.name}"
    ):
        other.ensure()
    assert other.name not in host_links()
    for name, subnet, msg in [
        ("eth9", "172.31.1.0/24", "contains 'rref'"),
        ("rref-much-too-long", "172.31.1.0/24", "1-15 characters"),
        ("rref/x", "172.31.1.0/24", "1-15 characters"),
        (f"rref-v{lab.tag}", "10.1.2.0/24", "does not use 10.0.0.0/8"),
        (f"rref-v{lab.tag}", "fd00:1::/64", "only IPv4"),
        (f"rref-v{lab.tag}", "8.8.8.0/24", "not a private"),
        (f"rref-v{lab.tag}", "172.31.1.1/24", "host bits set"),
        (f"rref-v{lab.tag}", "172.31.1.0/31", "prefix length"),
    ]:
        with pytest.raises(NetworkError, match=msg):
            Bridge(name, subnet)
    # remove_bridge only ever deletes bridges
    _, pid = lab.netns("nb")
    veth = attach(lab.cid(), pid, br, lab.state_dir)["HostVeth"]
    with pytest.raises(NetworkError, match=f"^{veth} is not a bridge$"):
        remove_bridge(veth)
    assert veth in host_links()


# ---------------------------------------------------------------- attach / detach


def test_two_namespaces_talk_over_the_bridge(lab: Lab) -> None:
    br = lab.make_bridge()
    ns_a, pid_a = lab.netns("a")
    ns_b, pid_b = lab.netns("b")
    # A: configured from the host (setns in a helper thread)
    a = attach(lab.cid(), pid_a, br, lab.state_dir, configure=True)
    # B: host side only, then the in-namespace half runs inside B, as a container init would
    b = attach(lab.cid(), pid_b, br, lab.state_dir)
    assert b["PeerIfname"].startswith("rrefc") and "eth0" not in ns_links(ns_b)
    run(
        "ip",
        "netns",
        "exec",
        ns_b,
        PY,
        "-c",
        CONFIGURE_INSIDE,
        b["PeerIfname"],
        b["IPAddress"],
        str(b["IPPrefixLen"]),
    )

    assert a["IPAddress"] != b["IPAddress"]
    for r in (a, b):
        assert r["Gateway"] == br.gateway and r["IPPrefixLen"] == 24 and r["Bridge"] == br.name
        assert r["MacAddress"] == mac_for(r["IPAddress"])
        assert os.path.basename(os.readlink(f"/sys/class/net/{r['HostVeth']}/master")) == br.name
        assert sys_link(r["HostVeth"], "operstate") == "up"
    assert sorted(br.ports()) == sorted([a["HostVeth"], b["HostVeth"]])

    for ns, r in ((ns_a, a), (ns_b, b)):
        links = ns_links(ns)
        assert set(links) == {"lo", "eth0"}
        assert ",UP" in links["lo"] and ",UP" in links["eth0"]
        assert f"link/ether {r['MacAddress']} " in links["eth0"]
        addr = run("ip", "-n", ns, "-4", "-o", "addr", "show", "dev", "eth0")
        assert f"inet {r['IPAddress']}/24 " in addr
        routes = run("ip", "-n", ns, "-4", "route").splitlines()
        assert [x.split()[:3] for x in routes] == [[br.subnet, "dev", "eth0"]]
        assert "default" not in run("ip", "-n", ns, "-4", "route", "show", "table", "all")
        assert "default" not in run("ip", "-n", ns, "-6", "route", "show", "table", "all")

    lab.server(ns_b, b["IPAddress"], 8000)
    payload = secrets.token_bytes(200_000)
    out = subprocess.run(
        ["ip", "netns", "exec", ns_a, PY, "-c", CLIENT, b["IPAddress"], "8000"],
        input=payload,
        capture_output=True,
        timeout=20,
    )
    assert out.returncode == 0, out.stderr.decode()
    assert out.stdout == payload


def test_detach_frees_the_address_and_deletes_the_veth(lab: Lab) -> None:
    br = lab.make_bridge()
    ns, pid = lab.netns("a")
    cid = lab.cid()
    r = attach(cid, pid, br, lab.state_dir, configure=True)
    ipam = IPAM(lab.state_dir, br.name)
    assert ipam.allocations() == {cid: r["IPAddress"]}
    with pytest.raises(NetworkError, match="still has 1 attached port"):
        remove_bridge(br.name)
    assert br.exists()

    detach(cid, br, lab.state_dir)
    assert r["HostVeth"] not in host_links()
    assert ipam.allocations() == {}
    assert set(ns_links(ns)) == {"lo"}  # the peer went with the pair
    detach(cid, br, lab.state_dir)  # idempotent
    detach(lab.cid(), br.name, lab.state_dir)  # never attached
    # the namespace can be attached again, and gets a fresh address (round-robin)
    r2 = attach(cid, pid, br, lab.state_dir, configure=True)
    assert r2["IPAddress"] != r["IPAddress"] and set(ns_links(ns)) == {"lo", "eth0"}


def test_attach_failures_leave_nothing_allocated(lab: Lab) -> None:
    br = lab.make_bridge()
    _, pid = lab.netns("a")
    cid = lab.cid()
    r = attach(cid, pid, br, lab.state_dir)
    ipam = IPAM(lab.state_dir, br.name)
    with pytest.raises(NetworkError, match=f"{r['HostVeth']} already exists"):
        attach(cid, pid, br, lab.state_dir)
    assert ipam.allocations() == {cid: r["IPAddress"]}  # the first attach keeps its address

    with pytest.raises(NetworkError, match="host network namespace"):
        attach(lab.cid(), os.getpid(), br, lab.state_dir)
    with pytest.raises(NetworkError, match="cannot attach process 999999999"):
        attach(lab.cid(), 999_999_999, br, lab.state_dir)
    with pytest.raises(NetworkError, match="invalid container id"):
        attach("xyz", pid, br, lab.state_dir)
    assert ipam.allocations() == {cid: r["IPAddress"]}
    mine = sorted(n for n in host_links() if n.startswith("rref") and lab.tag in n)
    assert mine == sorted([br.name, r["HostVeth"]])


def test_teardown_leaves_no_links_or_namespaces(tmp_path: Path) -> None:
    lb = Lab(str(tmp_path))
    try:
        br = lb.make_bridge()
        for s in ("a", "b"):
            _, pid = lb.netns(s)
            attach(lb.cid(), pid, br, lb.state_dir, configure=True)
        assert len(lb.leftovers()) == 1 + 2 + 2  # bridge, two veths, two namespaces
    finally:
        lb.close()
    assert lb.leftovers() == []
    assert not [n for n in host_links() if n.startswith("rref") and lb.tag in n]
    assert not [n for n in netns_names() if lb.tag in n]


# ---------------------------------------------------------------- IPAM


def test_ipam_allocates_distinct_addresses_round_robin(tmp_path: Path) -> None:
    ipam = IPAM(str(tmp_path), "rref-ipam", "172.31.250.0/29")  # .2 - .6 usable
    got = [ipam.allocate(f"c{i}") for i in range(3)]
    assert got == ["172.31.250.2", "172.31.250.3", "172.31.250.4"]
    assert ipam.allocate("c1") == "172.31.250.3"  # an id keeps its address
    assert ipam.free("c1") == "172.31.250.3"
    assert ipam.free("c1") is None  # idempotent
    assert ipam.allocate("c9") == "172.31.250.5"  # not the one just freed
    assert ipam.allocate("c10") == "172.31.250.6"
    assert ipam.allocate("c11") == "172.31.250.3"  # wraps around to the free one
    with pytest.raises(NetworkError, match=r"^no free address in 172\.31\.250\.0/29$"):
        ipam.allocate("c12")
    data = json.loads((tmp_path / "network" / "rref-ipam.json").read_text())
    assert data["subnet"] == "172.31.250.0/29" and data["gateway"] == "172.31.250.1"
    assert sorted(data["allocations"].values()) == [f"172.31.250.{i}" for i in range(2, 7)]
    assert ipam.prune(["c0", "c2"]) == ["c10", "c11", "c9"]
    assert ipam.allocations() == {"c0": "172.31.250.2", "c2": "172.31.250.4"}
    with pytest.raises(NetworkError, match=r"for subnet 172\.31\.250\.0/29, not 172\.31\.251\."):
        IPAM(str(tmp_path), "rref-ipam", "172.31.251.0/24").allocate("x")
    assert IPAM(str(tmp_path), "rref-none").free("x") is None  # no state file at all


def test_ipam_exhaustion_with_a_slash_30(tmp_path: Path) -> None:
    ipam = IPAM(str(tmp_path), "rref-ipam", "172.31.250.4/30")  # .5 gateway, .6 the only one
    assert ipam.allocate("a") == "172.31.250.6"
    with pytest.raises(NetworkError) as e:
        ipam.allocate("b")
    assert str(e.value) == "no free address in 172.31.250.4/30"
    assert e.value.code == 125
    ipam.free("a")
    assert ipam.allocate("b") == "172.31.250.6"


def test_ipam_concurrent_processes_get_distinct_addresses(tmp_path: Path) -> None:
    go = tmp_path / "go"
    script = (
        "import os, sys, time\n"
        "from runtime_ref.network import IPAM\n"
        "ipam = IPAM(sys.argv[1], 'rref-ipam', '172.31.250.0/24')\n"
        "while not os.path.exists(sys.argv[2]): time.sleep(0.001)\n"
        "print(' '.join(ipam.allocate(f'{sys.argv[3]}-{i}') for i in range(20)))\n"
    )
    procs = [
        subprocess.Popen(
            [PY, "-c", script, str(tmp_path), str(go), f"p{n}"], stdout=subprocess.PIPE, env=ENV
        )
        for n in range(8)
    ]
    try:
        time.sleep(0.3)  # let them all reach the starting line
        go.touch()
        outs = [p.communicate(timeout=30)[0].decode().split() for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert all(p.returncode == 0 for p in procs)
    got = [a for out in outs for a in out]
    assert len(got) == 160 and len(set(got)) == 160
    assert "172.31.250.1" not in got
    assert sorted(IPAM(str(tmp_path), "rref-ipam").allocations().values()) == sorted(got)


# ---------------------------------------------------------------- port proxy


class Loop:
    """A single-threaded select() loop driving one PortProxy, in a thread."""

    def __init__(self, proxy: PortProxy, read_only: bool = False) -> None:
        self.proxy = proxy
        self.read_only = read_only
        self.stop = threading.Event()
        self.connections = 0
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                if self.read_only:  # a loop that only knows about fds(): handle() polls writers
                    r, _, _ = select.select(self.proxy.fds(), [], [], 0.01)
                    self.proxy.handle(r)
                else:
                    pump([self.proxy], 0.05)
                self.connections = self.proxy.connections
        except BaseException as e:
            self.error = e

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.proxy.close()
        assert self.error is None, self.error

    def wait_idle(self) -> None:
        deadline = time.monotonic() + 5
        while self.connections and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.connections == 0


def roundtrip(port: int, payload: bytes, host: str = "127.0.0.1") -> bytes:
    c = socket.create_connection((host, port), timeout=10)
    with c:

        def send() -> None:
            c.sendall(payload)
            c.shutdown(socket.SHUT_WR)

        t = threading.Thread(target=send)
        t.start()
        buf = bytearray()
        while d := c.recv(65536):
            buf += d
        t.join()
    return bytes(buf)


@pytest.fixture
def loopback_echo() -> Iterator[int]:
    """An echo server on 127.0.0.1 in this process: its port."""
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(0.1)
    stop = threading.Event()

    def echo(c: socket.socket) -> None:
        with c:
            while d := c.recv(65536):
                c.sendall(d)

    def serve() -> None:
        while not stop.is_set():
            try:
                c, _ = srv.accept()
            except TimeoutError:
                continue
            c.settimeout(10)
            threading.Thread(target=echo, args=(c,), daemon=True).start()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield srv.getsockname()[1]
    finally:
        stop.set()
        t.join(5)
        srv.close()


@pytest.mark.parametrize("read_only", [False, True], ids=["select-rw", "select-read-only"])
def test_port_proxy_on_loopback(loopback_echo: int, read_only: bool) -> None:
    proxy = PortProxy("127.0.0.1", 0, "127.0.0.1", loopback_echo)
    port = proxy.listen()
    assert port > 0 and proxy.host_port == port
    loop = Loop(proxy, read_only)
    try:
        big = secrets.token_bytes(3 * 1024 * 1024)  # well over the buffer caps
        assert roundtrip(port, big) == big
        results: dict[int, bytes] = {}
        payloads = {i: secrets.token_bytes(50_000 + i) for i in range(6)}

        def one(i: int) -> None:
            results[i] = roundtrip(port, payloads[i])

        threads = [threading.Thread(target=one, args=(i,)) for i in payloads]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        assert results == payloads
        loop.wait_idle()
    finally:
        loop.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_port_proxy_target_refused_closes_the_client() -> None:
    closed = socket.create_server(("127.0.0.1", 0))
    dead_port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    proxy = PortProxy("127.0.0.1", 0, "127.0.0.1", dead_port)
    port = proxy.listen()
    loop = Loop(proxy)
    try:
        c = socket.create_connection(("127.0.0.1", port), timeout=5)
        with c, contextlib.suppress(ConnectionResetError):
            assert c.recv(10) == b""
        loop.wait_idle()
    finally:
        loop.close()


def test_port_proxy_refuses_busy_ports_and_non_loopback() -> None:
    busy = socket.create_server(("127.0.0.1", 0))
    with busy:
        port = busy.getsockname()[1]
        p = PortProxy("127.0.0.1", port, "172.31.250.2", 80)
        with pytest.raises(NetworkError) as e:
            p.listen()
        assert str(e.value) == f"port is already allocated: 127.0.0.1:{port}"
        assert p.fds() == []
    for ip in ("0.0.0.0", "192.0.2.2", "::", "fd00::2"):
        with pytest.raises(NetworkError, match=r"only loopback publishing is supported"):
            PortProxy(ip, 8080, "172.31.250.2", 80)
    with pytest.raises(NetworkError, match="invalid host IP 'localhost'"):
        PortProxy("localhost", 8080, "172.31.250.2", 80)
    with pytest.raises(NetworkError, match="invalid target port 0"):
        PortProxy("127.0.0.1", 8080, "172.31.250.2", 0)
    p = PortProxy("127.0.0.2", 0, "172.31.250.2", 80)  # all of 127/8 is loopback
    with p:
        assert p.listen() > 0
        assert len(p.fds()) == 1 and p.wfds() == []


def test_port_proxy_to_a_namespace_on_the_bridge(lab: Lab) -> None:
    br = lab.make_bridge()
    ns_b, pid_b = lab.netns("b")
    b = attach(lab.cid(), pid_b, br, lab.state_dir, configure=True)
    lab.server(ns_b, b["IPAddress"], 8000, conns=2)
    proxy = PortProxy("127.0.0.1", 0, b["IPAddress"], 8000)
    port = proxy.listen()
    loop = Loop(proxy)
    try:
        for size in (5, 300_000):
            payload = secrets.token_bytes(size)
            assert roundtrip(port, payload) == payload
        loop.wait_idle()
    finally:
        loop.close()


@pytest.mark.parametrize(
    "spec,want",
    [
        ("127.0.0.1:8080:80", ("127.0.0.1", 8080, 80, "tcp")),
        ("127.0.0.1::80", ("127.0.0.1", 0, 80, "tcp")),
        ("8080:80", ("127.0.0.1", 8080, 80, "tcp")),
        ("80/tcp", ("127.0.0.1", 0, 80, "tcp")),
        ("80", ("127.0.0.1", 0, 80, "tcp")),
        ("127.0.0.5:9000:9000/TCP", ("127.0.0.5", 9000, 9000, "tcp")),
        ("[::1]:8080:80", ("::1", 8080, 80, "tcp")),
        ("[::1]::80/tcp", ("::1", 0, 80, "tcp")),
    ],
)
def test_parse_publish(spec: str, want: tuple[str, int, int, str]) -> None:
    assert parse_publish(spec) == want


@pytest.mark.parametrize(
    "spec,msg",
    [
        ("0.0.0.0:8080:80", r"cannot publish on 0\.0\.0\.0: only loopback publishing is supported"),
        ("192.0.2.2::80", "only loopback publishing is supported"),
        ("[::]:8080:80", "cannot publish on ::: only loopback"),
        ("8080:80/udp", "udp port publishing is not supported"),
        ("53/udp", "udp port publishing is not supported"),
        ("80/sctp", "sctp port publishing is not supported"),
        ("80/icmp", "invalid protocol 'icmp'"),
        ("8000-8010:80", "port ranges are not supported"),
        ("70000:80", "invalid host port '70000'"),
        ("8080:0", "invalid container port '0'"),
        ("8080:http", "invalid container port 'http'"),
        ("", "invalid container port ''"),
        ("localhost:8080:80", "invalid host IP 'localhost'"),
        ("::1:8080:80", "IPv6 addresses in brackets"),
        ("[::1]:80", "want \\[IP\\]:HOSTPORT:CTRPORT"),
    ],
)
def test_parse_publish_errors(spec: str, msg: str) -> None:
    with pytest.raises(NetworkError, match=msg) as e:
        parse_publish(spec)
    assert "\n" not in str(e.value)
