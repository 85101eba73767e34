"""Seccomp profiles: docker JSON -> OCI dict -> a filter on the real kernel.

Every filter is loaded in a forked child (never in the pytest process), which
reports back through a pipe: either the JSON result of a small function run
under the filter, or the output of a program it exec'd.
"""

from __future__ import annotations

import ctypes
import errno
import importlib.util
import json
import os
import platform
import resource
import select
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from runtime_ref import seccomp
from runtime_ref.seccomp import SeccompError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

BUSYBOX = "/bin/busybox"
# docker's default capability set (what `docker run` gives a container).
DEFAULT_CAPS = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
]
MACHINE = platform.machine()
# Syscalls without a Python (or glibc) wrapper, by number.
SYSCALL_NUMBERS = {
    "x86_64": {
        "keyctl": 250,
        "add_key": 248,
        "ptrace": 101,
        "clone3": 435,
        "unshare": 272,
        "clone": 56,
    },
    "aarch64": {
        "keyctl": 219,
        "add_key": 217,
        "ptrace": 117,
        "clone3": 435,
        "unshare": 97,
        "clone": 220,
    },
}
NR = SYSCALL_NUMBERS.get(MACHINE, {})
needs_numbers = pytest.mark.skipif(not NR, reason=f"no syscall numbers for {MACHINE} here")
needs_libseccomp = pytest.mark.skipif(
    importlib.util.find_spec("seccomp") is None,
    reason="the seccomp module (Debian's python3-seccomp) is not installed",
)

CLONE_FILES = 0x00000400
CLONE_NEWUSER = 0x10000000
KEY_SPEC_PROCESS_KEYRING = -2
KEY_SPEC_SESSION_KEYRING = -3
KEYCTL_GET_KEYRING_ID = 0
PTRACE_TRACEME = 0
PR_SET_DUMPABLE = 4

libc = ctypes.CDLL(None, use_errno=True)


def raw(name: str, *args: int | bytes) -> int:
    """Call syscall `name` by number; its errno, or 0 when it succeeded."""
    cargs = [a if isinstance(a, bytes) else ctypes.c_long(a) for a in args]
    ctypes.set_errno(0)
    ret = libc.syscall(ctypes.c_long(NR[name]), *cargs)
    if name == "clone" and ret == 0:  # pragma: no cover - a new child: the filter let it be
        os._exit(0)
    if name == "clone" and ret > 0:
        os.waitpid(ret, 0)
    return ctypes.get_errno() if ret == -1 else 0


def wrapped(fn: str, *args: int) -> int:
    """Call a glibc wrapper (unshare, personality...); its errno, or 0."""
    ctypes.set_errno(0)
    ret = getattr(libc, fn)(*[ctypes.c_long(a) for a in args])
    return ctypes.get_errno() if ret == -1 else 0


# -- running things under a filter in a child -------------------------------------------------


def _no_core_dumps() -> None:
    """SIGSYS dumps core by default: not into the work tree."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)


def _collect(pid: int, fd: int, timeout: float = 60) -> tuple[int, bytes]:
    """Read `fd` to EOF (killing the child after `timeout`), then reap it."""
    chunks = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            os.kill(pid, signal.SIGKILL)
            break
        if not select.select([fd], [], [], left)[0]:
            continue
        data = os.read(fd, 65536)
        if not data:
            break
        chunks.append(data)
    os.close(fd)
    _, status = os.waitpid(pid, 0)
    return status, b"".join(chunks)


class Outcome:
    def __init__(self, status: int, data: bytes) -> None:
        self.status = status
        self.signal = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        self.message = json.loads(data) if data else None

    @property
    def ok(self) -> object:
        assert self.message is not None and "ok" in self.message, (self.status, self.message)
        return self.message["ok"]


def under_filter(prepared: seccomp.Prepared | None, body: Callable[[], object]) -> Outcome:
    """Fork; the child loads `prepared` (None: no filter) and sends back body()'s result."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(r)
        code = 0
        try:
            _no_core_dumps()
            if prepared is not None:
                seccomp.load(prepared)
            msg = {"ok": body()}
        except BaseException as e:
            msg, code = {"error": f"{type(e).__name__}: {e}"}, 1
        try:
            os.write(w, json.dumps(msg).encode())
        finally:
            os._exit(code)
    os.close(w)
    return Outcome(*_collect(pid, r))


