"""Network namespace (NET-01..06): a private network stack; bridge mode on the session's
own bridge and subnet.

NET-02..04 configure an interface, bind ports and connect inside: they run in a gated
container (`support.gated`) that acts only once the host saw that its network namespace is
its own, so a runtime sharing the host's fails fast and never touches the host's stack.
Every client has a time limit (busybox `timeout`: this busybox's `wget -T` crashes)."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
from collections.abc import Iterator

import pytest

from conformance import facts
from conformance.adapters.base import ContainerSpec
from conformance.errors import Unsupported
from conformance.tests.support import gated, own_namespace_seen_both_ways, reported, sh, started

#: Seconds a client inside may wait for an answer.
CLIENT_TIMEOUT = 3


#: The fallback devices the kernel creates in every new network namespace while their modules
#: are loaded (net.core.fb_tunnels_only_for_init_net = 0): not the host's interfaces.
FALLBACK_TUNNELS = {
    "sit0", "tunl0", "ip6tnl0", "ip6gre0", "gre0", "gretap0", "erspan0", "ip_vti0",
    "ip6_vti0", "ip6erspan0",
}  # fmt: skip


@pytest.mark.behaviour("NET-01")
def test_network_none_has_only_lo(runtime, inspect_inside):
    inside = inspect_inside(network="none")
    assert "lo" in inside.interfaces, f"no lo inside: {inside.interfaces}"
    others = sorted(set(inside.interfaces) - {"lo"} - FALLBACK_TUNNELS)
    assert not others, f"interfaces inside besides lo and the kernel's fallback tunnels: {others}"


@pytest.mark.behaviour("NET-02")
@pytest.mark.requires("detach")
def test_host_interfaces_invisible_and_unconfigurable(runtime, container):
    host_ifs = [i for i in facts.host_interfaces() if i != "lo"]
    if not host_ifs:
        raise Unsupported("the host has no interface but lo")
    target = host_ifs[0]
    mtu = open(f"/sys/class/net/{target}/mtu").read().strip()  # noqa: SIM115
    # Tried only in a network namespace that is not the host's; and setting the current MTU
    # again would change nothing even there.
    res = gated(
        runtime,
        container,
        ContainerSpec(cap_add=["NET_ADMIN"]),
        own=["net"],
        then=(
            f'echo "ifs=$(ls /sys/class/net | tr "\\n" " ")"; '
            f"ip link set dev {target} mtu {mtu}; echo rc=$?"
        ),
    ).result
    seen = reported(res, "ifs=").split()
    assert not set(seen) & set(host_ifs), f"host interfaces visible inside: {seen}"
    assert reported(res, "rc=") != "0", (
        f"configuring host interface {target} from inside succeeded ({res.describe()})"
    )


@pytest.mark.behaviour("NET-03")
@pytest.mark.requires("detach")
def test_loopback_works(runtime, container):
    res = gated(
        runtime,
        container,
        ContainerSpec(),
        own=["net"],
        then=(
            "mkdir -p /tmp/www && echo conform-lo-ok > /tmp/www/i && "
            "httpd -p 127.0.0.1:8080 -h /tmp/www && "
            f"timeout {CLIENT_TIMEOUT} wget -q -O - http://127.0.0.1:8080/i"
        ),
    ).result
    assert "conform-lo-ok" in res.stdout, f"no answer over lo inside ({res.describe()})"


@contextlib.contextmanager
def _host_listener() -> Iterator[socket.socket]:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(4)
    s.setblocking(False)
    try:
        yield s
    finally:
        s.close()


def _accepted(s: socket.socket) -> bool:
    try:
        conn, _ = s.accept()
    except BlockingIOError:
        return False
    conn.close()
    return True


@pytest.mark.behaviour("NET-04")
@pytest.mark.requires("detach")
def test_port_space_is_private(runtime, container):
    with _host_listener() as a, _host_listener() as b:
        pa, pb = a.getsockname()[1], b.getsockname()[1]
        get = f"timeout {CLIENT_TIMEOUT} wget -q -O -"
        res = gated(
            runtime,
            container,
            ContainerSpec(),
            own=["net"],
            then=(
                "mkdir -p /tmp/w && echo conform-own > /tmp/w/i; "
                f"httpd -p 127.0.0.1:{pa} -h /tmp/w; echo bind=$?; "
                f"{get} http://127.0.0.1:{pa}/i; "
                f"{get} http://127.0.0.1:{pb}/i; echo other=$?"
            ),
        ).result
        assert reported(res, "bind=") == "0", (
            f"port {pa}, bound on the host's loopback, could not be bound inside: {res.stderr}"
        )
        assert "conform-own" in res.stdout, f"the container's own server did not answer: {res}"
        assert reported(res, "other=") != "0", (
            f"a host loopback server (port {pb}) answered from inside"
        )
        assert not _accepted(a) and not _accepted(b), (
            "a host loopback server got a connection from the container"
        )


@pytest.mark.behaviour("NET-06")
def test_net_ns_differs_from_host(runtime, observe):
    own_namespace_seen_both_ways(observe(), "net")


def _bridge_view(runtime, c) -> dict[str, str]:
    """eth0's address, the routes and the host ifindex of its veth peer, from inside."""
    res = runtime.exec(
        c,
        sh(
            "echo \"addr=$(ip -4 -o addr show dev eth0 | awk '{print $4}')\"; "
            'echo "iflink=$(cat /sys/class/net/eth0/iflink)"; ip route | sed "s/^/route=/"'
        ),
    ).check(f"{runtime.name} exec (network view)")
    return {
        "addr": reported(res, "addr="),
        "iflink": reported(res, "iflink="),
        "routes": "\n".join(ln[6:] for ln in res.stdout.splitlines() if ln.startswith("route=")),
    }


