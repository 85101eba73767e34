"""The monitor: starts a container's init, keeps its logs and records how it ended.

In the foreground (`rref run`) the calling process is the monitor and also
copies the output to its own stdout/stderr and forwards signals. With `-d`
(and `rref start`) a daemonized monitor does the same job in the background
and tells the caller, through a pipe, once the user program has started.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import time

from . import containers, events, faults, process, procinfo
from . import jsonc as json
from .errors import EXIT_RUNTIME, RrefError
from .state import Store, now_iso

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

FORWARDED = process.FORWARDED


class LogWriter:
    """docker's json-file format: one JSON object per line of output."""

    def __init__(self, path: str) -> None:
        self.f = open(path, "ab", buffering=0)  # noqa: SIM115 - lives as long as the monitor
        self.partial: dict[str, bytes] = {"stdout": b"", "stderr": b""}

    def feed(self, stream: str, data: bytes) -> None:
        buf = self.partial[stream] + data
        *lines, rest = buf.split(b"\n")
        self.partial[stream] = rest
        if lines:
            t = now_iso()
            self.f.write(b"".join(self._entry(ln + b"\n", stream, t) for ln in lines))

    def close(self) -> None:
        t = now_iso()
        for stream, rest in self.partial.items():
            if rest:
                self.f.write(self._entry(rest, stream, t))
        self.f.close()

    @staticmethod
    def _entry(chunk: bytes, stream: str, t: str) -> bytes:
        return (
            json.dumps(
                {"log": chunk.decode(errors="replace"), "stream": stream, "time": t}
            ).encode()
            + b"\n"
        )


def supervise(
    store: Store, cid: str, foreground: bool, stdin_fd: int | None, notify_fd: int | None = None
) -> int:
    """Run the container to completion; return docker's exit code for it."""

    cfg = store.config(cid)
    spec = cfg["Spec"]
    cg = containers.cgroup_of(cfg)
    process.become_subreaper()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    stdin = stdin_fd if stdin_fd is not None else null
    log = LogWriter(cfg["LogPath"])  # exists before anyone hears "started"
    pending: list[int] = []
    target = {"pid": 0}

    def forward(sig: int, _frame: Any) -> None:
        if target["pid"]:
            with contextlib.suppress(OSError):
                os.kill(target["pid"], sig)
        else:
            pending.append(sig)

    if foreground:
        for sig in FORWARDED:
            signal.signal(sig, forward)
    # who is starting it, before anything exists: a monitor killed before it records
    # the running pid leaves a container readers report as dead (`containers.reconcile`)
    store.update_state(
        cid,
        Starting=True,
        MonitorPid=os.getpid(),
        MonitorStart=procinfo.start_time(os.getpid()),
    )
    try:
        cg.create()
        cg.apply(spec["linux"].get("resources"))
        faults.point("start.cgroup")
        from . import launch
        from .init import container_init

        net_setup, proxies = _network(store, cid, cfg)
        prepare, userns_setup, host_setup = launch.plan(spec, net_setup)
        prog = seccomp_program(store, spec)
        sources = None
        if userns_setup:  # the container's root cannot search 0700 host dirs: open them now
            from .mountsrc import open_sources
            from .spec import ANN_OVERLAY

            sources = open_sources(spec, spec.get("annotations", {}).get(ANN_OVERLAY), store.root)
        body = lambda fd, go: container_init(spec, fd, go, prog, sources)  # noqa: E731
        flags = process.new_namespace_flags(spec["linux"]["namespaces"])
        try:
            if flags is not None:  # one fork; the cgroups are joined during the init's mounts
                started = process.spawn_direct(
                    (stdin, out_w, err_w), cg.procs_files(), flags, body, host_setup
                )
            else:
                started = process.spawn(
                    (stdin, out_w, err_w),
                    cg.procs_files(),
                    prepare,
                    body,
                    userns_setup=userns_setup,
                    host_setup=host_setup,
                    keep_fds=tuple(sources.fds) if sources else (),
                    cwd=sources.base if sources else None,
                )
        finally:
            if sources:
                sources.close()
    except (OSError, RrefError) as e:
        started = process.Started(
            0, {"code": EXIT_RUNTIME, "message": f"cannot start container: {e}"}
        )
        proxies = []
    finally:
        os.close(out_w)
        os.close(err_w)
        os.close(null)
    if started.error:
        for px in proxies:
            px.close()
        code = int(started.error.get("code", EXIT_RUNTIME))  # type: ignore[call-overload]
        msg = str(started.error.get("message", "unknown error"))
        if started.pid:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(started.pid, 0)
        _finish(store, cid, cfg, code, msg)
        os.close(out_r)
        os.close(err_r)
        log.close()
        _notify(notify_fd, {"code": code, "message": msg})
        raise RrefError(msg, code)
    pid = started.pid
    target["pid"] = pid
    faults.point("start.spawned")
    store.update_state(
        cid,
        Status="running",
        Running=True,
        Starting=False,
        Pid=pid,
        PidStart=procinfo.start_time(pid),
        MonitorPid=os.getpid(),
        MonitorStart=procinfo.start_time(os.getpid()),
        ExitCode=0,
        Error="",
        StartedAt=now_iso(),
        FinishedAt=containers.ZERO_TIME,
        OOMKilled=False,
    )
    events.emit(store.root, "start", cid, containers.event_attrs(cfg))
    _notify(notify_fd, {"pid": pid})
    for signum in pending:
        forward(signum, None)
    code = _pump(pid, out_r, err_r, log, foreground, proxies)
    _finish(store, cid, cfg, code, "")
    return code


