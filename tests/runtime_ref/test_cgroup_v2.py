"""rref on a pure cgroup v2 host: enforcement, delegation and the v2-only files.

These need a kernel with only cgroup2 mounted and its controllers on offer; the host
of these runners is hybrid v1, so they run in the v2 lane's guest (`make test-v2`,
`conform lane v2`). Elsewhere they skip and say so; in the lane (CONFORM_LANE=v2) a
host that is not pure v2 fails them instead, so the lane cannot pass by skipping.

The populated-parent tests play the service manager: they make a slice and a scope
(names carry rref-test), enable controllers down to the scope as systemd does for
Delegate=yes, and put a process in it beside rref's caller.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest
from conftest import RREF, Rref
from ocikit import Oci

from runtime_ref.cgroups import detect, parse_flat_keyed

ROOT = "/sys/fs/cgroup"
MiB = 1 << 20
HOG = "x=a; while true; do x=$x$x; done"  # doubles a shell string until the OOM killer
# touches 64 MiB page by page (calloc'd pages cost nothing until written), then waits
HIGH_HOG = (
    "import time\nb = bytearray(64 << 20)\n"
    "for i in range(0, len(b), 4096): b[i] = 1\ntime.sleep(600)"
)


def _pure_v2() -> str | None:
    """Why this host is not pure cgroup v2 with memory and pids on offer, or None."""
    lay = detect()
    if lay.mode != "v2":
        return f"needs a pure cgroup v2 host (this one is {lay.mode}): run make test-v2"
    missing = {"memory", "pids", "cpu", "cpuset"} - lay.v2_controllers()
    if missing:
        return f"cgroup2 here offers no {' '.join(sorted(missing))}"
    return None


@pytest.fixture(autouse=True)
def pure_v2() -> None:
    why = _pure_v2()
    if why is None:
        return
    if os.environ.get("CONFORM_LANE") == "v2":
        pytest.fail(f"the v2 lane runs on a host that is not pure v2: {why}")
    pytest.skip(why)


def read(d: str, name: str) -> str:
    with open(os.path.join(d, name)) as f:
        return f.read().strip()


def write(d: str, name: str, value: str) -> None:
    with open(os.path.join(d, name), "w") as f:
        f.write(value)


def own_cgroup() -> str:
    with open("/proc/self/cgroup") as f:
        return ROOT + f.read().strip().split("::", 1)[1].rstrip("/")


def procs(d: str) -> set[int]:
    return {int(p) for p in read(d, "cgroup.procs").split()}


class Scope:
    """A slice and, below it, a scope holding a sleeper: a manager's populated cgroup."""

    def __init__(self, delegate: str | None) -> None:
        tag = uuid.uuid4().hex[:8]
        self.slice = os.path.join(own_cgroup(), f"rref-test-{tag}.slice")
        self.scope = os.path.join(self.slice, "job.scope")
        self.sleeper: subprocess.Popen[bytes] | None = None
        base = os.path.dirname(self.slice)
        ctrls = "+memory +pids"
        if "memory" not in read(base, "cgroup.subtree_control").split():
            write(base, "cgroup.subtree_control", ctrls)  # the lane's own root cgroup
        os.mkdir(self.slice)
        write(self.slice, "cgroup.subtree_control", ctrls)
        os.mkdir(self.scope)
        if delegate:
            os.setxattr(self.scope, delegate, b"1")
        self.sleeper = subprocess.Popen(["sleep", "600"], preexec_fn=self.join)

    def join(self, where: str = "") -> None:
        write(where or self.scope, "cgroup.procs", str(os.getpid()))

    def rref(self, r: Rref, *args: str, where: str = "") -> subprocess.CompletedProcess[str]:
        """rref started inside the scope (or `where`), as a CI job's step would be."""
        return subprocess.run(
            [RREF, "--root", r.root, *args],
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
            preexec_fn=lambda: self.join(where),
        )

    def close(self) -> None:
        if self.sleeper is not None:
            self.sleeper.kill()
            self.sleeper.wait(timeout=10)
        for d in sorted(
            (os.path.join(dp, n) for dp, dn, _ in os.walk(self.slice) for n in dn),
            key=len,
            reverse=True,
        ):
            _rmdir(d)
        for d in (self.scope, self.slice):
            _rmdir(d)


def _rmdir(d: str) -> None:
    deadline = time.monotonic() + 5
    while True:
        try:
            os.rmdir(d)
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.fixture
def scope(request: pytest.FixtureRequest) -> Iterator[Scope]:
    s = Scope(getattr(request, "param", None))
    try:
        yield s
    finally:
        s.close()


