"""UTS namespace (UTS-01..04): the container has its own hostname.

UTS-02 and UTS-03 rename a container: against a runtime that shares the host's uts
namespace that would rename the HOST, so the container is gated (`support.gated`) and the
rename happens only after the host saw that its uts namespace is its own."""

from __future__ import annotations

import pytest

from conformance import facts
from conformance.adapters.base import ContainerSpec
from conformance.tests.support import gated, started, token


@pytest.mark.behaviour("UTS-01")
def test_hostname_is_the_configured_one(runtime, inspect_inside):
    name = token("c")
    inside = inspect_inside(hostname=name)
    assert inside.hostname == name, f"hostname inside is {inside.hostname!r}, want {name!r}"


@pytest.mark.behaviour("UTS-01")
@pytest.mark.requires("engine", "detach")
def test_default_hostname_is_short_id(runtime, container):
    s = started(runtime, container, ContainerSpec())
    got = facts.uts_hostname(s.pid)
    assert got == s.container.id[:12], (
        f"default hostname is {got!r}, want the short container id {s.container.id[:12]!r}"
    )


@pytest.mark.behaviour("UTS-02")
@pytest.mark.requires("detach")
def test_hostname_change_stays_inside(runtime, container):
    host_before = facts.host_hostname()
    new = token("c")
    g = gated(
        runtime,
        container,
        ContainerSpec(cap_add=["SYS_ADMIN"]),
        own=["uts"],
        then=f"hostname {new} && hostname",
    )
    assert facts.host_hostname() == host_before, "changing the hostname inside changed the host's"
    assert g.result.stdout.strip() == new, f"hostname inside did not change: {g.result.describe()}"
    assert facts.uts_hostname(g.pid) == new, "the host does not see the container's new name"


@pytest.mark.behaviour("UTS-03")
@pytest.mark.requires("detach")
def test_two_containers_have_independent_hostnames(runtime, container):
    a, b, b2 = token("a"), token("b"), token("b2")
    sa = started(runtime, container, ContainerSpec(hostname=a))
    sb = gated(
        runtime,
        container,
        ContainerSpec(hostname=b, cap_add=["SYS_ADMIN"]),
        own=["uts"],
        then=f"hostname {b2}",
    )
    assert facts.uts_hostname(sb.pid) == b2, (
        f"the second container could not rename itself: {sb.result.describe()}"
    )
    assert facts.uts_hostname(sa.pid) == a, "renaming one container renamed the other"
    assert facts.ns_id(sa.pid, "uts") != facts.ns_id(sb.pid, "uts")


@pytest.mark.behaviour("UTS-04")
@pytest.mark.requires("engine")
def test_etc_hostname_matches(runtime, inspect_inside):
    name = token("c")
    inside = inspect_inside(hostname=name)
    assert inside.etc_hostname is not None, "/etc/hostname does not exist inside"
    assert inside.hostname == name, f"hostname inside is {inside.hostname!r}, want {name!r}"
    held = inside.etc_hostname.removesuffix(b"\n")
    assert held == name.encode(), f"/etc/hostname holds {inside.etc_hostname!r}, want {name!r}"


@pytest.mark.behaviour("UTS-05")
@pytest.mark.requires("engine")
def test_etc_hostname_ends_with_newline(runtime, inspect_inside):
    inside = inspect_inside(hostname=token("c"))
    assert inside.etc_hostname is not None, "/etc/hostname does not exist inside"
    assert inside.etc_hostname.endswith(b"\n") and inside.etc_hostname.count(b"\n") == 1, (
        f"/etc/hostname holds {inside.etc_hostname!r}: hostname(5): one line and a newline"
    )
