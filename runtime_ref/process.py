"""Fork a process into new (or joined) namespaces, with a race-free start report.

Both `run` and `exec` use the same two-step dance: a short-lived child joins
the cgroup and the namespaces, then forks the real process (a pid namespace
applies to children only) and exits. The caller is a child subreaper, so the
real process becomes its child and its exit status reaches the caller intact.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal

from . import syscalls as sc
from .errors import EXIT_RUNTIME, RrefError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import NoReturn

#: Signals a foreground runtime passes on to the container's init (docker run, runc run).
FORWARDED = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGWINCH,
)

NS_FLAGS = {
    "user": sc.CLONE_NEWUSER,
    "ipc": sc.CLONE_NEWIPC,
    "uts": sc.CLONE_NEWUTS,
    "network": sc.CLONE_NEWNET,
    "pid": sc.CLONE_NEWPID,
    "cgroup": sc.CLONE_NEWCGROUP,
    "mount": sc.CLONE_NEWNS,
}
# /proc/<pid>/ns file names, in the order setns must join them (user first, mount last).
NS_PROC = {
    "user": "user",
    "ipc": "ipc",
    "uts": "uts",
    "network": "net",
    "pid": "pid",
    "cgroup": "cgroup",
    "mount": "mnt",
}


class Started:
    """The started process's pid, or the error that kept it from running."""

    def __init__(self, pid: int, error: dict[str, object] | None) -> None:
        self.pid = pid
        self.error = error  # {"code", "message"} when the process never ran


def become_subreaper() -> None:
    sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]


def _read_all(fd: int) -> bytes:
    chunks: list[bytes] = []
    while True:
        b = os.read(fd, 65536)
        if not b:
            return b"".join(chunks)
        chunks.append(b)


def spawn(
    stdio: tuple[int, int, int],
    cgroup_procs: list[str],
    prepare: Callable[[], None],
    body: Callable[[int, int], NoReturn],
    userns_setup: Callable[[int], None] | None = None,
    host_setup: Callable[[int], None] | None = None,
    keep_fds: tuple[int, ...] = (),
    cwd: str | None = None,
) -> Started:
    """Run `prepare` (join cgroup/namespaces) in a child, then `body(err_fd, go_fd)` in a
    grandchild.

    `body` must exec or write a JSON error to err_fd and exit. With
    `userns_setup`, the child first unshares a user namespace and waits while
    the caller writes its id maps (`userns_setup(child_pid)`). With
    `host_setup`, the caller configures the grandchild from the host side
    (`host_setup(pid)`, e.g. a veth into its network namespace) and only then
    writes the "go" byte that `body` reads from `go_fd` before it execs.
    `keep_fds` stay open in the grandchild (mount sources the host opened for it);
    `cwd` is entered before any namespace (a new mount namespace keeps it, in its copy).
    Returns the grandchild's pid once it has exec'd (err pipe closed empty) or failed.
    """
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    pid_r, pid_w = os.pipe2(os.O_CLOEXEC)
    u_r, u_w = os.pipe2(os.O_CLOEXEC) if userns_setup else (-1, -1)
    g1_r, g1_w = os.pipe2(os.O_CLOEXEC) if userns_setup else (-1, -1)
    g2_r, g2_w = os.pipe2(os.O_CLOEXEC) if host_setup else (-1, -1)
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the forked child
        try:
            # Non-dumpable before joining anything: while this host interpreter (and the
            # grandchild it forks) is inside the container's namespaces, a container
            # process must not open its /proc/PID/exe, cwd, root or fds (the CVE-2019-5736
            # class). The kernel then requires CAP_SYS_PTRACE over the host's user
            # namespace; execve of the user program makes it dumpable again.
            sc.prctl(sc.PR_SET_DUMPABLE, 0)
            for fd in (err_r, pid_r, u_r, g1_w, g2_w):
                if fd >= 0:
                    os.close(fd)
            for target, fd in enumerate(stdio):
                os.dup2(fd, target, inheritable=True)
            me = str(os.getpid())
            for procs in cgroup_procs:
                with open(procs, "w") as f:
                    f.write(me)
            if cwd is not None:
                os.chdir(cwd)
            if userns_setup:
                sc.unshare(sc.CLONE_NEWUSER)
                os.write(u_w, b"u")
                if os.read(g1_r, 1) != b"g":
                    os._exit(EXIT_RUNTIME)
                os.setresgid(0, 0, 0)
                os.setresuid(0, 0, 0)
            prepare()
            grandchild = os.fork()
            if grandchild == 0:
                os.close(pid_w)
                os.setsid()
                keep = sorted({0, 1, 2, err_w, g2_r, *keep_fds} - {-1})
                for lo, hi in zip(keep, [*keep[1:], 65536], strict=True):
                    os.closerange(lo + 1, hi)
                body(err_w, g2_r)
            _write_all(pid_w, str(grandchild).encode())
            os._exit(0)
        except RrefError as e:
            _write_all(err_w, json.dumps({"code": e.code, "message": str(e)}).encode())
        except OSError as e:
            _write_all(
                err_w,
                json.dumps(
                    {
                        "code": EXIT_RUNTIME,
                        "message": f"{e.strerror or e} {e.filename or ''}".strip(),
                    }
                ).encode(),
            )
        except BaseException:
            import sys  # a bug: report it rather than hang the caller

            exc = sys.exc_info()[1]
            _write_all(
                err_w,
                json.dumps(
                    {"code": EXIT_RUNTIME, "message": f"{type(exc).__name__}: {exc}"}
                ).encode(),
            )
        os._exit(EXIT_RUNTIME)
    for fd in (err_w, pid_w, u_w, g1_r, g2_r):
        if fd >= 0:
            os.close(fd)
    failure: dict[str, object] | None = None
    if userns_setup:
        if os.read(u_r, 1) == b"u":
            try:
                userns_setup(child)
                os.write(g1_w, b"g")
            except (OSError, RrefError) as e:
                failure = {"code": EXIT_RUNTIME, "message": f"cannot set up user namespace: {e}"}
        os.close(u_r)
        os.close(g1_w)  # EOF releases (and, without "g", ends) a waiting child
    os.waitpid(child, 0)
    raw_pid = _read_all(pid_r)
    os.close(pid_r)
    pid = int(raw_pid) if raw_pid else 0
    if host_setup:
        if pid and failure is None:
            try:
                host_setup(pid)
                os.write(g2_w, b"g")
            except (OSError, RrefError) as e:
                failure = {"code": EXIT_RUNTIME, "message": str(e)}
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        os.close(g2_w)
    raw_err = _read_all(err_r)
    os.close(err_r)
    error = failure
    if raw_err and error is None:
        try:
            error = json.loads(raw_err)
        except ValueError:
            error = {"code": EXIT_RUNTIME, "message": raw_err.decode(errors="replace")}
    return Started(pid, error)


