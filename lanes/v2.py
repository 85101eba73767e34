"""The pure cgroup v2 lane: the v2 part of the tests, run in a guest that has only cgroup2.

Steps, each with its own deadline: unpack Debian's kernel (cached), write the
initramfs, boot qemu with the host's root shared read-only and OUT read-write, run
`guest.sh` in the guest (the project's cgroup v2 tests, then the conformance suite's
cgroup, cgroup-namespace, user, pid, lifecycle and device behaviours against ref and
runc, labelled as a cgroup v2 runner), and read back what it left in OUT: one
directory per step with its junit.xml (and, for the suite, summary.json and
allure-results), `steps` (name, exit status, seconds) and the guest's console.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import time
from dataclasses import dataclass, field

from . import initramfs, kernel, qemu
from .initramfs import GUEST_OUT
from .kernel import LaneError

#: the project's tests that exercise cgroup v2 (the driver, limits, user namespaces,
#: isolation of rref's containers); the rest of the project's tests do not depend on it
PROJECT_TESTS = (
    "tests/runtime_ref/test_cgroups_driver.py",
    "tests/runtime_ref/test_cgroup_v2.py",
    "tests/runtime_ref/test_resources.py",
    "tests/runtime_ref/test_userns.py",
    "tests/runtime_ref/test_isolation.py",
)
#: the behaviours the suite checks in the lane: what cgroup v2 changes
BEHAVIOURS = ("CG", "CGNS", "USR", "PID", "LIFE", "SEC-03")
RUNTIMES = "ref,runc"
LABEL = "cgroup-v2"


@dataclass
class Step:
    name: str
    argv: list[str]
    timeout: int  # seconds, enforced in the guest with timeout(1)


@dataclass
class Result:
    name: str
    code: int | None  # None: the step never finished
    seconds: int | None
    junit: str | None = None


@dataclass
class Outcome:
    boot_seconds: float  # guest start to its own "up" line
    wall_seconds: float  # qemu start to power-off
    steps: list[Result] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(s.code == 0 for s in self.steps)


def behaviour_ids(prefixes: tuple[str, ...] = BEHAVIOURS) -> list[str]:
    """The catalogue's IDs in these areas (CG-01, CG-02, ...) or named exactly (SEC-03)."""
    from conformance.catalogue import load

    return [b for b in load().ids() if any(b == p or b.startswith(p + "-") for p in prefixes)]


def steps(repo: str, workers: int = 2, only: str = "all") -> list[Step]:
    out: list[Step] = []
    py = os.path.join(repo, ".venv", "bin", "python")
    if only in ("all", "project"):
        out.append(
            Step(
                "project",
                [
                    py,
                    "-m",
                    "pytest",
                    "-p",
                    "no:cacheprovider",
                    "-q",
                    "-n",
                    str(workers),
                    "--junitxml",
                    f"{GUEST_OUT}/project/junit.xml",
                    *PROJECT_TESTS,
                ],
                900,
            )
        )
    if only in ("all", "conformance"):
        out.append(
            Step(
                "conformance",
                [
                    py,
                    "-m",
                    "conformance.cli",
                    "run",
                    "--runtime",
                    RUNTIMES,
                    "--probe",
                    "none",
                    "-n",
                    str(workers),
                    "--results",
                    f"{GUEST_OUT}/conformance",
                    "--runner-label",
                    LABEL,
                    "-p",
                    "no:cacheprovider",
                    "--behaviour",
                    ",".join(behaviour_ids()),
                ],
                900,
            )
        )
    return out


