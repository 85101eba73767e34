"""The OCI lifecycle: create, start, kill, delete (and run = all of them in one).

Why this shape: runc's callers hold the container's processes themselves (a
shim reaps the init, keeps the exit status), so `create` forks the init and
returns; the init is reparented to the caller's subreaper. Only `run` in the
foreground becomes the subreaper, waits and reports the exit code. Anything
`create` made is undone if it fails: cgroup directories, the state directory.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys

from .. import jsonc as json
from .. import process, procinfo
from ..errors import EXIT_RUNTIME, RrefError
from . import cgpath, config, hooks
from .store import FIFO, NoContainer, Store, new_record, oci_state, status

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

FORWARDED = process.FORWARDED


def warn(message: str) -> None:
    print(f"rref-oci: warning: {message}", file=sys.stderr)


def _cgroup(rec: dict[str, Any]) -> Any:
    from ..cgroups import Cgroup

    return Cgroup(rec["cgroup"])


def _write_pid_file(path: str, pid: int) -> None:
    """Atomically, as runc does: readers never see an empty file."""
    tmp = os.path.join(os.path.dirname(os.path.abspath(path)), f".{os.path.basename(path)}.rref")
    with open(tmp, "w") as f:
        f.write(str(pid))
    os.rename(tmp, path)


def create(
    store: Store,
    cid: str,
    bundle: str,
    pid_file: str | None = None,
    systemd: bool = False,
    console_socket: str | None = None,
) -> dict[str, Any]:
    """Set the container up and leave its init waiting at the exec fifo."""
    bundle = os.path.abspath(bundle)
    spec = config.load(bundle)
    from . import console

    console.check(bool(spec["process"].get("terminal")), console_socket, "create")
    from ..cgroups import Cgroup

    name, parent = cgpath.resolve(spec["linux"].get("cgroupsPath"), cid, systemd)
    cg = Cgroup.plan(name, parent)
    made = cgpath.missing(cg)
    store.claim(cid)
    rec = new_record(cid, bundle, spec)
    rec["cgroup"] = dict(cg.paths)
    rec["cgroupMade"] = made
    try:
        with store.lock(cid):
            store.save_spec(cid, spec)
            store.save(rec)
            cg.create()
            cg.apply(spec["linux"].get("resources"))
            pid = _spawn(store, cid, spec, cg, rec, console_socket)
            rec.update(phase="created", pid=pid, pidStart=procinfo.start_time(pid))
            store.save(rec)
            if pid_file:
                _write_pid_file(pid_file, pid)
    except BaseException:
        _undo(store, cid, rec)
        raise
    return rec


def _spawn(
    store: Store,
    cid: str,
    spec: dict[str, Any],
    cg: Any,
    rec: dict[str, Any],
    console_socket: str | None = None,
) -> int:
    from .. import launch
    from .console import connect
    from .init import Handoff, oci_init

    console_fd = connect(console_socket) if console_socket else -1
    fifo = store.path(cid, FIFO)
    os.mkfifo(fifo, 0o600)
    fifo_fd = os.open(fifo, os.O_RDWR | os.O_CLOEXEC)
    state_r, state_w = os.pipe2(os.O_CLOEXEC)
    handoff = Handoff(fifo_fd, state_r, console_fd)

    def host_setup(pid: int) -> None:
        """Namespaces exist, pivot_root has not happened: prestart and createRuntime."""
        state = oci_state(store, {**rec, "pid": pid}, "creating")
        hooks.run(spec, "prestart", state)
        hooks.run(spec, "createRuntime", state)
        # the init may have failed already: then its own error is the one to report
        with contextlib.suppress(BrokenPipeError):
            os.write(state_w, json.dumps({**state, "status": "created"}).encode())
        os.close(state_w)

    spec = {**spec, "mounts": cgpath.own_cgroup_mounts(spec, cg)}
    hooks.preload(spec)
    prepare, userns_setup, _ = launch.plan(spec)
    sources = None
    try:
        prog = None
        if spec["linux"].get("seccomp"):
            from .. import seccomp_bpf

            prog = seccomp_bpf.compiled(store.root, spec["linux"]["seccomp"])
        if userns_setup:  # the container's root may not search 0700 host dirs: open now
            from ..mountsrc import open_sources

            # the init starts in the bundle's rootfs parent, named relative from there
            rootfs = spec["root"]["path"]
            sources = open_sources(spec, None, os.path.dirname(rootfs))
            sources.target = os.path.basename(rootfs)
        body = lambda fd, go: oci_init(spec, fd, go, prog, sources, handoff)  # noqa: E731
        flags = process.new_namespace_flags(spec["linux"]["namespaces"])
        if flags is not None:  # one fork; the cgroups are joined during the init's mounts
            started = process.spawn_direct(
                (0, 1, 2), cg.procs_files(), flags, body, host_setup, handoff.fds()
            )
        else:
            started = process.spawn(
                (0, 1, 2),
                cg.procs_files(),
                prepare,
                body,
                userns_setup=userns_setup,
                host_setup=host_setup,
                keep_fds=(*handoff.fds(), *(sources.fds if sources else ())),
                cwd=sources.base if sources else None,
            )
    finally:
        if sources:
            sources.close()
        os.close(fifo_fd)
        os.close(state_r)
        if console_fd >= 0:
            os.close(console_fd)
        with contextlib.suppress(OSError):
            os.close(state_w)
    if started.error:
        msg = str(started.error.get("message", "unknown error"))
        if started.pid:
            with contextlib.suppress(OSError):
                os.kill(started.pid, signal.SIGKILL)
        raise RrefError(msg, 1)
    return started.pid


def _undo(store: Store, cid: str, rec: dict[str, Any]) -> None:
    """What a failed create made, removed: its processes, cgroups and state directory."""
    if rec.get("cgroup"):
        cg = _cgroup(rec)
        with contextlib.suppress(RrefError, OSError):
            if cg.exists():
                cg.kill_all()
        cgpath.remove(cg, rec.get("cgroupMade", []))
    _remove_state(store, cid)


def _remove_state(store: Store, cid: str) -> None:
    from ..rmtree import remove_tree

    with contextlib.suppress(OSError):
        remove_tree(store.path(cid))


def state(store: Store, cid: str) -> dict[str, Any]:
    return oci_state(store, store.load(cid))


def start(store: Store, cid: str) -> None:
    """Release the init from the exec fifo, then run the poststart hooks."""
    with store.lock(cid):
        rec = store.load(cid)
        st = status(store, rec)
        if st != "created":
            what = "has stopped" if st == "stopped" else f"is {st}"
            raise RrefError(f"cannot start container {cid}: it {what}, not created", 1)
        fifo = store.path(cid, FIFO)
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            if e.errno == errno.ENXIO:
                raise RrefError(f"cannot start container {cid}: its init is gone", 1) from None
            raise
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)
        os.unlink(fifo)
        spec = store.spec(cid)
        _wait_exec(rec)
    for w in hooks.run_all(spec, "poststart", oci_state(store, rec, "running")):
        warn(w)


def _wait_exec(rec: dict[str, Any], timeout: float = 5.0) -> None:
    """poststart comes after the user program is executed: wait for the init's execve."""
    import time

    me = os.path.realpath(sys.executable)
    deadline = time.monotonic() + timeout
    while procinfo.alive(rec["pid"], rec["pidStart"]) and time.monotonic() < deadline:
        try:
            if os.readlink(f"/proc/{rec['pid']}/exe") != me:
                return
        except OSError:
            return
        time.sleep(0.002)


