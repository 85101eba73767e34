"""Small helpers shared by the behaviour tests (not fixtures: plain functions).

Why: most checks start a container that prepares something, signals readiness with a file,
and then sleeps; or run a script and look at its output. These helpers keep each test to
the lines that state the behaviour.

Two ways to start a container, named for their difference:

* foreground -- `ran` (or the `inspect_inside` fixture, the inspector as the command): run
  to completion, then look at the result;
* detached -- `started` (or the `observe` fixture, the inspector's view saved first; or
  `gated`, held at a gate until the host has checked its namespaces): look from inside and
  outside while it runs.

Safety: a test that changes something inside a container (its hostname, SysV objects, a
mount, a listening port, a signal to pid 1...) changes the HOST when the runtime under test
shares that namespace with it. Such tests first prove, from the host, that the container has
its own namespace (`require_own_namespace`), and FAIL otherwise, before anything changed:
`gated` starts a container that waits for the harness's go-ahead before it acts.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from conformance import facts
from conformance.adapters.base import Container, ContainerSpec, Result, Runtime
from conformance.errors import RuntimeFailure, RuntimeTimeout

READY = "/tmp/.conform-ready"
#: Where a gated container's script leaves its output and exit status (read via /proc/<pid>/root;
#: every container adds a suffix of its own, see `_marker`).
GATED_OUT, GATED_ERR, GATED_RC = "/tmp/.conform-out", "/tmp/.conform-err", "/tmp/.conform-rc"

#: What a change inside would do to the host when the namespace is shared (for the message).
_SHARED_HARM = {
    "uts": "the host's hostname",
    "ipc": "the host's SysV IPC objects and POSIX message queues",
    "pid": "the host's processes",
    "net": "the host's network stack (ports, interfaces)",
    "mnt": "the host's mount table and files",
    "user": "the host's ids",
    "cgroup": "the host's cgroups",
}
_NS_ALIASES = {"network": "net", "mount": "mnt"}


def sh(script: str) -> list[str]:
    return ["sh", "-c", script]


def token(prefix: str = "conform") -> str:
    """A unique, hostname-safe marker."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _marker(path: str) -> str:
    """``path`` with a suffix of one container's own: a container of an image committed from
    another one inherits that one's marker files, which must not count as its own."""
    return f"{path}-{uuid.uuid4().hex[:12]}"


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
    marker = _marker(READY)
    spec.argv = sh(f"{prepare}\n: > {marker}\nexec sleep 1000")
    c = container(spec)
    pid = runtime.pid(c)

    def ready() -> bool:
        if not facts.alive(pid):
            raise RuntimeFailure(f"container init {pid} exited before it was ready")
        return facts.read_in_root(pid, marker) is not None

    _wait(ready, timeout, f"container {c.id[:12]} to be ready")
    return Started(c, pid)


def _wait(pred: Callable[[], object], timeout: float, what: str) -> None:
    """facts.wait_for, where running out of time is the container's failure (not broken)."""
    facts.wait_for(pred, timeout=timeout, what=what, failure=RuntimeTimeout)


def _pid_of(runtime: Runtime, target: Container | Started | int) -> int:
    if isinstance(target, Started):
        return target.pid
    if isinstance(target, Container):
        return runtime.pid(target)
    return int(target)


def require_own_namespace(
    runtime: Runtime, target: Container | Started | int, kind: str
) -> tuple[int, int]:
    """Assert, from the host, that the container's init has its own ``kind`` namespace:
    /proc/<pid>/ns/<kind> is not the harness's /proc/self/ns/<kind>. Call it BEFORE changing
    anything inside that lives in that namespace; a shared one is a FAIL that says what the
    test refused to change. ``target``: a Container, a `Started` or the init's host pid.
    Returns the container's (dev, ino) of that namespace."""
    kind = _NS_ALIASES.get(kind, kind)
    pid = _pid_of(runtime, target)
    try:
        theirs = facts.ns_id(pid, kind)
    except FileNotFoundError:
        raise RuntimeFailure(f"container init {pid} is gone (its {kind} namespace)") from None
    ours = facts.ns_id("self", kind)
    assert theirs != ours, (
        f"the container shares the host's {kind} namespace ({kind}:[{ours[1]}], read from "
        f"/proc/{pid}/ns/{kind} on the host): the test stops here rather than change "
        f"{_SHARED_HARM.get(kind, 'the host')} from inside"
    )
    return theirs