@pytest.mark.parametrize("scope", ["trusted.delegate", "user.delegate"], indirect=True)
def test_delegated_populated_scope_gets_a_leaf(scope: Scope, rref: Rref) -> None:
    """systemd's Delegate=yes scope holds the caller: rref moves the scope's processes into
    rref-leaf, enables the controllers there, and enforces the limits below it."""
    p = scope.rref(
        rref, "run", "--rm", "-m", "32m", "--memory-swap", "32m", "busybox", "sh", "-c", HOG
    )
    assert p.returncode == 137, p.stderr
    leaf = os.path.join(scope.scope, "rref-leaf")
    assert scope.sleeper is not None and scope.sleeper.pid in procs(leaf)
    assert procs(scope.scope) == set()
    assert "memory" in read(scope.scope, "cgroup.subtree_control").split()
    # the job's later steps are forked from processes now in the leaf: rref hangs its
    # containers beside the leaf, in the scope, and enables pids there too
    p = scope.rref(
        rref,
        "run",
        "--rm",
        "--pids-limit",
        "5",
        "busybox",
        "sh",
        "-c",
        "for i in 1 2 3 4 5 6; do sleep 5 & done 2>&1; wait",
        where=leaf,
    )
    assert "can't fork" in p.stdout + p.stderr or "Resource temporarily" in p.stdout + p.stderr
    assert "pids" in read(scope.scope, "cgroup.subtree_control").split()
    assert [
        n
        for n in os.listdir(scope.scope)
        if n.startswith("rref-")
        and n != "rref-leaf"
        and os.path.isdir(os.path.join(scope.scope, n))
    ] == []


def test_undelegated_populated_scope_is_refused_untouched(scope: Scope, rref: Rref) -> None:
    """Without delegation rref writes nothing in the scope: a one-line error, exit 125."""
    p = scope.rref(rref, "run", "--rm", "-m", "32m", "busybox", "true")
    assert p.returncode == 125, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "is not delegated to rref" in lines[0], p.stderr
    assert scope.scope in lines[0]
    assert read(scope.scope, "cgroup.subtree_control") == ""
    assert [n for n in os.listdir(scope.scope) if os.path.isdir(os.path.join(scope.scope, n))] == []
    assert scope.sleeper is not None and scope.sleeper.pid in procs(scope.scope)
    # without a limit nothing needs enabling: the container runs in the scope's subtree
    p = scope.rref(rref, "run", "--rm", "busybox", "true")
    assert p.returncode == 0, p.stderr


def test_root_caller_gets_controllers_enabled(rref: Rref) -> None:
    """A caller in the root cgroup (no manager) is the host's owner: rref enables the
    controllers in the root's subtree_control, as runc's v2 manager does."""
    if own_cgroup() != ROOT:
        pytest.skip("this process does not run in the root cgroup")
    p = rref(
        "run", "--rm", "-m", "32m", "--memory-swap", "32m", "busybox", "sh", "-c", HOG, check=False
    )
    assert p.returncode == 137, p.stderr
    assert "memory" in read(ROOT, "cgroup.subtree_control").split()


@contextlib.contextmanager
def running(rref: Rref, *args: str) -> Iterator[str]:
    cid = rref.run_d(*args, "busybox", "sleep", "600")
    try:
        yield cid
    finally:
        rref("rm", "-f", cid, check=False)


def cgroup_of(rref: Rref, cid: str) -> str:
    with open(f"/proc/{rref.pid(cid)}/cgroup") as f:
        return ROOT + f.read().strip().split("::", 1)[1]


def test_oom_kill_is_counted_in_memory_events(rref: Rref) -> None:
    """memory.max with memory.swap.max 0: a process past it is OOM-killed (137), the kill is
    counted in memory.events, and the container's pid 1 lives on."""
    with running(rref, "-m", "32m", "--memory-swap", "32m") as cid:
        d = cgroup_of(rref, cid)
        assert read(d, "memory.max") == str(32 * MiB) and read(d, "memory.swap.max") == "0"
        p = rref("exec", cid, "sh", "-c", HOG, check=False, timeout=120)
        assert p.returncode == 137, p.stderr
        events = parse_flat_keyed(read(d, "memory.events"))
        assert events["oom_kill"] >= 1 and events["max"] >= 1, events
        assert rref.inspect(cid, "{{.State.Running}}") == "true"


def test_v2_files_read_back_inside_and_out(rref: Rref) -> None:
    """cpu.max, cpuset.cpus.effective, pids.max and the io weight in the container's cgroup;
    inside, the cgroup namespace's root is that cgroup and shows the same limits."""
    with running(
        rref,
        "--cpus",
        "0.5",
        "--cpuset-cpus",
        "0",
        "--pids-limit",
        "64",
        "-m",
        "48m",
        "--blkio-weight",
        "300",
    ) as cid:
        d = cgroup_of(rref, cid)
        assert read(d, "cpu.max") == "50000 100000"
        assert read(d, "cpuset.cpus.effective") == "0"
        assert read(d, "pids.max") == "64"
        weights = [n for n in ("io.weight", "io.bfq.weight") if os.path.exists(os.path.join(d, n))]
        assert weights, "neither io.weight nor io.bfq.weight exists"
        assert read(d, weights[0]).split()[-1] == "300"
        inside = rref(
            "exec",
            cid,
            "sh",
            "-c",
            "cat /proc/self/cgroup /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max",
            check=False,
        )
        view = rref("exec", cid, "sh", "-c", "grep cgroup /proc/self/mountinfo; ls /sys/fs/cgroup")
        assert inside.stdout.split() == ["0::/", str(48 * MiB), "64"], (inside, view.stdout)
        affinity = rref("exec", cid, "sh", "-c", "grep Cpus_allowed_list /proc/self/status")
        assert affinity.stdout.split()[-1] == "0"


