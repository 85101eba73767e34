"""Cgroup namespace (CGNS-01): the container sees its cgroup as the root."""

from __future__ import annotations

import pytest


@pytest.mark.behaviour("CGNS-01")
@pytest.mark.requires("ns:cgroup")
def test_proc_self_cgroup_shows_root(runtime, inspect_inside):
    inside = inspect_inside()
    assert inside.cgroup, "the inspector read no /proc/self/cgroup lines inside"
    not_root = [ln for ln in inside.cgroup if ln.split(":", 2)[2] != "/"]
    assert not not_root, f"/proc/self/cgroup inside shows host paths: {not_root}"
