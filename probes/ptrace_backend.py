"""The python-ptrace backend: a traced child, followed through fork, clone and exec.

Why: where BPF is refused (no root, no headers, an old kernel) ptrace still shows what a
runtime asked the kernel for. It records the same syscalls as the bcc backend, decoded by
the same tables (`probes.decode`), so a verdict does not depend on which backend ran.

How: one dedicated thread starts the command with PTRACE_TRACEME and makes every ptrace
call (the kernel accepts requests only from the tracing thread). Each stop is answered with
one PTRACE_GET_SYSCALL_INFO; only the syscalls in `WATCHED` are decoded (strings and
`struct clone_args` read from /proc/<tid>/mem), everything else is resumed at once.
Signals (Go's SIGURG preemption, SIGCHLD...) are re-injected. New tasks are host pids,
whatever pid namespace they end up in. When the command exits, tasks still running (a
detached container) are detached cleanly; on timeout the whole tree is killed. python-ptrace
supplies the ptrace(2) binding and the syscall-number table; it is imported lazily.

Limits: x86_64 only; the command's own execve happens before tracing starts and is
recorded from what was executed (the resolved path, one attempt); without PTRACE_SEIZE a
tracee in group-stop (SIGSTOP from outside) cannot be held there, so it is resumed (the
freezer, which `pause` uses, is unaffected); tasks detached when the command exits are not
followed further (the trace says so). Cost: two stops per syscall of every traced thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import signal
import struct
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from probes import fdpaths, procinfo
from probes.backend import CommandTimeout, Unavailable
from probes.decode import decode
from probes.events import SYSCALLS, TraceEvent
from probes.trace import Trace

# ptrace(2) requests and options not named by python-ptrace
PTRACE_SYSCALL = 24
PTRACE_DETACH = 17
PTRACE_SETOPTIONS = 0x4200
PTRACE_GETEVENTMSG = 0x4201
PTRACE_GETSIGINFO = 0x4202
PTRACE_GET_SYSCALL_INFO = 0x420E
PTRACE_O_TRACESYSGOOD = 0x1
PTRACE_O_TRACEFORK = 0x2
PTRACE_O_TRACEVFORK = 0x4
PTRACE_O_TRACECLONE = 0x8
PTRACE_O_TRACEEXEC = 0x10
PTRACE_O_TRACEEXIT = 0x40
PTRACE_O_EXITKILL = 0x100000
OPTIONS = (
    PTRACE_O_TRACESYSGOOD
    | PTRACE_O_TRACEFORK
    | PTRACE_O_TRACEVFORK
    | PTRACE_O_TRACECLONE
    | PTRACE_O_TRACEEXEC
    | PTRACE_O_TRACEEXIT
    | PTRACE_O_EXITKILL
)
EVENT_FORK, EVENT_VFORK, EVENT_CLONE, EVENT_EXEC, EVENT_EXIT = 1, 2, 3, 4, 6
WALL = 0x40000000  # __WALL: threads too
WNOTHREAD = 0x20000000  # __WNOTHREAD: only this thread's tracees, never another's children
SYSCALL_INFO_ENTRY, SYSCALL_INFO_EXIT = 1, 2
CLONE_THREAD, CLONE_PARENT = 0x00010000, 0x00008000
AUDIT_ARCH_X86_64 = 0xC000003E
SYS_TGKILL = 234
_LIBC = ctypes.CDLL(None, use_errno=True)
_LIBC.ptrace.argtypes = (ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p)
_LIBC.ptrace.restype = ctypes.c_long
STOP_SIGNALS = frozenset({signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU})

# The syscalls both backends record (x86_64 numbers; python-ptrace's table names them).
WATCHED = tuple(n for n in SYSCALLS if n not in ("fork", "exit"))
# What one record keeps, as the bcc backend's fixed buffers do (probes/bcc_backend.py STR,
# SSTR, ARGC, ARGL less the NUL), so both backends truncate the same strings the same way.
MAX_STR = 255
MAX_FSTYPE = 63
MAX_ARGV = 10
MAX_ARG = 63
MAX_WRITE = 63
CLONE_ARGS_SIZE = 88  # struct clone_args up to `cgroup` (CLONE_ARGS_SIZE_VER2)


class _SyscallInfo(ctypes.Structure):
    """struct ptrace_syscall_info (linux/ptrace.h): entry and exit views share the union."""

    _fields_ = (
        ("op", ctypes.c_uint8),
        ("pad", ctypes.c_uint8 * 3),
        ("arch", ctypes.c_uint32),
        ("instruction_pointer", ctypes.c_uint64),
        ("stack_pointer", ctypes.c_uint64),
        ("u", ctypes.c_uint64 * 8),  # entry: nr, args[6]; exit: rval, is_error
    )


@dataclass
class _Task:
    """What the loop knows of one traced thread."""

    tid: int
    tgid: int
    started: bool = False  # its initial stop (SIGSTOP, or SIGTRAP after exec) was consumed
    # syscall name, raw args, ts, cgroup id at entry (a write to cgroup.procs moves the task)
    pending: tuple[str, dict[str, Any], float, int] | None = None
    comm: str = ""
    detaching: bool = False
    stop_sent: bool = False  # the SIGSTOP that ends tracing it was sent
    exited: bool = False  # its exit was recorded
    contained: bool = False  # pivot_root/chroot/setns succeeded here or in an ancestor


@dataclass
class RawEvent:
    """One recorded syscall or task event before it becomes a `TraceEvent`."""

    ts: float
    pid: int
    tid: int
    syscall: str
    raw: dict[str, Any]
    ret: int
    comm: str = ""
    ppid: int = 0
    ns: dict[str, int] = field(default_factory=dict)
    cgroup_id: int = 0


def _libptrace() -> Callable[..., int]:
    """python-ptrace's ptrace(2) binding (raises PtraceError carrying errno)."""
    from ptrace.binding.func import ptrace

    return ptrace