def _notify(fd: int | None, msg: dict[str, Any]) -> None:
    if fd is not None:
        with contextlib.suppress(OSError):
            os.write(fd, json.dumps(msg).encode())
            os.close(fd)


def seccomp_program(store: Store, spec: dict[str, Any]) -> bytes | None:
    seccomp = spec["linux"].get("seccomp")
    if not seccomp:
        return None
    from . import seccomp_bpf

    return seccomp_bpf.compiled(store.root, seccomp)


def _network(store: Store, cid: str, cfg: dict[str, Any]) -> tuple[Any, list[Any]]:
    """Bridge mode: the host-side set-up to run before the init may go on, and the
    listening port publishers (bound now, so a busy port fails the start cleanly)."""
    if not cfg.get("Bridge"):
        return None, []
    from . import network
    from .portproxy import PortProxy

    bridge = network.Bridge(cfg["Bridge"]["Name"], cfg["Bridge"]["Subnet"])
    address = network.IPAM(store.root, bridge.name, bridge.subnet).allocate(cid)
    proxies: list[Any] = []
    ports: dict[str, list[dict[str, str]]] = {}
    try:
        for key, binds in cfg["HostConfig"].get("PortBindings", {}).items():
            for b in binds:
                px = PortProxy(
                    b["HostIp"], int(b["HostPort"] or 0), address, int(key.split("/")[0])
                )
                port = px.listen()
                proxies.append(px)
                ports.setdefault(key, []).append({"HostIp": b["HostIp"], "HostPort": str(port)})
    except BaseException:
        for px in proxies:
            px.close()
        network.IPAM(store.root, bridge.name, bridge.subnet).free(cid)
        raise

    def setup(pid: int) -> None:
        settings = network.attach(cid, pid, bridge, store.root, configure=True)
        with open(cfg["HostsPath"], "a") as f:
            f.write(f"{settings['IPAddress']}\t{cfg['Config']['Hostname']}\n")
        settings["Ports"] = ports
        store.update_state(cid, NetworkSettings=settings)

    return setup, proxies


