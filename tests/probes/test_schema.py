"""The shared trace schema: decoding tables, JSON round trips, the timeline, backend choice."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import pytest

from probes import backend as backend_mod
from probes.decode import decode, dev_numbers, errno_name, nstype
from probes.events import TraceEvent
from probes.procinfo import read_comm, read_ns, read_ppid, read_tgid
from probes.timeline import describe, render
from probes.trace import Trace


def test_runc_unshare_flags_decode_to_five_namespaces() -> None:
    # runc 1.1.5's one unshare(NEWNS|NEWUTS|NEWIPC|NEWPID|NEWNET)
    raw = 0x20000 | 0x4000000 | 0x8000000 | 0x20000000 | 0x40000000
    args = decode("unshare", {"flags": raw})
    assert args["flags"] == [
        "CLONE_NEWNS",
        "CLONE_NEWUTS",
        "CLONE_NEWIPC",
        "CLONE_NEWPID",
        "CLONE_NEWNET",
    ]
    assert args["flags_raw"] == raw


def test_clone_low_byte_is_the_exit_signal() -> None:
    args = decode("clone", {"flags": 0x100 | 0x4000 | 17})
    assert args["flags"] == ["CLONE_VM", "CLONE_VFORK"]
    assert args["exit_signal"] == "SIGCHLD"
    c3 = decode("clone3", {"flags": 0x8000, "exit_signal": 17})
    assert c3["flags"] == ["CLONE_PARENT"] and c3["exit_signal"] == "SIGCHLD"


def test_unknown_bits_are_kept_in_hex_not_dropped() -> None:
    assert decode("unshare", {"flags": 0x20000 | 0x1})["flags"] == ["CLONE_NEWNS", "0x1"]


def test_setns_nstype() -> None:
    assert decode("setns", {"fd": 5, "nstype": 0x40000000}) == {
        "fd": 5,
        "nstype": "CLONE_NEWNET",
        "nstype_raw": 0x40000000,
    }
    assert nstype(0) == "0"


def test_mount_flags_strip_the_magic_and_decode_bind_rec() -> None:
    args = decode(
        "mount",
        {"source": "/a", "target": "/b", "fstype": None, "flags": 0xC0ED0000 | 4096 | 16384},
    )
    assert args["flags"] == ["MS_BIND", "MS_REC"]
    assert args["data"] is None and args["target"] == "/b"
    assert decode("mount", {"flags": (1 << 18) | 16384})["flags"] == ["MS_REC", "MS_PRIVATE"]


def test_umount2_detach() -> None:
    assert decode("umount2", {"target": "/old", "flags": 2})["flags"] == ["MNT_DETACH"]


def test_mknod_char_device_type_perm_and_dev() -> None:
    # /dev/null: makedev(1, 3) as the syscall takes it; a big minor uses the high bits
    args = decode("mknodat", {"dfd": -100, "path": "null", "mode": 0o20666, "dev": 0x103})
    assert args["mode"] == "S_IFCHR|0666"
    assert args["type"] == "S_IFCHR" and args["perm"] == 0o666
    assert args["dev"] == [1, 3]
    assert dev_numbers((0x12 << 8) | 0x34 | (0x56 << 20)) == [0x12, 0x5634]


def test_open_and_unlink_flags() -> None:
    args = decode("openat", {"dfd": -100, "path": "/sys/fs/cgroup", "flags": 0o2000000 | 1})
    assert args["flags"] == ["O_WRONLY", "O_CLOEXEC"]
    assert decode("unlinkat", {"dfd": 3, "path": "x", "flags": 0x200})["flags"] == ["AT_REMOVEDIR"]


def test_errno_names() -> None:
    assert errno_name(-2) == "-ENOENT"
    assert errno_name(7) == "7"


def _events() -> list[TraceEvent]:
    return [
        TraceEvent(1.0, 10, 10, 1, "runc", "execve", decode("execve", {"filename": "/r"}), 0),
        TraceEvent(1.1, 10, 11, 1, "runc", "unshare", decode("unshare", {"flags": 0x20000})),
        TraceEvent(1.2, 10, 10, 1, "runc", "fork", {"child_pid": 12}),
        TraceEvent(1.3, 12, 12, 10, "runc:[1:CHILD]", "sethostname", {"name": "box"}),
        TraceEvent(1.4, 12, 12, 10, "runc:[1:CHILD]", "fork", {"child_pid": 13}),
        TraceEvent(1.5, 13, 13, 12, "sh", "mount", decode("mount", {"flags": 1}), -1),
        TraceEvent(1.6, 13, 13, 12, "sh", "exit", {}, 0, {"mnt": 4026531841}, 7),
    ]


def test_event_and_trace_round_trip_through_json() -> None:
    trace = Trace("bcc", _events(), lost=2, notes=["conmon not seen"], root_pid=10)
    back = Trace.from_jsonl(trace.to_jsonl())
    assert back == trace
    assert TraceEvent.from_dict(trace.events[-1].to_dict()) == trace.events[-1]


def test_trace_tree_and_helpers() -> None:
    trace = Trace("bcc", _events(), root_pid=10)
    assert trace.tree() == {10: [12], 12: [13]}
    assert trace.descendants(10) == [10, 12, 13]
    assert trace.descendants(12) == [12, 13]
    assert [e.syscall for e in trace.by_syscall("mount", "unshare")] == ["unshare", "mount"]
    assert trace.comm_of(12) == "runc:[1:CHILD]"
    assert trace.pids() == [10, 12, 13]
    assert trace.events[5].failed and not trace.events[6].failed


def test_timeline_nests_children_and_decodes() -> None:
    trace = Trace("bcc", _events(), lost=1, notes=["one note"], root_pid=10)
    text = render(trace)
    lines = text.splitlines()
    assert lines[0] == "trace: backend bcc, root pid 10, 7 events, 1 lost"
    assert lines[1] == "note: one note"
    assert "[10] runc" in lines[2]
    assert any(line.startswith("    ") and 'sethostname("box") = 0' in line for line in lines)
    assert any("unshare(CLONE_NEWNS) = 0" in line and "(tid 11)" in line for line in lines)
    assert any(line.startswith("    [13] sh") for line in lines)
    assert "mount(NULL, NULL, NULL, MS_RDONLY, NULL) = -EPERM" in text


def test_describe_mknod_and_setns() -> None:
    e = TraceEvent(
        0,
        1,
        1,
        0,
        "x",
        "mknodat",
        decode("mknodat", {"dfd": -100, "path": "null", "mode": 0o20666, "dev": 0x103}),
    )
    assert describe(e) == 'mknodat(AT_FDCWD, "null", S_IFCHR|0666, makedev(1, 3)) = 0'
    e = TraceEvent(0, 1, 1, 0, "x", "setns", decode("setns", {"fd": 4, "nstype": 0x20000}))
    assert describe(e) == "setns(4, CLONE_NEWNS) = 0"


def test_procinfo_reads_this_process() -> None:
    import os

    me = os.getpid()
    assert set(read_ns(me)) >= {"mnt", "net", "pid", "uts", "ipc"}
    assert read_ppid(me) == os.getppid()
    assert read_comm(me)
    assert read_tgid(me) == me
    assert read_ns(2**22 + 12345) == {} and read_ppid(2**22 + 12345) == 0


def test_select_none_and_unknown() -> None:
    assert backend_mod.select("none") == (None, "tracing disabled (--probe none)")
    got, why = backend_mod.select("strace")
    assert got is None and "unknown probe backend 'strace'" in why


class _Untraced:
    """A stand-in backend that starts the command without tracing (tests run_traced's
    plumbing: output, stdin, exit status, the kill on timeout)."""

    name = "untraced"

    def spawn(self, argv: Sequence[str], **popen: Any) -> Any:
        proc = subprocess.Popen(list(argv), **popen)

        class _T:
            def __init__(self) -> None:
                self.proc = proc
                self.pid = proc.pid

            def finish(self, timeout: float = 10.0) -> Trace:
                return Trace("untraced", root_pid=proc.pid)

        return _T()


def test_run_traced_feeds_stdin_and_keeps_the_exit_status() -> None:
    done, trace = backend_mod.run_traced(
        _Untraced(),  # type: ignore[arg-type]
        [sys.executable, "-c", "import sys; print(sys.stdin.read()); sys.exit(3)"],
        stdin=b"hello",
        stdout=subprocess.PIPE,
        timeout=30,
    )
    assert done.returncode == 3 and done.stdout.strip() == b"hello"
    assert trace.root_pid > 0


def test_run_traced_kills_a_hanging_command_and_says_so() -> None:
    with pytest.raises(backend_mod.CommandTimeout) as info:
        backend_mod.run_traced(_Untraced(), ["sleep", "30"], timeout=0.5)  # type: ignore[arg-type]
    assert "did not finish within 0.5s" in str(info.value)
    assert info.value.trace.notes[-1] == "the command did not finish within 0.5s and was killed"
