"""The container's first process: from a fresh set of namespaces to execve.

Executed in the forked child that is pid 1 of the new pid namespace. It
applies the spec (rootfs, hostname, lo, user, capabilities) and execs the
user program. Failures are written as one JSON line to a close-on-exec pipe,
so the parent learns "started" (EOF) or "failed: why" (data) without races.
"""

from __future__ import annotations

import os
import signal
import stat

from . import caps, netlo, process, rootfs, seccomp_bpf, syscalls, users
from . import jsonc as json
from .errors import EXIT_CANNOT_EXEC, EXIT_NOT_FOUND, EXIT_RUNTIME, RrefError
from .spec import ANN_USER, DEFAULT_PATH, env_dict, namespace_types

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import NoReturn

    from .mountsrc import HostSources
    from .spec import Spec


def fail(err_fd: int, code: int, message: str) -> NoReturn:
    try:
        os.write(err_fd, json.dumps({"code": code, "message": message}).encode())
    finally:
        os._exit(code)


def reset_signals() -> None:
    """Python ignores SIGPIPE/SIGXFSZ; ignored dispositions survive execve, so restore them."""
    for sig in (
        signal.SIGPIPE,
        signal.SIGXFSZ,
        signal.SIGINT,
        signal.SIGTERM,
        signal.SIGHUP,
        signal.SIGQUIT,
        signal.SIGCHLD,
        signal.SIGTTOU,
        signal.SIGTTIN,
        signal.SIGTSTP,
    ):
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def find_executable(name: str, path: str) -> tuple[str | None, int]:
    """Locate argv[0] like execvp; return (path, errno-ish exit code when not usable)."""
    candidates = [name] if "/" in name else [os.path.join(d or ".", name) for d in path.split(":")]
    denied = False
    for c in candidates:
        try:
            st = os.stat(c)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and os.access(c, os.X_OK):
            return c, 0
        denied = True
    return None, EXIT_CANNOT_EXEC if denied else EXIT_NOT_FOUND


def set_identity_and_caps(
    spec: Spec, user_override: str | None = None, seccomp_prog: bytes | None = None
) -> dict[str, str]:
    """Switch to the process user and capability sets; return env additions (HOME).

    The seccomp filter goes in while CAP_SYS_ADMIN is still held unless
    no_new_privs is asked for, in which case it is the very last step (as runc).
    """
    proc = spec["process"]
    user = proc.get("user", {})
    uid, gid = user.get("uid", 0), user.get("gid", 0)
    extra = list(user.get("additionalGids", []))
    home = "/root" if uid == 0 else "/"
    wanted = user_override or spec.get("annotations", {}).get(ANN_USER)
    if wanted:
        uid, gid, found, home = users.resolve(wanted)
        extra = sorted(set(extra) | set(found))
    capset = proc.get("capabilities", {})
    nnp = bool(proc.get("noNewPrivileges"))
    if seccomp_prog and not nnp:
        seccomp_bpf.load(seccomp_prog, no_new_privs=False)
    caps.drop_bounding(caps.mask(capset.get("bounding", [])))
    if nnp:
        syscalls.prctl(syscalls.PR_SET_NO_NEW_PRIVS, 1)
    os.setgroups(extra)
    os.setresgid(gid, gid, gid)
    # always: an exec that joined a user namespace is still the host's uid 0 until now
    os.setresuid(uid, uid, uid)
    caps.apply(
        capset
        if uid == 0
        else {k: v for k, v in capset.items() if k in ("bounding", "inheritable")}
    )
    if seccomp_prog and nnp:
        seccomp_bpf.load(seccomp_prog, no_new_privs=True)
    return {"HOME": home}


def exec_process(
    spec: Spec,
    err_fd: int,
    cwd: str,
    env: list[str],
    user_override: str | None = None,
    seccomp_prog: bytes | None = None,
    gate: Callable[[int], int] | None = None,
) -> NoReturn:
    """Common tail of init and exec: identity, capabilities, seccomp, cwd, execve.

    `gate(err_fd)` runs once the program is found, just before execve: the OCI
    front's `create` waits there for `start`; it returns the fd for later errors.
    """
    args = spec["process"]["args"]
    try:
        extra_env = set_identity_and_caps(spec, user_override, seccomp_prog)
    except RrefError as e:
        fail(err_fd, EXIT_RUNTIME, str(e))
    except OSError as e:
        fail(err_fd, EXIT_RUNTIME, f"cannot set process identity: {e.strerror}")
    envd = env_dict(env)
    for k, v in extra_env.items():
        envd.setdefault(k, v)
    try:
        os.chdir(cwd)
    except OSError as e:
        fail(err_fd, EXIT_RUNTIME, f"cannot change to working directory {cwd}: {e.strerror}")
    exe, code = find_executable(args[0], envd.get("PATH", DEFAULT_PATH))
    if exe is None:
        what = (
            "permission denied"
            if code == EXIT_CANNOT_EXEC
            else "executable file not found in $PATH"
        )
        fail(err_fd, code, f'exec: "{args[0]}": {what}')
    if gate is not None:
        err_fd = gate(err_fd)
    reset_signals()
    try:
        os.execve(exe, args, envd)
    except OSError as e:
        fail(err_fd, EXIT_CANNOT_EXEC, f'exec: "{args[0]}": {e.strerror}')


def container_init(
    spec: Spec,
    err_fd: int,
    go_fd: int = -1,
    seccomp_prog: bytes | None = None,
    sources: HostSources | None = None,
) -> NoReturn:
    """Pid 1 of the container: build its world from the spec, then exec.

    Everything it needs is imported at module load: after pivot_root the
    host's Python tree is no longer reachable.
    """
    proc = spec["process"]
    cwd = proc.get("cwd", "/") or "/"
    os.umask(0o022)
    try:
        rootfs.setup(spec, cwd, sources)
        types = namespace_types(spec)
        if spec.get("hostname") and "uts" in types:
            syscalls.sethostname(spec["hostname"])
        if "network" in types and not _has_ns_path(spec, "network"):
            netlo.link_up("lo")
        if not process.wait_go(go_fd):
            os._exit(EXIT_RUNTIME)  # the monitor gave up and says why
    except (OSError, rootfs.RootfsError) as e:
        fail(err_fd, EXIT_RUNTIME, f"container init: {e}")
    exec_process(spec, err_fd, cwd, proc.get("env", []), seccomp_prog=seccomp_prog)


def _has_ns_path(spec: Spec, kind: str) -> bool:
    return any(ns.get("path") for ns in spec["linux"]["namespaces"] if ns["type"] == kind)
