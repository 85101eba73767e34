"""The one place runtime processes are started.

Why: a syscall tracer must see a runtime from its first syscall, so every runtime command
goes through `launch`/`launch_popen`. With tracing on (`set_tracing`), each command is
started by the probe backend (bcc or ptrace, chosen once per process) and its `Record`
carries the `probes.trace.Trace` of its process tree. A `wrapper` (argv -> argv) may still
put a program in front; observers get a record of each command (the plugin keeps them as the
test's transcript and attaches the traces). Adapters never call subprocess directly.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO, Any

from conformance.errors import RuntimeTimeout

Wrapper = Callable[[list[str]], list[str]]


@dataclass
class Record:
    """One runtime command, for transcripts and failure messages.

    ``trace`` is its syscall trace (a `probes.trace.Trace`) when tracing is on; for a
    `launch_popen` process it is filled in by `finish_traces` once the process is done.
    """

    argv: list[str]
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float
    trace: Any = None


class _Tracing:
    """The probe backend every launch goes through, resolved on first use (bcc compiles)."""

    def __init__(self) -> None:
        self.name = "none"
        self.backend: Any = None
        self.why = "tracing disabled (--probe none)"
        self.resolved = True
        self.open: list[tuple[Record, Any]] = []  # launch_popen tracees not finished yet

    def configure(self, name: str) -> None:
        self.name, self.backend, self.resolved = name, None, name == "none"
        self.why = "tracing disabled (--probe none)" if name == "none" else "not resolved yet"

    def get(self) -> Any:
        if not self.resolved:
            from probes import backend as probe_backend

            self.backend, self.why = probe_backend.select(self.name)
            self.resolved = True
        return self.backend


_tracing = _Tracing()


def set_tracing(name: str) -> None:
    """Trace every later launch with backend ``name`` (auto, bcc, ptrace; none: off)."""
    _tracing.configure(name)


def tracing(resolve: bool = True) -> tuple[str | None, str]:
    """The backend name in use (None when no tracing) and why. Resolving may compile the
    BPF program; without ``resolve`` an unresolved backend reads as (None, "not used")."""
    if not resolve and not _tracing.resolved:
        return None, "not used in this process"
    backend = _tracing.get()
    return (backend.name if backend is not None else None), _tracing.why


def finish_traces(running: bool = False) -> None:
    """End the traces of `launch_popen` processes that have exited (all of them when
    ``running``: at a test's end, after its containers were removed)."""
    keep = []
    for record, tracee in _tracing.open:
        if running or tracee.proc.poll() is not None:
            record.trace = _finish(tracee)
        else:
            keep.append((record, tracee))
    _tracing.open = keep


def _finish(tracee: Any) -> Any:
    try:
        return tracee.finish(timeout=10.0)
    except Exception as e:  # a tracer problem never fails the runtime command
        from probes.trace import Trace

        return Trace("?", notes=[f"the trace could not be finished: {type(e).__name__}: {e}"])


def _start(args: list[str], **popen: Any) -> tuple[subprocess.Popen[Any], Any]:
    """Popen, or the probe backend's spawn when tracing is on (then also the tracee)."""
    backend = _tracing.get()
    if backend is None:
        return subprocess.Popen(args, **popen), None
    tracee = backend.spawn(args, **popen)
    return tracee.proc, tracee


def _kill_tracee(proc: subprocess.Popen[Any], tracee: Any) -> None:
    """Kill a timed-out command: its group, and (bcc) every process of its tree."""
    kill = getattr(tracee, "kill", None)
    if kill is not None:
        kill()
    else:
        _kill_group(proc)


_wrappers: list[Wrapper] = []
_observers: list[Callable[[Record], None]] = []


def add_wrapper(fn: Wrapper) -> None:
    """Wrap every later launch (a tracer prepends its launcher); applied in order added."""
    _wrappers.append(fn)


def remove_wrapper(fn: Wrapper) -> None:
    with contextlib.suppress(ValueError):
        _wrappers.remove(fn)


def add_observer(fn: Callable[[Record], None]) -> None:
    _observers.append(fn)


def remove_observer(fn: Callable[[Record], None]) -> None:
    with contextlib.suppress(ValueError):
        _observers.remove(fn)


def _argv(argv: Sequence[str]) -> list[str]:
    out = [str(a) for a in argv]
    for wrap in _wrappers:
        out = wrap(out)
    return out


_cwd: list[str] = []


def runtime_cwd() -> str:
    """The working directory runtimes are started in: a private, removed-at-exit directory.

    Runtimes drop files in their working directory (podman's conmon writes `oom` there
    after an OOM kill); started from the caller's directory they would litter a checkout.
    """
    if not _cwd:
        import atexit
        import shutil
        import tempfile

        _cwd.append(tempfile.mkdtemp(prefix="conform-cwd-"))
        atexit.register(shutil.rmtree, _cwd[0], True)
    return _cwd[0]


def _notify(record: Record) -> None:
    for fn in list(_observers):
        fn(record)


def _kill_group(proc: subprocess.Popen[Any]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def launch(
    argv: Sequence[str],
    *,
    stdin: str | None = None,
    timeout: float,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a runtime command to completion, capturing text output.

    ``stdin`` is fed to the process (None: /dev/null). On timeout the whole process group is
    killed and `RuntimeTimeout` raised with what the command printed so far.
    """
    args = _argv(argv)
    started = time.monotonic()
    proc, tracee = _start(
        args,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
        errors="replace",
        start_new_session=True,
        cwd=runtime_cwd(),
    )
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        if tracee is None:
            _kill_group(proc)
        else:
            _kill_tracee(proc, tracee)
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:  # a pipe held open by a survivor outside the group
            out, err = "", ""
        trace = _finish(tracee) if tracee is not None else None
        _notify(Record(args, None, out, err, time.monotonic() - started, trace))
        raise RuntimeTimeout(
            f"`{' '.join(args)}` did not finish within {timeout:g}s; stderr: {err.strip()!r}"
        ) from None
    trace = _finish(tracee) if tracee is not None else None
    _notify(Record(args, proc.returncode, out, err, time.monotonic() - started, trace))
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def launch_popen(
    argv: Sequence[str],
    *,
    stdin: int | IO[Any] | None = None,
    stdout: int | IO[Any] | None = None,
    stderr: int | IO[Any] | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start a long-lived runtime process (a held `runc run`, a follower); the caller waits.

    ``stdin`` None means /dev/null. The process gets its own session so it can be killed as
    a group (`kill_group`).
    """
    args = _argv(argv)
    proc, tracee = _start(
        args,
        stdin=subprocess.DEVNULL if stdin is None else stdin,
        stdout=stdout,
        stderr=stderr,
        env=env,
        start_new_session=True,
        cwd=runtime_cwd(),
    )
    record = Record(args, None, "", "", 0.0)
    if tracee is not None:
        _tracing.open.append((record, tracee))
    _notify(record)
    return proc


def kill_group(proc: subprocess.Popen[Any]) -> None:
    """SIGKILL a `launch_popen` process and everything in its session, then reap it."""
    _kill_group(proc)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