def require_own_root(runtime: Runtime, target: Container | Started | int) -> None:
    """Assert, from the host, that the container's root directory is not the host's `/`
    (/proc/<pid>/root vs /): writes inside would land on the host's files otherwise."""
    pid = _pid_of(runtime, target)
    theirs, ours = os.stat(f"/proc/{pid}/root"), os.stat("/")
    assert (theirs.st_dev, theirs.st_ino) != (ours.st_dev, ours.st_ino), (
        "the container's root directory is the host's /: the test stops here rather than "
        "write to the host's files"
    )


def require_own_filesystem(runtime: Runtime, target: Container | Started | int, path: str) -> None:
    """Assert, from the host, that ``path`` inside the container is not on the filesystem
    the host has at ``path`` (e.g. /dev: a bind of the host's /dev would take device nodes
    made inside)."""
    pid = _pid_of(runtime, target)
    theirs, ours = os.stat(f"/proc/{pid}/root{path}"), os.stat(path)
    assert theirs.st_dev != ours.st_dev, (
        f"{path} inside the container is the host's {path} filesystem: the test stops here "
        f"rather than change the host's {path}"
    )


def own_namespace_seen_both_ways(o: Any, kind: str) -> None:
    """``kind`` namespace of an observed container (`observe` fixture): from the host, the
    init's /proc/<pid>/ns/<kind> is not the harness's (read from outside: works whatever the
    init's dumpability); inside, the inspector saw the same one (a FAIL naming what could not
    be read when it saw none)."""
    outside = facts.ns_id(o.pid, kind)
    host = facts.host_ns_ids()[kind]
    assert outside != host, (
        f"the container shares the host's {kind} namespace ({kind}:[{host[1]}], read from "
        f"/proc/{o.pid}/ns/{kind} on the host)"
    )
    inside = o.inside.ns_id(kind)  # AssertionError naming the unreadable file
    assert inside == outside, (
        f"inside and outside disagree on the init's {kind} namespace: inside "
        f"{o.inside.ns_links.get(kind) or inside}, from the host {kind}:[{outside[1]}]"
    )


@dataclass
class Gated(Started):
    """A gated container after its script ran (``finished``) or after its init died."""

    result: Result
    finished: bool


def gated(
    runtime: Runtime,
    container: Callable[..., Container],
    spec: ContainerSpec,
    own: Iterable[str],
    then: str,
    prepare: str = "",
    timeout: float = 20.0,
) -> Gated:
    """Start ``spec`` whose init runs ``prepare``, marks itself ready and WAITS; check from
    the host that it has its own ``own`` namespaces ("root": its own root directory; "/path":
    its own filesystem at /path) -- a FAIL before anything changed when it shares one (so
    ``prepare`` must change nothing the host could share); then let it go (SIGUSR1: it has a
    handler, so even a pid-namespace init receives it) and wait until ``then`` ran (in a
    subshell; stdout, stderr and its exit status land in the result) or the init died."""
    suffix = _marker("")
    ready_at, out, err, rc_at = (p + suffix for p in (READY, GATED_OUT, GATED_ERR, GATED_RC))
    spec.argv = sh(
        "trap 'go=1' USR1\n"
        f"{prepare}\n"
        f": > {ready_at}\n"
        'while [ -z "$go" ]; do sleep 0.02; done\n'
        f"( {then}\n) > {out} 2> {err}\n"
        f"echo $? > {rc_at}.tmp && mv {rc_at}.tmp {rc_at}\n"
        "exec sleep 1000"
    )
    c = container(spec)
    pid = runtime.pid(c)

    def ready() -> bool:
        if not facts.alive(pid):
            raise RuntimeFailure(f"container init {pid} exited before it was ready")
        return facts.read_in_root(pid, ready_at) is not None

    _wait(ready, timeout, f"container {c.id[:12]} to be ready")
    for kind in own:
        if kind == "root":
            require_own_root(runtime, pid)
        elif kind.startswith("/"):
            require_own_filesystem(runtime, pid, kind)
        else:
            require_own_namespace(runtime, pid, kind)
    try:
        os.kill(pid, signal.SIGUSR1)
    except ProcessLookupError:
        raise RuntimeFailure(f"container init {pid} exited before the go-ahead") from None

    def done() -> bool:
        return not facts.alive(pid) or facts.read_in_root(pid, rc_at) is not None

    _wait(done, timeout, f"container {c.id[:12]} to run its script")
    rc = facts.read_in_root(pid, rc_at)
    result = Result(
        int(rc) if rc and rc.strip().isdigit() else -1,
        facts.read_in_root(pid, out) or "",
        facts.read_in_root(pid, err) or "",
    )
    return Gated(c, pid, result, finished=rc is not None)


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
