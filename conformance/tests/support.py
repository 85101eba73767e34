"""Small helpers shared by the behaviour tests (not fixtures: plain functions).

Why: most checks start a container that prepares something, signals readiness with a file,
and then sleeps; or run a script and look at its output. These helpers keep each test to
the lines that state the behaviour.
"""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from conformance import facts
from conformance.adapters.base import Container, ContainerSpec, Result, Runtime
from conformance.errors import RuntimeFailure

READY = "/tmp/.conform-ready"


def sh(script: str) -> list[str]:
    return ["sh", "-c", script]


def token(prefix: str = "conform") -> str:
    """A unique, hostname-safe marker."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def ran(runtime: Runtime, spec: ContainerSpec, what: str = "container") -> Result:
    """Run ``spec`` in the foreground; a non-zero exit is the runtime's failure."""
    return runtime.run(spec).check(f"{runtime.name} run ({what})")


@dataclass
class Started:
    container: Container
    pid: int


def started(
    runtime: Runtime,
    container: Callable[..., Container],
    spec: ContainerSpec,
    prepare: str = "",
    timeout: float = 20.0,
) -> Started:
    """Start ``spec`` whose init runs ``prepare``, marks itself ready, then sleeps; wait
    until it is ready (a failed ``prepare`` still counts as ready: tests look at effects)."""
    spec.argv = sh(f"{prepare}\n: > {READY}\nexec sleep 1000")
    c = container(spec)
    pid = runtime.pid(c)

    def ready() -> bool:
        if not facts.alive(pid):
            raise RuntimeFailure(f"container init {pid} exited before it was ready")
        return facts.read_in_root(pid, READY) is not None

    facts.wait_for(ready, timeout=timeout, what=f"container {c.id[:12]} to be ready")
    return Started(c, pid)


@contextlib.contextmanager
def host_process(marker: str) -> Iterator[subprocess.Popen[Any]]:
    """A host process whose argv holds ``marker`` (coreutils sleep with a fraction)."""
    digits = "".join(ch for ch in marker if ch.isdigit())[:9] or "1"
    proc = subprocess.Popen(
        ["sleep", f"3600.{digits}"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        facts.wait_for(lambda: digits.encode() in _cmdline(proc.pid), what="host marker exec")
        yield proc
    finally:
        proc.kill()
        proc.wait()


def reported(res: Result, key: str) -> str:
    """The value a script printed as ``key=...``; a script that never got there means the
    container did not run (a runtime failure, with the runtime's own message)."""
    found = lines_with(key, res.stdout)
    if not found:
        raise RuntimeFailure(f"the container did not run its script to `{key}` ({res.describe()})")
    return found[0]


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def lines_with(prefix: str, text: str) -> list[str]:
    return [ln[len(prefix) :] for ln in text.splitlines() if ln.startswith(prefix)]


def value(prefix: str, text: str) -> str:
    """The rest of the first line starting with ``prefix`` ("" when none)."""
    found = lines_with(prefix, text)
    return found[0] if found else ""
