"""The bcc backend on real commands (runc, rref, shells), its faults, and its agreement with
ptrace on the very same runs.

Nothing is mocked unless a test says so: the BPF program is compiled once per test process
and attached to this kernel's tracepoints.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import NS5, RUNC_HOSTNAME, traced_ok

from probes import bcc_backend
from probes.backend import Unavailable, select
from probes.bcc_backend import BccTracer
from probes.events import SYSCALLS
from probes.procinfo import read_ns
from probes.trace import Trace

PY = sys.executable


@pytest.fixture(scope="module")
def bcc() -> BccTracer:
    """The process's one compiled program; a refusal fails unless the host lacks a need."""
    backend, why = select("bcc")
    if backend is None:
        try:
            bcc_backend.preflight()
        except Unavailable as e:
            pytest.skip(f"bcc cannot run on this host: {e}")
        pytest.fail(f"this host has what bcc needs, yet: {why}")
    assert isinstance(backend, BccTracer)
    return backend


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _only_own_tree(trace: Trace) -> None:
    tree = set(trace.descendants(trace.root_pid))
    assert {e.pid for e in trace.events} <= tree
    assert os.getpid() not in {e.pid for e in trace.events}


# ---------------------------------------------------------------- runc and rref


def test_runc_run_namespaces_mounts_pivot_root_hostname_cgroups(
    bcc: BccTracer, runc_bundle: tuple[list[str], str]
) -> None:
    argv, cid = runc_bundle
    trace = traced_ok(bcc, argv)
    _only_own_tree(trace)
    unshares = [e for e in trace.by_syscall("unshare") if e.ret == 0]
    assert [e.args["flags"] for e in unshares] == [NS5]
    assert unshares[0].args["flags_raw"] == 0x6C020000
    (pivot,) = trace.by_syscall("pivot_root")
    assert (pivot.args, pivot.ret) == ({"new_root": ".", "put_old": "."}, 0)
    (host,) = trace.by_syscall("sethostname")
    assert host.args == {"name": RUNC_HOSTNAME} and host.ret == 0
    mounts = trace.by_syscall("mount")
    assert any(m.args["fstype"] == "proc" and m.args["source"] == "proc" for m in mounts)
    rec = [m for m in mounts if m.args["flags"] == ["MS_REC", "MS_SLAVE"]]
    assert rec and rec[0].args["target"] == "/"
    assert any(m.args["flags"] == ["MS_BIND", "MS_REC"] for m in mounts)
    nodes = {e.args["path"].rsplit("/", 1)[1]: e.args for e in trace.by_syscall("mknodat")}
    assert nodes["null"]["type"] == "S_IFCHR" and nodes["null"]["dev"] == [1, 3]
    assert nodes["null"]["mode"] == "S_IFCHR|0666"
    made = [e.args["path"] for e in trace.by_syscall("mkdirat", "mkdir")]
    assert any(p.endswith("/" + cid) and p.startswith("/sys/fs/cgroup/") for p in made), made
    writes = trace.by_syscall("write")
    # runc moves its bootstrap child (a host pid of the tree) into every hierarchy
    moved = {int(e.args["data"]) for e in writes if e.args["data"].isdigit() and e.ret > 0}
    assert moved and moved <= set(trace.tree()[trace.root_pid]), writes
    # host pids: the container's init (pid 1 inside) is a host process of the tree
    assert pivot.pid in trace.descendants(trace.root_pid) and pivot.pid > 1
    last = [e for e in trace.by_syscall("execve") if e.ret == 0][-1]
    assert last.pid == pivot.pid and last.args["argv"] == ["true"]
    # Go threads are followed but are not processes of the tree
    threads = {e.ret for e in trace.by_syscall("clone3") if "CLONE_THREAD" in e.args["flags"]}
    assert threads and not threads & {c for kids in trace.tree().values() for c in kids}