def exec_under_filter(prepared: seccomp.Prepared, argv: list[str]) -> tuple[int, str]:
    """Fork; the child loads `prepared` and execs argv. (exit code, its stdout)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(r)
            os.dup2(w, 1)
            os.close(w)
            _no_core_dumps()
            seccomp.load(prepared)
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    os.close(w)
    status, out = _collect(pid, r)
    return os.waitstatus_to_exitcode(status), out.decode()


def default(caps: list[str] = DEFAULT_CAPS) -> seccomp.Prepared:
    return seccomp.prepare(seccomp.default_profile(caps))


def write_profile(tmp_path: Path, profile: object, name: str = "profile.json") -> str:
    path = tmp_path / name
    path.write_text(profile if isinstance(profile, str) else json.dumps(profile))
    return str(path)


# -- the default profile on the kernel ------------------------------------------------------


@needs_libseccomp
def test_default_profile_runs_busybox_true() -> None:
    assert exec_under_filter(default(), [BUSYBOX, "true"]) == (0, "")


@needs_libseccomp
def test_default_profile_runs_a_busybox_pipeline() -> None:
    assert exec_under_filter(default(), [BUSYBOX, "sh", "-c", "echo ok | cat"]) == (0, "ok\n")


@needs_libseccomp
def test_default_profile_runs_python() -> None:
    code = (
        "import subprocess, threading\n"
        "t = threading.Thread(target=print, args=('thread',), kwargs={'flush': True})\n"
        "t.start(); t.join()\n"
        "subprocess.run(['/bin/busybox', 'echo', 'child'], check=True)"
    )
    assert exec_under_filter(default(), [sys.executable, "-S", "-c", code]) == (
        0,
        "thread\nchild\n",
    )


@needs_libseccomp
@needs_numbers
def test_without_a_filter_the_probes_do_not_fail_with_eperm() -> None:
    """The control: the EPERMs below come from the filter, not from the host."""

    def probe() -> dict[str, int]:
        return {
            "ptrace": raw("ptrace", PTRACE_TRACEME, 0, 0, 0),
            "clone3": raw("clone3", 0, 0),
            "unshare": raw("unshare", CLONE_NEWUSER),
            "keyctl": raw("keyctl", KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0),
        }

    got = under_filter(None, probe).ok
    assert got["ptrace"] == 0 and got["clone3"] == errno.EINVAL, got
    assert got["keyctl"] != errno.EPERM, got
    if got["unshare"] != 0:
        pytest.skip(f"this host refuses unshare(CLONE_NEWUSER): {errno.errorcode[got['unshare']]}")


@needs_libseccomp
@needs_numbers
def test_default_profile_denies_the_keyring() -> None:
    def probe() -> dict[str, int]:
        return {
            "keyctl": raw("keyctl", KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0),
            "add_key": raw(
                "add_key", b"user", b"rref-test", b"secret", 6, KEY_SPEC_PROCESS_KEYRING
            ),
        }

    assert under_filter(default(), probe).ok == {"keyctl": errno.EPERM, "add_key": errno.EPERM}


@needs_libseccomp
@needs_numbers
def test_default_profile_denies_new_namespaces_but_not_harmless_unshare() -> None:
    def probe() -> dict[str, int]:
        got = {
            "user": raw("unshare", CLONE_NEWUSER),
            "files": raw("unshare", CLONE_FILES),
            "clone": raw("clone", CLONE_NEWUSER | signal.SIGCHLD, 0, 0, 0, 0),
        }
        pid = os.fork()  # glibc's fork is a clone without namespace flags
        if pid == 0:  # pragma: no cover - the grandchild
            os._exit(7)
        got["fork"] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        return got

    assert under_filter(default(), probe).ok == {
        "user": errno.EPERM,
        "files": 0,
        "clone": errno.EPERM,
        "fork": 7,
    }


@needs_libseccomp
@needs_numbers
def test_cap_sys_admin_allows_unshare_of_a_user_namespace() -> None:
    prepared = default([*DEFAULT_CAPS, "CAP_SYS_ADMIN"])
    assert under_filter(prepared, lambda: raw("unshare", CLONE_NEWUSER)).ok == 0


@needs_libseccomp
@needs_numbers
def test_ptrace_needs_cap_sys_ptrace() -> None:
    def probe() -> int:
        return raw("ptrace", PTRACE_TRACEME, 0, 0, 0)

    assert under_filter(default(), probe).ok == errno.EPERM
    assert under_filter(default([*DEFAULT_CAPS, "CAP_SYS_PTRACE"]), probe).ok == 0


@needs_libseccomp
@needs_numbers
def test_clone3_gives_enosys_so_libc_falls_back_to_clone() -> None:
    assert under_filter(default(), lambda: raw("clone3", 0, 0)).ok == errno.ENOSYS


@needs_libseccomp
def test_personality_allows_only_the_safe_values() -> None:
    def probe() -> dict[str, int]:
        return {
            "query": wrapped("personality", 0xFFFFFFFF),
            "linux": wrapped("personality", 0),
            "no_randomize": wrapped("personality", 0x0040000),
        }

    assert under_filter(default(), probe).ok == {
        "query": 0,
        "linux": 0,
        "no_randomize": errno.EPERM,
    }


@needs_libseccomp
def test_default_profile_denies_mount_and_settime_without_caps() -> None:
    def probe() -> dict[str, int]:
        ts = (ctypes.c_long * 2)(0, 0)
        return {
            "mount": _errno_of(libc.mount, b"none", b"/", b"tmpfs", 0, None),
            "settime": _errno_of(libc.clock_settime, 0, ts),
            "chroot": _errno_of(libc.chroot, b"/"),
        }

    assert under_filter(default(), probe).ok == {
        "mount": errno.EPERM,
        "settime": errno.EPERM,
        "chroot": 0,
    }
    no_chroot = [c for c in DEFAULT_CAPS if c != "CAP_SYS_CHROOT"]
    assert under_filter(default(no_chroot), probe).ok["chroot"] == errno.EPERM


def _errno_of(fn: Callable[..., int], *args: object) -> int:
    ctypes.set_errno(0)
    return ctypes.get_errno() if fn(*args) == -1 else 0


@needs_libseccomp
def test_load_imports_nothing_so_it_works_after_the_host_is_gone(tmp_path: Path) -> None:
    """prepare() before chroot (as before pivot_root), load() and execve after it."""
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(BUSYBOX, root / "busybox")
    script = textwrap.dedent(f"""
        import os, sys
        from runtime_ref import seccomp
        assert "seccomp" not in sys.modules, "imported eagerly"
        p = seccomp.prepare(seccomp.default_profile({DEFAULT_CAPS!r}))
        before = set(sys.modules)
        os.chroot({str(root)!r})
        os.chdir("/")
        sys.path[:] = []
        seccomp.load(p)
        assert set(sys.modules) == before, set(sys.modules) - before
        os.execv("/busybox", ["busybox", "echo", "exec'd"])
    """)
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=os.path.dirname(os.path.dirname(seccomp.__file__)),
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "exec'd\n", "")


def _no_new_privs() -> int:
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith("NoNewPrivs:")).split()[1])


@needs_libseccomp
def test_no_new_privs_is_set_unless_asked_not_to() -> None:
    with_nnp = default()
    without = seccomp.prepare(seccomp.default_profile(DEFAULT_CAPS), no_new_privs=False)
    assert under_filter(with_nnp, _no_new_privs).ok == 1
    assert under_filter(without, _no_new_privs).ok == 0  # root still holds CAP_SYS_ADMIN

    def as_nobody(prepared: seccomp.Prepared) -> Callable[[], object]:
        def body() -> object:
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)  # no capabilities left
            try:
                seccomp.load(prepared)
            except SeccompError as e:
                return str(e)
            return _no_new_privs()

        return body

    assert under_filter(None, as_nobody(with_nnp)).ok == 1
    assert under_filter(None, as_nobody(without)).ok == (
        "seccomp: cannot load the filter (Permission denied: the process needs no_new_privs "
        "or CAP_SYS_ADMIN)"
    )


# -- custom profiles, actions and argument comparisons ----------------------------------------

MKDIR_BLOCKED = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
}


def _mkdir_probe(base: str) -> dict[str, object]:
    out: dict[str, object] = {}
    try:
        os.mkdir(os.path.join(base, "d"))
        out["mkdir"] = 0
    except OSError as e:
        out["mkdir"] = e.errno
    path = os.path.join(base, "f")
    with open(path, "w") as f:
        f.write("data")
    with open(path) as f:
        out["read"] = f.read()
    out["listdir"] = sorted(os.listdir(base))
    os.unlink(path)
    return out


@needs_libseccomp
def test_a_custom_profile_blocks_only_mkdir(tmp_path: Path) -> None:
    oci = seccomp.to_oci(seccomp.load_profile(write_profile(tmp_path, MKDIR_BLOCKED)), DEFAULT_CAPS)
    work = tmp_path / "work"
    work.mkdir()
    got = under_filter(seccomp.prepare(oci), lambda: _mkdir_probe(str(work))).ok
    assert got == {"mkdir": errno.EPERM, "read": "data", "listdir": ["f"]}
    assert under_filter(None, lambda: _mkdir_probe(str(work))).ok["mkdir"] == 0


@needs_libseccomp
def test_names_libseccomp_does_not_know_are_skipped(tmp_path: Path) -> None:
    profile = json.loads(json.dumps(MKDIR_BLOCKED))
    profile["syscalls"][0]["names"] += ["rref_no_such_syscall", "mkdir"]
    oci = seccomp.to_oci(seccomp.load_profile(write_profile(tmp_path, profile)), [])
    prepared = seccomp.prepare(oci)
    assert prepared.skipped == ["rref_no_such_syscall"]
    work = tmp_path / "work"
    work.mkdir()
    assert under_filter(prepared, lambda: _mkdir_probe(str(work))).ok["mkdir"] == errno.EPERM


def _lseek_rule(action: str, **extra: object) -> dict[str, object]:
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": [],
        "syscalls": [{"names": ["lseek"], "action": action, **extra}],
    }


def _lseek_probe(offsets: list[int]) -> list[object]:
    """lseek(/dev/null, offset) for each offset: "ok" or the errno's name."""
    out: list[object] = []
    fd = os.open("/dev/null", os.O_RDONLY)
    for v in offsets:
        try:
            os.lseek(fd, v, os.SEEK_SET)
            out.append("ok")
        except OSError as e:
            out.append(errno.errorcode[e.errno])
    os.close(fd)
    return out


