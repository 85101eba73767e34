"""The suite against deliberately faulty runtimes: each planted defect must be reported as a
failure of the behaviour it breaks, while the unaltered runtime passes the same tests.

Why: a conformance suite is only as good as the defects it catches. `faulty_runc.py` wraps
runc and alters the bundle's config.json (one defect per runtime); `faulty_rref.py` is rref
with one defect patched in (a spec edit, a flag dropped, a bad committed layer). All of them
run in ONE `conform run` (each runtime restricted with `--behaviour RUNTIME:IDS` to the
behaviours its defect should break plus those it should not), next to the controls `runc`,
`d-none` (the runc wrapper altering nothing) and `ref` (the rref wrapper altering nothing);
each faulty rref is its own wrapper script, given as `r-DEFECT=ref:/path`. The tests here
read the run's summary.json.

The run happens in private uts and ipc namespaces (`unshare --uts --ipc`), as a second line
of defence: the suite itself must never rename "the host" or leave SysV objects in it when a
runtime shares those namespaces (it checks the container's namespace from the host first
and FAILS instead); `test_shared_namespaces_were_left_alone` proves that the throw-away
namespaces kept their hostname and got no SysV object. Everything the run makes is under
/tmp/conform-defect-* and removed afterwards; only the result (conform-defects.json, shared
by the xdist workers) stays in pytest's own temp directory.

Defects the suite does not catch yet are listed too, as strict xfails naming the gap: when
the suite learns to catch one, its case XPASSes and must move to the caught ones.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parents[1]
FAULTY_RUNC = HERE / "faulty_runc.py"
FAULTY_RREF = HERE / "faulty_rref.py"
#: Seconds for the whole conform run: ~70 s traced at -n 2 on an idle machine, 130 s
#: serial on a loaded one; the test running it has its own pytest timeout (BATCH_TIMEOUT).
RUN_TIMEOUT = 420
BATCH_TIMEOUT = RUN_TIMEOUT + 120
SLOW_TEST = 30  # seconds: no single test may take longer (a client without a time limit did)
#: The hostname of the run's private uts namespace (it must still be this at the end).
RUN_HOSTNAME = "conform-defects"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(BATCH_TIMEOUT)]


@dataclass(frozen=True)
class Case:
    """One planted defect: the behaviours it must fail and those it must leave passing."""

    defect: str
    area: str
    fails: tuple[str, ...]
    passes: tuple[str, ...] = ()
    via: str = "runc"  # runc: faulty_runc.py as `oci:`; ref: faulty_rref.py as `ref:`
    gap: str = ""  # a defect the suite does NOT catch yet: why (the case is a strict xfail)
    #: (ID, text) for every ID of `fails`: its failing test must say text (what it saw of
    #: the defect, or that it refused to act), so a failure for another reason is not a catch.
    says: tuple[tuple[str, str], ...] = ()

    @property
    def runtime(self) -> str:
        return ("d-" if self.via == "runc" else "r-") + self.defect

    @property
    def control(self) -> str:
        return "runc" if self.via == "runc" else "ref"

    def __str__(self) -> str:
        return self.runtime


#: What a test that refused to change a shared namespace says.
SHARED = "shares the host's {} namespace"

CASES = (
    # namespaces: the tests that act inside must refuse (FAIL) before changing anything
    Case(
        "no-pidns",
        "namespaces",
        ("PID-01", "PID-03", "PID-05", "PID-06", "PID-07", "TRACE-01"),
        ("MNT-08", "TRACE-03"),
        says=(
            ("TRACE-01", "CLONE_NEWPID (the pid namespace asked for) in no clone/unshare"),
            ("PID-06", SHARED.format("pid")),
            ("PID-07", SHARED.format("pid")),
            ("PID-01", "is pid"),
            ("PID-03", "is visible in /proc inside"),
            ("PID-05", SHARED.format("pid")),
        ),
    ),
    Case(
        "no-utsns",
        "namespaces",
        ("UTS-01", "UTS-02", "UTS-03", "TRACE-01"),
        ("PID-05",),
        says=(
            ("TRACE-01", "CLONE_NEWUTS (the uts namespace asked for) in no clone/unshare"),
            ("UTS-02", SHARED.format("uts")),
            ("UTS-03", SHARED.format("uts")),
            ("UTS-01", "hostname inside is"),
        ),
    ),
    Case(
        "no-netns",
        "namespaces",
        ("NET-01", "NET-02", "NET-03", "NET-04", "NET-06", "TRACE-01"),
        ("PID-05", "TRACE-04"),
        says=(
            ("TRACE-01", "CLONE_NEWNET (the net namespace asked for) in no clone/unshare"),
            ("NET-04", SHARED.format("net")),
            ("NET-02", SHARED.format("net")),
            ("NET-01", "interfaces inside besides lo"),
            ("NET-03", SHARED.format("net")),
            ("NET-06", SHARED.format("net")),
        ),
    ),
    Case(
        "no-ipcns",
        "namespaces",
        ("IPC-01", "IPC-02", "IPC-03", "TRACE-01"),
        ("NET-06",),
        says=(
            ("TRACE-01", "CLONE_NEWIPC (the ipc namespace asked for) in no clone/unshare"),
            ("IPC-02", SHARED.format("ipc")),
            ("IPC-03", SHARED.format("ipc")),
            ("IPC-01", "is visible inside"),
        ),
    ),
    Case(
        "no-cgroupns",
        "namespaces",
        ("CGNS-01", "TRACE-01"),
        ("CG-01", "TRACE-05"),
        says=(
            ("CGNS-01", "shows host paths"),
            ("TRACE-01", "CLONE_NEWCGROUP (the cgroup namespace asked for) in no clone/unshare"),
        ),
    ),
    Case(
        "no-userns",
        "namespaces",
        ("USR-01", "USR-06", "TRACE-01"),
        ("PID-05",),
        says=(
            ("USR-01", "uid_map inside"),
            ("USR-06", SHARED.format("user")),
            ("TRACE-01", "CLONE_NEWUSER (the user namespace asked for) in no clone/unshare"),
        ),
    ),
    Case(
        "uid-map-off-by-one",
        "namespaces",
        ("USR-01", "USR-03"),
        ("USR-06",),
        says=(("USR-01", "uid_map inside"), ("USR-03", "must show as root")),
    ),
    Case(
        "gid-map-off-by-one",
        "namespaces",
        ("USR-02", "USR-03"),
        ("USR-01",),
        says=(("USR-02", "owned by"), ("USR-03", "must show as root")),
    ),
    Case(
        "no-pidns",
        "namespaces",
        ("PID-01", "PID-05"),
        ("MNT-08",),
        via="ref",
        says=(("PID-01", "is pid"), ("PID-05", SHARED.format("pid"))),
    ),
    # mounts
    Case(
        "rw-rootfs", "mounts", ("MNT-05",), ("MNT-06",), says=(("MNT-05", "write to / succeeded"),)
    ),
    Case(
        "no-masked-paths",
        "mounts",
        ("MNT-06",),
        ("MNT-07",),
        says=(("MNT-06", "masked paths readable inside"),),
    ),
    Case(
        "no-readonly-paths",
        "mounts",
        ("MNT-07",),
        ("MNT-06",),
        says=(("MNT-07", "read-only paths accepted a write"),),
    ),
    Case(
        "rw-volumes",
        "mounts",
        ("VOL-03",),
        ("VOL-01",),
        says=(("VOL-03", "read-only volume succeeded"),),
    ),
    # host-proc: the init sees the host's /proc (its /proc/<pid>/ns/* unreadable from
    # inside): the namespace tests read ns ids from the host and still judge, never break
    Case(
        "host-proc",
        "mounts",
        ("MNT-04", "PID-03"),
        ("MNT-03", "PID-05", "MNT-08", "NET-06"),
        says=(("MNT-04", "host's procfs"), ("PID-03", "/proc inside")),
    ),
    Case(
        "ignore-read-only",
        "mounts",
        ("MNT-05",),
        ("MNT-06",),
        via="ref",
        says=(("MNT-05", "write to / succeeded"),),
    ),
    Case(
        "rw-sysfs",
        "mounts",
        ("MNT-09", "SEC-05"),
        ("MNT-06", "MNT-07", "SEC-06"),
        says=(("MNT-09", "are writable inside"), ("SEC-05", "mounted read-write inside")),
    ),
    Case(
        "rw-sysfs",
        "mounts",
        ("MNT-09",),
        ("MNT-06",),
        via="ref",
        says=(("MNT-09", "are writable inside"),),
    ),
    # no-pivot: chroot instead of pivot_root; the old root stays below, invisible inside
    # and in /proc/<pid>/mountinfo, seen from the host by listing the whole namespace
    Case(
        "no-pivot",
        "mounts",
        ("MNT-03",),
        ("MNT-08", "MNT-04", "TRACE-03"),  # TRACE-03 accepts MS_MOVE + chroot
        says=(("MNT-03", "still holds the old root"),),
    ),
    # security
    Case(
        "all-caps",
        "security",
        ("SEC-01", "SEC-10"),
        ("SEC-02", "SEC-07"),
        says=(("SEC-01", "default bounding set holds"), ("SEC-10", "a default container could")),
    ),
    # cap-sys-admin makes the init non-dumpable: namespace facts must still be judged
    Case(
        "cap-sys-admin",
        "security",
        ("SEC-01",),
        ("SEC-02", "PID-05", "MNT-08", "NET-06"),
        says=(("SEC-01", "sys_admin"),),
    ),
    Case("no-nnp", "security", ("SEC-02",), ("SEC-01",), says=(("SEC-02", "NoNewPrivs: 0"),)),
    Case(
        "all-devices",
        "security",
        ("SEC-03",),
        ("SEC-01",),
        says=(("SEC-03", "outside the default set opened inside"),),
    ),
    Case(
        "no-seccomp",
        "security",
        ("SEC-04",),
        ("SEC-01",),
        says=(("SEC-04", "under a profile that denies it"),),
    ),
    # cgroups
    Case(
        "no-memory-limit",
        "cgroups",
        ("CG-02", "CG-03"),
        ("CG-04",),
        says=(("CG-02", "SIGKILL (137)"), ("CG-03", "memory limit of the container's cgroup is")),
    ),
    Case(
        "memory-limit-doubled",
        "cgroups",
        ("CG-03",),
        ("CG-02",),
        says=(("CG-03", "memory limit of the container's cgroup is"),),
    ),
    Case("no-pids-limit", "cgroups", ("CG-04",), ("CG-03",), says=(("CG-04", "pids.max is"),)),
    Case(
        "no-cpu-quota",
        "cgroups",
        ("CG-05",),
        ("CG-04",),
        says=(("CG-05", "cpu quota/period read back"),),
    ),
    Case(
        "wrong-cpuset",
        "cgroups",
        ("CG-06",),
        ("CG-04",),
        says=(("CG-06", "Cpus_allowed_list inside is"),),
    ),
    # layers and the engine's files (rref only: an OCI runtime commits nothing)
    Case(
        "commit-drops-whiteouts",
        "layers",
        ("OVL-08", "OVL-07"),
        ("OVL-10",),
        via="ref",
        says=(
            ("OVL-08", "want an empty regular etc/.wh.group"),
            ("OVL-07", "still has the old name"),
        ),
    ),
    Case(
        "commit-overlay-whiteouts",
        "layers",
        ("OVL-08",),
        ("OVL-02", "OVL-10"),
        via="ref",
        says=(("OVL-08", "want an empty regular etc/.wh.group"),),
    ),
    Case(
        "host-etc-files",
        "layers",
        ("INIT-01", "INIT-04"),
        ("VOL-01",),
        via="ref",
        says=(("INIT-01", "uses the host's own file"), ("INIT-04", "uses the host's own file")),
    ),
    # the file holds the right name, but not as the one line hostname(5) describes
    Case(
        "hostname-no-newline",
        "layers",
        ("UTS-05",),
        ("UTS-04",),
        via="ref",
        says=(("UTS-05", "one line and a newline"),),
    ),
    # capabilities are the adapter's declaration: a help text hiding the verbs changes
    # nothing, the bad commit is still a failure (not "unsupported")
    Case(
        "terse-help-drops-whiteouts",
        "layers",
        ("OVL-08", "OVL-07"),
        ("OVL-10",),
        via="ref",
        says=(
            ("OVL-08", "want an empty regular etc/.wh.group"),
            ("OVL-07", "still has the old name"),
        ),
    ),
    # exec: the trace shows the missing setns, the inside view the host's interfaces
    Case(
        "exec-skips-netns",
        "exec",
        ("TRACE-02", "EXEC-01"),
        ("TRACE-01", "EXEC-02"),
        via="ref",
        says=(
            ("TRACE-02", "no setns into the container's net namespace"),
            ("EXEC-01", "net"),
        ),
    ),
    # joining processes: dumpable ones show the host's interpreter as /proc/PID/exe; a
    # host directory's fd lets the program (and the scan) walk `..` to the host's /
    Case(
        "dumpable-joiners",
        "exec",
        ("SEC-09",),
        ("SEC-08", "EXEC-01"),
        via="ref",
        says=(("SEC-09", "lead to host files"),),
    ),
    Case(
        "exec-leaks-host-dir",
        "exec",
        ("SEC-08", "SEC-09"),
        ("EXEC-01", "EXEC-02"),
        via="ref",
        says=(("SEC-08", "is a host file"), ("SEC-09", "marker file was reached")),
    ),
    # not caught (yet): strict xfails naming the gap, so a suite that starts catching one
    # says so (none at the moment)
)
#: The runc wrapper with no defect: proves the wrapping alone breaks nothing.
NONE = "d-none"


# ------------------------------------------------------------------------------ the run


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "needs root (real containers)"
    if not (shutil.which("runc") or os.access("/usr/sbin/runc", os.X_OK)):
        return "runc is not installed (make setup installs it)"
    if not shutil.which("unshare"):
        return "unshare (util-linux) is missing: the run needs private uts/ipc namespaces"
    return None


def _script(path: Path, argv: list[str]) -> None:
    quoted = " ".join("'" + a.replace("'", "'\\''") + "'" for a in argv)
    path.write_text(f'#!/bin/sh\nexec {quoted} "$@"\n')
    path.chmod(0o755)


def _selection(runtime: str, ids: set[str]) -> list[str]:
    """--behaviour option: exactly the tests of ``ids``, for ``runtime`` only."""
    return ["--behaviour", f"{runtime}:{','.join(sorted(ids))}"]


#: Run in the private uts and ipc namespaces: name the uts one, run the suite, then report
#: the hostname and the SysV objects those namespaces hold at the end.
IN_PRIVATE_NS = (
    f'hostname {RUN_HOSTNAME} && "$@"; rc=$?; echo "conform-after hostname=$(hostname)"; '
    'for k in shm sem msg; do tail -n +2 /proc/sysvipc/$k | sed "s/^/conform-after $k=/"; '
    "done; exit $rc"
)


def _run(work: Path) -> dict[str, Any]:
    runc = shutil.which("runc") or "/usr/sbin/runc"
    bindir, logs = work / "bin", work / "logs"
    bindir.mkdir()
    logs.mkdir()
    runtimes = ["runc"]
    selection: list[str] = []
    union: dict[str, set[str]] = {"runc": set(), "ref": set()}
    for case in CASES:
        ids = {*case.fails, *case.passes}
        union[case.control] |= ids
        selection += _selection(case.runtime, ids)
        wrapper, log = bindir / case.runtime, logs / f"{case.runtime}.log"
        if case.via == "runc":
            _script(wrapper, [sys.executable, str(FAULTY_RUNC), "--runc", runc, "--log", str(log),
                              case.defect])  # fmt: skip
            runtimes.append(f"{case.runtime}=oci:{wrapper}")
        else:
            _script(wrapper, [sys.executable, str(FAULTY_RREF), "--log", str(log), case.defect])
            runtimes.append(f"{case.runtime}=ref:{wrapper}")
    _script(bindir / NONE, [sys.executable, str(FAULTY_RUNC), "--runc", runc, "none"])
    _script(bindir / "ref", [sys.executable, str(FAULTY_RREF), "none"])
    runtimes += [f"{NONE}=oci:{bindir / NONE}", f"ref=ref:{bindir / 'ref'}"]
    selection += _selection("runc", union["runc"]) + _selection(NONE, union["runc"])
    selection += _selection("ref", union["ref"])
    results = work / "results"
    argv = [
        "unshare", "--uts", "--ipc", "--", "sh", "-c", IN_PRIVATE_NS, "sh",
        sys.executable, "-m", "conformance.cli", "run",
        "--runtime", ",".join(runtimes), "--results", str(results),
        "-p", "no:cacheprovider", "-q", "-n", "2", *selection,
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "COV_"))}
    t0 = time.monotonic()
    with open(work / "conform.log", "wb") as out:
        proc = subprocess.Popen(
            argv, cwd=PROJECT, env=env, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        code: int | None = None
        try:
            code = proc.wait(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
        finally:
            _stop(proc)
    log = (work / "conform.log").read_text(errors="replace")
    summary_path = results / "summary.json"
    return {
        "returncode": code,
        "seconds": round(time.monotonic() - t0, 1),
        "log_tail": log[-6000:],
        "after": [
            ln.split(" ", 1)[1] for ln in log.splitlines() if ln.startswith("conform-after ")
        ],
        "summary": json.loads(summary_path.read_text()) if summary_path.exists() else None,
        "applied": {p.stem: p.read_text().splitlines() for p in logs.glob("*.log")},
    }


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """End a conform run that is still going (timeout, or this test interrupted): SIGINT to
    pytest, so it tears its containers down and runs its leak check; then SIGKILL to all."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.fixture(scope="session")