def syscall_numbers() -> dict[int, str]:
    """Syscall number -> name for the watched syscalls, from python-ptrace's x86_64 table."""
    from ptrace.syscall.linux.x86_64 import SYSCALL_NAMES

    wanted = set(WATCHED)
    return {int(nr): str(name) for nr, name in SYSCALL_NAMES.items() if name in wanted}


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


class Memory:
    """Reads a stopped tracee's memory through /proc/<tid>/mem (the tracer may)."""

    def __init__(self, tid: int) -> None:
        self.tid = tid
        self._fd: int | None = None
        self.failures = 0

    def __enter__(self) -> Memory:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def read(self, addr: int, size: int) -> bytes | None:
        if addr == 0:
            return None
        try:
            if self._fd is None:
                self._fd = os.open(f"/proc/{self.tid}/mem", os.O_RDONLY | os.O_CLOEXEC)
            return os.pread(self._fd, size, addr)
        except OSError:
            self.failures += 1
            return None

    def string(self, addr: int, limit: int = MAX_STR) -> str | None:
        """The NUL-terminated string at ``addr`` (None for NULL or unreadable)."""
        if addr == 0:
            return None
        out = b""
        while len(out) < limit:
            # never read across a page boundary in one go: the next page may be unmapped
            chunk = min(4096 - (addr + len(out)) % 4096, limit - len(out))
            data = self.read(addr + len(out), chunk)
            if data is None:
                return None if not out else _text(out)
            nul = data.find(b"\0")
            if nul >= 0:
                return _text(out + data[:nul])
            out += data
            if len(data) < chunk:
                break
        return _text(out)

    def strings(self, addr: int, limit: int = MAX_ARGV) -> list[str]:
        """A NULL-terminated array of strings (argv)."""
        return [self.string(p, MAX_ARG) or "" for p in self.pointers(addr, limit)]

    def pointers(self, addr: int, limit: int = MAX_ARGV) -> list[int]:
        out: list[int] = []
        while addr and len(out) < limit:
            data = self.read(addr + 8 * len(out), 8)
            if data is None or len(data) < 8:
                break
            (ptr,) = struct.unpack("<Q", data)
            if ptr == 0:
                break
            out.append(ptr)
        return out


