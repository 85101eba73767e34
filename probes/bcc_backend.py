"""The eBPF backend: bcc on syscall tracepoints, scoped to the traced command's process tree.

Why tracepoints only: kprobes and fentry are off on the hosts this runs on, and bcc compiles
against whatever headers are installed (possibly an older kernel's), so the program never
dereferences a kernel struct: it uses tracepoint arguments, helpers and `bpf_probe_read_user`
of uapi structs (struct clone_args, struct open_how) and user strings only.

How: each syscall's enter keeps its arguments per thread in a hash; its exit adds the return
value and emits one ring-buffer record. A `tracked` hash (tid -> trace id, parent) is seeded
with the launched command's pid before it execs (a bash shim waits on a pipe until the pid is
registered) and extended on sched_process_fork, so nothing early is missed and the tracer's
own activity is never seen. The program is compiled once per process and shared by every
concurrent trace of that process; records carry their trace id.

File deletions (unlink, unlinkat) are recorded under a cgroup fs, and anywhere once the task
is contained: after a successful pivot_root, chroot or setns by it or an ancestor, i.e. what
the container's own processes delete, not the runtime's bookkeeping.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes as ct
import errno
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from typing import Any

from probes.backend import CommandTimeout, Unavailable, kill_tree
from probes.decode import AT_FDCWD, decode
from probes.events import TraceEvent
from probes.procinfo import read_ns
from probes.trace import Trace

STR = 256
SSTR = 64
ARGC = 10
ARGL = 64

#: syscall name -> (tracepoint name, our record number). Order = numbering.
SYSCALLS: tuple[tuple[str, str], ...] = (
    ("clone", "clone"),
    ("clone3", "clone3"),
    ("unshare", "unshare"),
    ("setns", "setns"),
    ("mount", "mount"),
    ("umount2", "umount"),
    ("pivot_root", "pivot_root"),
    ("chroot", "chroot"),
    ("sethostname", "sethostname"),
    ("setdomainname", "setdomainname"),
    ("mknodat", "mknodat"),
    ("mknod", "mknod"),
    ("execve", "execve"),
    ("execveat", "execveat"),
    ("openat", "openat"),
    ("openat2", "openat2"),
    ("write", "write"),
    ("mkdir", "mkdir"),
    ("mkdirat", "mkdirat"),
    ("unlinkat", "unlinkat"),
    ("unlink", "unlink"),
)
NR: dict[str, int] = {name: i for i, (name, _tp) in enumerate(SYSCALLS)}
NR_FORK = 100
NR_EXIT = 101
#: Tracepoints without which a trace would be misleading (the rest are skipped with a note
#: when the kernel lacks them, e.g. clone3 or openat2 on an old kernel).
ESSENTIAL = ("clone", "unshare", "setns", "mount", "pivot_root", "execve")

TRACEFS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
#: Seconds between two reads of the ring buffer (4 MiB: room for ~2,500 records).
POLL_INTERVAL = 0.01

_PROLOGUE = r"""
#include <uapi/linux/ptrace.h>
#define STR %(STR)d
#define SSTR %(SSTR)d
#define ARGC %(ARGC)d
#define ARGL %(ARGL)d
#define CLONE_THREAD 0x00010000ULL
#define CLONE_PARENT 0x00008000ULL

struct rec_t {
    u64 ts;
    u64 cgroup_id;
    s64 ret;
    u64 a[4];
    u64 p[4];
    u32 trace_id;
    u32 pid;
    u32 tid;
    u32 ppid;
    u32 nr;
    u32 argc;
    u32 nulls;
    u32 fixed;
    char comm[16];
    char s0[STR];
    char s1[STR];
    char s2[SSTR];
    char s3[STR];
    char argv[ARGC][ARGL];
};

struct track_t {
    u32 trace_id;
    u32 ppid;
    u32 contained;  /* pivot_root, chroot or setns succeeded here or in an ancestor */
};

struct clone_args_head {
    u64 flags;
    u64 pidfd;
    u64 child_tid;
    u64 parent_tid;
    u64 exit_signal;
};

BPF_HASH(tracked, u32, struct track_t, 65536);
BPF_HASH(pending, u64, struct rec_t, 8192);
BPF_HASH(cgfds, u64, u8, 65536);
BPF_HASH(lost, u32, u64, 4096);
BPF_PERCPU_ARRAY(scratch, struct rec_t, 1);
BPF_RINGBUF_OUTPUT(events, 1024);