def test_cpu_max_limits_the_measured_share(rref: Rref) -> None:
    """--cpus 0.5: a spinning container gets about half a CPU, by cpu.stat's own count."""
    with running(rref, "--cpus", "0.5") as cid:
        d = cgroup_of(rref, cid)
        rref("exec", "-d", cid, "sh", "-c", "while :; do :; done")
        before = parse_flat_keyed(read(d, "cpu.stat"))
        t0 = time.monotonic()
        time.sleep(3)
        after = parse_flat_keyed(read(d, "cpu.stat"))
        wall = time.monotonic() - t0
        share = (after["usage_usec"] - before["usage_usec"]) / 1e6 / wall
        assert 0.2 <= share <= 0.6, share
        assert after["nr_throttled"] > before["nr_throttled"]


def test_pause_freezes_and_rm_kills_through_cgroup_files(rref: Rref) -> None:
    with running(rref) as cid:
        d = cgroup_of(rref, cid)
        rref("pause", cid)
        assert read(d, "cgroup.freeze") == "1"
        assert parse_flat_keyed(read(d, "cgroup.events"))["frozen"] == 1
        rref("unpause", cid)
        assert parse_flat_keyed(read(d, "cgroup.events"))["frozen"] == 0
        rref("pause", cid)
        rref("rm", "-f", cid)  # a frozen container: cgroup.kill, no thaw needed
        assert not os.path.exists(d)


def test_device_program_denies_what_the_rules_do_not_allow(rref: Rref) -> None:
    """No devices controller on v2: rref attaches an eBPF device program (SEC-03 holds)."""
    p = rref(
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "mknod /tmp/kmsg c 1 11 && head -c1 /tmp/kmsg; echo rc=$?; head -c1 /dev/zero | wc -c",
        check=False,
    )
    assert p.returncode == 0, p.stderr
    assert "Operation not permitted" in p.stdout + p.stderr
    assert "rc=1" in p.stdout and p.stdout.split()[-1] == "1"


def test_memory_high_throttles_without_killing() -> None:
    """memory.high is a throttle, not a limit: past it the task is reclaimed and slowed,
    counted in memory.events' high, and never OOM-killed."""
    d = os.path.join(own_cgroup(), f"rref-test-high-{uuid.uuid4().hex[:8]}")
    base = os.path.dirname(d)
    if "memory" not in read(base, "cgroup.subtree_control").split():
        write(base, "cgroup.subtree_control", "+memory")
    os.mkdir(d)
    child = None
    try:
        write(d, "memory.high", str(16 * MiB))
        write(d, "memory.swap.max", "0")
        child = subprocess.Popen(
            ["python3", "-c", HIGH_HOG],
            preexec_fn=lambda: write(d, "cgroup.procs", str(os.getpid())),
        )
        deadline = time.monotonic() + 20
        while parse_flat_keyed(read(d, "memory.events")).get("high", 0) == 0:
            assert time.monotonic() < deadline, "memory.events never counted high"
            time.sleep(0.1)
        assert child.poll() is None  # throttled, alive
        events = parse_flat_keyed(read(d, "memory.events"))
        assert events.get("oom_kill", 0) == 0 and events.get("max", 0) == 0
    finally:
        if child is not None:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
        _rmdir(d)


def test_oci_absolute_cgroups_path_is_enabled_from_the_root(oci: Oci) -> None:
    """rref-oci given an absolute cgroupsPath (as podman's cgroupfs manager gives one)
    enables the controllers down that path, as runc does, and enforces the limits there;
    delete removes the directories it made."""
    cid = oci.new_id()
    top = f"rref-oci-v2-{uuid.uuid4().hex[:8]}"
    bundle = oci.bundle(
        ["sh", "-c", f"cat /proc/self/cgroup; {HOG}"],
        linux_resources={
            "memory": {"limit": 32 * MiB, "swap": 32 * MiB},
            "pids": {"limit": 17},
        },
        linux_cgroupsPath=f"/{top}/{cid}",
    )
    p = oci("run", "-b", str(bundle), cid, check=False, timeout=120)
    assert p.returncode == 137, p.stderr  # memory.max reached the container: OOM-killed
    oci("delete", "-f", cid, check=False)
    assert not os.path.exists(os.path.join(ROOT, top))  # run removed what it made
