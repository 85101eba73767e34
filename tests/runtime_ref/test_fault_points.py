"""SIGKILL rref at named steps (RREF_FAULT=<step>): after each, `ps -a` tells the truth and
`rm -f` plus `system prune -a -f` reclaim everything the dead command made.

`runtime_ref.faults.point` makes the process SIGKILL itself at the step, so the
moment is exact; the kill is the kernel's, nothing is mocked.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
from conftest import RREF, Rref, leaks
from faultkit import cgroups_of, container_dirs, temporaries


def _rref(r: Rref, *args: str, fault: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, RREF_FAULT=fault) if fault else None
    return subprocess.run(
        [RREF, "--root", r.root, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def _mounts_under(root: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [ln.split()[4] for ln in f if ln.split()[4].startswith(root + "/")]


def _assert_reclaimed(r: Rref, ids: list[str]) -> None:
    r("system", "prune", "-a", "-f")
    assert container_dirs(r.root) == []
    assert temporaries(r.root) == []
    assert _mounts_under(r.root) == []
    for cid in ids:
        assert cgroups_of(cid) == [] and leaks(cid) == []


def _listed(r: Rref) -> dict[str, str]:
    """id -> status for every container `ps -a` shows."""
    head, *rows = r.out("ps", "-a", "--no-trunc").splitlines()
    at, end = head.index("STATUS"), head.index("PORTS")
    return {row.split()[0]: row[at:end].strip() for row in rows}


def _truthful(r: Rref) -> list[str]:
    """Every container directory on disk is one `ps -a` lists; return their ids."""
    on_disk = [d for d in container_dirs(r.root) if len(d) == 64]  # the rest: temporaries
    assert sorted(_listed(r)) == on_disk
    return on_disk


@pytest.mark.parametrize("step", ["create.dir", "create.built"])
def test_killed_create_is_listed_then_reclaimed(fresh_rref: Rref, step: str) -> None:
    r = fresh_rref
    r("run", "--rm", "busybox", "true")  # the image exists before the faulted run
    p = _rref(r, "run", "-d", "busybox", "sleep", "300", fault=step)
    assert p.returncode == -signal.SIGKILL, p.stderr
    ids = _truthful(r)
    assert len(ids) == 1
    assert _listed(r)[ids[0]] == "Dead"
    r("rm", "-f", ids[0])
    _assert_reclaimed(r, ids)


@pytest.mark.parametrize("step", ["rm.released", "rm.buried"])
def test_killed_rm_is_listed_or_reclaimed(fresh_rref: Rref, step: str) -> None:
    r = fresh_rref
    cid = r.run_d("busybox", "sleep", "300")
    p = _rref(r, "rm", "-f", cid, fault=step)
    assert p.returncode == -signal.SIGKILL, p.stderr
    ids = _truthful(r)
    assert ids == ([cid] if step == "rm.released" else [])
    for i in ids:
        r("rm", "-f", i)
    _assert_reclaimed(r, [cid])


@pytest.mark.parametrize("step", ["commit.changeset", "layer.applied"])
def test_killed_commit_leaves_only_reclaimable_temporaries(fresh_rref: Rref, step: str) -> None:
    r = fresh_rref
    cid = r.run_d("busybox", "sh", "-c", "echo x > /f && sleep 300")
    time.sleep(0.2)
    p = _rref(r, "commit", cid, fault=step)
    assert p.returncode == -signal.SIGKILL, p.stderr
    assert temporaries(r.root)
    assert r.inspect(cid, "{{.State.Status}}") == "running"
    assert r("exec", cid, "cat", "/f", timeout=10).stdout == "x\n"
    assert r.out("images", "-q").count("\n") == 1, "only busybox"
    r("rm", "-f", cid)
    _assert_reclaimed(r, [cid])


@pytest.mark.parametrize("step", ["start.cgroup", "start.spawned"])
def test_monitor_killed_while_starting_is_dead_and_removable(fresh_rref: Rref, step: str) -> None:
    r = fresh_rref
    r("run", "--rm", "busybox", "true")
    p = _rref(r, "run", "-d", "busybox", "sleep", "300", fault=step)
    assert p.returncode == 125 and "monitor died" in p.stderr, p.stderr
    ids = _truthful(r)
    assert len(ids) == 1 and _listed(r)[ids[0]] == "Dead"
    r("rm", "-f", ids[0])
    _assert_reclaimed(r, ids)


def _state(r: Rref, cid: str) -> dict[str, int]:
    import json

    with open(os.path.join(r.root, "containers", cid, "state.json")) as f:
        return json.load(f)


@pytest.mark.parametrize("victim", ["MonitorPid", "Pid"])
def test_host_kills_monitor_or_pid1(fresh_rref: Rref, victim: str) -> None:
    from conftest import wait_for

    r = fresh_rref
    cid = r.run_d("busybox", "sleep", "300")
    os.kill(_state(r, cid)[victim], signal.SIGKILL)
    if victim == "Pid":
        wait_for(lambda: _listed(r)[cid].startswith("Exited (137)"), "the exit recorded")
    else:
        assert _listed(r)[cid].startswith("Up"), "pid 1 still runs without its monitor"
    r("rm", "-f", cid)
    _assert_reclaimed(r, [cid])


#: Every fault point of rref, with the command that reaches it ({c}: a running container
#: with a change, {ctx}: a build context with a RUN step). `run` killed in its monitor
#: (start.*) reports the death and exits 125; the others die with SIGKILL themselves.
EVERY_STEP = {
    "create.dir": ("run", "-d", "busybox", "sleep", "300"),
    "create.built": ("run", "-d", "busybox", "sleep", "300"),
    "start.cgroup": ("run", "-d", "busybox", "sleep", "300"),
    "start.spawned": ("run", "-d", "busybox", "sleep", "300"),
    "exec.spawned": ("exec", "{c}", "sleep", "1"),
    "commit.changeset": ("commit", "{c}"),
    "layer.applied": ("commit", "{c}"),
    "build.container": ("build", "-q", "--no-cache", "{ctx}"),
    "build.layer": ("build", "-q", "--no-cache", "{ctx}"),
    "rm.released": ("rm", "-f", "{c}"),
    "rm.buried": ("rm", "-f", "{c}"),
    "prune.container": ("system", "prune", "-f"),
}


def test_every_step_is_named_in_the_code() -> None:
    """EVERY_STEP is the list of `faults.point` calls in rref, no more, no less."""
    import re
    from pathlib import Path

    import runtime_ref

    src = Path(runtime_ref.__file__).parent
    named = {
        m
        for p in src.rglob("*.py")
        for m in re.findall(r'faults\.point\("([a-z.]+)"\)', p.read_text())
    }
    assert named == set(EVERY_STEP)


@pytest.mark.slow
@pytest.mark.full_count
@pytest.mark.parametrize("step", sorted(EVERY_STEP))
def test_killed_at_every_step_is_listed_then_reclaimed(
    fresh_rref: Rref, tmp_path, step: str
) -> None:
    """The full count: rref SIGKILLed at each of its fault points, with a running container,
    a stopped one and a build context around; after each, `ps -a` tells the truth, the
    image store works, and rm -f plus prune reclaim everything."""
    r = fresh_rref
    r("run", "busybox", "true")  # a stopped container, for prune
    c = r.run_d("busybox", "sh", "-c", "echo x > /f && sleep 300")
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN echo x > /y\n")
    argv = [a.replace("{c}", c).replace("{ctx}", str(tmp_path)) for a in EVERY_STEP[step]]
    p = _rref(r, *argv, fault=step)
    assert p.returncode in (-signal.SIGKILL, 125), p.stderr
    if p.returncode == 125:
        assert step.startswith("start.") and "monitor died" in p.stderr, p.stderr
    ids = _truthful(r)
    assert r("run", "--rm", "busybox", "true").returncode == 0, "the image store works"
    for cid in ids:
        r("rm", "-f", cid)
    _assert_reclaimed(r, ids)
