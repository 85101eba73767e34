"""docker's lifecycle verbs over the container records: start, exec, stop, kill, logs."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time

from . import containers, events, faults, monitor, process, procinfo
from . import jsonc as json
from .errors import EXIT_FAILED, EXIT_RUNTIME, RrefError, UsageError
from .spec import merge_env
from .state import Store

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _require_startable(store: Store, cid: str) -> None:
    st = containers.status(store, cid)
    if containers.is_running(st):
        raise RrefError(f"container {cid[:12]} is already running", EXIT_FAILED)


def start(store: Store, cid: str, attach: bool = False, stdin_fd: int | None = None) -> int:
    """Start a created or exited container; attached, return its exit code."""
    with store.lock(cid):
        _require_startable(store, cid)
    if attach:
        return monitor.supervise(store, cid, foreground=True, stdin_fd=stdin_fd)
    monitor.start_detached(store, cid)
    return 0


def running_state(store: Store, cid: str) -> dict[str, Any]:
    st = containers.status(store, cid)
    if not containers.is_running(st):
        raise RrefError(f"container {cid[:12]} is not running", EXIT_FAILED)
    return st


def exec_in(
    store: Store,
    cid: str,
    args: list[str],
    env: list[str],
    workdir: str | None,
    user: str | None,
    detach: bool = False,
    interactive: bool = False,
) -> int:
    """Run `args` inside a running container: same namespaces, cgroup, rootfs and env."""
    if not args:
        raise UsageError("exec needs a command to run")
    if workdir is not None and not workdir.startswith("/"):
        raise UsageError(
            f"the working directory '{workdir}' is invalid, it needs to be an absolute path"
        )
    from .init import exec_process

    cfg = store.config(cid)
    st = running_state(store, cid)
    spec = json.loads(json.dumps(cfg["Spec"]))
    spec["process"]["args"] = list(args)
    env_all = merge_env(spec["process"]["env"], env)
    cwd = workdir or spec["process"].get("cwd") or "/"
    pid = st["Pid"]
    types = [ns["type"] for ns in spec["linux"]["namespaces"]]
    prepare, ns_fds = process.join_namespaces_of(pid, types)
    process.become_subreaper()
    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    stdio = (0 if interactive else null, null if detach else 1, null if detach else 2)
    try:
        prog = monitor.seccomp_program(store, spec)
        started = process.spawn(
            stdio,
            containers.cgroup_of(cfg).procs_files(),
            prepare,
            lambda fd, _go: exec_process(spec, fd, cwd, env_all, user, seccomp_prog=prog),
        )
    finally:
        for fd in ns_fds:
            os.close(fd)
        os.close(null)
    if started.error:
        if started.pid:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(started.pid, 0)
        raise RrefError(
            str(started.error.get("message")),
            int(started.error.get("code", EXIT_RUNTIME)),  # type: ignore[call-overload]
        )
    faults.point("exec.spawned")
    label = f"exec_start: {' '.join(args)}"
    events.emit(store.root, label, cid, containers.event_attrs(cfg))
    if detach:
        return 0
    child = started.pid

    def forward(sig: int, _frame: Any) -> None:
        with contextlib.suppress(OSError):
            os.kill(child, sig)

    for sig in monitor.FORWARDED:
        signal.signal(sig, forward)
    _, status = os.waitpid(child, 0)
    return process.exit_code(status)


def _wait_recorded(store: Store, cid: str, timeout: float) -> None:
    """After the process is gone, wait for the monitor to record the exit."""
    st = store.state(cid)
    procinfo.wait_gone(st.get("MonitorPid", 0), st.get("MonitorStart", 0), timeout)


def stop(store: Store, cid: str, timeout: float = 10, sig: int = signal.SIGTERM) -> None:
    st = containers.status(store, cid)
    if not containers.is_running(st):
        return  # docker: stopping a stopped container succeeds
    pid, started = st["Pid"], st.get("PidStart", 0)
    attrs = containers.event_attrs(store.config(cid))
    events.emit(store.root, "kill", cid, {**attrs, "signal": sig})
    procinfo.signal_process(pid, started, sig)
    if not procinfo.wait_gone(pid, started, timeout):
        events.emit(store.root, "kill", cid, {**attrs, "signal": int(signal.SIGKILL)})
        procinfo.signal_process(pid, started, signal.SIGKILL)
        procinfo.wait_gone(pid, started, 10)
    _wait_recorded(store, cid, 10)
    events.emit(store.root, "stop", cid, attrs)


def kill(store: Store, cid: str, sig: int = signal.SIGKILL) -> None:
    st = running_state(store, cid)
    events.emit(store.root, "kill", cid, containers.event_attrs(store.config(cid), signal=sig))
    if not procinfo.signal_process(st["Pid"], st.get("PidStart", 0), sig):
        raise RrefError(f"container {cid[:12]} is not running", EXIT_FAILED)
    if sig == signal.SIGKILL:
        procinfo.wait_gone(st["Pid"], st.get("PidStart", 0), 10)
        _wait_recorded(store, cid, 10)


def _cgroup(store: Store, cid: str) -> Any:

    return containers.cgroup_of(store.config(cid))


def pause(store: Store, cid: str) -> None:
    """Freeze every process of the container (freezer cgroup, v1 or v2)."""
    with store.lock(cid):
        st = running_state(store, cid)
        if st.get("Status") == "paused":
            raise RrefError(f"container {cid[:12]} is already paused", EXIT_FAILED)
        _cgroup(store, cid).freeze()
        st.update(Status="paused", Paused=True)
        store.save_state(cid, st)
    events.emit(store.root, "pause", cid, containers.event_attrs(store.config(cid)))


def unpause(store: Store, cid: str) -> None:
    with store.lock(cid):
        st = running_state(store, cid)
        if st.get("Status") != "paused":
            raise RrefError(f"container {cid[:12]} is not paused", EXIT_FAILED)
        _cgroup(store, cid).thaw()
        st.update(Status="running", Paused=False)
        store.save_state(cid, st)
    events.emit(store.root, "unpause", cid, containers.event_attrs(store.config(cid)))


def update(store: Store, cid: str, flags: dict[str, Any]) -> None:
    """`rref update`: new limits on the cgroup now (if running) and in the record."""
    from . import limits
    from .cgroups import CgroupError, validate

    new = limits.build(flags)
    if not new:
        raise UsageError("you must provide one or more flags when using this command")
    with store.lock(cid):
        cfg = store.config(cid)
        spec = cfg["Spec"]
        merged = limits.merge(spec["linux"].get("resources", {}), new)
        try:
            validate(merged)
        except CgroupError as e:
            raise UsageError(str(e)) from None
        if containers.is_running(containers.status(store, cid)):
            _cgroup(store, cid).apply(new)
        spec["linux"]["resources"] = merged
        cfg["HostConfig"].update(containers.host_config_resources(spec))
        store.save_config(cid, cfg)


def stats(store: Store, cid: str) -> dict[str, Any]:
    running_state(store, cid)
    return _cgroup(store, cid).stats()


def wait(store: Store, cid: str) -> int:
    while True:
        st = containers.status(store, cid)
        if st.get("Status") not in ("running", "paused", "created"):
            return int(st.get("ExitCode", 0))
        if st.get("Status") == "created":
            time.sleep(0.1)
            continue
        procinfo.wait_gone(st["Pid"], st.get("PidStart", 0), 3600)
        _wait_recorded(store, cid, 10)


def logs(
    store: Store, cid: str, follow: bool = False, timestamps: bool = False, tail: int | None = None
) -> None:
    path = store.config(cid)["LogPath"]
    out, err = sys.stdout.buffer, sys.stderr.buffer
    pos = 0

    def emit(lines: list[bytes]) -> None:
        for raw in lines:
            try:
                e = json.loads(raw)
            except ValueError:
                continue
            text = e.get("log", "")
            if timestamps:
                text = f"{e.get('time', '')} {text}"
            (err if e.get("stream") == "stderr" else out).write(text.encode())
        out.flush()
        err.flush()

    def read_new() -> list[bytes]:
        nonlocal pos
        try:
            with open(path, "rb") as f:
                f.seek(pos)
                data = f.read()
        except FileNotFoundError:
            return []
        cut = data.rfind(b"\n") + 1
        pos += cut
        return data[:cut].splitlines()

    first = read_new()
    emit(first[-tail:] if tail is not None and tail >= 0 else first)
    while follow:
        st = containers.status(store, cid)
        done = st.get("Status") not in ("running", "paused")
        emit(read_new())
        if done:
            return
        time.sleep(0.1)