def batch(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The one `conform run` of every case, made by the first xdist worker that needs it
    (under a file lock); the others read its result."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent
    cache = shared / "conform-defects.json"
    with open(shared / "conform-defects.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not cache.exists():
            reason = _why_not()
            if reason:
                data: dict[str, Any] = {"skip": reason}
            else:
                work = Path(tempfile.mkdtemp(prefix="conform-defect-"))
                try:
                    data = _run(work)
                finally:
                    shutil.rmtree(work, ignore_errors=True)
            cache.write_text(json.dumps(data))
    data = json.loads(cache.read_text())
    if "skip" in data:
        pytest.skip(data["skip"])
    if data["summary"] is None or data["returncode"] not in (0, 1):
        pytest.fail(
            f"conform run did not complete (exit {data['returncode']}, "
            f"{data['seconds']}s):\n{data['log_tail']}"
        )
    return data


# ------------------------------------------------------------------------------ checks


def _behaviours(data: dict[str, Any], runtime: str) -> dict[str, Any]:
    return data["summary"]["results"].get(runtime, {}).get("behaviours", {})


def _detected(slot: dict[str, Any]) -> bool:
    """A test of the behaviour failed on an assertion: the suite saw the violation (a
    RuntimeFailure would mean the container did not even run)."""
    return any(
        t["verdict"] == "fail" and t["reason"].startswith(("AssertionError", "Failed"))
        for t in slot["tests"]
    )


def _brief(slot: dict[str, Any] | None) -> str:
    if slot is None:
        return "no test ran"
    return f"{slot['verdict']}: " + "; ".join(r[:300] for r in slot["reasons"])


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(c, marks=pytest.mark.xfail(strict=True, reason=c.gap)) if c.gap else c
        for c in CASES
    ],
    ids=str,
)
def test_defect_is_reported_as_failure_of_its_behaviour(batch: dict[str, Any], case: Case):
    if case.defect == "wrong-cpuset" and len(os.sched_getaffinity(0)) < 2:
        pytest.skip("wrong-cpuset needs two CPUs (there is no other CPU to pin to)")
    control, faulty = _behaviours(batch, case.control), _behaviours(batch, case.runtime)
    applied = [
        ln
        for ln in batch["applied"].get(case.runtime, [])
        if ln.startswith(case.defect + " ") and not ln.endswith(" unchanged")
    ]
    assert applied, f"{case}: the defect never altered anything (nothing to catch)"
    judged, unjudged = [], []
    for bid in case.fails:
        ctl = control.get(bid)
        if ctl is None or ctl["verdict"] != "pass":
            unjudged.append(f"{bid} ({case.control}: {_brief(ctl)})")
            continue
        got = faulty.get(bid)
        assert got is not None and got["verdict"] == "fail", (
            f"{case}: the suite did NOT catch the defect: {bid} is {_brief(got)} "
            f"(the control {case.control} passes it)"
        )
        assert _detected(got), (
            f"{case}: {bid} fails only because the runtime could not run it: {_brief(got)}"
        )
        for text in (t for b, t in case.says if b == bid):
            assert any(text in r for r in got["reasons"]), (
                f"{case}: {bid} fails without saying {text!r}: {_brief(got)}"
            )
        judged.append(bid)
    for bid in case.passes:
        ctl, got = control.get(bid), faulty.get(bid)
        if ctl is not None and ctl["verdict"] == "pass":
            assert got is not None and got["verdict"] == "pass", (
                f"{case}: {bid}, which this defect leaves alone, is {_brief(got)}"
            )
    if unjudged:
        warnings.warn(
            f"{case}: cannot judge {', '.join(unjudged)}: the control does not pass it",
            stacklevel=1,
        )
    if not judged:
        pytest.skip(f"{case}: no expected behaviour can be judged here: {unjudged}")


