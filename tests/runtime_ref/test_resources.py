"""Cgroup enforcement through rref's CLI: limits are enforced, not only written (CG-*)."""

from __future__ import annotations

import json
import os
import time

import pytest
from conftest import Rref, leaks


def test_memory_limit_kills_with_137_and_records_oom(rref: Rref) -> None:
    n = rref.name()
    p = rref(
        "run",
        "--name",
        n,
        "-m",
        "32m",
        "busybox",
        "sh",
        "-c",
        "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived",
        check=False,
    )
    assert p.returncode == 137
    assert "survived" not in p.stdout
    assert rref.inspect(n, "{{.State.OOMKilled}}") == "true"
    assert rref.inspect(n, "{{.HostConfig.Memory}}") == str(32 * 2**20)


def test_memory_limit_reads_back_page_aligned(rref: Rref) -> None:
    out = rref.out(
        "run",
        "--rm",
        "-m",
        "10000k",
        "busybox",
        "sh",
        "-c",
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || "
        "cat /sys/fs/cgroup/memory.max",
    )
    assert int(out) == 10000 * 1024 // 4096 * 4096


def test_pids_limit_makes_fork_fail_with_eagain(rref: Rref) -> None:
    p = rref(
        "run",
        "--rm",
        "--pids-limit",
        "5",
        "busybox",
        "sh",
        "-c",
        "for i in 1 2 3 4 5 6 7 8; do sleep 5 & done",
        check=False,
    )
    assert p.returncode != 0
    assert "can't fork: Resource temporarily unavailable" in p.stderr  # EAGAIN
    assert (
        rref.out(
            "run",
            "--rm",
            "--pids-limit",
            "5",
            "busybox",
            "sh",
            "-c",
            "sleep 1 & sleep 1 & wait; echo fine",
        )
        == "fine\n"
    )


def test_cpu_quota_limits_throughput(rref: Rref) -> None:
    cid = rref.run_d("--cpus", "0.5", "busybox", "sh", "-c", "while :; do :; done")
    cg = json.loads(rref.inspect(cid, "{{json .CgroupPaths}}"))
    u0, t0 = cpu_usage_ns(cg), time.monotonic()
    time.sleep(2.0)
    u1, t1 = cpu_usage_ns(cg), time.monotonic()
    share = (u1 - u0) / 1e9 / (t1 - t0)
    # the quota is a ceiling: never above half a CPU (with slack for accounting); the floor
    # only proves the loop ran, since a loaded 2-CPU runner may give it less than its quota
    assert 0.15 <= share <= 0.62, share
    cpu_dir = next((v for k, v in cg.items() if "cpu" in k.split(",")), cg.get("unified"))
    with open(os.path.join(cpu_dir, "cpu.stat")) as f:
        stat = dict(line.split() for line in f)
    assert int(stat["nr_throttled"]) > 0


def cpu_usage_ns(cg: dict[str, str]) -> int:
    """CPU time used by the cgroup: v1 cpuacct.usage, or v2 cpu.stat's usage_usec."""
    acct = next((v for k, v in cg.items() if "cpuacct" in k.split(",")), None)
    if acct is not None:
        with open(os.path.join(acct, "cpuacct.usage")) as f:
            return int(f.read())
    with open(os.path.join(cg["unified"], "cpu.stat")) as f:
        return int(dict(line.split() for line in f)["usage_usec"]) * 1000


def test_cpuset_pins_affinity(rref: Rref) -> None:
    out = rref.out(
        "run",
        "--rm",
        "--cpuset-cpus",
        "0",
        "busybox",
        "sh",
        "-c",
        "grep Cpus_allowed_list /proc/self/status",
    )
    assert out.split()[-1] == "0"


