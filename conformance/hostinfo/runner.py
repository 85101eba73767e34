"""How probes run without harming the harness: guarded calls (an exception becomes an
error string), probes in forked children (unshare, mounts, seccomp stay there), libc
through ctypes, and external commands with a timeout."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import json
import os
import select
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conformance.hostinfo.model import NAMESPACES, Check

_CMD_TIMEOUT = 5.0  # seconds, for every external command
_FORK_TIMEOUT = 5.0  # seconds, for every forked probe child


def _describe(exc: BaseException) -> str:
    if isinstance(exc, _LibcError):
        return exc.strerror or str(exc)
    if isinstance(exc, (_Refusal, _ChildError)):
        return str(exc)
    if isinstance(exc, subprocess.TimeoutExpired):
        return f"timed out after {exc.timeout:g}s"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _read(path: str | Path) -> str:
    return Path(path).read_text(encoding="utf-8", errors="replace")


def _read_or_none(path: str | Path) -> str | None:
    try:
        return _read(path).strip()
    except OSError:
        return None


def _guard(errors: dict[str, str], key: str, fn: Callable[[], Any], default: Any) -> Any:
    """Run one probe; an exception is recorded under ``key`` and ``default`` returned."""
    try:
        return fn()
    except Exception as exc:
        errors[key] = _describe(exc)
        return default


def _check(fn: Callable[[], Check]) -> Check:
    """Run one check; an exception becomes ``Check(None, error=...)``."""
    try:
        return fn()
    except Exception as exc:
        return Check(None, "probe failed", error=_describe(exc))


def _first_line(text: str) -> str:
    return next((ln.strip() for ln in text.splitlines() if ln.strip()), "")


class _LibcError(OSError):
    """A failed libc call; ``strerror`` is a ready-made "call: EPERM (...)" text."""


class _Refusal(Exception):
    """A probe's own verification found that the feature does not work."""


class _ChildError(RuntimeError):
    """An unexpected exception in a forked probe child (message already formatted)."""


@functools.cache
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.unshare.argtypes = [ctypes.c_int]
    libc.mount.argtypes = [
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_ulong,
        ctypes.c_void_p,
    ]
    libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
    libc.syscall.restype = ctypes.c_long
    return libc


def _libc_check(call: str, result: int) -> int:
    if result == -1:
        err = ctypes.get_errno()
        name = errno.errorcode.get(err, str(err))
        raise _LibcError(err, f"{call}: {name} ({os.strerror(err)})")
    return result


def _unshare(flags: int) -> None:
    _libc_check("unshare", _libc().unshare(flags))


_MS_REC = 0x4000
_MS_PRIVATE = 1 << 18


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None):
    def enc(s: str | None) -> bytes | None:
        return None if s is None else s.encode()

    data_buf = ctypes.c_char_p(enc(data)) if data is not None else None
    _libc_check(
        f"mount({fstype or source})",
        _libc().mount(enc(source), enc(target), enc(fstype), flags, data_buf),
    )


def _private_mount_ns() -> None:
    """In a forked child: new mount namespace whose mounts never propagate back."""
    _unshare(NAMESPACES["mnt"])
    _mount(None, "/", None, _MS_REC | _MS_PRIVATE, None)


def _run_forked(fn: Callable[[], Any], timeout: float = _FORK_TIMEOUT) -> Any:
    """Run ``fn`` in a forked child and return its (JSON-serializable) result.

    The child never returns into the caller's code: it writes a JSON result to a pipe and
    calls os._exit.  Exceptions in the child are re-raised here: _LibcError for failed libc
    calls, _Refusal for failed verifications, _ChildError for anything else.  A child that
    outlives ``timeout`` is killed (and _ChildError raised).
    """
    _libc()  # load libc before forking
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        status = 1
        try:
            os.close(read_fd)
            try:
                payload = {"ok": True, "value": fn()}
                status = 0
            except BaseException as exc:
                kind = "error"
                if isinstance(exc, _LibcError):
                    kind = "libc"
                elif isinstance(exc, _Refusal):
                    kind = "refusal"
                payload = {
                    "ok": False,
                    "kind": kind,
                    "errno": getattr(exc, "errno", None),
                    "error": _describe(exc),
                }
            os.write(write_fd, json.dumps(payload).encode()[:60000])
        finally:
            os._exit(status)
    os.close(write_fd)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    timed_out = False
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            ready, _, _ = select.select([read_fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(read_fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_fd)
        if timed_out:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):  # a SIGCHLD handler may have reaped it
            os.waitpid(pid, 0)
    if timed_out:
        raise _ChildError(f"probe child timed out after {timeout:g}s")
    if not chunks:
        raise _ChildError("probe child exited without a result")
    payload = json.loads(b"".join(chunks))
    if payload["ok"]:
        return payload["value"]
    if payload["kind"] == "libc":
        raise _LibcError(payload.get("errno") or 0, payload["error"])
    if payload["kind"] == "refusal":
        raise _Refusal(payload["error"])
    raise _ChildError(payload["error"])


def _refused(exc: BaseException) -> Check:
    """The kernel said no (libc error, failed verification) -> ok=False; else a probe error."""
    if isinstance(exc, (_LibcError, _Refusal)):
        return Check(False, _describe(exc))
    return Check(None, "probe failed", error=_describe(exc))


def _forked_check(fn: Callable[[], str]) -> Check:
    try:
        return Check(True, _run_forked(fn) or "")
    except Exception as exc:
        return _refused(exc)


def _run_command(argv: list[str], timeout: float = _CMD_TIMEOUT) -> tuple[int, str, str]:
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    return proc.returncode, proc.stdout, proc.stderr
