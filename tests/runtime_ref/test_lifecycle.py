"""docker's lifecycle verbs on rref: exit codes, stop, kill, logs, ps, inspect, rm."""

from __future__ import annotations

import contextlib
import json
import os
import time

from conftest import Rref, leaks, wait_for


def state_of(rref: Rref, cid: str) -> dict[str, object]:
    with open(os.path.join(rref.root, "containers", cid, "state.json")) as f:
        return json.load(f)


def test_exit_code_passes_through(rref: Rref) -> None:
    for code in (0, 1, 3, 42):
        assert (
            rref("run", "--rm", "busybox", "sh", "-c", f"exit {code}", check=False).returncode
            == code
        )


def test_killed_by_signal_is_128_plus_n(rref: Rref) -> None:
    cid = rref.run_d("busybox", "sleep", "60")
    rref("kill", "-s", "SIGKILL", cid)
    assert rref.inspect(cid, "{{.State.ExitCode}}") == "137"
    cid = rref.run_d("busybox", "sleep", "60")
    # a process that is not the namespace's init dies of SIGTERM: 128 + 15
    assert rref("exec", cid, "sh", "-c", "kill -TERM $$", check=False).returncode == 143


def test_init_ignores_sigkill_from_inside(rref: Rref) -> None:
    # the kernel shields a pid namespace's init from signals sent inside it
    assert (
        rref("run", "--rm", "busybox", "sh", "-c", "kill -9 $$; exit 5", check=False).returncode
        == 5
    )


def test_command_not_found_is_127_and_not_executable_is_126(rref: Rref) -> None:
    nf = rref("run", "--rm", "busybox", "nope", check=False)
    assert nf.returncode == 127
    assert nf.stderr.strip() == 'rref: exec: "nope": executable file not found in $PATH'
    ne = rref("run", "--rm", "busybox", "/etc/passwd", check=False)
    assert ne.returncode == 126
    assert "permission denied" in ne.stderr


def test_rm_flag_removes_container(fresh_rref: Rref) -> None:
    fresh_rref("run", "--rm", "busybox", "true")
    assert fresh_rref.out("ps", "-aq") == ""
    assert os.listdir(os.path.join(fresh_rref.root, "containers")) == []


def test_stdout_and_stderr_stay_apart(rref: Rref) -> None:
    p = rref("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2")
    assert p.stdout == "out\n"
    assert p.stderr == "err\n"


def test_logs_return_stdout_and_stderr(rref: Rref) -> None:
    cid = rref.run_d("busybox", "sh", "-c", "echo one; echo two >&2; echo three; sleep 60")
    wait_for(lambda: "three" in rref.out("logs", cid), "the third line in the log")
    p = rref("logs", cid)
    assert p.stdout == "one\nthree\n"
    assert p.stderr == "two\n"
    last = rref("logs", "--tail", "1", cid)
    assert len((last.stdout + last.stderr).splitlines()) == 1
    with open(rref.inspect(cid, "{{.LogPath}}")) as f:
        entries = [json.loads(line) for line in f]
    # docker's json-file format; order across the two pipes is not defined, within one it is
    assert [e["log"] for e in entries if e["stream"] == "stdout"] == ["one\n", "three\n"]
    assert [e["log"] for e in entries if e["stream"] == "stderr"] == ["two\n"]
    assert all(e["time"].endswith("Z") for e in entries)


def test_logs_follow_ends_when_container_exits(rref: Rref) -> None:
    cid = rref.run_d("busybox", "sh", "-c", "for i in 1 2 3; do echo $i; sleep 0.3; done")
    t = time.time()
    p = rref("logs", "-f", cid, timeout=20)
    assert p.stdout == "1\n2\n3\n"
    assert time.time() - t < 10


def test_foreground_run_is_logged_too(rref: Rref) -> None:
    n = rref.name()
    rref("run", "--name", n, "busybox", "echo", "kept")
    assert rref.out("logs", n) == "kept\n"


