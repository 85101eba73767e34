"""Cgroups (CG-01..11): own cgroup, and limits that are ENFORCED, not only written (the blkio
weight, a MAY, is read back)."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from conformance import facts
from conformance.adapters.base import ContainerSpec
from conformance.errors import Unsupported
from conformance.tests.support import sh, started

MiB = 1024 * 1024


@pytest.mark.behaviour("CG-01")
@pytest.mark.requires("detach")
def test_processes_are_in_their_own_cgroup(runtime, container):
    s = started(runtime, container, ContainerSpec(), prepare="sleep 1001 &")
    mine, theirs = facts.cgroup_paths("self"), facts.cgroup_paths(s.pid)
    hier = facts.hierarchies()
    keys = [c for c in ("memory", "pids", "cpu", "cpuset", "devices", "freezer") if c in hier]
    if "" in hier and hier[""].mount_point and not keys:
        keys = [""]
    assert keys, "no cgroup hierarchy serves a controller on this host"
    shared = [k or "unified" for k in keys if theirs.get(k) in (mine.get(k), "/", None)]
    assert not shared, (
        f"the container's init shares the harness's or the root cgroup in {shared}: {theirs}"
    )
    view = facts.CgroupView(s.pid)
    members = set(view.procs(keys[0]))
    in_ns = set(facts.pids_in_ns("pid", facts.ns_id(s.pid, "pid")))
    assert s.pid in members and members <= in_ns, (
        f"cgroup {view.dir(keys[0])} holds processes outside the container: {members - in_ns}"
    )


def _no_swap_beyond(limit: int) -> int | None:
    """Over a memory limit the kernel reclaims to swap before it OOM-kills: with swap on the
    host, limit memory+swap to the memory limit itself; without swap there is none to set."""
    with open("/proc/meminfo") as f:
        total = next((ln.split()[1] for ln in f if ln.startswith("SwapTotal:")), "0")
    return None if total == "0" else limit


@pytest.mark.behaviour("CG-02")
@pytest.mark.requires("cgroup:memory", "cgroup-limits")
def test_memory_limit_kills_with_sigkill(runtime):
    res = runtime.run(
        ContainerSpec(
            memory=16 * MiB,
            memory_swap=_no_swap_beyond(16 * MiB),
            argv=sh("exec dd if=/dev/zero of=/dev/null bs=64M count=1"),
        )
    )
    assert res.exit_code == 137, (
        f"allocating 64 MiB under a 16 MiB limit did not end in SIGKILL (137): {res.describe()}"
    )


@pytest.mark.behaviour("CG-02")
@pytest.mark.requires("cgroup:memory", "cgroup-limits", "detach")
def test_memory_oom_is_recorded(runtime, container):
    s = started(
        runtime,
        container,
        ContainerSpec(memory=16 * MiB, memory_swap=_no_swap_beyond(16 * MiB)),
        prepare=("dd if=/dev/zero of=/dev/null bs=64M count=1; echo $? > /tmp/dd-rc"),
    )
    rc = (facts.read_in_root(s.pid, "/tmp/dd-rc") or "").strip()
    events = facts.CgroupView(s.pid).memory_events()
    assert rc == "137", f"the over-limit allocation exited {rc!r}, want 137 (SIGKILL)"
    assert events.get("oom_kill", 0) >= 1, f"no oom_kill recorded in the cgroup: {events}"
    assert events.get("max", 0) >= 1, f"the limit was never hit (failcnt/max): {events}"


@pytest.mark.behaviour("CG-03")
@pytest.mark.requires("cgroup:memory", "cgroup-limits", "detach")
def test_memory_limit_read_back(runtime, container):
    want = 48 * MiB
    s = started(runtime, container, ContainerSpec(memory=want))
    got = facts.CgroupView(s.pid).memory_limit()
    assert got == want, f"memory limit of the container's cgroup is {got}, want {want}"


@pytest.mark.behaviour("CG-04")
@pytest.mark.requires("cgroup:pids", "cgroup-limits", "detach")
def test_pids_limit_fork_fails_with_eagain(runtime, container):
    limit = 6
    s = started(
        runtime,
        container,
        ContainerSpec(pids_limit=limit),
        prepare=(
            # in a subshell: busybox sh exits when a fork fails, and the init must live on
            "(i=0; while [ $i -lt 12 ]; do sleep 1000 & i=$((i+1)); done) 2> /tmp/fork-err"
        ),
    )
    view = facts.CgroupView(s.pid)
    err = facts.read_in_root(s.pid, "/tmp/fork-err") or ""
    assert view.pids_max() == limit, f"pids.max is {view.pids_max()}, want {limit}"
    assert "Resource temporarily unavailable" in err, (
        f"fork beyond pids.max did not fail with EAGAIN: {err.strip()!r}"
    )
    assert len(view.procs("pids")) <= limit, f"{len(view.procs('pids'))} tasks > {limit}"
    assert view.pids_events().get("max", 0) >= 1, f"pids.events: {view.pids_events()}"


@pytest.mark.behaviour("CG-05")
@pytest.mark.requires("cgroup:cpu", "cgroup-limits", "detach")
def test_cpu_quota_is_enforced(runtime, container):
    quota, period = 10_000, 50_000  # 0.2 CPU
    c = container(ContainerSpec(cpu_quota=quota, cpu_period=period, argv=sh("while :; do :; done")))
    view = facts.CgroupView(runtime.pid(c))
    if view.version("cpu") == 1 and view.version("cpuacct") is None:
        raise Unsupported("cgroup:cpuacct (v1 cpu usage)")
    assert view.cpu_max() == (quota, period), f"cpu quota/period read back {view.cpu_max()}"
    time.sleep(0.1)  # let the loop start
    throttled0, u0, t0 = (
        view.cpu_stat().get("nr_throttled", 0),
        view.cpu_usage_ns(),
        time.monotonic(),
    )
    time.sleep(0.75)
    u1, t1 = view.cpu_usage_ns(), time.monotonic()
    share = (u1 - u0) / 1e9 / (t1 - t0)
    assert share <= quota / period * 1.3 + 0.02, (
        f"a busy loop used {share:.2f} CPU under a {quota / period:.2f} CPU quota"
    )
    assert view.cpu_stat().get("nr_throttled", 0) > throttled0, (
        f"no throttling recorded: {view.cpu_stat()}"
    )


@pytest.mark.behaviour("CG-06")
@pytest.mark.requires("cgroup:cpuset", "cgroup-limits")
def test_cpuset_sets_affinity(runtime, observe):
    if len(os.sched_getaffinity(0)) < 2:
        raise Unsupported("one CPU only: pinning to it would change nothing")
    cpu = max(os.sched_getaffinity(0))
    o = observe(cpuset_cpus=str(cpu))
    inside = facts.parse_cpu_list(o.inside.status["Cpus_allowed_list"])
    assert inside == {cpu}, f"Cpus_allowed_list inside is {inside}, want {{{cpu}}}"
    assert os.sched_getaffinity(o.pid) == {cpu}, (
        f"sched_getaffinity of the init is {os.sched_getaffinity(o.pid)}, want {{{cpu}}}"
    )


@pytest.mark.behaviour("CG-07")
@pytest.mark.requires("pause")
def test_pause_freezes_and_unpause_thaws(runtime, container):
    c = container(
        ContainerSpec(cpu_quota=20_000, cpu_period=50_000, argv=sh("while :; do :; done"))
    )
    view = facts.CgroupView(runtime.pid(c))
    if view.version("cpu") == 1 and view.version("cpuacct") is None:
        raise Unsupported("cgroup:cpuacct (v1 cpu usage)")

    def used(window: float = 0.3) -> int:
        u0 = view.cpu_usage_ns()
        time.sleep(window)
        return view.cpu_usage_ns() - u0

    runtime.pause(c)
    assert view.frozen(), "after pause the freezer does not report FROZEN"
    frozen_use = used()
    runtime.unpause(c)
    assert not view.frozen(), "after unpause the freezer still reports FROZEN"
    thawed_use = used()
    assert frozen_use < 5_000_000, f"a paused busy loop used {frozen_use / 1e6:.1f} ms of CPU"
    assert thawed_use > 10_000_000, f"after unpause the loop used only {thawed_use / 1e6:.1f} ms"


@pytest.mark.behaviour("CG-08")
@pytest.mark.requires("detach")
def test_cgroup_removed_after_delete(runtime, container):
    s = started(runtime, container, ContainerSpec())
    dirs = facts.CgroupView(s.pid).existing()
    assert dirs, "the container has no cgroup directory"
    container.remove(s.container)
    try:
        facts.wait_for(
            lambda: not [d for d in dirs if d.exists()],
            timeout=5,
            what="the container's cgroups to go",
        )
    except TimeoutError:
        pytest.fail(f"cgroups left after remove: {[str(d) for d in dirs if d.exists()]}")


@pytest.mark.behaviour("CG-09")
@pytest.mark.requires("exec", "detach")
def test_exec_joins_the_container_cgroup(runtime, container):
    s = started(runtime, container, ContainerSpec())
    res = runtime.exec(
        s.container, sh("sed 's/^/self=/' /proc/self/cgroup; sed 's/^/init=/' /proc/1/cgroup")
    )
    res.check(f"{runtime.name} exec")
    own = [ln[5:] for ln in res.stdout.splitlines() if ln.startswith("self=")]
    init = [ln[5:] for ln in res.stdout.splitlines() if ln.startswith("init=")]
    assert own and own == init, f"exec'd process cgroups {own} differ from init's {init}"


@pytest.mark.behaviour("CG-10")
@pytest.mark.requires("cgroup:cpuset", "cgroup-limits")
def test_invalid_limits_rejected_before_start(runtime):
    res = runtime.run(ContainerSpec(cpuset_cpus="4095", argv=sh("echo ran=1")))
    assert res.exit_code != 0 and "ran=1" not in res.stdout, (
        "a cpuset of a CPU the host does not have was accepted and the container ran"
    )
    assert re.search(r"cpu|cpuset", res.stderr, re.IGNORECASE), (
        f"the error does not name the cpuset limit: {res.stderr.strip()!r}"
    )


def _host_has_weight_file() -> bool:
    """A blkio/io weight file exists in some cgroup of the hierarchy that would serve it (on v2
    a child shows io.weight only once io is enabled above it, so the root's io.cost.qos,
    blk-iocost's own file, says so too)."""
    hier = facts.hierarchies()
    if "blkio" in hier and hier["blkio"].version == 1:
        top, names = Path(hier["blkio"].mount_point), ("blkio.weight", "blkio.bfq.weight")
    elif "io" in hier and "" in hier:
        top, names = Path(hier[""].mount_point), ("io.weight", "io.bfq.weight")
        if (top / "io.cost.qos").exists():
            return True  # blk-iocost is built in: every cgroup with io enabled has io.weight
    else:
        return False
    dirs = [top, *(d for d in top.iterdir() if d.is_dir())]
    return any((d / n).exists() for d in dirs for n in names)


@pytest.mark.behaviour("CG-11")
@pytest.mark.requires("cgroup:blkio", "cgroup-limits", "detach")
def test_blkio_weight_read_back(runtime, container):
    if not _host_has_weight_file():
        raise Unsupported(
            "no blkio.weight/blkio.bfq.weight (v1) or io.weight/io.bfq.weight "
            "(v2) file on this host (no weight-based I/O scheduler)"
        )
    want = 300
    s = started(runtime, container, ContainerSpec(blkio_weight=want))
    view = facts.CgroupView(s.pid)
    got = view.blkio_weight()
    # on v2 a runtime writes io.bfq.weight as given, or io.weight converted from the blkio
    # range [10, 1000] to [1, 10000] (runc's ConvertBlkIOToIOWeightValue)
    accepted = {want}
    if view.version("blkio") is None and view.version("io") == 2:
        accepted.add(1 + (want - 10) * 9999 // 990)
    assert got in accepted, f"blkio weight of the container's cgroup is {got}, want {accepted}"