def test_rref_run_rm_busybox_true(bcc: BccTracer, rref: str, rref_root: str) -> None:
    argv = [rref, "--root", rref_root, "run", "--rm", "--hostname", "conform-bh", "busybox", "true"]
    trace = traced_ok(bcc, argv, timeout=120)
    _only_own_tree(trace)
    flags = {f for e in trace.by_syscall("unshare", "clone") if e.ret >= 0 for f in e.args["flags"]}
    assert set(NS5) <= flags, flags
    (pivot,) = trace.by_syscall("pivot_root")
    assert pivot.ret == 0
    assert [e.args["name"] for e in trace.by_syscall("sethostname")] == ["conform-bh"]
    overlay = [m for m in trace.by_syscall("mount") if m.args["fstype"] == "overlay"]
    assert overlay and overlay[0].args["data"].startswith("lowerdir=")
    assert any(m.args["flags"] == ["MS_REC", "MS_PRIVATE"] for m in trace.by_syscall("mount"))
    assert any(e.args["dev"] == [1, 3] for e in trace.by_syscall("mknodat"))


# ---------------------------------------------------------------- plain commands


def test_nothing_before_the_exec_is_missed_and_the_shim_is_invisible(bcc: BccTracer) -> None:
    argv = ["unshare", "--uts", "sh", "-c", "hostname conform-bcc-a; hostname; sleep 0.3"]
    done, trace = bcc.trace(argv, stdout=subprocess.PIPE, timeout=30)
    assert done.returncode == 0 and done.stdout.strip() == b"conform-bcc-a"
    first = trace.events[0]
    assert (first.syscall, first.pid, first.ret) == ("execve", trace.root_pid, 0)
    assert first.args["filename"] == "/usr/bin/unshare" and first.args["argv"] == argv
    assert first.ppid == os.getpid() and first.comm == "unshare"
    (un,) = trace.by_syscall("unshare")
    assert un.args["flags"] == ["CLONE_NEWUTS"] and un.pid == trace.root_pid
    (host,) = trace.by_syscall("sethostname")
    assert host.args == {"name": "conform-bcc-a"} and host.pid != trace.root_pid
    # namespaces are read from /proc as records arrive: the caller still lives after it
    assert un.ns["uts"] != read_ns(os.getpid())["uts"]
    assert sorted(trace.tree()[trace.root_pid]) == sorted(
        {e.pid for e in trace.events} - {trace.root_pid}
    )
    assert trace.by_syscall("exit")[-1].pid == trace.root_pid
    back = Trace.from_jsonl(trace.to_jsonl())
    assert [e.to_dict() for e in back.events] == [e.to_dict() for e in trace.events]


def test_other_processes_are_not_seen(bcc: BccTracer) -> None:
    # an untraced neighbour does the very syscalls the program watches, meanwhile
    noise = subprocess.Popen(
        ["sh", "-c", "while :; do unshare --uts hostname conform-bcc-noise; done"],
        start_new_session=True,
    )
    try:
        time.sleep(0.2)
        argv = ["unshare", "--uts", "sh", "-c", "sleep 0.5; hostname conform-bcc-mine"]
        _, trace = bcc.trace(argv, timeout=30)
    finally:
        os.killpg(noise.pid, signal.SIGKILL)
        noise.wait()
    assert [e.args["name"] for e in trace.by_syscall("sethostname")] == ["conform-bcc-mine"]
    _only_own_tree(trace)
    assert noise.pid not in {e.pid for e in trace.events}
    assert trace.lost == 0


def test_exec_from_a_thread_keeps_the_process_traced(bcc: BccTracer) -> None:
    # execve from a non-leader thread kills the leader (de_thread) and takes over its tid:
    # the process must stay followed, with no exit recorded before the exec
    code = (
        "import os, threading, time\n"
        "argv = ['unshare', '--uts', 'hostname', 'conform-bcc-thread']\n"
        "threading.Thread(target=os.execvp, args=('unshare', argv)).start()\n"
        "time.sleep(10)\n"
    )
    done, trace = bcc.trace([PY, "-c", code], timeout=30)
    assert done.returncode == 0
    execs = [e for e in trace.by_syscall("execve") if e.ret == 0]
    assert [e.args["filename"] for e in execs] == [PY, "/usr/bin/unshare", "/usr/bin/hostname"]
    assert execs[1].pid == execs[1].tid == trace.root_pid
    assert [e.args["name"] for e in trace.by_syscall("sethostname")] == ["conform-bcc-thread"]
    exits = trace.by_syscall("exit")
    assert [e.pid for e in exits] == [trace.root_pid] and exits[0].ts > execs[1].ts