static __always_inline void count_lost(u32 trace_id) {
    u64 one = 1;
    u64 *n = lost.lookup(&trace_id);
    if (n) __sync_fetch_and_add(n, 1);
    else lost.update(&trace_id, &one);
}

static __always_inline struct rec_t *begin(u32 nr) {
    u64 id = bpf_get_current_pid_tgid();
    u32 tid = (u32)id;
    struct track_t *t = tracked.lookup(&tid);
    if (!t) return 0;
    int zero = 0;
    struct rec_t *r = scratch.lookup(&zero);
    if (!r) return 0;
    r->ts = bpf_ktime_get_ns();
    r->cgroup_id = bpf_get_current_cgroup_id();
    r->ret = 0;
    r->a[0] = 0; r->a[1] = 0; r->a[2] = 0; r->a[3] = 0;
    r->p[0] = 0; r->p[1] = 0; r->p[2] = 0; r->p[3] = 0;
    r->fixed = 0;
    r->trace_id = t->trace_id;
    r->pid = id >> 32;
    r->tid = tid;
    r->ppid = t->ppid;
    r->nr = nr;
    r->argc = 0;
    r->nulls = 0;
    r->s0[0] = 0; r->s1[0] = 0; r->s2[0] = 0; r->s3[0] = 0;
    bpf_get_current_comm(&r->comm, sizeof(r->comm));
    return r;
}

/* Strings are read at enter (the filters need them) and again at exit: at enter a page
   may not be resident yet (bpf_probe_read_user cannot fault it in); by the exit the kernel
   has read the string itself. */
static __always_inline void str0(struct rec_t *r, const char *p) {
    if (!p) { r->nulls |= 1; return; }
    r->p[0] = (u64)p;
    bpf_probe_read_user_str(r->s0, STR, p);
}
static __always_inline void str1(struct rec_t *r, const char *p) {
    if (!p) { r->nulls |= 2; return; }
    r->p[1] = (u64)p;
}
static __always_inline void reread(struct rec_t *r) {
    if (r->p[0]) bpf_probe_read_user_str(r->s0, STR, (const char *)r->p[0]);
    if (r->p[1]) bpf_probe_read_user_str(r->s1, STR, (const char *)r->p[1]);
    if (r->p[2]) {
        if (r->fixed) {
            if (bpf_probe_read_user(r->s2, SSTR - 1, (const char *)r->p[2]) != 0)
                bpf_probe_read_user_str(r->s2, SSTR, (const char *)r->p[2]);
            r->s2[SSTR - 1] = 0;
        } else {
            bpf_probe_read_user_str(r->s2, SSTR, (const char *)r->p[2]);
        }
    }
    if (r->p[3]) bpf_probe_read_user_str(r->s3, STR, (const char *)r->p[3]);
}

static __always_inline u64 key_of(struct rec_t *r, int by_tgid) {
    return by_tgid ? (((u64)1 << 32) | r->pid) : r->tid;
}

static __always_inline int keep(struct rec_t *r, int by_tgid) {
    u64 key = key_of(r, by_tgid);
    if (pending.update(&key, r) != 0) count_lost(r->trace_id);
    return 0;
}

/* the path is under a cgroup fs, or relative to a directory fd opened there */
static __always_inline int cgroup_path(struct rec_t *r, int dfd) {
    const char pre[] = "/sys/fs/cgroup";
    int match = 1;
    #pragma unroll
    for (int i = 0; i < 14; i++) {
        if (r->s0[i] != pre[i]) { match = 0; break; }
    }
    if (match) return 1;
    if (r->s0[0] == '/') return 0;
    u64 key = ((u64)r->pid << 32) | (u32)dfd;
    return cgfds.lookup(&key) != 0;
}

static __always_inline int contained(void) {
    u32 tid = (u32)bpf_get_current_pid_tgid();
    struct track_t *t = tracked.lookup(&tid);
    return t && t->contained;
}

