"""Syscall-trace evidence (TRACE-01..06): what the runtime did, in what order, as the probes
saw it from the runtime's first syscall (`conform run --probe`; unsupported without one).

Each test runs one operation through the adapter and checks the merged trace of the runtime
commands it made. A trace that lost records proves nothing: such a test fails, saying so.
"""

from __future__ import annotations

import os
import uuid

import pytest

from conformance import facts, layertar, traced
from conformance.adapters.base import ALL_NAMESPACES, ContainerSpec, IdMap
from conformance.layertar import directory, file
from conformance.tests.support import ran, started, token
from probes.procinfo import read_ns

#: A file of the base image the TRACE-06 container deletes.
LOWER_FILE = "etc/group"


def _complete(t: traced.Traced) -> traced.Traced:
    assert t.trace.lost == 0, (
        f"the trace of {t.describe()} lost {t.trace.lost} records: {t.trace.notes}"
    )
    return t


def _traced_run(runtime, syscalls, spec: ContainerSpec) -> traced.Traced:
    mark = syscalls.mark()
    ran(runtime, spec, "traced")
    return _complete(syscalls.since(mark))


def _why(problems: list[str], t: traced.Traced) -> str:
    return "; ".join(problems) + f" -- in the trace of {t.describe()}"


@pytest.mark.behaviour("TRACE-01")
def test_requested_namespaces_and_no_others(runtime, syscalls):
    spec = ContainerSpec(argv=["true"])
    t = _traced_run(runtime, syscalls, spec)
    requested = runtime.created_namespaces(spec)
    problems = traced.check_namespaces(t, requested, set(ALL_NAMESPACES) - requested)
    assert not problems, _why(problems, t)


@pytest.mark.behaviour("TRACE-01")
@pytest.mark.requires("network:host")
def test_host_network_creates_no_network_namespace(runtime, syscalls):
    spec = ContainerSpec(argv=["true"], network="host")
    t = _traced_run(runtime, syscalls, spec)
    requested = runtime.created_namespaces(spec)
    assert "net" not in requested
    problems = traced.check_namespaces(t, requested, set(ALL_NAMESPACES) - requested)
    assert not problems, _why(problems, t)


@pytest.mark.behaviour("TRACE-01")
@pytest.mark.requires("userns-map")
def test_id_maps_create_a_user_namespace(runtime, syscalls):
    maps = [IdMap(0, 200000, 65536)]
    spec = ContainerSpec(argv=["true"], uid_map=maps, gid_map=maps)
    t = _traced_run(runtime, syscalls, spec)
    requested = runtime.created_namespaces(spec)
    assert "user" in requested
    problems = traced.check_namespaces(t, requested, set(ALL_NAMESPACES) - requested)
    assert not problems, _why(problems, t)


@pytest.mark.behaviour("TRACE-02")
@pytest.mark.requires("detach", "exec")
def test_exec_setns_into_each_namespace(runtime, container, syscalls):
    s = started(runtime, container, ContainerSpec())
    host, inside = read_ns(os.getpid()), read_ns(s.pid)
    target = {ns: ino for ns, ino in inside.items() if ns in ALL_NAMESPACES and host.get(ns) != ino}
    assert {"mnt", "pid", "uts", "ipc", "net"} <= target.keys(), (
        f"the container's init {s.pid} does not have its own namespaces: {sorted(target)}"
    )
    argv = ["sleep", "0.3"]  # long enough for /proc/<pid>/ns to be read at its execve
    mark = syscalls.mark()
    runtime.exec(s.container, argv).check(f"{runtime.name} exec (traced)")
    t = _complete(syscalls.since(mark))
    problems = traced.check_exec_joins(t, target, argv)
    assert not problems, _why(problems, t)


@pytest.mark.behaviour("TRACE-03")
def test_root_pivoted_before_the_program_runs(runtime, syscalls):
    argv = ["true"]
    t = _traced_run(runtime, syscalls, ContainerSpec(argv=argv))
    problems = traced.check_root_pivot(t, argv)
    assert not problems, _why(problems, t)


@pytest.mark.behaviour("TRACE-04")
def test_hostname_set_only_after_newuts(runtime, syscalls):
    name = token("c")
    t = _traced_run(runtime, syscalls, ContainerSpec(argv=["true"], hostname=name))
    problems = traced.check_hostname_after_uts(t, name, read_ns(os.getpid())["uts"])
    assert not problems, _why(problems, t)


@pytest.mark.behaviour("TRACE-05")
@pytest.mark.requires("cgroup-limits")
def test_cgroup_joined_before_the_program_runs(runtime, syscalls):
    argv = ["true"]
    t = _traced_run(runtime, syscalls, ContainerSpec(argv=argv, pids_limit=64))
    problems = traced.check_cgroup_before_exec(t, argv)
    assert not problems, _why(problems, t)


def _whiteout_image(workspace) -> tuple[list[object], str]:
    """A base layer (rootfs + conform-x) and a top layer holding `.wh.conform-x`."""
    d = workspace.path(token("conform-trace-layers"))
    bottom = layertar.write(d / "bottom.tar", [file("conform-x", "x")], base=workspace.base_tree())
    top = layertar.write(d / "top.tar", [file(".wh.conform-x"), directory("conform-d")])
    ref = f"localhost/conform-trace:{uuid.uuid4().hex[:12]}"
    return [layertar.oci_layout(d / "image.tar", [bottom, top], ref)], ref


@pytest.mark.behaviour("TRACE-06")
@pytest.mark.requires("load", "detach", "exec", "upperdir")
def test_whiteouts_are_mknods_and_deletes_unlinks(runtime, container, workspace, syscalls):
    (layout,), _ = _whiteout_image(workspace)
    mark = syscalls.mark()
    image = container.load(layout)
    t = _complete(syscalls.since(mark))
    problems = traced.check_whiteout_mknods(t, ["conform-x"])
    assert not problems, _why(problems, t)

    s = started(runtime, container, ContainerSpec(image=image))
    mark = syscalls.mark()
    runtime.exec(s.container, ["rm", f"/{LOWER_FILE}"]).check(f"{runtime.name} exec rm")
    t = _complete(syscalls.since(mark))
    problems = traced.check_contained_unlink(t, f"/{LOWER_FILE}")
    assert not problems, _why(problems, t)
    upper = runtime.upperdir(s.container)
    assert facts.is_whiteout(upper / LOWER_FILE), (
        f"after the traced rm the upper dir holds no whiteout at {upper / LOWER_FILE}"
    )