def read_args(
    name: str, args: Sequence[int], mem: Memory, contained: bool = False
) -> dict[str, Any] | None:
    """The raw arguments of syscall ``name`` at its entry, strings read from ``mem``.

    Keys are those `probes.decode.decode` takes. None means the call is not one we record
    (an openat outside a cgroup fs, a write to a pipe).
    """
    a = list(args)
    if name in ("clone", "unshare"):
        return {"flags": a[0]}
    if name == "clone3":
        data = mem.read(a[0], min(a[1], CLONE_ARGS_SIZE))
        if data is None or len(data) < 40:
            return {"flags": None, "exit_signal": None}
        flags, exit_signal = (
            struct.unpack_from("<Q", data)[0],
            struct.unpack_from("<Q", data, 32)[0],
        )
        return {"flags": flags, "exit_signal": exit_signal}
    if name == "setns":
        return {"fd": _signed32(a[0]), "nstype": a[1] & 0xFFFFFFFF}
    if name == "mount":
        return {
            "source": mem.string(a[0]),
            "target": mem.string(a[1]),
            "fstype": mem.string(a[2], MAX_FSTYPE),
            "flags": a[3],
            "data": mem.string(a[4]),
        }
    if name == "umount2":
        return {"target": mem.string(a[0]), "flags": a[1] & 0xFFFFFFFF}
    if name == "pivot_root":
        return {"new_root": mem.string(a[0]), "put_old": mem.string(a[1])}
    if name == "chroot":
        return {"path": mem.string(a[0])}
    if name in ("sethostname", "setdomainname"):
        data = mem.read(a[0], min(_signed32(a[1]), MAX_STR)) if _signed32(a[1]) > 0 else b""
        return {"name": None if data is None else _text(data)}
    if name == "mknod":
        return {"path": mem.string(a[0]), "mode": a[1] & 0xFFFF, "dev": a[2] & 0xFFFFFFFF}
    if name == "mknodat":
        return {
            "dfd": _signed32(a[0]),
            "path": mem.string(a[1]),
            "mode": a[2] & 0xFFFF,  # umode_t, as the tracepoint has it
            "dev": a[3] & 0xFFFFFFFF,
        }
    if name == "execve":
        return {"filename": mem.string(a[0]), "argv": mem.strings(a[1])}
    if name == "execveat":
        return {
            "dfd": _signed32(a[0]),
            "filename": mem.string(a[1]),
            "argv": mem.strings(a[2]),
            "flags": a[4] & 0xFFFFFFFF,
        }
    if name in ("openat", "openat2"):
        dfd, path = _signed32(a[0]), mem.string(a[1])
        if not fdpaths.on_cgroupfs(fdpaths.resolve_at(mem.tid, dfd, path)):
            return None
        if name == "openat":
            flags = a[2] & 0xFFFFFFFF
        else:  # struct open_how: flags is its first u64
            how = mem.read(a[2], 8)
            flags = struct.unpack("<Q", how)[0] if how and len(how) == 8 else 0
        return {"dfd": dfd, "path": path, "flags": flags}
    if name == "unlink":
        path = mem.string(a[0])
        if not contained and not fdpaths.on_cgroupfs(
            fdpaths.resolve_at(mem.tid, fdpaths.AT_FDCWD, path)
        ):
            return None
        return {"path": path}
    if name in ("mkdir", "mkdirat", "unlinkat"):
        if name == "mkdir":
            dfd, path, rest = fdpaths.AT_FDCWD, mem.string(a[0]), a[1]
        else:
            dfd, path, rest = _signed32(a[0]), mem.string(a[1]), a[2]
        anywhere = contained and name == "unlinkat"
        if not anywhere and not fdpaths.on_cgroupfs(fdpaths.resolve_at(mem.tid, dfd, path)):
            return None
        if name == "unlinkat":
            raw: dict[str, Any] = {"path": path, "flags": rest & 0xFFFFFFFF}
        else:
            raw = {"path": path, "mode": rest & 0xFFFF}
        if name != "mkdir":
            raw["dfd"] = dfd
        return raw
    if name == "write":
        fd = _signed32(a[0])
        if not fdpaths.on_cgroupfs(fdpaths.fd_path(mem.tid, fd)):
            return None
        data = mem.read(a[1], min(a[2], MAX_WRITE))
        return {"fd": fd, "data": None if data is None else _text(data)}
    return None


def _clip(text: str, limit: int) -> str:
    """``text`` as a record of at most ``limit`` bytes keeps it."""
    return _text(text.encode("utf-8", "surrogateescape")[:limit])


def _text(data: bytes) -> str:
    return data.split(b"\0", 1)[0].decode("utf-8", "replace")


def _signed32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