OFFSETS = [0, 7, 18, 63, 511]
CMP = [
    ("SCMP_CMP_EQ", 18, 0, lambda v: v == 18),
    ("SCMP_CMP_NE", 18, 0, lambda v: v != 18),
    ("SCMP_CMP_LT", 18, 0, lambda v: v < 18),
    ("SCMP_CMP_LE", 18, 0, lambda v: v <= 18),
    ("SCMP_CMP_GT", 18, 0, lambda v: v > 18),
    ("SCMP_CMP_GE", 18, 0, lambda v: v >= 18),
    ("SCMP_CMP_MASKED_EQ", 0x1, 0x1, lambda v: v & 0x1 == 0x1),  # odd offsets
]


@needs_libseccomp
@pytest.mark.parametrize(("op", "value", "value_two", "matches"), CMP, ids=[c[0] for c in CMP])
def test_argument_comparisons(
    op: str, value: int, value_two: int, matches: Callable[[int], bool]
) -> None:
    rule = _lseek_rule(
        "SCMP_ACT_ERRNO",
        errnoRet=errno.EDOM,
        args=[{"index": 1, "value": value, "valueTwo": value_two, "op": op}],
    )
    prepared = seccomp.prepare(seccomp.to_oci(rule, []))
    expected = ["EDOM" if matches(v) else "ok" for v in OFFSETS]
    assert under_filter(prepared, lambda: _lseek_probe(OFFSETS)).ok == expected


