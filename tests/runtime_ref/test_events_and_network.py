"""rref events, and bridge networking between two containers on the project's own bridge."""

from __future__ import annotations

import json
import os
import random
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest
from conftest import Rref


def test_events_record_the_lifecycle_in_order(fresh_rref: Rref) -> None:
    r = fresh_rref
    since = str(time.time() - 1)
    cid = r.run_d("busybox", "sleep", "60")
    r("exec", cid, "true")
    r("pause", cid)
    r("unpause", cid)
    r("stop", "-t", "1", cid)
    r("rm", cid)
    until = str(time.time() + 1)
    lines = r.out("events", "--since", since, "--until", until, "--format", "json").splitlines()
    evs = [json.loads(x) for x in lines]
    assert all(e["id"] == cid for e in evs)
    actions = [e["Action"] for e in evs]
    assert actions == [
        "create",
        "start",
        "exec_start: true",
        "pause",
        "unpause",
        "kill",
        "kill",
        "die",
        "stop",
        "destroy",
    ]
    die = evs[actions.index("die")]
    assert die["Actor"]["Attributes"]["exitCode"] == "137"
    only = r.out(
        "events",
        "--since",
        since,
        "--until",
        until,
        "--filter",
        "event=die",
        "--format",
        "{{.Action}} {{.Actor.Attributes.exitCode}}",
    )
    assert only.strip() == "die 137"
    assert [e["timeNano"] for e in evs] == sorted(e["timeNano"] for e in evs)


def test_oom_event(fresh_rref: Rref) -> None:
    since = str(time.time() - 1)
    fresh_rref(
        "run",
        "-m",
        "16m",
        "busybox",
        "sh",
        "-c",
        "x=$(head -c 100000000 /dev/zero | tr '\\0' a)",
        check=False,
    )
    out = fresh_rref.out(
        "events", "--since", since, "--until", str(time.time() + 1), "--format", "{{.Action}}"
    )
    assert out.split() == ["create", "start", "oom", "die"]


@pytest.fixture
def bridge_env(fresh_rref: Rref) -> Iterator[dict[str, str]]:
    """A bridge of this test's own, on a subnet of the project's own range."""
    name = f"rref-t{uuid.uuid4().hex[:6]}"
    subnet = f"172.31.{random.randrange(0, 239)}.0/24"
    env = {"RREF_BRIDGE": name, "RREF_BRIDGE_SUBNET": subnet}
    os.environ.update(env)
    try:
        yield env
    finally:
        for k in env:
            os.environ.pop(k, None)
        fresh_rref.cleanup()
        from runtime_ref.network import remove_bridge

        remove_bridge(name, force=True)
        links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
        assert name not in links


def test_bridge_containers_reach_each_other(fresh_rref: Rref, bridge_env: dict[str, str]) -> None:
    r = fresh_rref
    a = r.run_d("--network", "bridge", "busybox", "sh", "-c", "nc -ll -p 8000 -e echo from-a")
    b = r.run_d("--network", "bridge", "busybox", "sleep", "60")
    ip_a = r.inspect(a, "{{.NetworkSettings.IPAddress}}")
    ip_b = r.inspect(b, "{{.NetworkSettings.IPAddress}}")
    assert ip_a != ip_b and ip_a.startswith(bridge_env["RREF_BRIDGE_SUBNET"].rsplit(".", 2)[0])
    out = r.out(
        "exec", b, "sh", "-c", f"nc -w 3 {ip_a} 8000 </dev/null; ip route; ls /sys/class/net"
    )
    assert "from-a" in out
    assert "default" not in out  # no route towards any outside address
    assert sorted(out.split("\n")[-3:-1]) == ["eth0", "lo"]
    host_veth = "rref" + a[:8]
    assert host_veth in subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    r("rm", "-f", a)
    assert (
        host_veth not in subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    )


def test_publish_on_loopback(fresh_rref: Rref, bridge_env: dict[str, str]) -> None:
    import socket

    r = fresh_rref
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cid = r.run_d(
        "--network",
        "bridge",
        "-p",
        f"127.0.0.1:{port}:8000",
        "busybox",
        "sh",
        "-c",
        "nc -ll -p 8000 -e echo published",
    )
    assert json.loads(r.inspect(cid, "{{json .NetworkSettings.Ports}}")) == {
        "8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]
    }
    deadline = time.time() + 5
    data = b""
    while time.time() < deadline and b"published" not in data:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as c:
            data = c.recv(100)
    assert b"published" in data
    p = r(
        "run",
        "--rm",
        "--network",
        "bridge",
        "-p",
        f"127.0.0.1:{port}:80",
        "busybox",
        "true",
        check=False,
    )
    assert p.returncode == 125 and "port is already allocated" in p.stderr


def test_publish_refuses_non_loopback(fresh_rref: Rref) -> None:
    p = fresh_rref(
        "run",
        "--rm",
        "--network",
        "bridge",
        "-p",
        "0.0.0.0:8080:80",
        "busybox",
        "true",
        check=False,
    )
    assert p.returncode == 125 and "loopback" in p.stderr
