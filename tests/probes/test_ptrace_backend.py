"""The ptrace backend on real commands: runc, rref, shells; faults it must survive.

Nothing is mocked: each test traces a real process tree on this kernel.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import NS5, RUNC_HOSTNAME, traced_ok

from probes.backend import CommandTimeout, select
from probes.events import TraceEvent
from probes.ptrace_backend import PtraceBackend, Tracer, create
from probes.trace import Trace


@pytest.fixture(scope="module")
def ptrace() -> PtraceBackend:
    return create()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _status(pid: int, key: str) -> str:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return line.split(":", 1)[1].strip()
    return ""


# ---------------------------------------------------------------- runc


def test_runc_run_namespaces_mounts_pivot_root_hostname(
    ptrace: PtraceBackend, runc_bundle: tuple[list[str], str]
) -> None:
    argv, cid = runc_bundle
    trace = traced_ok(ptrace, argv)
    # runc 1.1.5 makes its namespaces with one unshare
    unshares = [e for e in trace.by_syscall("unshare") if e.ret == 0]
    assert [e.args["flags"] for e in unshares] == [NS5]
    assert unshares[0].args["flags_raw"] == 0x6C020000
    (pivot,) = trace.by_syscall("pivot_root")
    assert (pivot.args, pivot.ret) == ({"new_root": ".", "put_old": "."}, 0)
    (host,) = trace.by_syscall("sethostname")
    assert host.args == {"name": RUNC_HOSTNAME} and host.ret == 0
    mounts = trace.by_syscall("mount")
    assert any(m.args["fstype"] == "proc" and m.args["flags"] == [] for m in mounts)
    rec = [m for m in mounts if m.args["flags"] == ["MS_REC", "MS_SLAVE"]]
    assert rec and rec[0].args["target"] == "/"
    nodes = {e.args["path"].rsplit("/", 1)[1]: e.args for e in trace.by_syscall("mknodat")}
    assert nodes["null"]["type"] == "S_IFCHR" and nodes["null"]["dev"] == [1, 3]
    assert nodes["null"]["mode"] == "S_IFCHR|0666"
    # cgroups: runc makes its directory and writes the init's pid into it
    made = [e.args["path"] for e in trace.by_syscall("mkdirat", "mkdir")]
    assert any(p.endswith("/" + cid) and p.startswith("/sys/fs/cgroup/") for p in made), made
    assert trace.by_syscall("write"), "no write to a cgroup file seen"
    # the pid namespace: pivot_root's caller is a host pid, though clone3 in it returns 2, 3..
    init = pivot.pid
    assert init in trace.descendants(trace.root_pid)
    host_ns = next(e.ns for e in trace.events if e.pid == trace.root_pid and e.ns)
    assert pivot.ns["pid"] != host_ns["pid"] and pivot.ns["uts"] != host_ns["uts"]
    inner = [e.ret for e in trace.by_syscall("clone3") if e.pid == init and e.ret > 0]
    assert inner and max(inner) < 100 < init
    last = [e for e in trace.by_syscall("execve") if e.ret == 0][-1]
    assert last.pid == init and last.args["argv"] == ["true"]


def test_runc_threads_and_signals_are_followed(
    ptrace: PtraceBackend, runc_bundle: tuple[list[str], str]
) -> None:
    # Go's threads are followed (clone3 CLONE_THREAD) but are not processes in the tree
    trace = traced_ok(ptrace, runc_bundle[0])
    threads = [e for e in trace.by_syscall("clone3") if "CLONE_THREAD" in e.args["flags"]]
    assert threads
    children = {c for kids in trace.tree().values() for c in kids}
    assert not children & {e.ret for e in threads if e.pid == trace.root_pid}
    exits = {e.pid for e in trace.by_syscall("exit")}
    assert trace.root_pid in exits and children <= exits | {trace.root_pid}


# ---------------------------------------------------------------- rref


def test_rref_run_rm_busybox_true(ptrace: PtraceBackend, rref: str, rref_root: str) -> None:
    argv = [rref, "--root", rref_root, "run", "--rm", "--hostname", "conform-h", "busybox", "true"]
    trace = traced_ok(ptrace, argv, timeout=120)
    flags = {f for e in trace.by_syscall("unshare", "clone") if e.ret >= 0 for f in e.args["flags"]}
    assert set(NS5) <= flags, flags
    (pivot,) = trace.by_syscall("pivot_root")
    assert pivot.ret == 0
    assert [e.args["name"] for e in trace.by_syscall("sethostname")] == ["conform-h"]
    overlay = [m for m in trace.by_syscall("mount") if m.args["fstype"] == "overlay"]
    assert overlay and overlay[0].args["data"].startswith("lowerdir=")
    assert any(m.args["flags"] == ["MS_REC", "MS_PRIVATE"] for m in trace.by_syscall("mount"))
    assert any(e.args["dev"] == [1, 3] for e in trace.by_syscall("mknodat"))
    # host pids throughout: the container's pid 1 is a host process of the traced tree
    assert pivot.pid in trace.descendants(trace.root_pid) and pivot.pid > 1


# ---------------------------------------------------------------- faults


def test_command_not_found_raises_like_popen(ptrace: PtraceBackend) -> None:
    with pytest.raises(FileNotFoundError):
        ptrace.trace(["conform-ptrace-no-such-command"], timeout=10)
    with pytest.raises(FileNotFoundError):
        ptrace.spawn(["/nonexistent/conform-ptrace"])


def test_hang_hits_the_timeout_and_the_whole_tree_is_killed(ptrace: PtraceBackend) -> None:
    # the grandchild leaves the process group: killing the group alone would miss it
    script = "setsid sleep 300 & echo $!; wait"
    started = time.monotonic()
    with pytest.raises(CommandTimeout) as info:
        ptrace.trace(["sh", "-c", script], stdout=subprocess.PIPE, timeout=1.5)
    assert time.monotonic() - started < 30
    trace = info.value.trace
    assert any("timeout" in n for n in trace.notes), trace.notes
    sleeper = int(info.value.stdout.split()[0])
    deadline = time.monotonic() + 5
    while _alive(sleeper) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(sleeper)
    assert sleeper in trace.pids()


def test_threads_exiting_mid_stop_do_not_crash_the_loop(ptrace: PtraceBackend) -> None:
    # busy threads are in syscall stops when exit_group kills them: ESRCH on resume
    code = (
        "import os, threading, time\n"
        "def spin():\n"
        "    while True: os.stat('/')\n"
        "for _ in range(6): threading.Thread(target=spin, daemon=True).start()\n"
        "time.sleep(0.3)\n"
        "os._exit(7)\n"
    )
    for _ in range(3):
        done, trace = ptrace.trace([sys.executable, "-c", code], timeout=60)
        assert done.returncode == 7
        assert not [n for n in trace.notes if "failed" in n], trace.notes
        assert trace.by_syscall("exit")[-1].pid == trace.root_pid


def test_resuming_a_dead_thread_is_tolerated() -> None:
    tracer = Tracer(["true"])
    tracer.start().wait(10)
    tracer.finish()
    tracer._resume(tracer.root_pid)  # reaped: ESRCH, swallowed
    tracer._detach(tracer.root_pid)


def test_signals_reach_the_tracee(ptrace: PtraceBackend) -> None:
    script = 'trap "echo got-usr1" USR1; kill -USR1 $$; echo after'
    done, _ = ptrace.trace(["sh", "-c", script], stdout=subprocess.PIPE, timeout=30)
    assert done.stdout.split() == [b"got-usr1", b"after"]
    done, _ = ptrace.trace(["sh", "-c", "kill -TERM $$; sleep 5"], timeout=30)
    assert done.returncode == -signal.SIGTERM


# ---------------------------------------------------------------- long-lived use


def test_popen_like_use_sees_a_background_command(ptrace: PtraceBackend) -> None:
    tracee = ptrace.spawn(
        ["sh", "-c", "read x; hostname; exit 5"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    time.sleep(0.2)
    assert tracee.proc.poll() is None
    out, _ = tracee.proc.communicate(b"go\n", timeout=30)
    assert tracee.proc.returncode == 5 and out.strip()
    trace = tracee.finish()
    assert trace.root_pid == tracee.pid
    assert any(e.args.get("filename", "").endswith("/hostname") for e in trace.by_syscall("execve"))


def test_survivors_are_detached_and_keep_running(ptrace: PtraceBackend) -> None:
    # the command exits at once: its child is usually still in its first stop, or just
    # past it, when the detach starts (a stray SIGSTOP would leave it stopped for good)
    script = "sleep 30 >/dev/null 2>&1 & echo $!"
    done, trace = ptrace.trace(["sh", "-c", script], stdout=subprocess.PIPE, timeout=30)
    sleeper = int(done.stdout)
    try:
        assert _alive(sleeper)
        assert _status(sleeper, "TracerPid") == "0"
        assert _status(sleeper, "State")[0] in "SR"  # not left stopped
        assert any("detached" in n for n in trace.notes), trace.notes
    finally:
        os.kill(sleeper, signal.SIGKILL)


def test_kill_group_of_a_traced_popen_ends_the_trace(ptrace: PtraceBackend) -> None:
    from conformance import launcher

    tracee = ptrace.spawn(["sh", "-c", "sleep 300"], start_new_session=True)
    time.sleep(0.2)
    launcher.kill_group(tracee.proc)
    assert tracee.proc.returncode == -signal.SIGKILL
    trace = tracee.finish(10)
    assert trace.by_syscall("exit")


def test_auto_or_explicit_selection_gives_this_backend() -> None:
    backend, why = select("ptrace")
    assert backend is not None and backend.name == "ptrace", why


def test_trace_round_trips_through_jsonl(ptrace: PtraceBackend) -> None:
    _, trace = ptrace.trace(["unshare", "--uts", "hostname", "conform-ptrace-rt"], timeout=30)
    (host,) = trace.by_syscall("sethostname")
    assert host.args == {"name": "conform-ptrace-rt"}
    back = Trace.from_jsonl(trace.to_jsonl())
    assert [e.to_dict() for e in back.events] == [e.to_dict() for e in trace.events]
    assert isinstance(back.events[0], TraceEvent)


def test_launcher_cli_forwards_the_status_and_writes_the_trace(tmp_path: Path) -> None:
    out = tmp_path / "trace.jsonl"
    cli = [sys.executable, "-m", "probes.ptrace_backend", "--jsonl", str(out), "--"]
    p = subprocess.run([*cli, "unshare", "--uts", "sh", "-c", "hostname conform-cli; exit 4"])
    assert p.returncode == 4
    trace = Trace.from_jsonl(out.read_text())
    assert [e.args["name"] for e in trace.by_syscall("sethostname")] == ["conform-cli"]
    assert trace.by_syscall("unshare")[0].args["flags"] == ["CLONE_NEWUTS"]
    p = subprocess.run([*cli, "sh", "-c", "kill -KILL $$"])
    assert p.returncode == 128 + signal.SIGKILL
    p = subprocess.run([*cli, "conform-ptrace-no-such"], capture_output=True, text=True)
    assert p.returncode == 127 and p.stderr.count("\n") == 1 and "Traceback" not in p.stderr


# ---------------------------------------------------------------- concurrency


def test_concurrent_traces_each_see_only_their_own_tree(ptrace: PtraceBackend) -> None:
    import threading

    results: dict[str, Trace] = {}

    def one(name: str) -> None:
        argv = ["unshare", "--uts", "sh", "-c", f"hostname {name}; hostname; true"]
        results[name] = ptrace.trace(argv, stdout=subprocess.PIPE, timeout=60)[1]

    names = [f"conform-ptrace-c{i}" for i in range(4)]
    threads = [threading.Thread(target=one, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    for n in names:
        trace = results[n]
        assert [e.args["name"] for e in trace.by_syscall("sethostname")] == [n]
        assert {e.pid for e in trace.events} <= set(trace.descendants(trace.root_pid))


def test_unreadable_arguments_are_counted_not_hidden(ptrace: PtraceBackend) -> None:
    # mount() with a source pointer into unmapped memory fails with EFAULT, mounts nothing
    code = (
        "import ctypes\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "r = libc.mount(ctypes.c_void_p(8), b'/nonexistent-conform-ptrace', b'tmpfs', 0, None)\n"
        "raise SystemExit(ctypes.get_errno() if r else 0)\n"
    )
    done, trace = ptrace.trace([sys.executable, "-c", code], timeout=60)
    assert done.returncode == 14  # EFAULT
    (mount,) = trace.by_syscall("mount")
    assert mount.args["source"] is None and mount.args["fstype"] == "tmpfs"
    assert mount.ret == -14
    assert any("1 mount record(s) with an argument unreadable" in n for n in trace.notes)


def test_a_stop_that_cannot_be_handled_is_noted_and_the_trace_goes_on(
    ptrace: PtraceBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # fault injection (a decoding bug cannot be provoked with a real command)
    import probes.ptrace_backend as mod

    real = mod.read_args

    def broken(name: str, args: Any, mem: Any, contained: bool = False) -> Any:
        if name == "sethostname":
            raise RuntimeError("planted decoding bug")
        return real(name, args, mem, contained)

    monkeypatch.setattr(mod, "read_args", broken)
    argv = ["unshare", "--uts", "sh", "-c", "hostname conform-bug; hostname"]
    done, trace = ptrace.trace(argv, stdout=subprocess.PIPE, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == b"conform-bug"
    assert any("planted decoding bug" in n for n in trace.notes), trace.notes
    assert trace.by_syscall("unshare") and not trace.by_syscall("sethostname")


def test_a_held_runc_container_pauses_and_resumes_while_traced(
    ptrace: PtraceBackend, runc_bundle: tuple[list[str], str]
) -> None:
    # as the OCI adapter holds `runc run` for a detached container: the whole container
    # tree is traced meanwhile, and the freezer must still work on it
    argv, cid = runc_bundle
    bundle = Path(argv[argv.index("-b") + 1])
    config = json.loads((bundle / "config.json").read_text())
    config["process"]["args"] = ["sleep", "60"]
    (bundle / "config.json").write_text(json.dumps(config))
    cli = argv[: argv.index("run")]
    tracee = ptrace.spawn(argv, stdout=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while (
            '"running"'
            not in subprocess.run([*cli, "state", cid], capture_output=True, text=True).stdout
        ):
            assert time.monotonic() < deadline and tracee.proc.poll() is None
            time.sleep(0.1)
        for verb, status in (("pause", "paused"), ("resume", "running")):
            done = subprocess.run([*cli, verb, cid], capture_output=True, text=True, timeout=30)
            assert done.returncode == 0, done.stderr
            state = json.loads(subprocess.run([*cli, "state", cid], capture_output=True).stdout)
            assert state["status"] == status
        subprocess.run([*cli, "kill", cid, "KILL"], check=True, timeout=30)
        assert tracee.proc.wait(30) == 128 + signal.SIGKILL
    finally:
        if tracee.proc.poll() is None:
            tracee.proc.kill()
    trace = tracee.finish()
    assert trace.by_syscall("pivot_root") and not [n for n in trace.notes if "not handled" in n]