@needs_libseccomp
def test_several_conditions_on_one_argument_mean_any_of_them() -> None:
    rule = _lseek_rule(
        "SCMP_ACT_ERRNO",
        args=[
            {"index": 1, "value": 7, "op": "SCMP_CMP_EQ"},
            {"index": 1, "value": 511, "op": "SCMP_CMP_EQ"},
        ],
    )
    prepared = seccomp.prepare(seccomp.to_oci(rule, []))
    assert under_filter(prepared, lambda: _lseek_probe(OFFSETS)).ok == [
        "ok",
        "EPERM",
        "ok",
        "ok",
        "EPERM",
    ]


ACTIONS = [
    ("SCMP_ACT_ERRNO", {"errnoRet": errno.EACCES}, None, ["EACCES"]),
    ("SCMP_ACT_ERRNO", {}, None, ["EPERM"]),
    ("SCMP_ACT_TRACE", {}, None, ["ENOSYS"]),  # no tracer attached: the kernel says ENOSYS
    ("SCMP_ACT_LOG", {}, None, ["ok"]),
    ("SCMP_ACT_TRAP", {}, signal.SIGSYS, None),
    ("SCMP_ACT_KILL", {}, signal.SIGSYS, None),
    ("SCMP_ACT_KILL_THREAD", {}, signal.SIGSYS, None),
    ("SCMP_ACT_KILL_PROCESS", {}, signal.SIGSYS, None),
]