def test_detached_run_ps_and_inspect(fresh_rref: Rref) -> None:
    r = fresh_rref
    cid = r.run_d("busybox", "sleep", "60")
    assert len(cid) == 64
    assert r.out("ps", "-q").split() == [cid[:12]]
    assert r.out("ps", "-q", "--no-trunc").split() == [cid]
    table = r.out("ps").splitlines()
    assert table[0].split()[:2] == ["CONTAINER", "ID"]
    assert cid[:12] in table[1] and "Up" in table[1]
    data = json.loads(r.out("inspect", cid))[0]
    assert data["Id"] == cid
    assert data["State"]["Status"] == "running" and data["State"]["Running"] is True
    assert data["State"]["Pid"] > 0
    assert os.path.isdir(data["GraphDriver"]["Data"]["UpperDir"])
    assert set(data["GraphDriver"]["Data"]) == {"LowerDir", "UpperDir", "WorkDir", "MergedDir"}
    assert r.inspect(cid, "{{.State.Pid}}") == str(data["State"]["Pid"])
    assert r.inspect(cid, "{{.Config.Cmd}}") == '["sleep", "60"]'
    assert r.inspect(cid, "{{json .State.Running}}") == "true"
    assert r.inspect(cid, "{{.State.Running}}") == "true"
    # MergedDir is the container's root, reachable from the host through /proc/PID/root
    assert os.path.exists(f"/proc/{data['State']['Pid']}/root/bin/busybox")


def test_create_then_start(fresh_rref: Rref) -> None:
    r = fresh_rref
    n = r.name()
    cid = r.out("create", "--name", n, "busybox", "sleep", "60").strip()
    assert r.inspect(n, "{{.State.Status}}") == "created"
    assert r.out("ps", "-q") == ""
    assert r.out("ps", "-aq").strip() == cid[:12]
    r("start", n)
    assert r.inspect(n, "{{.State.Status}}") == "running"
    p = r("start", n, check=False)
    assert p.returncode == 1 and "already running" in p.stderr


def test_stop_sends_sigterm_first(rref: Rref) -> None:
    cid = rref.run_d(
        "busybox",
        "sh",
        "-c",
        "trap 'echo got-term; exit 0' TERM; echo trapped; while true; do sleep 0.1; done",
    )
    wait_for(lambda: "trapped" in rref.out("logs", cid), "the TERM trap to be set")
    t = time.time()
    rref("stop", "-t", "10", cid)
    assert time.time() - t < 5
    assert rref.inspect(cid, "{{.State.ExitCode}}") == "0"
    assert "got-term" in rref.out("logs", cid)


def test_stop_kills_after_timeout(rref: Rref) -> None:
    cid = rref.run_d("busybox", "sleep", "60")  # pid 1 without a TERM handler ignores it
    t = time.time()
    rref("stop", "-t", "1", cid)
    elapsed = time.time() - t
    assert 0.9 <= elapsed < 8, elapsed
    assert rref.inspect(cid, "{{.State.ExitCode}}") == "137"
    assert rref.inspect(cid, "{{.State.Status}}") == "exited"
    assert not leaks(cid)  # stopped: cgroups already freed, no process, no mount


def test_kill_and_wait(rref: Rref) -> None:
    cid = rref.run_d("busybox", "sleep", "60")
    rref("kill", "-s", "KILL", cid)
    assert rref.out("wait", cid).strip() == "137"
    assert rref.inspect(cid, "{{.State.Running}}") == "false"


