"""Fixtures that run the real `rref` binary against private state roots.

Each xdist worker shares one state root (so busybox:latest is built once per
worker); each test tracks the containers it makes and removes them, then
proves that nothing it started is left on the host.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from ocikit import busybox_tree, oci  # noqa: F401 - the rref-oci tests' fixtures

RREF = str(Path(sys.executable).with_name("rref"))

if os.geteuid() != 0:  # pragma: no cover - the whole suite needs real namespaces
    pytest.exit("the rref tests need root (namespaces, mounts, cgroups)", returncode=4)


class Rref:
    """Runs `rref --root ROOT ...` and remembers containers to clean up."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.created: list[str] = []

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 60, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [RREF, "--root", self.root, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"rref {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}"
            )
        return proc

    def name(self) -> str:
        n = f"t-{uuid.uuid4().hex[:10]}"
        self.created.append(n)
        return n

    def run_d(self, *args: str) -> str:
        """`run -d` a named container; return its full id."""
        n = self.name()
        cid = self("run", "-d", "--name", n, *args).stdout.strip()
        self.created.append(cid)
        return cid

    def out(self, *args: str) -> str:
        return self(*args).stdout

    def inspect(self, ref: str, fmt: str) -> str:
        return self("inspect", "-f", fmt, ref).stdout.strip()

    def pid(self, ref: str) -> int:
        return int(self.inspect(ref, "{{.State.Pid}}"))

    def cleanup(self) -> None:
        for ref in self.created:
            self("rm", "-f", ref, check=False)
        self.created.clear()


def leaks(cid: str) -> list[str]:
    """Host resources that still carry this container's id."""
    found = []
    with open("/proc/self/mountinfo") as f:
        found += [f"mount: {line.split()[4]}" for line in f if cid in line]
    for dirpath, dirnames, _ in os.walk("/sys/fs/cgroup"):  # tolerant of concurrent rmdir
        found += [f"cgroup: {dirpath}/{d}" for d in dirnames if d == f"rref-{cid}"]
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if cid.encode() in (proc / "cmdline").read_bytes():
                    found.append(f"process: {proc.name}")
            except OSError:
                pass
    return found


def wait_for(check: Callable[[], object], what: str, timeout: float = 10.0) -> object:
    """Poll until `check()` is truthy and return it (tests synchronise on conditions, never on
    sleeps); a condition that never comes fails with `what`."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.02)


def snapshot(root: str) -> dict[str, str]:
    """Every file under a state root with a hash of its content (locks aside)."""
    import hashlib

    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            if f == "lock" or f.endswith(".lock") or os.path.islink(p):
                continue
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def one_line_error(
    p: subprocess.CompletedProcess[str],
    codes: int | tuple[int, ...],
    needle: str,
    prefix: str = "rref: ",
) -> None:
    """A refusal: docker's exit code, one `rref: ...` line naming the problem, no traceback."""
    codes = (codes,) if isinstance(codes, int) else codes
    assert p.returncode in codes, (p.returncode, p.stderr)
    err = p.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(prefix) and needle in err, err
    assert "Traceback" not in err


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`full_count` tests (the long count of a loop) run when slow tests are asked for
    (`pytest -m slow`); `make test` deselects them and keeps the short count."""
    if "slow" in (config.getoption("markexpr") or ""):
        return
    full = [i for i in items if i.get_closest_marker("full_count")]
    if full:
        config.hook.pytest_deselected(items=full)
        items[:] = [i for i in items if not i.get_closest_marker("full_count")]


@pytest.fixture(scope="session")
def state_root() -> Iterator[str]:
    root = tempfile.mkdtemp(prefix="rref-test-")
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def rref(state_root: str) -> Iterator[Rref]:
    r = Rref(state_root)
    yield r
    r.cleanup()


@pytest.fixture
def fresh_rref() -> Iterator[Rref]:
    """An empty state root, for tests that list or count containers."""
    root = tempfile.mkdtemp(prefix="rref-test-fresh-")
    r = Rref(root)
    yield r
    r.cleanup()
    shutil.rmtree(root, ignore_errors=True)
