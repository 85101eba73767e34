"""Fork a process into new (or joined) namespaces, with a race-free start report.

Both `run` and `exec` use the same two-step dance: a short-lived child joins
the cgroup and the namespaces, then forks the real process (a pid namespace
applies to children only) and exits. The caller is a child subreaper, so the
real process becomes its child and its exit status reaches the caller intact.
"""

from __future__ import annotations

import json
import os

from . import syscalls as sc
from .errors import EXIT_RUNTIME, RrefError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import NoReturn

NS_FLAGS = {
    "user": sc.CLONE_NEWUSER, "ipc": sc.CLONE_NEWIPC, "uts": sc.CLONE_NEWUTS,
    "network": sc.CLONE_NEWNET, "pid": sc.CLONE_NEWPID, "cgroup": sc.CLONE_NEWCGROUP,
    "mount": sc.CLONE_NEWNS,
}
# /proc/<pid>/ns file names, in the order setns must join them (user first, mount last).
NS_PROC = {"user": "user", "ipc": "ipc", "uts": "uts", "network": "net", "pid": "pid",
           "cgroup": "cgroup", "mount": "mnt"}


class Started:
    """The started process's pid, or the error that kept it from running."""

    def __init__(self, pid: int, error: dict[str, object] | None) -> None:
        self.pid = pid
        self.error = error  # {"code", "message"} when the process never ran


def become_subreaper() -> None:
    sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        b = os.read(fd, 65536)
        if not b:
            return b"".join(chunks)
        chunks.append(b)


def spawn(stdio: tuple[int, int, int], cgroup_procs: list[str],
          prepare: Callable[[], None], body: Callable[[int], NoReturn]) -> Started:
    """Run `prepare` (join cgroup/namespaces) in a child, then `body(err_fd)` in a grandchild.

    `body` must exec or write a JSON error to err_fd and exit. Returns the
    grandchild's pid once it has exec'd (err pipe closed empty) or failed.
    """
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    pid_r, pid_w = os.pipe2(os.O_CLOEXEC)
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the forked child
        try:
            os.close(err_r)
            os.close(pid_r)
            for target, fd in enumerate(stdio):
                os.dup2(fd, target, inheritable=True)
            me = str(os.getpid())
            for procs in cgroup_procs:
                with open(procs, "w") as f:
                    f.write(me)
            prepare()
            grandchild = os.fork()
            if grandchild == 0:
                os.close(pid_w)
                os.setsid()
                keep = sorted({0, 1, 2, err_w})
                for lo, hi in zip(keep, [*keep[1:], 65536], strict=True):
                    os.closerange(lo + 1, hi)
                body(err_w)
            _write_all(pid_w, str(grandchild).encode())
            os._exit(0)
        except RrefError as e:
            _write_all(err_w, json.dumps({"code": e.code, "message": str(e)}).encode())
        except OSError as e:
            _write_all(err_w, json.dumps({"code": EXIT_RUNTIME,
                                          "message": f"{e.strerror or e} "
                                                     f"{e.filename or ''}".strip()}).encode())
        except BaseException:
            import sys  # a bug: report it rather than hang the caller

            e = sys.exc_info()[1]
            _write_all(err_w, json.dumps({"code": EXIT_RUNTIME,
                                          "message": f"{type(e).__name__}: {e}"}).encode())
        os._exit(EXIT_RUNTIME)
    os.close(err_w)
    os.close(pid_w)
    os.waitpid(child, 0)
    raw_pid = _read_all(pid_r)
    os.close(pid_r)
    raw_err = _read_all(err_r)
    os.close(err_r)
    pid = int(raw_pid) if raw_pid else 0
    error = None
    if raw_err:
        try:
            error = json.loads(raw_err)
        except ValueError:
            error = {"code": EXIT_RUNTIME, "message": raw_err.decode(errors="replace")}
    return Started(pid, error)


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