def test_every_expected_failure_names_its_defect():
    missing = [f"{c}: {b}" for c in CASES for b in c.fails if b not in dict(c.says)]
    assert not missing, f"expected failures without the text that names the defect: {missing}"


def test_cases_name_catalogue_behaviours():
    from conformance import catalogue

    known = set(catalogue.load().behaviours)
    unknown = {b for c in CASES for b in (*c.fails, *c.passes)} - known
    assert not unknown, f"behaviour IDs not in behaviours.toml: {sorted(unknown)}"


@pytest.mark.parametrize("control", ["runc", NONE, "ref"])
def test_unaltered_runtime_passes_the_same_tests(batch: dict[str, Any], control: str):
    slots = _behaviours(batch, control)
    assert slots, f"no test ran for the control {control}:\n{batch['log_tail']}"
    bad = {b: _brief(s) for b, s in slots.items() if s["verdict"] not in ("pass", "unsupported")}
    assert not bad, f"the unaltered runtime {control} does not pass: {bad}"


def test_no_broken_verdicts_nor_leftovers(batch: dict[str, Any]):
    summary = batch["summary"]
    broken = [
        f"{t['nodeid']}: {t['reason'][:300]}" for t in summary["tests"] if t["verdict"] == "broken"
    ]
    assert not broken, "the harness broke (not a verdict on a runtime):\n" + "\n".join(broken)
    assert not summary["leftovers"], f"host resources left behind: {summary['leftovers']}"