def guest_script(repo: str, plan: list[Step]) -> str:
    """guest.sh: runs each step with a deadline and records name, status and seconds."""
    lines = [
        "#!/bin/sh",
        "# written by conform lane v2; runs inside the guest, chrooted into the host's root",
        f"export PATH={shlex.quote(os.path.join(repo, '.venv', 'bin'))}:"
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "export HOME=/root TMPDIR=/tmp CONFORM_LANE=v2 PYTHONDONTWRITEBYTECODE=1",
        f"cd {shlex.quote(repo)} || exit 90",
        f"O={GUEST_OUT}",
        ': > "$O/steps"',
    ]
    for s in plan:
        lines += [
            f'mkdir -p "$O/{s.name}"',
            "t0=$(date +%s)",
            f"timeout -k 10 {s.timeout} {' '.join(shlex.quote(a) for a in s.argv)}"
            f' >"$O/{s.name}/output.log" 2>&1',
            "rc=$?",
            f'echo "{s.name} $rc $(( $(date +%s) - t0 ))" >>"$O/steps"',
        ]
    return "\n".join(lines) + "\n"


def read_results(out: str) -> list[Result]:
    results: list[Result] = []
    try:
        with open(os.path.join(out, "steps")) as f:
            text = f.read()
    except FileNotFoundError:
        return results
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 3:
            continue
        name, code, secs = parts
        junit = os.path.join(out, name, "junit.xml")
        results.append(Result(name, int(code), int(secs), junit if os.path.exists(junit) else None))
    return results


def boot_seconds(console: str) -> float:
    """The guest's uptime when /init reached the host's tree (its "guest up" line)."""
    try:
        with open(console, errors="replace") as f:
            for line in f:
                if "conform-lane: guest up:" in line:
                    return float(line.rsplit(":", 1)[1].strip().rstrip("s"))
    except (OSError, ValueError):
        pass
    return float("nan")


def boot_guest(
    out: str,
    repo: str,
    script: str,
    timeout: float,
    cache: str = kernel.CACHE,
    busybox: str = "/bin/busybox",
) -> tuple[kernel.Kernel, float, float]:
    """Boot a guest that runs `script` (as guest.sh) with `out` as its results share, emptied
    first; (kernel, seconds to the guest's "up" line, qemu's wall seconds)."""
    repo = os.path.abspath(repo)
    out = os.path.abspath(out)
    if not os.path.exists(os.path.join(repo, ".venv", "bin", "python")):
        raise LaneError(f"{repo}/.venv is missing: run make setup first")
    if not os.path.exists(busybox):
        raise LaneError(f"{busybox} is missing (Debian package busybox-static)")
    k = kernel.prepare(cache)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    with open(os.path.join(out, "guest.sh"), "w") as f:
        f.write(script)
    initrd = os.path.join(out, ".initrd")
    with open(initrd, "wb") as f:
        f.write(initramfs.build(busybox, k.modules, repo))
    console = os.path.join(out, "console.log")
    start = time.monotonic()
    qemu.run(qemu.Boot(k.vmlinuz, initrd, out, repo, console), timeout)
    wall = time.monotonic() - start
    os.unlink(initrd)
    if not os.path.exists(os.path.join(out, "rc")):
        raise LaneError(f"the guest stopped before running its script (its console: {console})")
    return k, boot_seconds(console), wall


def run(
    out: str,
    repo: str,
    only: str = "all",
    timeout: float = 1500,
    cache: str = kernel.CACHE,
    busybox: str = "/bin/busybox",
) -> Outcome:
    """Prepare, boot and run the lane; results land in `out` (emptied first)."""
    script = guest_script(os.path.abspath(repo), steps(os.path.abspath(repo), only=only))
    k, up, wall = boot_guest(out, repo, script, timeout, cache, busybox)
    outcome = Outcome(up, wall, read_results(out))
    with open(os.path.join(out, "lane.json"), "w") as f:
        json.dump(
            {
                "lane": "v2",
                "kernel": k.version,
                "boot_seconds": outcome.boot_seconds,
                "wall_seconds": round(outcome.wall_seconds, 1),
                "steps": [s.__dict__ for s in outcome.steps],
            },
            f,
            indent=2,
        )
    return outcome