class Tracer:
    """Runs one command under ptrace; every ptrace call happens on the thread running `run`."""

    def __init__(self, argv: Sequence[str], *, timeout: float | None = None, **popen: Any) -> None:
        """``popen`` are subprocess.Popen keyword arguments (preexec_fn is the tracer's)."""
        if "preexec_fn" in popen:
            raise ValueError("the ptrace backend needs preexec_fn for itself")
        self.argv = [str(a) for a in argv]
        self._popen_kw = popen
        self.timeout = timeout
        self.events: list[RawEvent] = []
        self.notes: list[str] = []
        self.lost = 0
        self.errors = 0
        self.dropped: Counter[str] = Counter()  # calls not recorded: arguments unreadable
        self.unreadable: Counter[str] = Counter()  # recorded with some argument None
        self.stops = 0
        self.timed_out = False
        self.root_pid = 0
        self.returncode: int | None = None
        self.proc: TracedPopen | None = None
        self.error: BaseException | None = None
        self._tasks: dict[int, _Task] = {}
        self._ppid: dict[int, int] = {}  # tgid -> tree parent (host pids)
        # tgid -> (namespaces, cgroup id) at its last record: an exited task has no /proc
        self._last_seen: dict[int, tuple[dict[str, int], int]] = {}
        self._numbers: dict[int, str] = {}
        self._ptrace: Callable[..., int] | None = None
        self._started = threading.Event()
        self._root_done = threading.Event()
        self._finished = threading.Event()
        self._detach_requested = False
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self._timer: threading.Timer | None = None
        self._unfinished = 0
        self._info = _SyscallInfo()
        self._info_addr = ctypes.addressof(self._info)
        self._info_size = ctypes.sizeof(self._info)

    # ---- the caller's side -------------------------------------------------------------

    def start(self) -> TracedPopen:
        """Start the tracing thread and the command; raise what Popen raised (not found...)."""
        self._ptrace = _libptrace()
        self._numbers = syscall_numbers()
        self._thread = threading.Thread(target=self._main, name="ptrace-tracer", daemon=True)
        self._thread.start()
        self._started.wait()
        if self.error is not None:
            raise self.error
        assert self.proc is not None
        if self.timeout is not None:
            self._timer = threading.Timer(self.timeout, self._on_timeout)
            self._timer.daemon = True
            self._timer.start()
        return self.proc

    @property
    def finished(self) -> bool:
        return self._finished.is_set()

    @property
    def unfinished(self) -> int:
        return self._unfinished

    def wait_root(self, timeout: float | None) -> bool:
        return self._root_done.wait(timeout)

    def finish(self, timeout: float = 10.0) -> None:
        """Wait at most ``timeout`` for the loop to end (the command exited, the rest detached).

        Called while the command still runs, it detaches from the whole tree first.
        """
        deadline = time.monotonic() + timeout
        if not self._root_done.is_set():
            self.notes.append("trace ended while the command was still running: detached")
            self.request_detach()
        if not self._finished.wait(max(0.0, deadline - time.monotonic()) * 0.7):
            self.request_detach()  # tasks forked since the last round get their SIGSTOP too
            if not self._finished.wait(max(0.0, deadline - time.monotonic())):
                self.notes.append(
                    f"tracer did not finish within {timeout:g}s: trace cut short, "
                    f"{len(self._tasks)} task(s) may still be traced"
                )
        if self._timer is not None:
            self._timer.cancel()

    def request_detach(self) -> None:
        """End the trace now: detach every task, leaving them running.

        A running task is stopped with one SIGSTOP, which its detach then swallows. A task
        whose first stop has not been seen yet gets none: it is detached at that stop (a
        second SIGSTOP would stay pending and stop it for good after the detach). The lock
        makes the choice and the loop's `started` mark atomic.
        """
        with self._lock:
            self._detach_requested = True
            for task in self._tasks.values():
                if task.started and not task.stop_sent:
                    task.stop_sent = True
                    _tgkill(task.tgid, task.tid, signal.SIGSTOP)

    def _on_timeout(self) -> None:
        if self._root_done.is_set():
            return
        self.timed_out = True
        self.notes.append(
            f"timeout: `{' '.join(self.argv)}` did not finish within {self.timeout:g}s; "
            "the traced tree was killed"
        )
        self.kill_all()

    def kill_all(self) -> None:
        with self._lock:
            tgids = {t.tgid for t in self._tasks.values()}
        for tgid in tgids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(tgid, signal.SIGKILL)

    # ---- the tracing thread ------------------------------------------------------------

    def _main(self) -> None:
        try:
            self._spawn()
        except BaseException as exc:  # handed to the caller of start()
            self.error = exc
            self._started.set()
            self._root_done.set()
            self._finished.set()
            return
        self._started.set()
        try:
            self._loop()
        except BaseException as exc:  # never leave the tree traced and stopped
            self.notes.append(f"tracer loop failed: {exc!r}; the traced tree was killed")
            self.kill_all()
            self._drain()
        finally:
            self._root_done.set()
            self._finished.set()

    def _spawn(self) -> None:
        # One execve, of the resolved path: the record below is then exactly what ran (a
        # PATH search would make failed execve attempts before tracing starts).
        exe = self._popen_kw.pop("executable", None) or _resolved(
            self.argv[0], self._popen_kw.get("env")
        )
        self.proc = TracedPopen(
            self, self.argv, executable=exe, preexec_fn=_traceme, **self._popen_kw
        )
        self.root_pid = self.proc.pid
        self._tasks[self.root_pid] = _Task(self.root_pid, self.root_pid)
        self._ppid[self.root_pid] = os.getpid()
        # exec of the command itself happened before we could see it: record it as such
        self.events.append(
            RawEvent(
                time.monotonic(),
                self.root_pid,
                self.root_pid,
                "execve",
                {
                    "filename": _clip(exe, MAX_STR),
                    "argv": [_clip(a, MAX_ARG) for a in self.argv[:MAX_ARGV]],
                },
                0,
                comm=procinfo.read_comm(self.root_pid),
                ppid=os.getpid(),
                ns=procinfo.read_ns(self.root_pid),
                cgroup_id=fdpaths.cgroup_id(self.root_pid),
            )
        )

    def _resume(self, tid: int, sig: int = 0) -> None:
        assert self._ptrace is not None
        try:
            self._ptrace(PTRACE_SYSCALL, tid, 0, sig)
        except Exception as exc:  # ESRCH: the task died while stopped (exit_group elsewhere)
            if getattr(exc, "errno", None) != errno.ESRCH:
                raise

    def _detach(self, tid: int, sig: int = 0) -> None:
        assert self._ptrace is not None
        with self._lock:
            try:
                self._ptrace(PTRACE_DETACH, tid, 0, sig)
            except Exception as exc:
                if getattr(exc, "errno", None) != errno.ESRCH:
                    raise
            self._tasks.pop(tid, None)

    def _loop(self) -> None:
        flags = WALL | WNOTHREAD
        while True:
            with self._lock:
                if not self._tasks:
                    return
            try:
                tid, status = os.waitpid(-1, flags)
            except ChildProcessError:
                return
            self.stops += 1
            task = self._tasks.get(tid)
            if os.WIFEXITED(status) or os.WIFSIGNALED(status):
                self._gone(tid, task, status)
                continue
            if not os.WIFSTOPPED(status):
                continue
            if task is None:  # a new task's first stop came before its parent's event
                task = self._adopt(tid)
            try:
                self._stopped(task, status)
            except Exception as exc:
                if getattr(exc, "errno", None) == errno.ESRCH:
                    continue  # exited while we looked at it; its exit status follows
                # one bad stop must not end the trace: say so, let the task go on
                self.errors += 1
                if self.errors <= 3:
                    self.notes.append(f"tid {tid}: stop not handled ({exc!r}); resumed")
                task.pending = None
                self._resume(tid)

    def _adopt(self, tid: int, tgid: int | None = None) -> _Task:
        task = _Task(tid, tgid if tgid is not None else procinfo.read_tgid(tid) or tid)
        with self._lock:
            self._tasks[tid] = task
            detaching = self._detach_requested
        task.detaching = detaching
        return task

    def _stopped(self, task: _Task, status: int) -> None:
        ptrace = self._ptrace
        assert ptrace is not None
        sig = os.WSTOPSIG(status)
        event = status >> 16
        tid = task.tid
        if not task.started:
            with self._lock:
                task.started = True
                detach_now = self._detach_requested
            task.comm = procinfo.read_comm(tid)
            if task.tid == self.root_pid:
                ptrace(PTRACE_SETOPTIONS, tid, 0, OPTIONS)
            if sig in (signal.SIGSTOP, signal.SIGTRAP) and not event:
                if detach_now:
                    self._detach(tid)
                else:
                    self._resume(tid)
                return
        if self._detach_requested and not task.detaching:
            task.detaching = True
        if sig == signal.SIGTRAP | 0x80:
            if not task.detaching:
                self._syscall_stop(task)
            self._resume(tid)
            return
        if sig == signal.SIGTRAP and event:
            if event in (EVENT_FORK, EVENT_VFORK, EVENT_CLONE):
                self._new_task(task)
            elif event == EVENT_EXEC:
                self._exec_event(task)
            elif event == EVENT_EXIT:
                self._exit_record(task, live=True)
            self._resume(tid)
            return
        # a signal for the tracee: pass it on (group-stops are resumed without one)
        if task.detaching and sig == signal.SIGSTOP:
            self._detach(tid)
            return
        if sig in STOP_SIGNALS and self._group_stop(tid):
            sig = 0
        self._resume(tid, sig)

    def _group_stop(self, tid: int) -> bool:
        assert self._ptrace is not None
        buf = ctypes.create_string_buffer(128)
        try:
            self._ptrace(PTRACE_GETSIGINFO, tid, 0, ctypes.addressof(buf))
        except Exception as exc:
            return getattr(exc, "errno", None) == errno.EINVAL
        return False

    def _syscall_stop(self, task: _Task) -> None:
        assert self._ptrace is not None
        self._ptrace(PTRACE_GET_SYSCALL_INFO, task.tid, self._info_size, self._info_addr)
        info = self._info
        if info.op == SYSCALL_INFO_ENTRY:
            task.pending = None
            if info.arch != AUDIT_ARCH_X86_64:
                return
            name = self._numbers.get(info.u[0])
            if name is None:
                return
            ts = time.monotonic()
            with Memory(task.tid) as mem:
                try:
                    raw = read_args(name, info.u[1:7], mem, task.contained)
                except OSError:
                    raw, mem.failures = None, mem.failures + 1
                if mem.failures:  # counted, never hidden: dropped, or kept with None args
                    (self.dropped if raw is None else self.unreadable)[name] += 1
                    if raw is None:
                        self.lost += 1
                        return
            if raw is not None:
                task.pending = (name, raw, ts, fdpaths.cgroup_id(task.tgid))
        elif info.op == SYSCALL_INFO_EXIT and task.pending is not None:
            name, raw, ts, cgroup_id = task.pending
            task.pending = None
            ret = _signed(info.u[0])
            if name in ("clone", "clone3") and ret == 0:
                return  # the child side (it does not return here for a traced parent)
            if ret == 0 and name in ("pivot_root", "chroot", "setns"):
                task.contained = True
            self._record(task, name, raw, ret, ts, cgroup_id)

    def _record(
        self, task: _Task, name: str, raw: dict[str, Any], ret: int, ts: float, cgroup_id: int
    ) -> None:
        pid = task.tgid
        task.comm = procinfo.read_comm(task.tid) or task.comm
        ns = procinfo.read_ns(pid)
        self._last_seen[pid] = (ns, cgroup_id)
        self.events.append(
            RawEvent(
                ts,
                pid,
                task.tid,
                name,
                raw,
                ret,
                comm=task.comm,
                ppid=self._ppid_of(pid),
                ns=ns,
                cgroup_id=cgroup_id,
            )
        )

    def _new_task(self, parent: _Task) -> None:
        assert self._ptrace is not None
        child = ctypes.c_ulong()
        self._ptrace(PTRACE_GETEVENTMSG, parent.tid, 0, ctypes.addressof(child))
        new = int(child.value)
        flags, tgid = 0, None
        if parent.pending is not None and parent.pending[0] in ("clone", "clone3"):
            flags = parent.pending[1].get("flags") or 0
            tgid = parent.tgid if flags & CLONE_THREAD else new
        task = self._tasks.get(new) or self._adopt(new, tgid)  # None: ask /proc
        task.contained = task.contained or parent.contained
        if task.tgid != new:
            return  # a thread: no new process
        # the tree parent: CLONE_PARENT makes the child a sibling of its creator
        ppid = self._ppid_of(parent.tgid)
        self._ppid[new] = ppid if flags & CLONE_PARENT else parent.tgid
        if not parent.detaching:
            parent.comm = procinfo.read_comm(parent.tid) or parent.comm
            self.events.append(
                RawEvent(
                    time.monotonic(),
                    parent.tgid,
                    parent.tid,
                    "fork",
                    {"child_pid": new},
                    0,
                    comm=parent.comm,
                    ppid=ppid,
                    ns=procinfo.read_ns(parent.tgid),
                    cgroup_id=fdpaths.cgroup_id(parent.tgid),
                )
            )

    def _ppid_of(self, tgid: int) -> int:
        if tgid not in self._ppid:
            self._ppid[tgid] = procinfo.read_ppid(tgid)
        return self._ppid[tgid]

    def _exec_event(self, task: _Task) -> None:
        """After exec by a non-leader thread the kernel gives it the leader's id."""
        assert self._ptrace is not None
        former = ctypes.c_ulong()
        self._ptrace(PTRACE_GETEVENTMSG, task.tid, 0, ctypes.addressof(former))
        old = int(former.value)
        if old != task.tid and old in self._tasks:
            with self._lock:
                moved = self._tasks.pop(old)
            task.pending = moved.pending
        task.comm = procinfo.read_comm(task.tid) or task.comm

    def _exit_record(self, task: _Task, live: bool) -> None:
        """A process ends (its leader exits), as sched_process_exit reports it.

        At the PTRACE_EVENT_EXIT stop (``live``) /proc still shows the task; after it was
        reaped, what its last record said is all there is.
        """
        task.exited = True
        if task.detaching or task.tid != task.tgid:
            return
        if live:
            task.comm = procinfo.read_comm(task.tid) or task.comm
            seen = (procinfo.read_ns(task.tgid), fdpaths.cgroup_id(task.tgid))
        else:
            seen = self._last_seen.get(task.tgid, ({}, 0))
        self.events.append(
            RawEvent(
                time.monotonic(),
                task.tgid,
                task.tid,
                "exit",
                {},
                0,
                comm=task.comm,
                ppid=self._ppid.get(task.tgid, 0),
                ns=dict(seen[0]),
                cgroup_id=seen[1],
            )
        )

    def _gone(self, tid: int, task: _Task | None, status: int) -> None:
        code = os.waitstatus_to_exitcode(status)
        if task is not None:
            if task.pending is not None:
                self._unfinished += 1
            if not task.exited:  # no PTRACE_EVENT_EXIT stop was seen (SIGKILL)
                self._exit_record(task, live=False)
        with self._lock:
            self._tasks.pop(tid, None)
        if tid == self.root_pid:
            self.returncode = code
            if self.proc is not None:
                self.proc.returncode = code
            self._root_done.set()
            with self._lock:
                rest = list(self._tasks.values())
            if rest:
                self.notes.append(
                    f"{len(rest)} task(s) still running when the command exited "
                    f"(pids {sorted({t.tgid for t in rest})}): detached, not traced further"
                )
                self.request_detach()

    def _drain(self) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                tid, status = os.waitpid(-1, WALL | WNOTHREAD | os.WNOHANG)
            except ChildProcessError:
                return
            if tid == 0:
                time.sleep(0.01)
                continue
            if (os.WIFEXITED(status) or os.WIFSIGNALED(status)) and tid == self.root_pid:
                self.returncode = os.waitstatus_to_exitcode(status)
                if self.proc is not None:
                    self.proc.returncode = self.returncode