def test_pause_freezes_and_unpause_resumes(rref: Rref) -> None:
    cid = rref.run_d(
        "busybox", "sh", "-c", "i=0; while :; do i=$((i+1)); echo $i > /n; sleep 0.05; done"
    )
    time.sleep(0.3)
    rref("pause", cid)
    assert rref.inspect(cid, "{{.State.Status}}") == "paused"
    upper = rref.inspect(cid, "{{.GraphDriver.Data.UpperDir}}")
    with open(os.path.join(upper, "n")) as f:
        a = f.read()
    time.sleep(0.4)
    with open(os.path.join(upper, "n")) as f:
        assert f.read() == a  # frozen: no progress
    p = rref("pause", cid, check=False)
    assert p.returncode == 1 and "already paused" in p.stderr
    rref("unpause", cid)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with open(os.path.join(upper, "n")) as f:
            if f.read() != a:
                break
        time.sleep(0.05)
    else:
        raise AssertionError("no progress after unpause")
    assert rref.inspect(cid, "{{.State.Status}}") == "running"


def test_update_changes_a_running_container(rref: Rref) -> None:
    cid = rref.run_d("--pids-limit", "100", "busybox", "sleep", "60")
    rref("update", "--pids-limit", "3", cid)
    assert rref.inspect(cid, "{{.HostConfig.PidsLimit}}") == "3"
    # init + sh + one sleep = 3: fits the new limit
    assert rref.out("exec", cid, "sh", "-c", "sleep 0.1 & wait; echo x") == "x\n"
    err = rref("exec", cid, "sh", "-c", "sleep 5 & sleep 5 & sleep 5 & wait", check=False)
    assert "Resource temporarily unavailable" in err.stderr + err.stdout
    p = rref("update", "-m", "1k", cid, check=False)
    assert p.returncode == 1 and "Minimum memory limit allowed is 6MB" in p.stderr


def test_stats_no_stream(rref: Rref) -> None:
    cid = rref.run_d("-m", "64m", "busybox", "sleep", "60")
    out = rref.out("stats", "--no-stream", "--format", "json", cid)
    data = json.loads(out)
    assert data["ID"] == cid
    assert data["memory"]["limit"] == 64 * 2**20
    assert data["pids"]["current"] >= 1
    table = rref.out("stats", "--no-stream", cid)
    assert cid[:12] in table and "64.0MiB" in table


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["-m", "1k"], "Minimum memory limit allowed is 6MB"),
        (["-m", "lots"], "invalid value 'lots' for --memory"),
        (["--cpus", "-1"], "must be positive"),
        (["--cpus", "99"], "range of CPUs"),
        (["--cpu-quota", "10", "--cpu-period", "100000"], "CPU cfs quota can not be less than 1ms"),
        (["--cpuset-cpus", "7"], "Requested CPUs are not available"),
        (["--blkio-weight", "5"], "Range of blkio weight is from 10 to 1000"),
        (["--memory-swap", "64m"], "you should always set the memory limit"),
    ],
)
def test_invalid_limits_are_refused_before_start(
    fresh_rref: Rref, flags: list[str], needle: str
) -> None:
    p = fresh_rref("run", "--rm", *flags, "busybox", "true", check=False)
    assert p.returncode == 125, p.stderr
    assert needle in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert fresh_rref.out("ps", "-aq") == ""


def test_cgroup_is_removed_with_the_container(rref: Rref) -> None:
    cid = rref.run_d("-m", "64m", "--pids-limit", "50", "busybox", "sleep", "60")
    paths = json.loads(rref.inspect(cid, "{{json .CgroupPaths}}"))
    assert all(os.path.isdir(p) for p in paths.values())
    rref("rm", "-f", cid)
    assert not [p for p in paths.values() if os.path.exists(p)]
    assert leaks(cid) == []


def test_cgroup_parent(rref: Rref) -> None:
    parent = f"rref-parent-{os.getpid()}"
    cid = rref.run_d("--cgroup-parent", f"/{parent}", "busybox", "sleep", "60")
    try:
        with open(f"/proc/{rref.pid(cid)}/cgroup") as f:
            lines = [ln for ln in f.read().split("\n") if ln and "name=" not in ln]
        assert all(ln.endswith(f"/{parent}/rref-{cid}") for ln in lines), lines
    finally:
        rref("rm", "-f", cid)
        for h in os.listdir("/sys/fs/cgroup"):
            d = os.path.join("/sys/fs/cgroup", h, parent)
            if os.path.isdir(d):
                os.rmdir(d)
    assert (
        rref("run", "--rm", "--cgroup-parent", "/../x", "busybox", "true", check=False).returncode
        == 125
    )