static __always_inline int done(long ret, u32 nr, int by_tgid) {
    u64 id = bpf_get_current_pid_tgid();
    u64 key = by_tgid ? (((u64)1 << 32) | (id >> 32)) : (u32)id;
    struct rec_t *r = pending.lookup(&key);
    if (!r) return 0;
    if (r->nr != nr) { pending.delete(&key); return 0; }
    r->ret = ret;
    if (by_tgid && ret == 0 && r->tid != (u32)id) {
        /* exec from a non-leader thread: it now has the leader's tid */
        u32 old = r->tid, now = (u32)id;
        struct track_t *t = tracked.lookup(&old);
        if (t) { struct track_t copy = *t; tracked.update(&now, &copy); tracked.delete(&old); }
    }
    r->tid = (u32)id;
    if (ret == 0 && (nr == %(NR_PIVOT_ROOT)d || nr == %(NR_CHROOT)d || nr == %(NR_SETNS)d)) {
        u32 me = (u32)id;
        struct track_t *t = tracked.lookup(&me);
        if (t) t->contained = 1;
    }
    if (!by_tgid) reread(r);
    bpf_get_current_comm(&r->comm, sizeof(r->comm));
    if ((nr == %(NR_OPENAT)d || nr == %(NR_OPENAT2)d) && ret >= 0) {
        u64 fk = ((u64)r->pid << 32) | (u32)ret;
        u8 one = 1;
        cgfds.update(&fk, &one);
    }
    if (events.ringbuf_output(r, sizeof(*r), 0) != 0) count_lost(r->trace_id);
    pending.delete(&key);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_fork) {
    u64 id = bpf_get_current_pid_tgid();
    u32 tid = (u32)id;
    struct track_t *t = tracked.lookup(&tid);
    if (!t) return 0;
    u32 child = args->child_pid;
    u64 flags = 0;
    u64 pkey = tid;
    struct rec_t *p = pending.lookup(&pkey);
    if (p && (p->nr == %(NR_CLONE)d || p->nr == %(NR_CLONE3)d)) flags = p->a[0];
    struct track_t ct = {};
    ct.trace_id = t->trace_id;
    ct.contained = t->contained;
    if (flags & CLONE_THREAD) {
        ct.ppid = t->ppid;
        tracked.update(&child, &ct);
        return 0;
    }
    ct.ppid = (flags & CLONE_PARENT) ? t->ppid : (u32)(id >> 32);
    tracked.update(&child, &ct);
    struct rec_t *r = begin(%(NR_FORK)d);
    if (!r) return 0;
    r->a[0] = child;
    if (events.ringbuf_output(r, sizeof(*r), 0) != 0) count_lost(r->trace_id);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exit) {
    u64 id = bpf_get_current_pid_tgid();
    u32 tid = (u32)id;
    struct track_t *t = tracked.lookup(&tid);
    if (!t) return 0;
    u64 key = tid;
    pending.delete(&key);  /* a syscall the task was killed in never exits */
    if (tid == (u32)(id >> 32)) {
        /* another thread's execve is killing the leader (de_thread): the process goes on,
           and the exec'ing thread takes over this tid */
        key = ((u64)1 << 32) | tid;
        if (pending.lookup(&key)) return 0;
        struct rec_t *r = begin(%(NR_EXIT)d);
        if (r && events.ringbuf_output(r, sizeof(*r), 0) != 0) count_lost(r->trace_id);
    }
    tracked.delete(&tid);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_close) {
    u64 id = bpf_get_current_pid_tgid();
    u32 tid = (u32)id;
    if (!tracked.lookup(&tid)) return 0;
    u64 key = ((id >> 32) << 32) | (u32)args->fd;
    cgfds.delete(&key);
    return 0;
}
"""

#: The enter bodies: `r` is the record from begin(); return keep(r, by_tgid) to record.
_ENTER: dict[str, str] = {
    "clone": "r->a[0] = args->clone_flags; return keep(r, 0);",
    "clone3": """
        struct clone_args_head ca = {};
        if (bpf_probe_read_user(&ca, sizeof(ca), args->uargs) != 0) r->nulls |= 4;
        r->a[0] = ca.flags; r->a[1] = ca.exit_signal; return keep(r, 0);""",
    "unshare": "r->a[0] = args->unshare_flags; return keep(r, 0);",
    "setns": "r->a[0] = args->fd; r->a[1] = args->flags; return keep(r, 0);",
    "mount": """
        str0(r, args->dev_name); str1(r, args->dir_name);
        if (args->type) r->p[2] = (u64)args->type; else r->nulls |= 4;
        if (args->data) r->p[3] = (u64)args->data; else r->nulls |= 8;
        r->a[0] = args->flags; return keep(r, 0);""",
    "umount2": "str0(r, args->name); r->a[0] = args->flags; return keep(r, 0);",
    "pivot_root": "str0(r, args->new_root); str1(r, args->put_old); return keep(r, 0);",
    "chroot": "str0(r, args->filename); return keep(r, 0);",
    "sethostname": "str0(r, args->name); r->a[0] = args->len; return keep(r, 0);",
    "setdomainname": "str0(r, args->name); r->a[0] = args->len; return keep(r, 0);",
    "mknodat": """
        r->a[0] = args->dfd; str0(r, args->filename); r->a[1] = args->mode;
        r->a[2] = args->dev; return keep(r, 0);""",
    "mknod": """
        r->a[0] = (u64)(s64)-100; str0(r, args->filename); r->a[1] = args->mode;
        r->a[2] = args->dev; return keep(r, 0);""",
    "execve": "str0(r, args->filename); read_argv(r, args->argv); return keep(r, 1);",
    "execveat": """
        r->a[0] = args->fd; r->a[1] = args->flags; str0(r, args->filename);
        read_argv(r, args->argv); return keep(r, 1);""",
    "openat": """
        str0(r, args->filename); r->a[0] = args->dfd; r->a[1] = args->flags;
        if (!cgroup_path(r, args->dfd)) return 0; return keep(r, 0);""",
    "openat2": """
        str0(r, args->filename); r->a[0] = args->dfd;
        u64 how = 0; bpf_probe_read_user(&how, sizeof(how), args->how); r->a[1] = how;
        if (!cgroup_path(r, args->dfd)) return 0; return keep(r, 0);""",
    "write": """
        u64 key = ((u64)r->pid << 32) | (u32)args->fd;
        if (!cgfds.lookup(&key)) return 0;
        r->a[0] = args->fd; r->a[1] = args->count;
        r->p[2] = (u64)args->buf; r->fixed = 1;
        return keep(r, 0);""",
    "mkdir": """
        str0(r, args->pathname); r->a[0] = (u64)(s64)-100; r->a[1] = args->mode;
        if (!cgroup_path(r, -100)) return 0; return keep(r, 0);""",
    "mkdirat": """
        str0(r, args->pathname); r->a[0] = args->dfd; r->a[1] = args->mode;
        if (!cgroup_path(r, args->dfd)) return 0; return keep(r, 0);""",
    "unlinkat": """
        str0(r, args->pathname); r->a[0] = args->dfd; r->a[1] = args->flag;
        if (!contained() && !cgroup_path(r, args->dfd)) return 0; return keep(r, 0);""",
    "unlink": """
        str0(r, args->pathname); r->a[0] = (u64)(s64)-100;
        if (!contained() && !cgroup_path(r, -100)) return 0; return keep(r, 0);""",
}

_READ_ARGV = r"""
static __always_inline void read_argv(struct rec_t *r, const char *const *argv) {
    #pragma unroll
    for (int i = 0; i < ARGC; i++) {
        const char *p = 0;
        if (bpf_probe_read_user(&p, sizeof(p), &argv[i]) != 0 || !p) break;
        bpf_probe_read_user_str(r->argv[i], ARGL, p);
        r->argc = i + 1;
    }
}
"""

BY_TGID = ("execve", "execveat")


class Record(ct.Structure):
    """The C struct rec_t, byte for byte."""

    _fields_ = [
        ("ts", ct.c_uint64),
        ("cgroup_id", ct.c_uint64),
        ("ret", ct.c_int64),
        ("a", ct.c_uint64 * 4),
        ("p", ct.c_uint64 * 4),
        ("trace_id", ct.c_uint32),
        ("pid", ct.c_uint32),
        ("tid", ct.c_uint32),
        ("ppid", ct.c_uint32),
        ("nr", ct.c_uint32),
        ("argc", ct.c_uint32),
        ("nulls", ct.c_uint32),
        ("fixed", ct.c_uint32),
        ("comm", ct.c_char * 16),
        ("s0", ct.c_char * STR),
        ("s1", ct.c_char * STR),
        ("s2", ct.c_char * SSTR),
        ("s3", ct.c_char * STR),
        ("argv", (ct.c_char * ARGL) * ARGC),
    ]


class Track(ct.Structure):
    _fields_ = [("trace_id", ct.c_uint32), ("ppid", ct.c_uint32), ("contained", ct.c_uint32)]


def tracefs() -> str | None:
    """The mounted tracefs, mounting it when allowed (None when there is none)."""
    for path in TRACEFS:
        if os.path.isdir(os.path.join(path, "events")):
            return path
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(
            ["mount", "-t", "tracefs", "nodev", TRACEFS[0]],
            capture_output=True,
            timeout=10,
            check=False,
        )
    return TRACEFS[0] if os.path.isdir(os.path.join(TRACEFS[0], "events")) else None


def headers_dir() -> str:
    return f"/lib/modules/{os.uname().release}/build"


def missing_tracepoints(root: str) -> list[str]:
    """Our syscall tracepoints this kernel does not have."""
    out = []
    for _name, tp in SYSCALLS:
        for side in ("enter", "exit"):
            if not os.path.isdir(f"{root}/events/syscalls/sys_{side}_{tp}"):
                out.append(tp)
                break
    for ev in ("sched/sched_process_fork", "sched/sched_process_exit", "syscalls/sys_enter_close"):
        if not os.path.isdir(f"{root}/events/{ev}"):
            out.append(ev.split("/")[1])
    return out


def program(skip: Sequence[str] = ()) -> str:
    """The C source: prologue, then one enter/exit pair per syscall not in ``skip``."""
    text = _PROLOGUE % {
        "STR": STR,
        "SSTR": SSTR,
        "ARGC": ARGC,
        "ARGL": ARGL,
        "NR_OPENAT": NR["openat"],
        "NR_OPENAT2": NR["openat2"],
        "NR_CLONE": NR["clone"],
        "NR_CLONE3": NR["clone3"],
        "NR_PIVOT_ROOT": NR["pivot_root"],
        "NR_CHROOT": NR["chroot"],
        "NR_SETNS": NR["setns"],
        "NR_FORK": NR_FORK,
        "NR_EXIT": NR_EXIT,
    }
    parts = [text, _READ_ARGV]
    for name, tp in SYSCALLS:
        if tp in skip:
            continue
        nr = NR[name]
        by_tgid = 1 if name in BY_TGID else 0
        parts.append(
            f"TRACEPOINT_PROBE(syscalls, sys_enter_{tp}) {{\n"
            f"    struct rec_t *r = begin({nr});\n    if (!r) return 0;\n"
            f"    {_ENTER[name].strip()}\n}}\n"
            f"TRACEPOINT_PROBE(syscalls, sys_exit_{tp}) {{\n"
            f"    return done(args->ret, {nr}, {by_tgid});\n}}\n"
        )
    return "\n".join(parts)


def _s(buf: bytes) -> str:
    return buf.split(b"\0", 1)[0].decode("utf-8", "replace")


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _int32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >= 1 << 31 else v


def raw_args(name: str, r: Record) -> dict[str, Any]:
    """The raw arguments of one record under probes.decode's keys."""
    a = list(r.a)
    nul = r.nulls
    s0 = None if nul & 1 else _s(r.s0)
    s1 = None if nul & 2 else _s(r.s1)
    if name in ("clone", "unshare"):
        return {"flags": a[0]}
    if name == "clone3":
        return {"flags": a[0], "exit_signal": a[1]}
    if name == "setns":
        return {"fd": _int32(a[0]), "nstype": a[1] & 0xFFFFFFFF}
    if name == "mount":
        return {
            "source": s0,
            "target": s1,
            "fstype": None if nul & 4 else _s(r.s2),
            "flags": a[0],
            "data": None if nul & 8 else _s(r.s3),
        }
    if name == "umount2":
        return {"target": s0, "flags": a[0] & 0xFFFFFFFF}
    if name == "pivot_root":
        return {"new_root": s0, "put_old": s1}
    if name == "chroot":
        return {"path": s0}
    if name in ("sethostname", "setdomainname"):
        return {
            "name": None
            if s0 is None
            else r.s0[: max(0, _int32(a[0]))].decode("utf-8", "replace").split("\0")[0]
        }
    if name in ("mknodat", "mknod"):
        out: dict[str, Any] = {"path": s0, "mode": a[1], "dev": a[2]}
        if name == "mknodat":
            out["dfd"] = _int32(a[0])
        return out
    if name in ("execve", "execveat"):
        out = {"filename": s0, "argv": [_s(bytes(r.argv[i])) for i in range(min(r.argc, ARGC))]}
        if name == "execveat":
            out["dfd"] = _int32(a[0])
            out["flags"] = a[1]
        return out
    if name in ("openat", "openat2"):
        return {"dfd": _int32(a[0]), "path": s0, "flags": a[1]}
    if name == "write":
        return {"fd": _int32(a[0]), "data": _s(bytes(r.s2)[: min(a[1], SSTR - 1)])}
    if name == "mkdir":
        return {"path": s0, "mode": a[1]}
    if name == "mkdirat":
        return {"dfd": _int32(a[0]), "path": s0, "mode": a[1]}
    if name == "unlinkat":
        return {"dfd": _int32(a[0]), "path": s0, "flags": a[1]}
    if name == "unlink":
        return {"path": s0}
    return {}