def _host_if_by_index(index: str) -> str | None:
    for name in facts.host_interfaces():
        with contextlib.suppress(OSError):
            if open(f"/sys/class/net/{name}/ifindex").read().strip() == index:  # noqa: SIM115
                return name
    return None


@pytest.mark.behaviour("NET-05")
@pytest.mark.requires("network:bridge", "detach", "exec")
def test_bridge_containers_reach_each_other(runtime, container):
    bridge = runtime.bridge()
    subnet = ipaddress.ip_network(bridge.subnet)
    serve = "nc -ll -p 8000 -e echo conform-bridge-ok &"
    pair = [started(runtime, container, ContainerSpec(network="bridge"), prepare=serve)]
    pair.append(started(runtime, container, ContainerSpec(network="bridge"), prepare=serve))
    views = [_bridge_view(runtime, s.container) for s in pair]
    addrs = [ipaddress.ip_interface(v["addr"]) for v in views]
    assert all(a.ip in subnet for a in addrs) and addrs[0].ip != addrs[1].ip, (
        f"eth0 addresses {[str(a) for a in addrs]} are not two addresses of {subnet}"
    )
    assert not [v["routes"] for v in views if "default" in v["routes"]], (
        f"a bridge container has a default route: {[v['routes'] for v in views]}"
    )
    veths = [_host_if_by_index(v["iflink"]) for v in views]
    assert None not in veths and veths[0] != veths[1], f"host veth peers: {veths}"
    masters = [os.path.basename(os.readlink(f"/sys/class/net/{v}/master")) for v in veths]
    assert masters == [bridge.name] * 2, f"veths {veths} are enslaved to {masters}"
    for me, other in ((pair[0], addrs[1]), (pair[1], addrs[0])):
        res = runtime.exec(  # a few tries: the peer's server started in the background
            me.container,
            sh(f"for i in 1 2 3 4 5; do nc -w 3 {other.ip} 8000 && break; sleep 0.2; done"),
        )
        assert "conform-bridge-ok" in res.stdout, f"{other.ip}:8000 unreachable: {res.describe()}"