def _traceme() -> None:
    """In the child before exec: become traced (the exec then stops with SIGTRAP).

    One libc call, no Python-level locks: the parent has other threads.
    """
    if _LIBC.ptrace(0, 0, None, None) != 0:  # PTRACE_TRACEME
        raise OSError(ctypes.get_errno(), "PTRACE_TRACEME refused")


def _tgkill(tgid: int, tid: int, sig: int) -> None:
    """Signal one thread (os.kill would pick any thread of the group)."""
    _LIBC.syscall(SYS_TGKILL, tgid, tid, sig)  # ESRCH (already gone) is fine


def _resolved(cmd: str, env: dict[str, str] | None) -> str:
    """``cmd`` searched in PATH as execvp would; FileNotFoundError as Popen raises it."""
    if "/" in cmd:
        return cmd
    import shutil

    path = (env or os.environ).get("PATH", os.defpath)
    found = shutil.which(cmd, path=path)
    if found is None:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), cmd)
    return found


class TracedPopen(subprocess.Popen):
    """A Popen whose exit status comes from the tracer.

    The tracing thread reaps the command (a wait from any other thread of this process
    would steal its ptrace stops), so `wait`/`poll` read what the tracer saw.
    """

    def __init__(self, tracer: Tracer, *args: Any, **kw: Any) -> None:
        self._tracer = tracer
        super().__init__(*args, **kw)

    def _internal_poll(self, *args: Any, **kw: Any) -> int | None:
        if self._tracer.wait_root(0):
            self.returncode = self._tracer.returncode
        return self.returncode

    def _wait(self, timeout: float | None) -> int:
        if not self._tracer.wait_root(timeout):
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        self.returncode = self._tracer.returncode
        return self.returncode if self.returncode is not None else -signal.SIGKILL