_NAMES = {i: name for i, (name, _tp) in enumerate(SYSCALLS)}
_NAMES[NR_FORK] = "fork"
_NAMES[NR_EXIT] = "exit"
_NS_CHANGING = ("unshare", "setns", "execve", "execveat")


def to_event(r: Record, ns: dict[str, int]) -> TraceEvent:
    name = _NAMES.get(r.nr, f"nr{r.nr}")
    raw = {"child_pid": int(r.a[0])} if name == "fork" else raw_args(name, r)
    return TraceEvent(
        ts=r.ts / 1e9,
        pid=r.pid,
        tid=r.tid,
        ppid=r.ppid,
        comm=_s(r.comm),
        syscall=name,
        args={} if name == "exit" else decode(name, raw),
        ret=0 if name in ("fork", "exit") else _signed(r.ret & 0xFFFFFFFFFFFFFFFF),
        ns=ns,
        cgroup_id=r.cgroup_id,
    )


class _Session:
    """One trace in progress: its records, collected by the poller thread."""

    def __init__(self, trace_id: int) -> None:
        self.trace_id = trace_id
        self.records: list[TraceEvent] = []
        self.ns_cache: dict[int, dict[str, int]] = {}
        self.ns_unknown = 0  # records of processes gone before /proc/<pid>/ns was read