def test_concurrent_traces_each_see_only_their_own_tree(bcc: BccTracer) -> None:
    results: dict[str, Trace] = {}

    def one(name: str) -> None:
        argv = ["unshare", "--uts", "sh", "-c", f"hostname {name}; hostname; true"]
        results[name] = bcc.trace(argv, stdout=subprocess.PIPE, timeout=60)[1]

    names = [f"conform-bcc-c{i}" for i in range(4)]
    threads = [threading.Thread(target=one, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    for n in names:
        trace = results[n]
        assert [e.args["name"] for e in trace.by_syscall("sethostname")] == [n]
        _only_own_tree(trace)
        assert trace.lost == 0
    assert len({results[n].root_pid for n in names}) == len(names)


def test_the_program_is_compiled_once_per_process(bcc: BccTracer) -> None:
    again, _ = select("bcc")
    auto, why = select("auto")
    assert again is bcc and auto is bcc, why
    assert 0 < bcc.compile_seconds < 60


def test_records_lost_by_a_stalled_reader_are_counted(bcc: BccTracer) -> None:
    # the poller is held (it takes this lock per record) while the command makes more
    # records than the ring buffer holds: the kernel side counts what it could not submit
    n = 6000
    code = (
        "import ctypes\n"
        "mount = ctypes.CDLL(None).mount\n"
        f"for _ in range({n}): mount(b'none', b'/nonexistent-conform-bcc', b'tmpfs', 0, None)\n"
    )
    tracee = bcc.spawn([PY, "-c", code])
    with bcc._lock:  # taken before the interpreter is up: it makes no mount before
        assert tracee.proc.wait(60) == 0
    trace = tracee.finish()
    mounts = trace.by_syscall("mount")
    # every mount is either recorded or counted; so is the exit, made while still stalled
    seen = len(mounts) + len(trace.by_syscall("exit"))
    assert trace.lost > 0 and seen + trace.lost == n + 1, (len(mounts), trace.lost)
    assert any(f"{trace.lost} record(s) lost" in note for note in trace.notes), trace.notes
    assert all(m.ret == -2 for m in mounts)


# ---------------------------------------------------------------- faults


def test_missing_or_unexecutable_command_raises_like_popen(bcc: BccTracer, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        bcc.trace(["conform-bcc-no-such-command"], timeout=10)
    with pytest.raises(FileNotFoundError):
        bcc.spawn(["/nonexistent/conform-bcc"])
    plain = tmp_path / "not-executable"
    plain.write_text("#!/bin/sh\n")
    with pytest.raises(PermissionError):
        bcc.spawn([str(plain)])


def test_hang_hits_the_timeout_and_the_whole_tree_is_killed(bcc: BccTracer) -> None:
    from probes.backend import CommandTimeout

    # the grandchild leaves the process group: killing the group alone would miss it
    script = "setsid sleep 300 & echo $!; wait"
    started = time.monotonic()
    with pytest.raises(CommandTimeout) as info:
        bcc.trace(["sh", "-c", script], stdout=subprocess.PIPE, timeout=1.5)
    assert time.monotonic() - started < 30
    trace = info.value.trace
    assert any("did not finish within 1.5s" in n for n in trace.notes), trace.notes
    sleeper = int(info.value.stdout.split()[0])
    deadline = time.monotonic() + 5
    while _alive(sleeper) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(sleeper)
    assert sleeper in trace.pids()


def _python_as(prefix: list[str], code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(bcc_backend.__file__).parents[1])}
    return subprocess.run(
        [*prefix, PY, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )


SELECT = "from probes.backend import select; print(select('bcc')[1])"


def test_without_root_bcc_says_so_in_one_line() -> None:
    done = _python_as(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"], SELECT)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "no probe backend: bcc: bcc needs root (BPF programs and tracefs)\n"


def test_bpf_refused_is_a_one_line_reason() -> None:
    # root without capabilities (empty bounding set): bpf(2) answers EPERM
    drop = ["setpriv", "--inh-caps=-all", "--bounding-set=-all"]
    done = _python_as(drop, SELECT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("no probe backend: bcc: the BPF program was refused: ")
    assert done.stdout.count("\n") == 1 and "Traceback" not in done.stdout + done.stderr


def test_tracefs_is_mounted_when_missing() -> None:
    # in a private mount namespace, so the host's tracefs is never touched
    code = (
        "import os; from probes.bcc_backend import tracefs; "
        "print(os.path.isdir('/sys/kernel/tracing/events'), tracefs())"
    )
    script = 'umount /sys/kernel/tracing && "$@"'
    done = _python_as(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"], code
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "False /sys/kernel/tracing\n"


def test_absent_tracepoints_become_notes_or_a_refusal(tmp_path: Path) -> None:
    # a tracefs tree made by hand stands for an older kernel's
    for ev in ("sched/sched_process_fork", "sched/sched_process_exit", "syscalls/sys_enter_close"):
        (tmp_path / "events" / ev).mkdir(parents=True)
    for _name, tp in bcc_backend.SYSCALLS:
        if tp not in ("clone3", "openat2"):
            for side in ("enter", "exit"):
                (tmp_path / "events" / "syscalls" / f"sys_{side}_{tp}").mkdir()
    notes = bcc_backend.tracepoint_notes(str(tmp_path))
    assert notes == [
        "tracepoint sys_enter_clone3 absent on this kernel: not traced",
        "tracepoint sys_enter_openat2 absent on this kernel: not traced",
    ]
    assert "sys_enter_clone3" not in bcc_backend.program(["clone3", "openat2"])
    (tmp_path / "events" / "syscalls" / "sys_exit_pivot_root").rmdir()
    with pytest.raises(Unavailable, match=r"^tracepoints absent on this kernel: pivot_root$"):
        bcc_backend.tracepoint_notes(str(tmp_path))


def test_missing_headers_are_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # mocked: the headers directory (removing the host's would break every other engineer)
    monkeypatch.setattr(bcc_backend, "headers_dir", lambda: str(tmp_path / "build"))
    with pytest.raises(Unavailable, match=r"^no kernel headers at .*/build \(make setup"):
        bcc_backend.preflight()


def test_bcc_is_not_imported_by_the_cli_or_the_backend_modules() -> None:
    code = (
        "import sys; import probes.bcc_backend, probes.backend, conformance.cli, "
        "runtime_ref.cli; print('bcc' in sys.modules)"
    )
    done = _python_as([], code)
    assert done.stdout == "False\n", done.stderr


# ---------------------------------------------------------------- bcc and ptrace, one run

#: The syscalls whose records must be identical whichever backend took them.
CORE = SYSCALLS[: SYSCALLS.index("execve")]


def _both(bcc: BccTracer, argv: list[str], tmp_path: Path) -> tuple[Trace, Trace]:
    """One run of ``argv`` seen by both backends at once: bcc traces the ptrace launcher.

    Being the same run, pids, tids, paths and return values must all agree.
    """
    out = tmp_path / "ptrace.jsonl"
    cli = [PY, "-m", "probes.ptrace_backend", "--jsonl", str(out), "--", *argv]
    done, seen_by_bcc = bcc.trace(cli, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    assert done.returncode == 0, done.stderr
    seen_by_ptrace = Trace.from_jsonl(out.read_text())
    assert seen_by_bcc.lost == 0 and seen_by_ptrace.lost == 0
    return seen_by_bcc, seen_by_ptrace


def _canon(args: dict[str, object]) -> str:
    return json.dumps(args, sort_keys=True)


def _records(trace: Trace, pids: set[int], names: tuple[str, ...]) -> list[tuple[object, ...]]:
    return sorted(
        (e.pid, e.tid, e.comm, e.ppid, e.cgroup_id, e.syscall, _canon(e.args), e.ret)
        for e in trace.events
        if e.pid in pids and e.syscall in names
    )


def _assert_same(seen_by_bcc: Trace, seen_by_ptrace: Trace) -> None:
    tree = set(seen_by_ptrace.descendants(seen_by_ptrace.root_pid))
    # bcc saw the launcher too: keep what it saw below the command the launcher traced
    assert set(seen_by_bcc.descendants(seen_by_ptrace.root_pid)) == tree
    core_b = _records(seen_by_bcc, tree, CORE)
    assert core_b, "bcc recorded none of the namespace/mount syscalls"
    assert core_b == _records(seen_by_ptrace, tree, CORE)
    # the rest too: processes, execs, cgroup files (execveat aside: runc's re-exec of its
    # memfd copy, execveat(fd, "", AT_EMPTY_PATH), is seen by ptrace only)
    rest = tuple(n for n in SYSCALLS if n not in CORE and n != "execveat")
    assert _records(seen_by_bcc, tree, rest) == _records(seen_by_ptrace, tree, rest)


def test_bcc_and_ptrace_agree_on_runc_run(
    bcc: BccTracer, runc_bundle: tuple[list[str], str], tmp_path: Path
) -> None:
    seen_by_bcc, seen_by_ptrace = _both(bcc, runc_bundle[0], tmp_path)
    _assert_same(seen_by_bcc, seen_by_ptrace)
    (un,) = [e for e in seen_by_ptrace.by_syscall("unshare") if e.ret == 0]
    assert un.args["flags"] == NS5 and seen_by_ptrace.by_syscall("pivot_root")


def test_bcc_and_ptrace_agree_on_rref_run(
    bcc: BccTracer, rref: str, rref_root: str, tmp_path: Path
) -> None:
    argv = [rref, "--root", rref_root, "run", "--rm", "--hostname", "conform-eq", "busybox", "true"]
    seen_by_bcc, seen_by_ptrace = _both(bcc, argv, tmp_path)
    _assert_same(seen_by_bcc, seen_by_ptrace)
    assert [e.args["name"] for e in seen_by_ptrace.by_syscall("sethostname")] == ["conform-eq"]


def test_bcc_and_ptrace_agree_on_a_plain_command(bcc: BccTracer, tmp_path: Path) -> None:
    argv = [
        "unshare",
        "--uts",
        "--mount",
        "sh",
        "-c",
        "hostname conform-eq2; mount -t tmpfs x /mnt",
    ]
    seen_by_bcc, seen_by_ptrace = _both(bcc, argv, tmp_path)
    _assert_same(seen_by_bcc, seen_by_ptrace)
    private, tmpfs = seen_by_ptrace.by_syscall("mount")
    assert (private.args["target"], private.args["flags"]) == ("/", ["MS_REC", "MS_PRIVATE"])
    assert (tmpfs.args["fstype"], tmpfs.args["target"], tmpfs.ret) == ("tmpfs", "/mnt", 0)


def test_deletions_are_recorded_only_once_contained(bcc: BccTracer, tmp_path: Path) -> None:
    """unlink/unlinkat outside a cgroup fs count once the task (or a parent) chrooted,
    pivoted or setns'd: the container's deletes, never the runtime's bookkeeping."""
    a, b, c = (tmp_path / n for n in ("conform-a", "conform-b", "conform-c"))
    for f in (a, b, c):
        f.write_text("x")
    script = f"rm {a}; chroot / sh -c 'rm {b}; busybox rm {c}'"
    seen_by_bcc, seen_by_ptrace = _both(bcc, ["sh", "-c", script], tmp_path)
    _assert_same(seen_by_bcc, seen_by_ptrace)
    tree = set(seen_by_ptrace.descendants(seen_by_ptrace.root_pid))
    for trace in (seen_by_bcc, seen_by_ptrace):
        gone = sorted(
            str(e.args["path"])
            for e in trace.by_syscall("unlink", "unlinkat")
            if e.pid in tree and e.ret == 0
        )
        assert gone == [str(b), str(c)], (trace.backend, gone)
    assert not (a.exists() or b.exists() or c.exists())
