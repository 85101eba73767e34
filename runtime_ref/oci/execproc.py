"""`exec`: one more process in a created or running container.

It joins the init's namespaces and cgroup and takes the container's security
set-up (capabilities, seccomp, no_new_privs) unless `--process` gives its own
process object. In the foreground rref-oci is the subreaper and exits as the
process did; with `-d` it returns once the program has been exec'd.
"""

from __future__ import annotations

import contextlib
import os

from .. import jsonc as json
from .. import process
from ..errors import RrefError
from ..spec import merge_env
from . import config
from .lifecycle import _write_pid_file, wait_for
from .store import Store, status

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class ExecOptions:
    def __init__(
        self,
        args: list[str],
        process_file: str | None = None,
        env: list[str] | None = None,
        cwd: str | None = None,
        user: str | None = None,
        detach: bool = False,
        pid_file: str | None = None,
        no_new_privs: bool = False,
        tty: bool = False,
        console_socket: str | None = None,
    ) -> None:
        self.args = args
        self.process_file = process_file
        self.env = env or []
        self.cwd = cwd
        self.user = user
        self.detach = detach
        self.pid_file = pid_file
        self.no_new_privs = no_new_privs
        self.tty = tty
        self.console_socket = console_socket


def _process(spec: dict[str, Any], o: ExecOptions) -> dict[str, Any]:
    if o.process_file:
        proc = config.read_object(o.process_file, "--process")
        proc.setdefault("cwd", "/")
        proc.setdefault("user", {"uid": 0, "gid": 0})
        where = "process file: "
    else:
        if not o.args:
            raise RrefError("exec needs a command to run (or --process FILE)", 1)
        proc = json.loads(json.dumps(spec["process"]))
        proc["args"] = list(o.args)
        proc["env"] = merge_env(proc.get("env", []), o.env)
        if o.cwd:
            proc["cwd"] = o.cwd
        if o.user:
            uid, _, gid = o.user.partition(":")
            if not uid.isdigit() or (gid and not gid.isdigit()):
                raise RrefError(f"--user {o.user!r}: needs uid[:gid] as numbers", 1)
            proc["user"] = {"uid": int(uid), "gid": int(gid or 0)}
        if o.no_new_privs:
            proc["noNewPrivileges"] = True
        where = "exec: "
    if o.tty:
        proc["terminal"] = True
    try:
        config.check_process(proc, "")
    except RrefError as e:
        raise RrefError(f"{where}{str(e).removeprefix('config.json: ')}", 1) from None
    return proc


def exec_in(store: Store, cid: str, o: ExecOptions) -> int:
    from ..init import exec_process
    from ..spec import namespace_types
    from .init import set_rlimits

    rec = store.load(cid)
    st = status(store, rec)
    if st not in ("created", "running"):
        raise RrefError(f"cannot exec in container {cid}: it is {st}", 1)
    spec = store.spec(cid)
    spec["process"] = proc = _process(spec, o)
    from . import console

    console.check(bool(proc.get("terminal")), o.console_socket, "exec")
    prog = None
    if spec["linux"].get("seccomp"):
        from .. import seccomp_bpf

        prog = seccomp_bpf.compiled(store.root, spec["linux"]["seccomp"])
    from ..cgroups import Cgroup

    try:
        prepare, ns_fds = process.join_namespaces_of(rec["pid"], namespace_types(spec))
    except OSError:
        raise RrefError(f"cannot exec in container {cid}: its init is gone", 1) from None

    console_fd = console.connect(o.console_socket) if o.console_socket else -1

    def body(err_fd: int, _go: int) -> Any:
        try:
            set_rlimits(proc.get("rlimits") or [])
            if console_fd >= 0:
                console.attach(console_fd, proc.get("user", {}).get("uid", 0))
        except RrefError as e:
            from ..init import fail

            fail(err_fd, 1, str(e))
        return exec_process(spec, err_fd, proc.get("cwd") or "/", proc.get("env", []), None, prog)

    if not o.detach:
        process.become_subreaper()
    try:
        started = process.spawn(
            (0, 1, 2),
            Cgroup(rec["cgroup"]).procs_files(),
            prepare,
            body,
            keep_fds=(console_fd,) if console_fd >= 0 else (),
        )
    finally:
        for fd in ns_fds:
            os.close(fd)
        if console_fd >= 0:
            os.close(console_fd)
    if started.error:
        if started.pid:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(started.pid, 0)
        raise RrefError(str(started.error.get("message")), 1)
    if o.pid_file:
        _write_pid_file(o.pid_file, started.pid)
    if o.detach:
        return 0
    return wait_for(started.pid)