def preflight() -> tuple[str, list[str]]:
    """What bcc needs here, checked without compiling: (tracefs root, notes).

    Raises Unavailable naming the first thing missing (root, tracefs, headers, bcc itself,
    an essential tracepoint). `conform doctor` reports the same checks.
    """
    if os.geteuid() != 0:
        raise Unavailable("bcc needs root (BPF programs and tracefs)")
    root = tracefs()
    if root is None:
        raise Unavailable("tracefs is not mounted at /sys/kernel/tracing and cannot be mounted")
    if not os.path.isdir(os.path.join(headers_dir(), "include")):
        raise Unavailable(
            f"no kernel headers at {headers_dir()} (make setup links Debian's 6.1 headers)"
        )
    if shutil.which("bash") is None:
        raise Unavailable("bash is needed for the launch shim")
    notes = tracepoint_notes(root)
    try:
        import bcc  # noqa: F401
    except ImportError as e:
        raise Unavailable(
            f"bcc is not importable ({e}): install python3-bpfcc, use a venv with "
            "--system-site-packages"
        ) from None
    return root, notes


def tracepoint_notes(root: str) -> list[str]:
    """Notes for the syscall tracepoints this kernel lacks; Unavailable if one is essential."""
    missing = missing_tracepoints(root)
    essential = [m for m in missing if m in ESSENTIAL or m.startswith(("sched_", "sys_"))]
    if essential:
        raise Unavailable(f"tracepoints absent on this kernel: {', '.join(essential)}")
    return [f"tracepoint sys_enter_{m} absent on this kernel: not traced" for m in missing]