def to_trace(tracer: Tracer) -> Trace:
    """The tracer's records as the shared schema, args decoded by `probes.decode`."""
    events = [
        TraceEvent(
            ts=e.ts,
            pid=e.pid,
            tid=e.tid,
            ppid=e.ppid,
            comm=e.comm,
            syscall=e.syscall,
            args=decode(e.syscall, e.raw),
            ret=e.ret,
            ns=e.ns,
            cgroup_id=e.cgroup_id,
        )
        for e in tracer.events
    ]
    notes = list(tracer.notes)
    for name, n in sorted(tracer.dropped.items()):
        notes.append(f"{n} {name} call(s) not recorded: arguments unreadable in the tracee")
    for name, n in sorted(tracer.unreadable.items()):
        notes.append(f"{n} {name} record(s) with an argument unreadable in the tracee (None)")
    if tracer.unfinished:
        notes.append(
            f"{tracer.unfinished} watched syscall(s) never returned (the task was killed in them)"
        )
    return Trace(
        backend="ptrace", events=events, lost=tracer.lost, notes=notes, root_pid=tracer.root_pid
    )


class PtraceTracee:
    """One command started under ptrace (`probes.backend.Tracee`)."""

    def __init__(self, tracer: Tracer) -> None:
        self._tracer = tracer
        assert tracer.proc is not None
        self.proc: subprocess.Popen[Any] = tracer.proc
        self.pid = tracer.root_pid
        self._trace: Trace | None = None

    def finish(self, timeout: float = 10.0) -> Trace:
        if self._trace is None:
            self._tracer.finish(timeout)
            self._trace = to_trace(self._tracer)
        return self._trace