def test_no_test_hangs(batch: dict[str, Any]):
    """Every test ends quickly, also against a runtime sharing the host's namespaces (NET-04's
    clients once waited 60 s for a host server that never answers)."""
    slow = [
        f"{t['nodeid']}: {t['duration']:.0f}s"
        for t in batch["summary"]["tests"]
        if t["duration"] > SLOW_TEST
    ]
    assert not slow, f"tests slower than {SLOW_TEST}s: {slow}"


def test_shared_namespaces_were_left_alone(batch: dict[str, Any]):
    """The run's private uts and ipc namespaces stand in for the host's: runtimes that share
    them ran tests that rename the host or make SysV objects; the suite must have refused."""
    after = batch["after"]
    assert f"hostname={RUN_HOSTNAME}" in after, f"the run's hostname changed: {after}"
    objects = [a for a in after if not a.startswith("hostname=")]
    assert not objects, f"SysV objects left in the run's ipc namespace: {objects}"


NS_TYPES = ("pid", "network", "ipc", "uts", "mount", "cgroup", "user")


def _faulty_runc() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("conform_faulty_runc", FAULTY_RUNC)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize(
    ("argv", "cmd", "bundle"),
    [
        (["--root", "/s", "run", "--keep", "-b", "/b", "c1"], "run", "/b"),
        (["--log=/l", "--debug", "create", "--bundle=/b", "c1"], "create", "/b"),
        (["--root", "/s", "--systemd-cgroup", "run", "--bundle", "/b", "c1"], "run", "/b"),
        (["--root", "/s", "exec", "c1", "sh"], "exec", None),
    ],
)
def test_wrapper_finds_subcommand_and_bundle(argv: list[str], cmd: str, bundle: str | None):
    fr = _faulty_runc()
    _, got_cmd, args = fr.split_argv(argv)
    assert got_cmd == cmd
    if bundle is not None:
        assert fr.find_bundle(args)[0] == bundle


