"""exec / setns (EXEC-01..03): an exec'd process lives in the container's world."""

from __future__ import annotations

import re

import pytest

from conformance import facts
from conformance.adapters.base import ContainerSpec
from conformance.inspector import inspector_argv, parse
from conformance.tests.support import sh, started, token

KINDS = ("pid", "mnt", "uts", "ipc", "net", "user", "cgroup")


@pytest.mark.behaviour("EXEC-01")
@pytest.mark.requires("exec", "detach")
def test_exec_joins_every_namespace(runtime, container):
    s = started(runtime, container, ContainerSpec())
    res = runtime.exec(s.container, inspector_argv()).check(f"{runtime.name} exec")
    inside = parse(res.stdout)
    differ = {
        k: (inside.ns_links.get(k) or "unreadable", f"{k}:[{facts.ns_id(s.pid, k)[1]}]")
        for k in KINDS
        if inside.ns.get(k) != facts.ns_id(s.pid, k)
    }
    assert not differ, f"exec'd process is not in the init's namespaces (exec'd, init): {differ}"


@pytest.mark.behaviour("EXEC-02")
@pytest.mark.requires("exec", "detach")
def test_exec_sees_hostname_rootfs_env_workdir(runtime, container):
    host, mark, val = token("c"), token("file"), token("env")
    s = started(
        runtime,
        container,
        ContainerSpec(hostname=host, env={"CONFORM_VAR": val}, workdir="/home"),
        prepare=f"echo {mark} > /tmp/conform-marker",
    )
    res = runtime.exec(s.container, inspector_argv(before="cat /tmp/conform-marker"))
    res.check(f"{runtime.name} exec")
    inside = parse(res.stdout)
    assert mark in res.stdout, "exec does not see the file the init wrote (another rootfs?)"
    assert inside.hostname == host, f"exec sees hostname {inside.hostname!r}, want {host!r}"
    assert inside.env.get("CONFORM_VAR") == val, f"exec's env lacks CONFORM_VAR: {inside.env}"
    assert inside.cwd == "/home", f"exec runs in {inside.cwd!r}, want the workdir /home"


#: What a clear error names: the container's state, or that it is gone.
STOPPED = re.compile(
    r"running|stopped|exited|state|no such|does not exist|not found", re.IGNORECASE
)


@pytest.mark.behaviour("EXEC-03")
@pytest.mark.requires("exec", "detach")
def test_exec_into_stopped_container_fails_clearly(runtime, container):
    c = container(ContainerSpec(argv=sh("exit 0")))
    runtime.wait(c, timeout=30)
    res = runtime.exec(c, sh("echo ran-in-stopped"))
    assert res.exit_code != 0 and "ran-in-stopped" not in res.stdout, (
        f"exec into a stopped container succeeded: {res.describe()}"
    )
    assert STOPPED.search(res.stderr), f"exec's error does not say why: {res.stderr.strip()!r}"