class BccTracer:
    """The compiled program, its poller thread, and the traces it is collecting."""

    name = "bcc"

    def __init__(self) -> None:
        root, self.notes = preflight()
        from bcc import BPF

        skip = missing_tracepoints(root)
        started = time.monotonic()
        with tempfile.NamedTemporaryFile(prefix="conform-bcc-", suffix=".log") as log:
            try:
                with _stderr_to(log.name):
                    self.bpf = BPF(text=program(skip).encode())
            except Exception as e:
                why = _compile_error(log.name) or (str(e).strip().splitlines() or ["?"])[-1]
                raise Unavailable(f"the BPF program was refused: {why}") from None
        #: compile + load + attach of every tracepoint, in seconds
        self.compile_seconds = time.monotonic() - started
        self.tracked = self.bpf[b"tracked"]
        self.lost = self.bpf[b"lost"]
        self._sessions: dict[int, _Session] = {}
        self._lock = threading.Lock()
        self._next_id = 1
        self._generation = 0
        self._gen_cond = threading.Condition()
        self._closed = threading.Event()
        self._wake = threading.Event()
        self.bpf[b"events"].open_ring_buffer(self._on_record)
        self._thread = threading.Thread(target=self._poll, name="conform-bcc-poll", daemon=True)
        self._thread.start()
        # bcc registered its own cleanup at exit; ours runs first (atexit is last in, first
        # out): the poller must stop before the ring buffer is freed under it (a SIGSEGV
        # at interpreter exit otherwise)
        atexit.register(self.close)

    # -- poller --------------------------------------------------------------------------
    def _on_record(self, _ctx: Any, data: Any, _size: int) -> None:
        r = ct.cast(data, ct.POINTER(Record)).contents
        with self._lock:
            session = self._sessions.get(r.trace_id)
        if session is None:
            return
        name = _NAMES.get(r.nr, "")
        ns = session.ns_cache.get(r.pid)
        if ns is None or name in _NS_CHANGING:
            ns = read_ns(r.pid) if name != "exit" else (ns or {})
            session.ns_cache[r.pid] = ns
        if name == "fork":  # read the child's now: it may be gone by its first record
            child = int(r.a[0])
            session.ns_cache[child] = read_ns(child)
        if not ns and name != "exit":
            session.ns_unknown += 1
        session.records.append(to_event(r, dict(ns)))

    def _poll(self) -> None:
        """Consume the ring buffer every POLL_INTERVAL, or at once when a trace ends.

        Why not a blocking poll: a trace that ends must know its last records were read, and
        a blocking poll on an empty buffer would hold it for the poll's whole timeout (100 ms
        per runtime command); a consume of an empty buffer costs no syscall.
        """
        while not self._closed.is_set():
            try:
                self.bpf.ring_buffer_consume()
            except Exception:  # a bad record must not stop the poller
                time.sleep(0.05)
            with self._gen_cond:
                self._generation += 1
                self._gen_cond.notify_all()
            self._wake.wait(POLL_INTERVAL)
            self._wake.clear()

    def _drain(self, timeout: float) -> bool:
        """Wait for two complete consumes to start and end after now: everything emitted
        before this call has then been read."""
        deadline = time.monotonic() + timeout
        with self._gen_cond:
            target = self._generation + 2
            while self._generation < target:
                self._wake.set()  # no pause between the two consumes
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._gen_cond.wait(min(left, POLL_INTERVAL))
            return True

    # -- sessions --------------------------------------------------------------------------
    def _register(self, pid: int) -> _Session:
        with self._lock:
            trace_id = self._next_id
            self._next_id += 1
            session = _Session(trace_id)
            self._sessions[trace_id] = session
        self.tracked[ct.c_uint32(pid)] = Track(trace_id, os.getpid(), 0)
        return session

    def _end(self, session: _Session, timeout: float) -> tuple[list[str], int]:
        notes = []
        if not self._drain(timeout):
            notes.append(f"the ring buffer was not drained within {timeout:g}s")
        survivors = []
        for k, v in list(self.tracked.items()):
            if v.trace_id == session.trace_id:
                survivors.append(k.value)
                with contextlib.suppress(KeyError):
                    del self.tracked[k]
        with self._lock:
            self._sessions.pop(session.trace_id, None)
        lost = 0
        with contextlib.suppress(KeyError):
            key = ct.c_uint32(session.trace_id)
            lost = int(self.lost[key].value)
            del self.lost[key]
        procs = sorted(p for p in survivors if _is_process(p))
        if procs:
            notes.append(
                f"{len(procs)} process(es) of the tree outlived the command (pids "
                f"{', '.join(map(str, procs[:8]))}): their later syscalls are not traced"
            )
        if lost:
            notes.append(f"{lost} record(s) lost (ring buffer or pending table full)")
        return notes, lost

    def members(self, trace_id: int) -> list[int]:
        """The tids the kernel side still follows for one trace."""
        return [k.value for k, v in list(self.tracked.items()) if v.trace_id == trace_id]

    def spawn(self, argv: Sequence[str], **popen: Any) -> BccTracee:
        """Start ``argv`` behind a shim that waits until its pid is tracked, then execs.

        The shim is bash in POSIX mode (named "sh": no startup files, not even $BASH_ENV)
        reading one line from a pipe; it does nothing traced before its exec.
        """
        if self._closed.is_set():
            raise RuntimeError("the bcc tracer is closed")
        argv = [str(a) for a in argv]
        if not argv:
            raise ValueError("empty command")
        exe = popen.pop("executable", None) or argv[0]
        path = (popen.get("env") or os.environ).get("PATH", os.defpath)
        found = exe if "/" in exe else shutil.which(exe, path=path)
        if found is None or not os.path.exists(found):
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), exe)
        if os.path.isdir(found) or not os.access(found, os.X_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), exe)
        r, w = os.pipe()
        script = f'read -r _ <&{r}; exec {r}<&-; exec -a "$0" "$@"'
        shim = ["sh", "-c", script, argv[0], os.path.abspath(found), *argv[1:]]
        popen["pass_fds"] = (*popen.get("pass_fds", ()), r)
        try:
            proc = subprocess.Popen(shim, executable=shutil.which("bash") or "/bin/bash", **popen)
        except BaseException:
            os.close(r)
            os.close(w)
            raise
        os.close(r)
        notes = list(self.notes)
        try:
            session = self._register(proc.pid)
        except Exception as e:  # the command still runs: untraced, and said so
            session = _Session(0)
            notes.append(f"could not register pid {proc.pid} with the tracer: {e}")
        finally:
            with contextlib.suppress(OSError):
                os.write(w, b"\n")
            os.close(w)
        return BccTracee(self, proc, session, notes)

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
        """Run ``argv`` to completion; on timeout every process of its tree is killed.

        (The process group alone would miss a container init in its own session.)
        """
        feed = stdin if isinstance(stdin, bytes) else None
        tracee = self.spawn(
            argv,
            stdin=subprocess.PIPE if feed is not None else stdin,
            stdout=stdout,
            stderr=stderr,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        try:
            out, err = tracee.proc.communicate(feed, timeout=timeout)
        except subprocess.TimeoutExpired:
            tracee.kill()
            try:
                out, err = tracee.proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:  # a pipe still held open: give up on it
                out, err = None, None
            trace = tracee.finish()
            trace.notes.append(
                f"the command did not finish within {timeout:g}s and its tree was killed"
            )
            raise CommandTimeout(
                f"`{' '.join(map(str, argv))}` did not finish within {timeout:g}s",
                trace,
                out,
                err,
            ) from None
        trace = tracee.finish()
        return subprocess.CompletedProcess(list(argv), tracee.proc.returncode, out, err), trace

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._wake.set()
        self._thread.join(timeout=2)
        # Each tracepoint detach waits for an RCU grace period (~70 ms here): one by one
        # that is 3 s; in parallel (the ctypes calls release the GIL) about one period.
        points = list(self.bpf.tracepoint_fds)
        if points:

            def detach(tp: bytes) -> None:
                with contextlib.suppress(Exception):
                    self.bpf.detach_tracepoint(tp)

            try:
                from concurrent.futures import ThreadPoolExecutor

                with ThreadPoolExecutor(max_workers=min(32, len(points))) as pool:
                    list(pool.map(detach, points))
            except RuntimeError:  # at interpreter exit no thread pool starts: one by one
                for tp in points:
                    detach(tp)
        with contextlib.suppress(Exception):
            self.bpf.cleanup()


class BccTracee:
    """A command started under the bcc tracer."""

    def __init__(
        self, tracer: BccTracer, proc: subprocess.Popen[Any], session: _Session, notes: list[str]
    ) -> None:
        self.tracer = tracer
        self.proc = proc
        self.pid = proc.pid
        self._session = session
        self._notes = notes
        self._trace: Trace | None = None

    def kill(self, rounds: int = 20) -> None:
        """SIGKILL the command's group and every process of its tree that left it."""
        kill_tree(self.proc)
        trace_id = self._session.trace_id
        for _ in range(rounds if trace_id else 0):
            tids = self.tracer.members(trace_id)
            if not tids:
                break
            for tid in tids:
                with contextlib.suppress(OSError):
                    os.kill(tid, signal.SIGKILL)
            time.sleep(0.05)

    def finish(self, timeout: float = 10.0) -> Trace:
        if self._trace is not None:
            return self._trace
        lost = 0
        notes = list(self._notes)
        if self._session.trace_id:
            more, lost = self.tracer._end(self._session, timeout)
            notes += more
        if self._session.ns_unknown:
            notes.append(
                f"{self._session.ns_unknown} record(s) without namespaces: the process was "
                "gone before /proc/<pid>/ns could be read"
            )
        events = sorted(self._session.records, key=lambda e: e.ts)
        self._trace = Trace("bcc", events, lost=lost, notes=notes, root_pid=self.pid)
        return self._trace


def _is_process(tid: int) -> bool:
    try:
        with open(f"/proc/{tid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Tgid:"):
                    return int(line.split()[1]) == tid
    except (OSError, ValueError):
        return False
    return False


@contextlib.contextmanager
def _stderr_to(path: str) -> Any:
    """bcc's compiler prints warnings about the older headers on fd 2: keep them off the
    user's terminal, in a file the refusal message can quote from."""
    saved = os.dup(2)
    try:
        with open(path, "wb") as sink:
            os.dup2(sink.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _compile_error(path: str) -> str:
    with contextlib.suppress(OSError):
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = [ln.strip() for ln in f if "error" in ln.lower()]
        if lines:
            return lines[0][:200]
    return ""


def create() -> BccTracer:
    return BccTracer()


__all__ = ["AT_FDCWD", "BccTracee", "BccTracer", "create"]
