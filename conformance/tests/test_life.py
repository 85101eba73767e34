"""Lifecycle and engine behaviour (LIFE-01..05): exit codes, stop, logs, clean removal,
events."""

from __future__ import annotations

import contextlib
import time

import pytest

from conformance import facts
from conformance.adapters.base import ContainerSpec
from conformance.errors import RuntimeTimeout
from conformance.tests.support import READY, sh, started, token


@pytest.mark.behaviour("LIFE-01")
def test_exit_code_is_reported(runtime):
    res = runtime.run(ContainerSpec(argv=sh("exit 42")))
    assert res.exit_code == 42, f"`exit 42` reported as {res.describe()}"


@pytest.mark.behaviour("LIFE-01")
@pytest.mark.requires("detach")
def test_sigkill_is_reported_as_137(runtime, container):
    s = started(runtime, container, ContainerSpec())
    runtime.kill(s.container, "KILL")
    code = runtime.wait(s.container, timeout=30)
    assert code == 137, f"a container killed by SIGKILL reported exit {code}, want 137"


@pytest.mark.behaviour("LIFE-02")
@pytest.mark.requires("stop", "logs")
def test_stop_sends_term_then_kill(runtime, container):
    mark = token("term")
    c = container(
        ContainerSpec(
            argv=sh(f"trap 'echo {mark}' TERM; : > {READY}; while :; do sleep 0.05; done")
        )
    )
    pid = runtime.pid(c)
    facts.wait_for(
        lambda: facts.read_in_root(pid, READY) is not None,
        what="trap installed",
        failure=RuntimeTimeout,
    )
    t0 = time.monotonic()
    runtime.stop(c, timeout=1)
    took = time.monotonic() - t0
    code = runtime.wait(c, timeout=30)
    logs = runtime.logs(c)
    assert mark in logs.stdout, f"the init's TERM trap did not run: {logs.stdout!r}"
    assert took >= 0.9, f"stop -t 1 ended a TERM-ignoring container after {took:.2f}s"
    assert code == 137, f"after the stop timeout the exit code is {code}, want 137 (SIGKILL)"


@pytest.mark.behaviour("LIFE-03")
@pytest.mark.requires("logs", "detach")
def test_logs_return_stdout_and_stderr(runtime, container):
    out, err = token("out"), token("err")
    c = container(ContainerSpec(argv=sh(f"echo {out}; echo {err} >&2")))
    assert runtime.wait(c, timeout=30) == 0
    logs = runtime.logs(c)
    assert out in logs.stdout, f"stdout missing from logs: {logs.stdout!r}"
    assert err in logs.stderr, f"stderr missing from logs: {logs.stderr!r}"


@pytest.mark.behaviour("LIFE-04")
@pytest.mark.requires("detach")
def test_remove_leaves_nothing_behind(runtime, container):
    s = started(runtime, container, ContainerSpec(), prepare="sleep 1001 &")
    markers = [m for m in runtime.leak_markers(s.container) if len(m) >= 8]
    ns = facts.ns_ids(s.pid)
    cgroups = facts.CgroupView(s.pid).existing()
    container.remove(s.container)

    def leftovers() -> list[str]:
        left = [f"process {p}" for p in facts.pids_in_ns("pid", ns["pid"]) if facts.alive(p)]
        left += [f"cgroup {d}" for d in cgroups if d.exists()]
        left += [
            f"mount {ln.split()[4]}"
            for ln in facts.host_mountinfo()
            if any(m in ln for m in markers)
        ]
        held = {
            f"{k}:[{ino}]"
            for k, (_, ino) in ns.items()
            if k not in ("user", "cgroup") or ns[k] != facts.host_ns_ids()[k]
        }
        left += [
            f"nsfs mount {ln.split()[3]}"
            for ln in facts.host_mountinfo()
            if " nsfs " in ln and ln.split()[3] in held
        ]
        for k in ("net", "ipc", "uts", "mnt"):
            holders = facts.pids_in_ns(k, ns[k])
            left += [f"{k} namespace held by pid {p}" for p in holders]
        left += [
            f"interface {i}" for i in facts.host_interfaces() if any(m[:12] in i for m in markers)
        ]
        return left

    try:
        facts.wait_for(lambda: not leftovers(), timeout=5, what="removal to finish")
    except TimeoutError:
        pytest.fail(f"remove left behind: {leftovers()}")


LIFECYCLE = ("create", "start", "exec", "die", "commit", "destroy")


def _in_order(actions: list[str], wanted: tuple[str, ...]) -> list[str]:
    """The wanted actions not found as a subsequence of ``actions`` (in that order)."""
    rest = iter(actions)
    return [w for w in wanted if w not in rest]


@pytest.mark.behaviour("LIFE-05")
@pytest.mark.requires("detach", "exec", "commit", "events")
def test_events_record_the_lifecycle_in_order(runtime, container):
    since = time.time() - 1
    s = started(runtime, container, ContainerSpec())
    runtime.exec(s.container, ["true"]).check(f"{runtime.name} exec")
    runtime.kill(s.container, "KILL")
    runtime.wait(s.container, timeout=30)
    container.commit(s.container)
    container.remove(s.container)

    def actions() -> list[str]:
        evs = runtime.events(since, time.time())
        return [e.action for e in evs if e.container == s.container.id]

    with contextlib.suppress(TimeoutError):  # judged below, with the list
        facts.wait_for(lambda: "destroy" in actions(), timeout=5, what="the destroy event")
    seen = actions()
    assert not _in_order(seen, LIFECYCLE), (
        f"events of the container miss or misorder {_in_order(seen, LIFECYCLE)}: {seen}"
    )
