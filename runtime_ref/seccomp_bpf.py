"""Compiled seccomp filters, cached: libseccomp once per profile, one syscall per start.

Building a filter with libseccomp costs milliseconds on every container
start; the resulting classic-BPF program depends only on the profile and the
architecture, so it is compiled once, stored under <root>/seccomp/<key>.bpf,
and loaded with seccomp(2) directly through ctypes.
"""

from __future__ import annotations

import ctypes
import os

from . import syscalls

_SECCOMP_NR = {"x86_64": 317, "aarch64": 277}[os.uname().machine]
SECCOMP_SET_MODE_FILTER = 1
_SOCK_FILTER_SIZE = 8  # struct sock_filter { u16 code; u8 jt; u8 jf; u32 k; }


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _sorted(value: object) -> object:
    """`value` with every object's keys in order (one text per profile, whatever its order)."""
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


def cache_key(oci: dict[str, object]) -> str:
    """sha256 of the profile and the machine. Host side only; the C sha256 and jsonc, not
    hashlib (it loads OpenSSL) and json (re): `rref run` compiles the default profile."""
    try:
        from _sha256 import sha256  # type: ignore[import-not-found]  # CPython 3.11's
    except ImportError:  # pragma: no cover - other versions
        from hashlib import sha256

    from .jsonc import dumps

    raw = dumps(_sorted(oci)) + os.uname().machine
    return str(sha256(raw.encode()).hexdigest())[:32]


def compiled(root: str, oci: dict[str, object]) -> bytes:
    """The BPF program for an OCI seccomp dict, compiled on first use and cached."""
    path = os.path.join(os.path.abspath(root), "seccomp", cache_key(oci) + ".bpf")
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        pass
    from .seccomp import prepare

    prepared = prepare(oci, no_new_privs=False)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    from . import scratch

    tmp = scratch.name(path)
    with open(tmp, "wb") as f:
        prepared.filter.export_bpf(f)
    os.replace(tmp, path)
    with open(path, "rb") as f:
        return f.read()


def load(program: bytes, no_new_privs: bool) -> None:
    """Install the filter on this thread (needs no_new_privs or CAP_SYS_ADMIN)."""
    if no_new_privs:
        syscalls.prctl(syscalls.PR_SET_NO_NEW_PRIVS, 1)
    buf = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // _SOCK_FILTER_SIZE, ctypes.cast(buf, ctypes.c_void_p))
    ret = syscalls._libc.syscall(_SECCOMP_NR, SECCOMP_SET_MODE_FILTER, 0, ctypes.byref(prog))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"seccomp: {os.strerror(err)}")