@needs_libseccomp
@pytest.mark.parametrize(
    ("action", "extra", "sig", "result"),
    ACTIONS,
    ids=[a[0] + ("-errnoRet" if a[1] else "") for a in ACTIONS],
)
def test_actions(action: str, extra: dict, sig: int | None, result: list | None) -> None:
    prepared = seccomp.prepare(seccomp.to_oci(_lseek_rule(action, **extra), []))
    got = under_filter(prepared, lambda: _lseek_probe([18]))
    assert got.signal == sig, (got.status, got.message)
    if result is not None:
        assert got.ok == result


# -- bad profiles -----------------------------------------------------------------------------

BAD = [
    ("malformed", '{"defaultAction": ', "invalid JSON: Expecting value at line 1"),
    ("not-object", "[1, 2]", "not a JSON object"),
    ("no-default", {"syscalls": []}, "no defaultAction"),
    (
        "default-action",
        {"defaultAction": "SCMP_ACT_NOPE"},
        "defaultAction: unknown action 'SCMP_ACT_NOPE'",
    ),
    (
        "rule-action",
        {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "ALLOW"}]},
        "syscalls[0].action: unknown action 'ALLOW'",
    ),
    (
        "notify",
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_NOTIFY"}],
        },
        "SCMP_ACT_NOTIFY is not supported",
    ),
    (
        "op",
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {
                    "names": ["read"],
                    "action": "SCMP_ACT_ERRNO",
                    "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ABOUT"}],
                }
            ],
        },
        "syscalls[0].args[0]: unknown op 'SCMP_CMP_ABOUT'",
    ),
    (
        "index",
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {
                    "names": ["read"],
                    "action": "SCMP_ACT_ERRNO",
                    "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}],
                }
            ],
        },
        "index must be 0 to 5",
    ),
    (
        "value",
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {
                    "names": ["read"],
                    "action": "SCMP_ACT_ERRNO",
                    "args": [{"index": 0, "value": -1, "op": "SCMP_CMP_EQ"}],
                }
            ],
        },
        "value must be an unsigned 64-bit integer",
    ),
    (
        "errno-on-allow",
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "errnoRet": 1}],
        },
        "errnoRet is only valid with SCMP_ACT_ERRNO or SCMP_ACT_TRACE",
    ),
    (
        "arch",
        {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["x86_64"]},
        "architectures: unknown architecture 'x86_64'",
    ),
    (
        "names",
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": "read", "action": "SCMP_ACT_ERRNO"}],
        },
        "names must be a list of syscall names",
    ),
    (
        "min-kernel",
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["read"], "action": "SCMP_ACT_ERRNO", "includes": {"minKernel": "four"}}
            ],
        },
        "minKernel: not a kernel version",
    ),
]


@pytest.mark.parametrize(("content", "needle"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_profiles_give_one_line(tmp_path: Path, content: object, needle: str) -> None:
    path = write_profile(tmp_path, content)
    with pytest.raises(SeccompError) as info:
        seccomp.load_profile(path)
    message = str(info.value)
    assert message.startswith(f"seccomp profile {path}: ") and needle in message, message
    assert "\n" not in message
    assert info.value.code == 125


def test_a_missing_profile_gives_one_line(tmp_path: Path) -> None:
    path = str(tmp_path / "absent.json")
    with pytest.raises(SeccompError, match=r"^seccomp profile .*absent\.json: No such file"):
        seccomp.load_profile(path)


def test_prepare_checks_an_oci_dict_too() -> None:
    with pytest.raises(SeccompError, match=r"^seccomp: syscalls\[0\]\.action: unknown action"):
        seccomp.prepare(
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["read"], "action": "SCMP_ACT_MAYBE"}],
            }
        )