def test_killing_init_ends_every_process(rref: Rref) -> None:
    cid = rref.run_d("busybox", "sh", "-c", "sleep 100 & sleep 100 & sleep 100 & wait")
    cg = json.loads(rref.inspect(cid, "{{json .CgroupPaths}}"))
    procs = next(iter(cg.values())) + "/cgroup.procs"

    def members() -> list[str]:
        with open(procs) as f:
            return f.read().split()

    wait_for(lambda: len(members()) == 4, "the init and its three children")
    pids = members()
    assert len(pids) == 4
    rref("kill", cid)
    for p in pids:
        assert not os.path.exists(f"/proc/{p}"), f"process {p} survived its init"


def test_rm_running_needs_force(rref: Rref) -> None:
    cid = rref.run_d("busybox", "sleep", "60")
    p = rref("rm", cid, check=False)
    assert p.returncode == 1
    assert "container is running" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert rref.inspect(cid, "{{.State.Status}}") == "running"
    rref("rm", "-f", cid)
    assert rref("inspect", cid, check=False).returncode == 1


def test_rm_leaves_nothing_behind(rref: Rref) -> None:
    cid = rref.run_d("busybox", "sh", "-c", "sleep 100 & exec sleep 100")
    pid = rref.pid(cid)
    ns = {n: os.readlink(f"/proc/{pid}/ns/{n}") for n in ("pid", "mnt", "net", "uts", "ipc")}
    rref("exec", "-d", cid, "sleep", "100")
    assert leaks(cid)  # sanity: the check sees a live container
    members = set(json.loads(rref.inspect(cid, "{{json .CgroupPaths}}")).values())
    procs = set()
    for d in members:
        with open(os.path.join(d, "cgroup.procs")) as f:
            procs |= set(f.read().split())
    assert len(procs) >= 3
    rref("rm", "-f", cid)
    assert leaks(cid) == []
    assert not os.path.exists(os.path.join(rref.root, "containers", cid))
    assert not [p for p in procs if os.path.exists(f"/proc/{p}")]
    # Namespace inode numbers are recycled by the kernel, and other tests start containers
    # meanwhile: a holder of the same number is a leak only if it was ours.
    for proc in os.listdir("/proc"):
        if not proc.isdigit():
            continue
        for n, inode in ns.items():
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{proc}/ns/{n}") == inode:
                    with open(f"/proc/{proc}/cgroup") as f:
                        assert f"rref-{cid}" not in f.read(), f"{proc} still holds {inode}"


def test_rm_after_monitor_died(rref: Rref) -> None:
    cid = rref.run_d("busybox", "sleep", "60")
    data = state_of(rref, cid)
    os.kill(data["MonitorPid"], 9)
    rref("rm", "-f", cid)
    assert leaks(cid) == []


def test_ps_reconciles_a_lost_container(rref: Rref) -> None:
    cid = rref.run_d("busybox", "sleep", "60")
    data = state_of(rref, cid)
    os.kill(data["MonitorPid"], 9)
    os.kill(data["Pid"], 9)
    wait_for(lambda: not os.path.exists(f"/proc/{data['Pid']}"), "the killed init to be gone")
    assert rref.inspect(cid, "{{.State.Status}}") == "exited"
    assert "monitor" in rref.inspect(cid, "{{.State.Error}}")


def test_restart_of_exited_container_keeps_its_layer(rref: Rref) -> None:
    n = rref.name()
    rref(
        "run",
        "--name",
        n,
        "busybox",
        "sh",
        "-c",
        "echo $((1 + $(cat /n 2>/dev/null || echo 0))) > /n; cat /n",
    )
    rref("start", "-a", n)
    assert rref.out("logs", n).split() == ["1", "2"]


def test_concurrent_runs_do_not_corrupt_state(fresh_rref: Rref) -> None:
    import concurrent.futures

    r = fresh_rref
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        ids = list(pool.map(lambda _: r.run_d("busybox", "sleep", "30"), range(6)))
    assert sorted(r.out("ps", "-q", "--no-trunc").split()) == sorted(ids)
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda c: r("rm", "-f", c), ids))
    assert r.out("ps", "-aq") == ""
    assert all(leaks(c) == [] for c in ids)
