"""The syscall traces of a test's runtime commands, and the orderings TRACE tests check.

Why here and not in probes/: probes records what happened; this module says what a
container runtime's trace must show (namespaces created before the hostname is set, the root
pivoted before the program runs...). Each check returns the problems it found, as sentences
a report can show; an empty list means the trace proves the behaviour.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from probes.decode import NS_NAMES
from probes.events import TraceEvent
from probes.trace import Trace

#: /proc/<pid>/ns name -> the CLONE_NEW* flag that makes one.
FLAG_OF: dict[str, str] = {v: k for k, v in NS_NAMES.items()}
CREATING = ("clone", "clone3", "unshare")


@dataclass
class Traced:
    """One traced runtime command: its argv and its trace."""

    argv: list[str]
    trace: Trace

    def events(self, *syscalls: str) -> list[TraceEvent]:
        ev = sorted(self.trace.events, key=lambda e: e.ts)
        return [e for e in ev if e.syscall in syscalls] if syscalls else ev

    def ancestors(self, pid: int) -> list[int]:
        """``pid`` and its parents in the traced tree, nearest first."""
        parent = {c: p for p, cs in self.trace.tree().items() for c in cs}
        out = [pid]
        while out[-1] in parent and parent[out[-1]] not in out:
            out.append(parent[out[-1]])
        return out

    def describe(self) -> str:
        t = self.trace
        return f"`{' '.join(self.argv)[:160]}` ({t.backend}, {len(t.events)} events, {t.lost} lost)"


def created_namespaces(t: Traced) -> dict[str, TraceEvent]:
    """Namespace name -> the first successful clone/clone3/unshare that created one."""
    out: dict[str, TraceEvent] = {}
    for e in t.events(*CREATING):
        if e.failed or (e.syscall != "unshare" and e.ret == 0):
            continue
        for flag in e.args.get("flags") or []:
            if flag in NS_NAMES:
                out.setdefault(NS_NAMES[flag], e)
    return out


def program_execs(t: Traced, argv: Sequence[str]) -> list[TraceEvent]:
    """Successful execve(at)s of the container's program (argv[0]'s basename and, as far as
    the trace keeps them, the same arguments: the probes cut long arguments)."""
    want = [str(a) for a in argv]
    base = want[0].rsplit("/", 1)[-1]
    out = []
    for e in t.events("execve", "execveat"):
        got = [str(a) for a in e.args.get("argv") or []]
        if e.failed or not got or got[0].rsplit("/", 1)[-1] != base:
            continue
        if all(w.startswith(g) for g, w in zip(got[1:], want[1:], strict=False)):
            out.append(e)
    return out


def check_namespaces(t: Traced, requested: Iterable[str], refused: Iterable[str]) -> list[str]:
    """TRACE-01: every requested namespace is created (CLONE_NEWPID then a fork into it);
    none of ``refused`` is."""
    problems = []
    made = created_namespaces(t)
    for ns in sorted(requested):
        if ns not in made:
            problems.append(f"{FLAG_OF[ns]} (the {ns} namespace asked for) in no clone/unshare")
    for ns in sorted(refused):
        if ns in made:
            e = made[ns]
            problems.append(
                f"{FLAG_OF[ns]} appears although no {ns} namespace was asked for: "
                f"{e.syscall} by pid {e.pid} ({e.comm})"
            )
    pid_ns = made.get("pid")
    if pid_ns is not None and pid_ns.syscall == "unshare":
        forks = [e for e in t.events("fork") if e.pid == pid_ns.pid and e.ts > pid_ns.ts]
        if not forks:
            problems.append(
                f"unshare(CLONE_NEWPID) by pid {pid_ns.pid} is never followed by a fork: "
                "nothing enters the new pid namespace"
            )
    return problems


def check_exec_joins(t: Traced, target: dict[str, int], argv: Sequence[str]) -> list[str]:
    """TRACE-02: the exec setns()es into each namespace of the target (``target``: ns name ->
    inode of the container's init, only those it does not share with the host)."""
    problems = []
    joins = [e for e in t.events("setns") if not e.failed]
    if not joins:
        return ["no successful setns in the exec"]
    typed = {NS_NAMES[str(e.args.get("nstype"))] for e in joins if e.args.get("nstype") in NS_NAMES}
    untyped = any(e.args.get("nstype") == "0" for e in joins)
    execs = program_execs(t, argv)
    if not execs:
        problems.append(f"the exec'd program {argv[0]!r} never ran (no execve)")
    seen = execs[-1].ns if execs else {}
    for ns, inode in sorted(target.items()):
        if ns in typed:
            continue
        if untyped and seen.get(ns) == inode:
            continue
        problems.append(f"no setns into the container's {ns} namespace ({FLAG_OF[ns]})")
    for ns, inode in sorted(target.items()):
        if seen.get(ns) not in (None, inode):
            problems.append(
                f"the exec'd program runs in {ns} namespace {seen[ns]}, not the container's {inode}"
            )
    return problems


def check_root_pivot(t: Traced, argv: Sequence[str]) -> list[str]:
    """TRACE-03: pivot_root (or MS_MOVE + chroot) before the program's execve, in its process
    or an ancestor; after a pivot_root the old root is detached (umount2 MNT_DETACH)."""
    execs = program_execs(t, argv)
    if not execs:
        return [f"the container's program {argv[0]!r} never ran (no execve)"]
    final = execs[-1]
    line = t.ancestors(final.pid)
    pivots = [
        e for e in t.events("pivot_root") if not e.failed and e.pid in line and e.ts < final.ts
    ]
    if pivots:
        p = pivots[-1]
        detached = [
            e
            for e in t.events("umount2")
            if not e.failed
            and e.pid == p.pid
            and p.ts < e.ts < final.ts
            and "MNT_DETACH" in (e.args.get("flags") or [])
        ]
        if not detached:
            return [
                f"pivot_root by pid {p.pid} is not followed by a umount2(MNT_DETACH) of the "
                "old root before the program ran: the host's root stays reachable"
            ]
        return []
    moves = [
        e
        for e in t.events("mount")
        if not e.failed and e.pid in line and "MS_MOVE" in (e.args.get("flags") or [])
    ]
    chroots = [e for e in t.events("chroot") if not e.failed and e.pid in line]
    if moves and chroots and moves[-1].ts < chroots[-1].ts < final.ts:
        return []
    return [
        f"no pivot_root (nor MS_MOVE + chroot) by pid {final.pid} or its parents before "
        f"execve({argv[0]!r})"
    ]


def _made_by_line(
    t: Traced, pid: int, before: float, ok: Callable[[TraceEvent], bool]
) -> TraceEvent | None:
    """The first event of ``pid``'s line (itself or an ancestor) before ``before`` that ``ok``
    accepts."""
    line = set(t.ancestors(pid))
    for e in t.events():
        if e.ts >= before:
            break
        if e.pid in line and ok(e):
            return e
    return None


def check_hostname_after_uts(t: Traced, hostname: str, host_uts: int) -> list[str]:
    """TRACE-04: every sethostname comes after CLONE_NEWUTS (or a setns into a uts
    namespace) by its process or an ancestor, and the expected name is set once at least."""
    calls = [e for e in t.events("sethostname") if not e.failed]
    if not any(e.args.get("name") == hostname for e in calls):
        names = [e.args.get("name") for e in calls]
        return [f"no successful sethostname({hostname!r}) (seen: {names})"]
    problems = []

    def uts(e: TraceEvent) -> bool:
        if e.failed:
            return False
        if e.syscall == "setns":
            return e.args.get("nstype") == "CLONE_NEWUTS"
        if e.syscall in CREATING and (e.syscall == "unshare" or e.ret > 0):
            return "CLONE_NEWUTS" in (e.args.get("flags") or [])
        return False

    for e in calls:
        if _made_by_line(t, e.pid, e.ts, uts) is None:
            problems.append(
                f"sethostname({e.args.get('name')!r}) by pid {e.pid} ({e.comm}) with no "
                "CLONE_NEWUTS before it: it renames the uts namespace it was started in"
            )
        elif e.ns.get("uts") == host_uts:
            problems.append(f"sethostname by pid {e.pid} ran in the host's uts namespace")
    return problems


CGROUP_ATTACH = ("cgroup.procs", "tasks")


def check_cgroup_before_exec(t: Traced, argv: Sequence[str]) -> list[str]:
    """TRACE-05: a cgroup directory is made and the container's init (or an ancestor of the
    program's process) written to its cgroup.procs/tasks before the program's execve."""
    execs = program_execs(t, argv)
    if not execs:
        return [f"the container's program {argv[0]!r} never ran (no execve)"]
    final = execs[-1]
    made = [e for e in t.events("mkdir", "mkdirat") if not e.failed and e.ts < final.ts]
    problems = []
    if not made:
        problems.append("no cgroup directory made before the program's execve")
    line = t.ancestors(final.pid)
    fds = _attach_fds(t)
    attached = []
    for e in t.events("write"):
        if e.failed or e.ts >= final.ts or (e.pid, e.args.get("fd")) not in fds:
            continue
        text = str(e.args.get("data") or "").strip()
        if not text.isdigit():
            continue
        written = int(text)
        if written in line or (written == 0 and e.pid in line):
            attached.append(e)
    if not attached:
        problems.append(
            f"no write of pid {final.pid} (or of a parent: {line[1:4]}) to a cgroup.procs or "
            "tasks file before the program's execve"
        )
    return problems


def _attach_fds(t: Traced) -> set[tuple[int, int]]:
    """(pid, fd) of successful opens of cgroup.procs/tasks (writes name their fd only)."""
    out = set()
    for e in t.events("openat", "openat2"):
        path = str(e.args.get("path") or "")
        if not e.failed and path.rsplit("/", 1)[-1] in CGROUP_ATTACH:
            out.add((e.pid, e.ret))
    return out


def check_whiteout_mknods(t: Traced, names: Iterable[str]) -> list[str]:
    """TRACE-06 (layer side): a mknod(at)(S_IFCHR, 0:0) of each whited-out name."""
    made = [
        e
        for e in t.events("mknodat", "mknod")
        if not e.failed
        and e.args.get("type") == "S_IFCHR"
        and list(e.args.get("dev") or ()) == [0, 0]
    ]
    paths = [str(e.args.get("path") or "") for e in made]
    return [
        f"no mknod(S_IFCHR, makedev(0, 0)) of {name!r} (whiteout device nodes made: {paths[:6]})"
        for name in names
        if not any(p == name or p.endswith("/" + name) for p in paths)
    ]


class TraceLog:
    """The traced runtime commands of the running test (the `syscalls` fixture).

    ``records`` is the test's transcript (`launcher.Record`s, in order); `mark` then
    `since(mark)` gives what one operation traced, merged into one `Traced`.
    """

    def __init__(self, records: list[Any], backend: str) -> None:
        self._records = records
        self.backend = backend

    def mark(self) -> int:
        return len(self._records)

    def since(self, mark: int) -> Traced:
        from conformance import launcher

        launcher.finish_traces()
        got = [r for r in self._records[mark:] if r.trace is not None]
        if not got:
            raise AssertionError("the operation made no traced runtime command")
        events = [e for r in got for e in r.trace.events]
        trace = Trace(
            got[0].trace.backend,
            sorted(events, key=lambda e: e.ts),
            lost=sum(r.trace.lost for r in got),
            notes=[n for r in got for n in r.trace.notes],
            root_pid=got[0].trace.root_pid,
        )
        return Traced(list(got[0].argv), trace)


def check_contained_unlink(t: Traced, path: str) -> list[str]:
    """TRACE-06 (container side): the container's own process unlinks ``path``."""
    gone = [
        e
        for e in t.events("unlink", "unlinkat")
        if not e.failed and str(e.args.get("path") or "").endswith(path.lstrip("/"))
    ]
    if not gone:
        seen = [e.args.get("path") for e in t.events("unlink", "unlinkat")][:6]
        return [f"no successful unlink/unlinkat of {path!r} by the container (seen: {seen})"]
    return []
