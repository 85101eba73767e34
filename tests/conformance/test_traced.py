"""The TRACE checks on hand-made traces: each passes the right order and names what is wrong
in every wrong one (the behaviour tests run them on real traces; these prove they can fail).
"""

from __future__ import annotations

from typing import Any

from conformance import traced
from probes.decode import decode
from probes.events import TraceEvent
from probes.trace import Trace

HOST_UTS = 4026531838


class Script:
    """A trace written as one call per syscall; raw args are decoded as the probes do."""

    def __init__(self) -> None:
        self.events: list[TraceEvent] = []

    def __call__(
        self, pid: int, syscall: str, ret: int = 0, ns: dict[str, int] | None = None, **raw: Any
    ) -> Script:
        ts = float(len(self.events))
        args = decode(syscall, raw)
        self.events.append(TraceEvent(ts, pid, pid, 0, "rt", syscall, args, ret, ns or {}))
        return self

    def fork(self, parent: int, child: int) -> Script:
        return self(parent, "fork", child_pid=child)

    def traced(self) -> traced.Traced:
        return traced.Traced(["rt", "run"], Trace("bcc", list(self.events), root_pid=10))


NEWNS, NEWUTS, NEWPID, NEWNET, NEWUSER = 0x20000, 0x4000000, 0x20000000, 0x40000000, 0x10000000


def _container(order: str = "good") -> Script:
    """A runtime (10) forks an init (11) that unshares, forks the pid-1 child (12), which
    pivots, detaches the old root, sets its hostname and execs `true`."""
    s = Script().fork(10, 11)
    if order == "hostname-first":
        s(11, "sethostname", name="c1", ns={"uts": HOST_UTS})
    s(11, "unshare", flags=NEWNS | NEWUTS | NEWPID | NEWNET).fork(11, 12)
    s(10, "openat", ret=5, dfd=-100, path="/sys/fs/cgroup/pids/c1/cgroup.procs", flags=1)
    s(10, "mkdir", path="/sys/fs/cgroup/pids/c1", mode=0o755)
    s(10, "write", fd=5, data="12")
    s(12, "pivot_root", new_root=".", put_old=".")
    if order != "no-detach":
        s(12, "umount2", target=".", flags=2)
    if order != "hostname-first":
        s(12, "sethostname", name="c1", ns={"uts": 4026532999})
    return s(12, "execve", filename="/bin/true", argv=["true"])


def test_good_order_passes_every_check():
    t = _container().traced()
    assert traced.check_namespaces(t, {"mnt", "uts", "pid", "net"}, {"user"}) == []
    assert traced.check_root_pivot(t, ["true"]) == []
    assert traced.check_hostname_after_uts(t, "c1", HOST_UTS) == []
    assert traced.check_cgroup_before_exec(t, ["true"]) == []


def test_missing_and_unrequested_namespaces_are_named():
    t = _container().traced()
    problems = traced.check_namespaces(t, {"mnt", "ipc"}, {"net"})
    assert any("CLONE_NEWIPC" in p for p in problems)
    assert any("CLONE_NEWNET appears although" in p for p in problems)


def test_newpid_without_a_fork_is_named():
    t = Script()(11, "unshare", flags=NEWPID)(11, "execve", filename="/bin/true", argv=["true"])
    problems = traced.check_namespaces(t.traced(), {"pid"}, set())
    assert problems and "never followed by a fork" in problems[0]


def test_pivot_without_detaching_the_old_root_fails():
    problems = traced.check_root_pivot(_container("no-detach").traced(), ["true"])
    assert problems and "umount2(MNT_DETACH)" in problems[0]


def test_no_pivot_at_all_fails_but_ms_move_and_chroot_pass():
    s = Script()(12, "execve", filename="/bin/true", argv=["true"])
    assert "no pivot_root" in traced.check_root_pivot(s.traced(), ["true"])[0]
    s = Script()(12, "mount", source=".", target="/", fstype="", flags=0x2000, data="")
    s(12, "chroot", path=".")(12, "execve", filename="/bin/true", argv=["true"])
    assert traced.check_root_pivot(s.traced(), ["true"]) == []


def test_hostname_before_newuts_fails():
    problems = traced.check_hostname_after_uts(
        _container("hostname-first").traced(), "c1", HOST_UTS
    )
    assert problems and "no CLONE_NEWUTS before it" in problems[0]


def test_hostname_never_set_fails():
    problems = traced.check_hostname_after_uts(_container().traced(), "other", HOST_UTS)
    assert problems and "no successful sethostname('other')" in problems[0]


def test_cgroup_attach_after_exec_or_of_a_stranger_fails():
    s = Script().fork(10, 11)(11, "execve", filename="/bin/true", argv=["true"])
    s(10, "openat", ret=5, dfd=-100, path="/sys/fs/cgroup/pids/c1/cgroup.procs", flags=1)
    s(10, "mkdir", path="/sys/fs/cgroup/pids/c1", mode=0o755)(10, "write", fd=5, data="11")
    problems = traced.check_cgroup_before_exec(s.traced(), ["true"])
    assert len(problems) == 2, problems
    s = Script().fork(10, 11)(10, "mkdir", path="/sys/fs/cgroup/pids/c1", mode=0o755)
    s(10, "openat", ret=5, dfd=-100, path="/sys/fs/cgroup/pids/c1/cgroup.procs", flags=1)
    s(10, "write", fd=5, data="99")(11, "execve", filename="/bin/true", argv=["true"])
    problems = traced.check_cgroup_before_exec(s.traced(), ["true"])
    assert problems and "no write of pid 11" in problems[0]


def test_exec_must_setns_each_namespace_of_the_target():
    target = {"net": 4026532001, "uts": 4026532002}
    s = Script()(20, "setns", fd=3, nstype=NEWUTS).fork(20, 21)
    s(21, "execve", filename="/bin/sleep", argv=["sleep", "0.3"], ns={"uts": 4026532002})
    problems = traced.check_exec_joins(s.traced(), target, ["sleep", "0.3"])
    assert problems == ["no setns into the container's net namespace (CLONE_NEWNET)"]
    s(20, "setns", fd=4, nstype=NEWNET)
    assert traced.check_exec_joins(s.traced(), target, ["sleep", "0.3"]) == []
    assert traced.check_exec_joins(Script().traced(), target, ["true"]) == [
        "no successful setns in the exec"
    ]


def test_whiteout_mknods_and_contained_unlinks():
    s = Script()(30, "mknodat", dfd=-100, path="/store/l1/conform-x", mode=0o20000, dev=0)
    t = s.traced()
    assert traced.check_whiteout_mknods(t, ["conform-x"]) == []
    assert traced.check_whiteout_mknods(t, ["conform-y"])
    s(30, "mknodat", dfd=-100, path="/store/l1/dev-null", mode=0o20666, dev=(1 << 8) | 3)
    assert traced.check_whiteout_mknods(s.traced(), ["dev-null"])  # 1:3 is no whiteout
    assert traced.check_contained_unlink(t, "/etc/group")
    s(31, "unlinkat", dfd=-100, path="/etc/group", flags=0)
    assert traced.check_contained_unlink(s.traced(), "/etc/group") == []
