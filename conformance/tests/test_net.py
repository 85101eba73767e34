"""Network namespace (NET-01..04, NET-06): a private network stack."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import pytest

from conformance import facts
from conformance.adapters.base import ContainerSpec
from conformance.tests.support import ran, reported, sh


@pytest.mark.behaviour("NET-01")
def test_network_none_has_only_lo(runtime, inspect_inside):
    inside = inspect_inside(network="none")
    assert inside.interfaces == ["lo"], f"interfaces inside: {inside.interfaces}"


@pytest.mark.behaviour("NET-02")
def test_host_interfaces_invisible_and_unconfigurable(runtime):
    host_ifs = [i for i in facts.host_interfaces() if i != "lo"]
    if not host_ifs:
        pytest.skip("unsupported: the host has no interface but lo")
    target = host_ifs[0]
    mtu = open(f"/sys/class/net/{target}/mtu").read().strip()  # noqa: SIM115
    # Setting the current MTU again changes nothing even if the runtime let it through.
    res = runtime.run(
        ContainerSpec(
            cap_add=["NET_ADMIN"],
            argv=sh(
                f'echo "ifs=$(ls /sys/class/net | tr "\\n" " ")"; '
                f"ip link set dev {target} mtu {mtu}; echo rc=$?"
            ),
        )
    )
    seen = reported(res, "ifs=").split()
    assert not set(seen) & set(host_ifs), f"host interfaces visible inside: {seen}"
    assert reported(res, "rc=") != "0", (
        f"configuring host interface {target} from inside succeeded ({res.describe()})"
    )


@pytest.mark.behaviour("NET-03")
def test_loopback_works(runtime):
    res = ran(
        runtime,
        ContainerSpec(
            argv=sh(
                "mkdir -p /tmp/www && echo conform-lo-ok > /tmp/www/i && "
                "httpd -p 127.0.0.1:8080 -h /tmp/www && wget -q -O - http://127.0.0.1:8080/i"
            )
        ),
    )
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
def test_port_space_is_private(runtime):
    with _host_listener() as a, _host_listener() as b:
        pa, pb = a.getsockname()[1], b.getsockname()[1]
        res = runtime.run(
            ContainerSpec(
                argv=sh(
                    "mkdir -p /tmp/w && echo conform-own > /tmp/w/i; "
                    f"httpd -p 127.0.0.1:{pa} -h /tmp/w; echo bind=$?; "
                    f"wget -q -O - http://127.0.0.1:{pa}/i; "
                    f"wget -q -O - http://127.0.0.1:{pb}/i; echo other=$?"
                )
            )
        )
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
    o = observe()
    assert o.inside.ns["net"] != facts.host_ns_ids()["net"], (
        "the container shares the host's network namespace"
    )
    assert facts.ns_id(o.pid, "net") == o.inside.ns["net"]
