"""The tracer protocol both backends implement, and the choice between them.

Why a protocol with `spawn`: the conformance launcher starts every runtime process itself
(output capture, timeouts, process groups); a backend only has to start the command so that
it is traced from its first syscall, and hand back the events when it is done.

The exact protocol (probes/bcc_backend.py and probes/ptrace_backend.py implement it):

    class Tracee(Protocol):
        proc: subprocess.Popen      # the started command; proc.returncode is the COMMAND's
                                    # exit status (a backend that puts a tracer process in
                                    # front must forward it: 128+N for a signal N)
        pid: int                    # host pid of the traced command (Trace.root_pid)
        def finish(self, timeout: float = 10.0) -> Trace:
            # Called once, after proc has exited (or was killed): stop following, drain,
            # return the Trace. Never blocks beyond ``timeout``; a record not drained in
            # time is counted in Trace.lost and said in Trace.notes. Never raises for a
            # tracing problem (it becomes a note).

    class Backend(Protocol):
        name: str                   # "bcc" | "ptrace"
        def spawn(self, argv: Sequence[str], **popen: Any) -> Tracee:
            # Start argv traced from its first syscall. ``popen`` are subprocess.Popen
            # keyword arguments (stdin, stdout, stderr, env, cwd, text, errors,
            # start_new_session, ...) and mean what they mean to Popen. Raises OSError
            # like Popen when argv cannot be started.
        def trace(self, argv, *, stdin=None, stdout=None, stderr=None, env=None,
                  cwd=None, timeout: float = 60.0
                  ) -> tuple[subprocess.CompletedProcess[bytes], Trace]:
            # Run argv to completion (bytes output when stdout/stderr are PIPE; stdin may be
            # bytes to feed). On timeout the process group is killed and CommandTimeout
            # raised carrying the partial Trace. `run_traced` below implements this on top of
            # spawn: backends may simply delegate to it.
        def close(self) -> None:
            # Detach everything (idempotent). The backend is reusable until closed.

    Module contract: each backend module has `create() -> Backend`, raising
    `Unavailable("one-line reason")` when it cannot work on this host. It may be slow (bcc
    compiles): `select` calls it once per process and caches the result (or the refusal).

Several tracees of one backend may run at the same time (threads of one pytest worker);
each Trace holds only its own command's process tree.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import subprocess
import threading
from collections.abc import Sequence
from typing import Any, Protocol

from probes.trace import Trace

NAMES: tuple[str, ...] = ("auto", "bcc", "ptrace", "none")
#: auto tries these, in order.
AUTO_ORDER: tuple[str, ...] = ("bcc", "ptrace")


class Unavailable(Exception):
    """A backend cannot work on this host; the message is one line saying why."""


class CommandTimeout(Exception):
    """The traced command did not finish in time; it was killed. Carries what was seen."""

    def __init__(self, message: str, trace: Trace, stdout: Any = None, stderr: Any = None):
        super().__init__(message)
        self.trace = trace
        self.stdout = stdout
        self.stderr = stderr


class Tracee(Protocol):
    proc: subprocess.Popen[Any]
    pid: int

    def finish(self, timeout: float = 10.0) -> Trace: ...


class Backend(Protocol):
    name: str

    def spawn(self, argv: Sequence[str], **popen: Any) -> Tracee: ...

    def trace(
        self,
        argv: Sequence[str],
        *,
        stdin: Any = None,
        stdout: Any = None,
        stderr: Any = None,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        timeout: float = 60.0,
    ) -> tuple[subprocess.CompletedProcess[bytes], Trace]: ...

    def close(self) -> None: ...


def kill_tree(proc: subprocess.Popen[Any]) -> None:
    """SIGKILL the command's process group (it has one when started in a new session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(proc.pid) == proc.pid:
            os.killpg(proc.pid, signal.SIGKILL)
            return
    with contextlib.suppress(ProcessLookupError):
        proc.kill()


def run_traced(
    backend: Backend,
    argv: Sequence[str],
    *,
    stdin: Any = None,
    stdout: Any = None,
    stderr: Any = None,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    timeout: float = 60.0,
) -> tuple[subprocess.CompletedProcess[bytes], Trace]:
    """`Backend.trace` on top of `Backend.spawn` (see the module docstring)."""
    feed = stdin if isinstance(stdin, bytes) else None
    tracee = backend.spawn(
        list(argv),
        stdin=subprocess.PIPE if feed is not None else stdin,
        stdout=stdout,
        stderr=stderr,
        env=env,
        cwd=cwd,
        start_new_session=True,
    )
    try:
        out, err = tracee.proc.communicate(feed, timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(tracee.proc)
        try:
            out, err = tracee.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            out, err = None, None
        trace = tracee.finish()
        trace.notes.append(f"the command did not finish within {timeout:g}s and was killed")
        raise CommandTimeout(
            f"`{' '.join(argv)}` did not finish within {timeout:g}s", trace, out, err
        ) from None
    trace = tracee.finish()
    return subprocess.CompletedProcess(list(argv), tracee.proc.returncode, out, err), trace


_cache: dict[str, Backend | Unavailable] = {}
_lock = threading.Lock()


def _create(name: str) -> Backend:
    with _lock:
        got = _cache.get(name)
        if got is None:
            try:
                module = importlib.import_module(f"probes.{name}_backend")
                got = module.create()
            except Unavailable as e:
                got = e
            except ImportError as e:
                got = Unavailable(f"{name} backend cannot be imported: {e}")
            except Exception as e:  # a broken tracer must never crash the run
                got = Unavailable(f"{name} backend failed to start: {type(e).__name__}: {e}")
            _cache[name] = got
    if isinstance(got, Unavailable):
        raise got
    return got


def select(name: str) -> tuple[Backend | None, str]:
    """The backend for ``name`` ("auto" | "bcc" | "ptrace" | "none") and why.

    Created once per process and cached (bcc compiles its program once). "auto" takes bcc,
    else ptrace, else none; the reason names each refusal. None means no tracing.
    """
    if name not in NAMES:
        return None, f"unknown probe backend {name!r} (choose from {', '.join(NAMES)})"
    if name == "none":
        return None, "tracing disabled (--probe none)"
    order = AUTO_ORDER if name == "auto" else (name,)
    refusals = []
    for candidate in order:
        try:
            backend = _create(candidate)
        except Unavailable as e:
            refusals.append(f"{candidate}: {e}")
            continue
        why = f"{candidate} backend" + (f" ({'; '.join(refusals)})" if refusals else "")
        return backend, why
    return None, "no probe backend: " + "; ".join(refusals)


def availability() -> dict[str, tuple[bool, str]]:
    """Each backend of `AUTO_ORDER` -> (works here, what it did or why not), by starting it
    for real (bcc compiles and attaches its program: a few seconds). For `conform doctor`."""
    out: dict[str, tuple[bool, str]] = {}
    for name in AUTO_ORDER:
        backend, why = select(name)
        if backend is None:
            out[name] = (False, why.removeprefix("no probe backend: ").removeprefix(f"{name}: "))
            continue
        seconds = getattr(backend, "compile_seconds", None)
        detail = (
            f"program compiled, loaded and attached in {seconds:.1f}s"
            if seconds is not None
            else "a traced child was followed"
        )
        notes = getattr(backend, "notes", None) or []
        out[name] = (True, "; ".join([detail, *notes]))
    return out


def close_all() -> None:
    """Close every backend created in this process (atexit, end of a pytest session)."""
    with _lock:
        items = list(_cache.values())
        _cache.clear()
    for got in items:
        if not isinstance(got, Unavailable):
            with contextlib.suppress(Exception):
                got.close()