SIGNALS = {s.name[3:]: int(s) for s in signal.Signals if not s.name.startswith("SIG_")}


def parse_signal(text: str) -> int:
    """`KILL`, `SIGKILL`, `kill` or `9`."""
    if text.isdigit():
        num = int(text)
        if 0 < num < 65:
            return num
    else:
        name = text.upper().removeprefix("SIG")
        if name in SIGNALS:
            return SIGNALS[name]
        if name.startswith("RTMIN") or name.startswith("RTMAX"):
            base = signal.SIGRTMIN if name.startswith("RTMIN") else signal.SIGRTMAX
            off = name[5:]
            if not off:
                return int(base)
            if off[0] in "+-" and off[1:].isdigit():
                return int(base) + int(off)
    raise RrefError(f"unknown signal {text!r}", 1)


def kill(store: Store, cid: str, sig: int, all_: bool = False) -> None:
    rec = store.load(cid)
    st = status(store, rec)
    if st == "stopped" and not all_:
        raise RrefError(f"container {cid} is not running", 1)
    if all_:
        cg = _cgroup(rec)
        for pid in sorted(cg.pids()):
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
        if sig == signal.SIGKILL and st == "paused":
            with contextlib.suppress(RrefError, OSError):
                cg.thaw()
        return
    if not procinfo.signal_process(rec["pid"], rec["pidStart"], sig):
        raise RrefError(f"container {cid} is not running", 1)