def _pump(
    pid: int,
    out_r: int,
    err_r: int,
    log: LogWriter,
    foreground: bool,
    proxies: list[Any] | None = None,
) -> int:
    """Copy output to the log (and terminal) and serve published ports until the end."""
    proxies = proxies or []
    streams = {out_r: "stdout", err_r: "stderr"}
    sinks = {"stdout": sys.stdout.buffer, "stderr": sys.stderr.buffer} if foreground else {}
    pidfd = os.pidfd_open(pid)
    status: int | None = None
    drain_until = 0.0
    while streams:
        watch = list(streams) + ([pidfd] if status is None else [])
        pxr = [fd for px in proxies for fd in px.fds()] if status is None else []
        pxw = [fd for px in proxies for fd in px.wfds()] if status is None else []
        timeout = None if status is None else max(0.0, drain_until - time.monotonic())
        if pxr or pxw:
            timeout = 0.5 if timeout is None else min(timeout, 0.5)
        ready, writable, _ = select.select(watch + pxr, pxw, [], timeout)
        for px in proxies:
            px.handle(ready, writable)
        ready = [fd for fd in ready if fd in streams or fd == pidfd]
        if status is not None and not ready:
            break  # a leftover process outside the container still holds a pipe
        for fd in ready:
            if fd == pidfd:
                _, status = os.waitpid(pid, 0)
                drain_until = time.monotonic() + 2.0
                continue
            data = os.read(fd, 65536)
            name = streams[fd]
            if not data:
                del streams[fd]
                os.close(fd)
                continue
            log.feed(name, data)
            if sinks:
                with contextlib.suppress(OSError):
                    sinks[name].write(data)
                    sinks[name].flush()
    for fd in streams:
        os.close(fd)
    for px in proxies:
        px.close()
    if status is None:
        _, status = os.waitpid(pid, 0)
    os.close(pidfd)
    log.close()
    return process.exit_code(status)


def _finish(store: Store, cid: str, cfg: dict[str, Any], code: int, error: str) -> None:

    oom = False
    with contextlib.suppress(OSError, RrefError):
        oom = containers.cgroup_of(cfg).oom_killed()  # read before the cgroup goes
    containers.release(store, cid, cfg)
    attrs = containers.event_attrs(cfg)
    if oom:
        events.emit(store.root, "oom", cid, attrs)
    events.emit(store.root, "die", cid, {**attrs, "exitCode": code})
    store.update_state(
        cid,
        Status="exited",
        Running=False,
        Starting=False,
        Paused=False,
        Pid=0,
        PidStart=0,
        ExitCode=code,
        Error=error,
        FinishedAt=now_iso(),
        OOMKilled=oom,
    )
    if cfg.get("HostConfig", {}).get("AutoRemove"):
        with contextlib.suppress(RrefError, OSError):
            containers.remove(store, cid, force=True)


def start_detached(store: Store, cid: str) -> int:
    """Fork a daemon monitor; return the container's pid once its program has started."""
    r, w = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - daemon side
        code = 0
        try:
            os.close(r)
            os.setsid()
            if os.fork() != 0:
                os._exit(0)
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            os.closerange(3, w)
            os.closerange(w + 1, 65536)
            with contextlib.suppress(RrefError):
                supervise(store, cid, foreground=False, stdin_fd=None, notify_fd=w)
        except BaseException as e:  # the daemon must never fall back into the CLI
            _notify(w, {"code": EXIT_RUNTIME, "message": f"monitor failed: {e}"})
            code = EXIT_RUNTIME
        os._exit(code)
    os.close(w)
    os.waitpid(child, 0)
    chunks = []
    while True:
        b = os.read(r, 65536)
        if not b:
            break
        chunks.append(b)
    os.close(r)
    try:
        msg = json.loads(b"".join(chunks) or b"{}")
    except ValueError:
        msg = {}
    if "pid" in msg:
        return int(msg["pid"])
    raise RrefError(
        msg.get("message", "container monitor died before the container started"),
        int(msg.get("code", EXIT_RUNTIME)),
    )
