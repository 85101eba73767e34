"""PID namespace (PID-01..08): the container sees only its own process tree.

PID-06 and PID-07 kill processes by pid; they first check from the host that the container
has its own pid namespace (a FAIL otherwise), so a runtime sharing the host's cannot turn
them into signals to the host's processes."""

from __future__ import annotations

import os
import signal

import pytest

from conformance import facts
from conformance.adapters.base import ContainerSpec
from conformance.errors import RuntimeTimeout
from conformance.tests.support import (
    gated,
    host_process,
    own_namespace_seen_both_ways,
    ran,
    reported,
    require_own_namespace,
    sh,
    started,
    token,
    value,
)


@pytest.mark.behaviour("PID-01")
def test_init_is_pid_1(runtime, inspect_inside):
    inside = inspect_inside()
    assert inside.pid == 1, f"the container's first process is pid {inside.pid}, not 1"


@pytest.mark.behaviour("PID-02")
def test_init_parent_is_hidden(runtime, inspect_inside):
    inside = inspect_inside()
    assert inside.ppid == 0, f"init sees a parent: PPid {inside.ppid} (want 0)"


@pytest.mark.behaviour("PID-03")
def test_proc_lists_only_container_processes(runtime):
    marker = token()
    with host_process(marker) as host:
        digits = host.args[1]
        res = ran(
            runtime,
            ContainerSpec(
                argv=sh(
                    'echo "pids=$(ls /proc | grep -E "^[0-9]+$" | tr "\\n" " ")"; '
                    # newlines too: a script's argv (sh -c "a\nb") would end the line
                    'echo "cmdlines=$(cat /proc/[0-9]*/cmdline 2>/dev/null | tr "\\0\\n" "  ")"'
                )
            ),
        )
    pids = [int(p) for p in value("pids=", res.stdout).split()]
    assert digits not in value("cmdlines=", res.stdout), (
        f"the host process `sleep {digits}` is visible in /proc inside"
    )
    assert 1 in pids, f"/proc inside has no pid 1: {pids}"
    assert len(pids) <= 8, f"/proc inside lists {len(pids)} processes (host ones?): {pids}"


@pytest.mark.behaviour("PID-04")
def test_host_pids_are_unreachable(runtime):
    with host_process(token()) as host:
        res = runtime.run(ContainerSpec(argv=sh(f"kill -0 {host.pid}; echo rc=$?")))
    assert reported(res, "rc=") != "0", (
        f"kill -0 of host pid {host.pid} succeeded inside ({res.describe()})"
    )
    assert "No such process" in res.stderr, f"want ESRCH for host pid {host.pid}: {res.stderr}"


@pytest.mark.behaviour("PID-05")
def test_pid_ns_differs_from_host(runtime, observe):
    own_namespace_seen_both_ways(observe(), "pid")


@pytest.mark.behaviour("PID-06")
@pytest.mark.requires("detach")
def test_killing_init_ends_every_process(runtime, container):
    s = started(runtime, container, ContainerSpec(), prepare="sleep 1001 & sleep 1002 &")
    ns = require_own_namespace(runtime, s, "pid")
    facts.wait_for(
        lambda: len([p for p in facts.pids_in_ns("pid", ns) if facts.alive(p)]) >= 3,
        what="the container's three processes",
        failure=RuntimeTimeout,
    )
    os.kill(s.pid, signal.SIGKILL)
    try:
        facts.wait_for(
            lambda: not [p for p in facts.pids_in_ns("pid", ns) if facts.alive(p)],
            timeout=10,
            what="every process of the container to end",
        )
    except TimeoutError:
        left = [p for p in facts.pids_in_ns("pid", ns) if facts.alive(p)]
        pytest.fail(f"after SIGKILL of init {s.pid}, processes {left} still run")


@pytest.mark.behaviour("PID-07")
@pytest.mark.requires("detach")
def test_init_ignores_sigkill_from_inside(runtime, container):
    g = gated(
        runtime,
        container,
        ContainerSpec(),
        own=["pid"],
        then='echo started=1; sh -c "kill -9 1"; echo init-survived',
    )
    assert g.finished and facts.alive(g.pid), (
        f"init died from a SIGKILL sent inside its namespace ({g.result.describe()})"
    )
    reported(g.result, "started=")
    assert "init-survived" in g.result.stdout, (
        f"the script did not go on after `kill -9 1` inside ({g.result.describe()})"
    )


@pytest.mark.behaviour("PID-08")
def test_orphans_reparent_to_container_init(runtime):
    res = ran(
        runtime,
        ContainerSpec(
            argv=sh(
                "p=$(sh -c 'sleep 30 >/dev/null 2>&1 & echo $!'); "
                'echo "ppid=$(sed -n "s/^PPid:[[:space:]]*//p" /proc/$p/status)"; kill $p'
            )
        ),
    )
    assert value("ppid=", res.stdout) == "1", (
        f"an orphan's parent is {value('ppid=', res.stdout)!r}, not the container's pid 1"
    )