class PtraceBackend:
    """`probes.backend.Backend` on ptrace: one tracing thread per traced command."""

    name = "ptrace"

    def __init__(self) -> None:
        self._live: set[Tracer] = set()
        self._lock = threading.Lock()

    def spawn(self, argv: Sequence[str], **popen: Any) -> PtraceTracee:
        return PtraceTracee(self._start(argv, None, popen))

    def _start(self, argv: Sequence[str], timeout: float | None, popen: dict[str, Any]) -> Tracer:
        tracer = Tracer(argv, timeout=timeout, **popen)
        tracer.start()
        with self._lock:
            self._live = {t for t in self._live if not t.finished} | {tracer}
        return tracer

    def trace(
        self,
        argv: Sequence[str],
        *,
        stdin: Any = None,
        stdout: Any = None,
        stderr: Any = None,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        timeout: float = 60.0,
    ) -> tuple[subprocess.CompletedProcess[bytes], Trace]:
        """Run ``argv`` to completion; on timeout the whole traced tree is killed.

        (Killing the process group would miss a container init in its own session; the
        tracer knows every task.)
        """
        feed = stdin if isinstance(stdin, bytes) else None
        tracer = self._start(
            argv,
            timeout,
            {
                "stdin": subprocess.PIPE if feed is not None else stdin,
                "stdout": stdout,
                "stderr": stderr,
                "env": env,
                "cwd": cwd,
                "start_new_session": True,
            },
        )
        assert tracer.proc is not None
        try:
            out, err = tracer.proc.communicate(feed, timeout=timeout + 5)
        except subprocess.TimeoutExpired:  # pipes held open by a detached survivor
            tracer.kill_all()
            out, err = None, None
        tracer.finish(10.0)
        trace = to_trace(tracer)
        if tracer.timed_out:
            raise CommandTimeout(
                f"`{' '.join(map(str, argv))}` did not finish within {timeout:g}s", trace, out, err
            )
        returncode = tracer.proc.returncode if tracer.proc.returncode is not None else -9
        return subprocess.CompletedProcess(list(argv), returncode, out, err), trace

    def close(self) -> None:
        with self._lock:
            live, self._live = self._live, set()
        for tracer in live:
            if not tracer.finished:
                tracer.finish(5.0)