def delete(store: Store, cid: str, force: bool = False) -> None:
    """Remove a stopped (or, forced, any) container: processes, cgroups, state; poststop.

    As runc: an id that does not exist is an error ("does not exist", what engines look
    for) unless forced, and a directory without a record (a create killed before it
    wrote one) is removed either way."""
    try:
        with store.lock(cid):
            _delete_locked(store, cid, force)
    except NoContainer:
        half = store.path(cid)
        if os.path.isdir(half) and not os.path.exists(store.path(cid, "state.json")):
            _remove_state(store, cid)
        if not force:
            raise


def _delete_locked(store: Store, cid: str, force: bool) -> None:
    rec = store.load(cid)
    st = status(store, rec)
    if st in ("running", "paused", "creating") and not force:
        raise RrefError(f"cannot delete container {cid} that is not stopped: {st}", 1)
    cg = _cgroup(rec)
    if st != "stopped" or cg.pids():
        cg.kill_all()
    procinfo.wait_gone(rec.get("pid", 0), rec.get("pidStart", 0), 5)
    spec = {}
    with contextlib.suppress(OSError, ValueError, AssertionError):
        spec = store.spec(cid)
    for w in hooks.run_all(spec, "poststop", oci_state(store, rec, "stopped")):
        warn(w)
    left = cgpath.remove(cg, rec.get("cgroupMade", []))
    _remove_state(store, cid)
    if left:
        raise RrefError(f"container {cid} deleted, but cgroups are left: {' '.join(left)}", 1)


def pause(store: Store, cid: str) -> None:
    with store.lock(cid):
        rec = store.load(cid)
        st = status(store, rec)
        if st != "running":
            raise RrefError(f"container {cid} is not running ({st})", 1)
        _cgroup(rec).freeze()


def resume(store: Store, cid: str) -> None:
    with store.lock(cid):
        rec = store.load(cid)
        st = status(store, rec)
        if st != "paused":
            raise RrefError(f"container {cid} is not paused ({st})", 1)
        _cgroup(rec).thaw()


def pids(store: Store, cid: str) -> list[int]:
    return sorted(_cgroup(store.load(cid)).pids())


def run(
    store: Store,
    cid: str,
    bundle: str,
    pid_file: str | None = None,
    detach: bool = False,
    keep: bool = False,
    systemd: bool = False,
    console_socket: str | None = None,
) -> int:
    """create + start; in the foreground also wait, forward signals, delete, exit as it did."""
    if not detach:
        process.become_subreaper()
    rec = create(store, cid, bundle, pid_file, systemd, console_socket)
    try:
        start(store, cid)
    except BaseException:
        with contextlib.suppress(RrefError, OSError):
            delete(store, cid, force=True)
        raise
    if detach:
        return 0
    code = wait_for(rec["pid"])
    if not keep:
        delete(store, cid, force=True)
    return code


def wait_for(pid: int) -> int:
    """As the subreaper: forward signals to `pid`, reap everything, return its exit code."""

    def forward(sig: int, _frame: object) -> None:
        with contextlib.suppress(OSError):
            os.kill(pid, sig)

    for sig in FORWARDED:
        signal.signal(sig, forward)
    while True:
        try:
            got, status_ = os.waitpid(-1, 0)
        except ChildProcessError:
            return EXIT_RUNTIME
        except InterruptedError:
            continue
        if got == pid:
            for sig in FORWARDED:
                signal.signal(sig, signal.SIG_DFL)
            return process.exit_code(status_)


def update(store: Store, cid: str, resources: dict[str, Any]) -> None:
    with store.lock(cid):
        rec = store.load(cid)
        st = status(store, rec)
        if st == "stopped":
            raise RrefError(f"container {cid} is not running", 1)
        _cgroup(rec).apply(resources)