def test_every_defect_changes_a_full_config():
    """Each defect alters a config that asks for everything it could ignore."""
    fr = _faulty_runc()
    cfg = {
        "hostname": "h",
        "root": {"path": "/r", "readonly": True},
        "process": {"noNewPrivileges": True, "capabilities": {"bounding": ["CAP_KILL"]}},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc", "options": []},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["ro"]},
            {"destination": "/vol", "type": "bind", "source": "/v", "options": ["rbind", "ro"]},
            {"destination": "/etc/hosts", "type": "bind", "source": "/x", "options": ["rbind"]},
        ],
        "linux": {
            "namespaces": [{"type": t} for t in NS_TYPES],
            "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 10}],
            "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 10}],
            "maskedPaths": ["/proc/kcore"],
            "readonlyPaths": ["/proc/sys"],
            "seccomp": {"defaultAction": "SCMP_ACT_ALLOW"},
            "resources": {
                "memory": {"limit": 1 << 24},
                "pids": {"limit": 5},
                "cpu": {"quota": 1, "period": 2, "cpus": "0"},
            },
        },
    }
    unchanged = []
    for name in fr.DEFECTS:
        if name == "wrong-cpuset" and len(os.sched_getaffinity(0)) < 2:
            continue
        if name == "host-etc-files" and not os.path.exists("/etc/hosts"):
            continue
        if not fr.apply(name, json.loads(json.dumps(cfg))):
            unchanged.append(name)
    assert not unchanged, f"defects that changed nothing: {unchanged}"