def create() -> PtraceBackend:
    """The ptrace backend, after proving here that a traced child can be followed."""
    import platform

    if platform.machine() != "x86_64":
        raise Unavailable(f"ptrace backend supports x86_64 only (this is {platform.machine()})")
    try:
        import ptrace.binding  # noqa: F401
    except ImportError as e:
        raise Unavailable(f"python-ptrace is not installed ({e})") from None
    with contextlib.suppress(OSError, ValueError), open("/proc/sys/kernel/yama/ptrace_scope") as f:
        if int(f.read()) >= 3:
            raise Unavailable("ptrace is disabled (kernel.yama.ptrace_scope = 3)")
    backend = PtraceBackend()
    probe = Tracer(["/bin/true"], stdin=subprocess.DEVNULL)
    try:
        probe.start().wait(10)
    except (OSError, subprocess.SubprocessError) as e:
        probe.kill_all()
        raise Unavailable(f"ptrace refused: {e}") from None
    probe.finish(5.0)
    if probe.returncode != 0 or not probe.stops or probe.notes:
        why = "; ".join(probe.notes) or f"traced /bin/true exited {probe.returncode}"
        raise Unavailable(f"ptrace does not work here: {why}")
    return backend


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m probes.ptrace_backend [--jsonl FILE] [--timeout S] -- COMMAND...`

    Runs COMMAND traced with its stdio inherited, writes the trace as JSONL, and exits
    with COMMAND's status (128+N when a signal N ended it): a tracer in front of a command,
    for launchers that can only prepend argv.
    """
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m probes.ptrace_backend")
    parser.add_argument("--jsonl", help="write the trace here (default: stderr)")
    parser.add_argument("--timeout", type=float, default=None)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")
    tracer = Tracer(command, timeout=args.timeout, start_new_session=False)
    try:
        proc = tracer.start()
    except OSError as e:
        print(f"ptrace: {command[0]}: {e.strerror or e}", file=sys.stderr)
        return 127 if isinstance(e, FileNotFoundError) else 126
    code = proc.wait()
    tracer.finish()
    text = to_trace(tracer).to_jsonl()
    if args.jsonl:
        with open(args.jsonl, "w") as f:
            f.write(text)
    else:
        sys.stderr.write(text)
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    raise SystemExit(main())
