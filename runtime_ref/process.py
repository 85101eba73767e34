"""Fork a process into new (or joined) namespaces, with a race-free start report.

Both `run` and `exec` use the same two-step dance: a short-lived child joins
the cgroup and the namespaces, then forks the real process (a pid namespace
applies to children only) and exits. The caller is a child subreaper, so the
real process becomes its child and its exit status reaches the caller intact.
"""

from __future__ import annotations

import contextlib
import os
import signal

from . import jsonc as json
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
                _close_all_but({0, 1, 2, err_w, g2_r, *keep_fds})
                body(err_w, g2_r)
            _write_all(pid_w, str(grandchild).encode())
            os._exit(0)
        except BaseException as e:
            _child_failed(err_w, e)
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
            failure = _host_side(pid, lambda: host_setup(pid), lambda: os.write(g2_w, b"g"))
        os.close(g2_w)
    return _started(pid, err_r, failure)


def _host_side(pid: int, *steps: Callable[[], object]) -> dict[str, object] | None:
    """The caller's steps for a started process, in order; the first failure kills it."""
    try:
        for step in steps:
            step()
    except (OSError, RrefError) as e:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
        return {"code": EXIT_RUNTIME, "message": str(e)}
    return None


def _started(pid: int, err_r: int, failure: dict[str, object] | None) -> Started:
    """Read the start report to EOF (the process exec'd, or wrote why it could not)."""
    raw_err = _read_all(err_r)
    os.close(err_r)
    error = failure
    if raw_err and error is None:
        try:
            error = json.loads(raw_err)
        except ValueError:
            error = {"code": EXIT_RUNTIME, "message": raw_err.decode(errors="replace")}
    return Started(pid, error)


def _child_failed(err_w: int, e: BaseException) -> None:
    """In a forked child: the exception that stopped it, as the start report's JSON."""
    if isinstance(e, RrefError):
        report = {"code": e.code, "message": str(e)}
    elif isinstance(e, OSError):
        report = {"code": EXIT_RUNTIME, "message": f"{e.strerror or e} {e.filename or ''}".strip()}
    else:  # a bug: report it rather than hang the caller
        report = {"code": EXIT_RUNTIME, "message": f"{type(e).__name__}: {e}"}
    _write_all(err_w, json.dumps(report).encode())


def _close_all_but(keep_fds: set[int]) -> None:
    keep = sorted(keep_fds - {-1})
    for lo, hi in zip(keep, [*keep[1:], 65536], strict=True):
        os.closerange(lo + 1, hi)


def spawn_direct(
    stdio: tuple[int, int, int],
    cgroup_procs: list[str],
    flags: int,
    body: Callable[[int, int], NoReturn],
    host_setup: Callable[[int], None] | None = None,
    keep_fds: tuple[int, ...] = (),
) -> Started:
    """`spawn` with one fork, for new namespaces only (none joined, no user namespace).

    The caller's children go into a new pid namespace for this one fork (its own
    pid namespace is restored right after), so the forked process is the init
    itself; it unshares the other namespaces on its own. Meanwhile the caller
    joins it to the cgroups -- the first cgroup.procs write in a v1 hierarchy waits
    for an RCU grace period, often longer than the init's mounts -- and only then
    runs `host_setup` and writes "go", which `body` must read (`wait_go`) before
    it forks, runs hooks or execs. A new cgroup namespace is unshared only once
    the init is in its cgroups: its root is the cgroup the init is in at that moment.
    """
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    go_r, go_w = os.pipe2(os.O_CLOEXEC)
    cg_r, cg_w = os.pipe2(os.O_CLOEXEC) if flags & sc.CLONE_NEWCGROUP else (-1, -1)
    own_pid_ns = -1
    if flags & sc.CLONE_NEWPID:
        own_pid_ns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        sc.unshare(sc.CLONE_NEWPID)
    try:
        pid = os.fork()
    except BaseException:
        _restore_pid_ns(own_pid_ns)
        raise
    if pid:
        _restore_pid_ns(own_pid_ns)
    else:  # pragma: no cover - runs in the forked init
        try:
            sc.prctl(sc.PR_SET_DUMPABLE, 0)  # as in spawn: no /proc/PID/exe of the host's
            for fd in (err_r, go_w, cg_w, own_pid_ns):
                if fd >= 0:
                    os.close(fd)
            for target, fd in enumerate(stdio):
                os.dup2(fd, target, inheritable=True)
            sc.unshare(flags & ~(sc.CLONE_NEWPID | sc.CLONE_NEWCGROUP))
            if cg_r >= 0:
                if os.read(cg_r, 1) != b"c":
                    os._exit(EXIT_RUNTIME)  # the caller could not attach it and says why
                os.close(cg_r)
                sc.unshare(sc.CLONE_NEWCGROUP)
            os.setsid()
            _close_all_but({0, 1, 2, err_w, go_r, *keep_fds})
            body(err_w, go_r)
        except BaseException as e:
            _child_failed(err_w, e)
        os._exit(EXIT_RUNTIME)
    for fd in (err_w, go_r, cg_r):
        if fd >= 0:
            os.close(fd)

    def join_cgroups() -> None:
        for procs in cgroup_procs:
            with open(procs, "w") as f:
                f.write(str(pid))
        if cg_w >= 0:
            os.write(cg_w, b"c")

    failure = _host_side(
        pid,
        join_cgroups,
        lambda: host_setup(pid) if host_setup else None,
        lambda: os.write(go_w, b"g"),
    )
    if cg_w >= 0:
        os.close(cg_w)
    os.close(go_w)
    return _started(pid, err_r, failure)


def _restore_pid_ns(fd: int) -> None:
    """The caller's later children (hooks, ps) are forked in its own pid namespace again."""
    if fd >= 0:
        sc.setns(fd, sc.CLONE_NEWPID)
        os.close(fd)


def new_namespace_flags(namespaces: list[dict[str, str]]) -> int | None:
    """The CLONE_NEW* flags of `namespaces` when `spawn_direct` can make them: all new,
    no user namespace; else None (`spawn` joins paths and waits for id maps)."""
    flags = 0
    for ns in namespaces:
        if ns.get("path") or ns["type"] == "user":
            return None
        flags |= NS_FLAGS[ns["type"]]
    return flags


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
