"""The one place runtime processes are started.

Why: a syscall tracer must see a runtime from its first syscall, so every runtime command
goes through `launch`/`launch_popen`. A tracer installs a `wrapper` (argv -> argv, e.g. a
ptrace launcher in front); observers get a record of each finished command (the plugin
keeps them as the test's transcript). Adapters never call subprocess directly.
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
    """One finished runtime command, for transcripts and failure messages."""

    argv: list[str]
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float


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
    proc = subprocess.Popen(
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
        _kill_group(proc)
        out, err = proc.communicate()
        _notify(Record(args, None, out, err, time.monotonic() - started))
        raise RuntimeTimeout(
            f"`{' '.join(args)}` did not finish within {timeout:g}s; stderr: {err.strip()!r}"
        ) from None
    _notify(Record(args, proc.returncode, out, err, time.monotonic() - started))
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
    proc = subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL if stdin is None else stdin,
        stdout=stdout,
        stderr=stderr,
        env=env,
        start_new_session=True,
        cwd=runtime_cwd(),
    )
    _notify(Record(args, None, "", "", 0.0))
    return proc


def kill_group(proc: subprocess.Popen[Any]) -> None:
    """SIGKILL a `launch_popen` process and everything in its session, then reap it."""
    _kill_group(proc)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