# -- conversion (no kernel involved) --------------------------------------------------------


def _allowed(oci: dict) -> set[str]:
    """Names the OCI dict allows without conditions."""
    return {
        n
        for r in oci["syscalls"]
        if r["action"] == "SCMP_ACT_ALLOW" and not r.get("args")
        for n in r["names"]
    }


DANGEROUS = {
    "keyctl",
    "add_key",
    "request_key",
    "bpf",
    "perf_event_open",
    "ptrace",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "mount",
    "umount2",
    "pivot_root",
    "unshare",
    "setns",
    "clone",
    "clone3",
    "open_by_handle_at",
    "name_to_handle_at",
    "userfaultfd",
    "settimeofday",
    "clock_settime",
    "stime",
    "clock_adjtime",
    "personality",
    "lookup_dcookie",
    "quotactl",
    "vhangup",
    "mount_setattr",
    "open_tree",
    "move_mount",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
}


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_default_profile_allows_nothing_dangerous_with_docker_caps(arch: str) -> None:
    oci = seccomp.default_profile(DEFAULT_CAPS, arch=arch)
    assert oci["defaultAction"] == "SCMP_ACT_ERRNO" and oci["defaultErrnoRet"] == errno.EPERM
    allowed = _allowed(oci)
    assert not allowed & DANGEROUS
    assert {
        "execve",
        "read",
        "write",
        "openat",
        "mmap",
        "exit_group",
        "wait4",
        "pipe2",
        "rt_sigaction",
        "futex",
        "getdents64",
        "newfstatat",
        "statx",
        "chroot",
    } <= allowed
    conditional = {r["names"][0] for r in oci["syscalls"] if r.get("args")}
    assert conditional == {"clone", "unshare", "personality", "socket"}


def test_default_profile_architectures() -> None:
    assert seccomp.default_profile([], arch="x86_64")["architectures"] == [
        "SCMP_ARCH_X86_64",
        "SCMP_ARCH_X86",
        "SCMP_ARCH_X32",
    ]
    assert seccomp.default_profile([], arch="arm64")["architectures"] == [
        "SCMP_ARCH_AARCH64",
        "SCMP_ARCH_ARM",
    ]
    s390 = seccomp.default_profile([], arch="s390x")
    assert [r["args"][0]["index"] for r in s390["syscalls"] if r["names"] == ["clone"]] == [1]


@pytest.mark.parametrize(
    ("cap", "names"),
    [
        (
            "CAP_SYS_ADMIN",
            {
                "mount",
                "umount2",
                "pivot_root",
                "unshare",
                "setns",
                "clone",
                "clone3",
                "bpf",
                "perf_event_open",
                "fsopen",
                "move_mount",
                "quotactl",
            },
        ),
        ("CAP_SYS_PTRACE", {"ptrace", "process_vm_readv", "kcmp"}),
        ("CAP_SYS_MODULE", {"init_module", "finit_module", "delete_module"}),
        ("CAP_SYS_BOOT", {"reboot"}),
        ("CAP_SYS_TIME", {"settimeofday", "clock_settime", "stime", "clock_adjtime"}),
        ("CAP_DAC_READ_SEARCH", {"open_by_handle_at", "name_to_handle_at"}),
        ("CAP_BPF", {"bpf"}),
        ("CAP_SYS_TTY_CONFIG", {"vhangup"}),
    ],
)
def test_capabilities_unlock_their_syscalls(cap: str, names: set[str]) -> None:
    without = _allowed(seccomp.default_profile(DEFAULT_CAPS))
    with_cap = _allowed(seccomp.default_profile([*DEFAULT_CAPS, cap.lower()[4:]]))
    assert not names & without
    assert names <= with_cap
    never = {"keyctl", "add_key", "request_key", "kexec_load", "swapon", "acct", "userfaultfd"}
    assert not never & with_cap


def test_clone3_is_enosys_unless_cap_sys_admin() -> None:
    def clone3(caps: list[str]) -> list[dict]:
        return [r for r in seccomp.default_profile(caps)["syscalls"] if "clone3" in r["names"]]

    assert clone3(DEFAULT_CAPS) == [
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS}
    ]
    assert [r["action"] for r in clone3(["CAP_SYS_ADMIN"])] == ["SCMP_ACT_ALLOW"]