def wait_go(go_fd: int) -> bool:
    """In the grandchild: block until the caller's host-side set-up is done."""
    if go_fd < 0:
        return True
    ok = os.read(go_fd, 1) == b"g"
    os.close(go_fd)
    return ok


def unshare_for(namespaces: list[dict[str, str]]) -> Callable[[], None]:
    """The `prepare` step of a new container: join ns paths, unshare the rest."""

    def prepare() -> None:
        flags = 0
        for ns in namespaces:
            if ns.get("path"):
                fd = os.open(ns["path"], os.O_RDONLY | os.O_CLOEXEC)
                try:
                    sc.setns(fd, NS_FLAGS[ns["type"]])
                finally:
                    os.close(fd)
            else:
                flags |= NS_FLAGS[ns["type"]]
        sc.unshare(flags)

    return prepare


def join_namespaces_of(pid: int, types: list[str]) -> tuple[Callable[[], None], list[int]]:
    """The `prepare` step of exec: setns into each namespace of `pid` that differs from ours.

    The namespace files are opened now, in the caller, so a container that dies
    meanwhile gives a clean error; the caller closes the returned fds.
    """
    fds: list[tuple[int, int]] = []
    for t in sorted(types, key=list(NS_PROC).index):
        target = f"/proc/{pid}/ns/{NS_PROC[t]}"
        if os.stat(target).st_ino == os.stat(f"/proc/self/ns/{NS_PROC[t]}").st_ino:
            continue
        fds.append((os.open(target, os.O_RDONLY | os.O_CLOEXEC), NS_FLAGS[t]))

    def prepare() -> None:
        for fd, flag in fds:
            sc.setns(fd, flag)

    return prepare, [fd for fd, _ in fds]


def exit_code(status: int) -> int:
    """A wait status as docker reports it: the exit code, or 128 + the killing signal."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status)