def test_includes_and_excludes_follow_docker() -> None:
    profile = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {
                "names": ["a"],
                "action": "SCMP_ACT_ALLOW",
                "includes": {"caps": ["CAP_SYS_ADMIN", "CAP_NET_ADMIN"]},
            },
            {
                "names": ["b"],
                "action": "SCMP_ACT_ALLOW",
                "excludes": {"caps": ["CAP_SYS_ADMIN", "CAP_BPF"]},
            },
            {"names": ["c"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["arm64"]}},
            {"names": ["d"], "action": "SCMP_ACT_ALLOW", "excludes": {"arches": ["amd64"]}},
            {"names": ["e"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "5.4"}},
            {"names": ["f"], "action": "SCMP_ACT_ALLOW", "excludes": {"minKernel": "5.4"}},
            {"name": "g", "action": "SCMP_ACT_ALLOW", "args": None},
        ],
    }

    def names(caps: list[str], arch: str, kernel: str) -> list[str]:
        oci = seccomp.to_oci(profile, caps, arch=arch, kernel=kernel)
        return [n for r in oci["syscalls"] for n in r["names"]]

    assert names(["CAP_SYS_ADMIN"], "x86_64", "6.1.0") == ["e", "g"]
    assert names(["sys_admin", "net_admin"], "x86_64", "6.1.0") == ["a", "e", "g"]
    assert names([], "x86_64", "4.19.0-27-amd64") == ["b", "f", "g"]
    assert names([], "aarch64", "5.4") == ["b", "c", "d", "e", "g"]


def test_to_oci_output_is_an_oci_seccomp_dict() -> None:
    profile = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 38,
        "architectures": ["SCMP_ARCH_X86_64"],
        "flags": ["SECCOMP_FILTER_FLAG_LOG"],
        "syscalls": [
            {
                "names": ["umask"],
                "action": "SCMP_ACT_ALLOW",
                "comment": "x",
                "args": [{"index": 0, "value": 18, "op": "SCMP_CMP_EQ"}],
            }
        ],
    }
    assert seccomp.to_oci(profile, []) == {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 38,
        "architectures": ["SCMP_ARCH_X86_64"],
        "flags": ["SECCOMP_FILTER_FLAG_LOG"],
        "syscalls": [
            {
                "names": ["umask"],
                "action": "SCMP_ACT_ALLOW",
                "args": [{"index": 0, "value": 18, "valueTwo": 0, "op": "SCMP_CMP_EQ"}],
            }
        ],
    }


def test_profile_for_follows_docker_security_opt(tmp_path: Path) -> None:
    assert seccomp.profile_for("unconfined", DEFAULT_CAPS) is None
    assert seccomp.profile_for(None, DEFAULT_CAPS) == seccomp.default_profile(DEFAULT_CAPS)
    custom = seccomp.profile_for(write_profile(tmp_path, MKDIR_BLOCKED), DEFAULT_CAPS)
    assert custom is not None and custom["syscalls"][0]["names"] == ["mkdir", "mkdirat"]


@needs_libseccomp
@needs_numbers
def test_syscall_numbers_match_libseccomp() -> None:
    import seccomp as libseccomp

    for name, nr in NR.items():
        assert libseccomp.resolve_syscall(libseccomp.Arch.NATIVE, name) == nr, name


def test_builtin_profile_passes_validation() -> None:
    """default_profile() skips validation at start-up; this is where it is validated."""
    from runtime_ref import seccomp as rs

    profile = rs.load_profile(rs.DEFAULT_PROFILE)
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"
    assert rs.to_oci(profile, []) == rs.default_profile([])


def test_cache_key_ignores_key_order_and_sees_every_value() -> None:
    from runtime_ref.seccomp_bpf import cache_key

    a = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "A"}]}
    b = {"syscalls": [{"action": "A", "names": ["read"]}], "defaultAction": "SCMP_ACT_ERRNO"}
    assert cache_key(a) == cache_key(b) and len(cache_key(a)) == 32
    assert cache_key(a) != cache_key({**a, "defaultAction": "SCMP_ACT_KILL"})
