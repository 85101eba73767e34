"""Escape attempts from a default container (SEC-05..SEC-10).

Safety: every attempt is one that changes nothing even when it succeeds: files are opened
read-write but never written, the hostname is set to the name it already has, the module
is 256 zero bytes (no kernel loads it), the signal is 0, the block device is only read.
The host is reached for (SEC-08, SEC-09) only by stat, readlink and reading a marker file
the test made in its own conform directory. A runtime that lets one through shows it as a
success of the attempt, never as harm.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conformance import facts, mountinfo
from conformance.adapters.base import ContainerSpec
from conformance.errors import RuntimeFailure
from conformance.tests.support import ran, sh, started, token

#: Kernel tunables and triggers a container must not be able to open for writing.
WRITABLE_FROM_HOST = ("/proc/sys/vm/swappiness", "/proc/sysrq-trigger", "/sys/kernel/uevent_helper")


def _results(text: str) -> dict[str, str]:
    """`name=rc` lines of an attempt script (other output is the tools' own messages)."""
    out = {}
    for line in text.splitlines():
        key, sep, rc = line.partition("=")
        if sep and key.startswith("attempt:"):
            out[key.removeprefix("attempt:")] = rc.strip()
    return out


def _attempts(runtime, script: str) -> tuple[dict[str, str], str]:
    res = ran(runtime, ContainerSpec(argv=sh(script)), "escape attempts")
    return _results(res.stdout), res.stdout + res.stderr


@pytest.mark.behaviour("SEC-05")
def test_proc_sys_sysrq_and_sys_cannot_be_opened_for_writing(runtime):
    script = "".join(
        f'( exec 3<> {p} ) 2>/dev/null; echo "attempt:{p}=$?"\n' for p in WRITABLE_FROM_HOST
    )
    script += "grep -E ' /(proc/sys|sys) ' /proc/self/mountinfo\n"
    got, out = _attempts(runtime, script)
    opened = [p for p in WRITABLE_FROM_HOST if got.get(p) == "0"]
    assert not opened, f"opened for writing from inside: {opened}"
    assert len(got) == len(WRITABLE_FROM_HOST), out
    lines = [ln for ln in out.splitlines() if ln[:1].isdigit()]
    mounts = {
        m.mount_point: m
        for m in mountinfo.parse_mountinfo("\n".join(lines))
        if m.mount_point in ("/proc/sys", "/sys")
    }
    rw = [p for p, m in mounts.items() if "ro" not in m.options]
    assert mounts.keys() == {"/proc/sys", "/sys"}, f"mountinfo inside: {sorted(mounts)}"
    assert not rw, f"mounted read-write inside: {rw}"


@pytest.mark.behaviour("SEC-06")
def test_mount_and_unshare_are_refused(runtime):
    got, out = _attempts(
        runtime,
        "mount -t tmpfs conform /mnt 2>&1; echo attempt:mount=$?\n"
        "unshare -m true 2>&1; echo attempt:unshare-mount=$?\n",
    )
    allowed = [k for k, rc in got.items() if rc == "0"]
    assert len(got) == 2, out
    assert not allowed, f"a default container could: {allowed} ({out.strip()})"
    assert out.count("ermission denied") + out.count("Operation not permitted") >= 2, out


@pytest.mark.behaviour("SEC-11")
def test_user_namespace_unshare_is_refused(runtime):
    got, out = _attempts(runtime, "unshare -U true 2>&1; echo attempt:unshare-user=$?\n")
    assert got.get("unshare-user") not in (None, "0"), (
        f"a default container made a user namespace: {out.strip()}"
    )


def _root_device() -> tuple[int, int]:
    st = os.stat("/")
    return os.major(st.st_dev), os.minor(st.st_dev)


@pytest.mark.behaviour("SEC-07")
def test_raw_block_device_and_kcore_cannot_be_read(runtime):
    major, minor = _root_device()
    got, out = _attempts(
        runtime,
        f"mknod /tmp/conform-blk b {major} {minor} 2>/dev/null\n"
        "head -c 512 /tmp/conform-blk > /tmp/conform-got 2>&1; echo attempt:block=$?\n"
        "echo attempt:block-bytes=$(wc -c < /tmp/conform-got)\n"
        "echo attempt:kcore-bytes=$(head -c 64 /proc/kcore 2>/dev/null | wc -c)\n",
    )
    assert {"block", "block-bytes", "kcore-bytes"} <= got.keys(), out
    assert got["block"] != "0" or got["block-bytes"] == "0", (
        f"read the host's root device {major}:{minor} from inside ({got['block-bytes']} bytes)"
    )
    assert got["kcore-bytes"] == "0", f"/proc/kcore gave {got['kcore-bytes']} bytes inside"


@pytest.mark.behaviour("SEC-10")
def test_hostname_modules_and_outside_processes_are_out_of_reach(runtime):
    outside = subprocess.Popen(["sleep", "60"])
    try:
        got, out = _attempts(
            runtime,
            'hostname "$(hostname)" 2>&1; echo attempt:sethostname=$?\n'
            "head -c 256 /dev/zero > /tmp/conform.ko; insmod /tmp/conform.ko 2>&1; "
            "echo attempt:init_module=$?\n"
            f"kill -0 {outside.pid} 2>&1; echo attempt:signal-outside=$?\n",
        )
    finally:
        outside.kill()
        outside.wait()
    assert len(got) == 3, out
    allowed = [k for k, rc in got.items() if rc == "0"]
    assert not allowed, f"a default container could: {allowed} ({out.strip()})"
    assert "Operation not permitted" in out.split("attempt:init_module")[0], (
        f"init_module was not refused with EPERM: {out.strip()}"
    )


# ------------------------------------------------------------------ the host through a path

#: Enough `..` to climb from any directory of the host to its `/` (a path walk stops at the
#: process's root only when it passes through it: from a host directory it never does).
UP = "/.." * 40
#: What `stat -L` says of a file: dev:ino, and the device numbers of a device node.
IDENTITY = "%d:%i:%t:%T"
#: A line of busybox `stat -c %N`: '/proc/PID/what' -> 'target'.
_LINK = re.compile(r"^'(/proc/(\d+)/[^']+)' -> '(.*)'$")


@pytest.fixture
def host_marker(workspace) -> Iterator[tuple[str, str]]:
    """A file on the host, (absolute path, content), in a directory of its own under the
    session's conform directory; removed after the test, whatever its outcome."""
    d = Path(workspace.dir) / token("conform-escape")
    d.mkdir(mode=0o755)
    content = token("conform-host-marker")
    (d / "marker").write_text(content + "\n")
    (d / "marker").chmod(0o644)
    try:
        yield str(d / "marker"), content
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _same_file(via_link: str, via_path: str) -> bool:
    """Two `stat -L -c IDENTITY` results name one file; a device node is its device (the
    host's /dev/null and the container's are two nodes of one device)."""
    if not via_link or via_link != via_path:
        a, b = via_link.split(":"), via_path.split(":")
        return len(a) == len(b) == 4 and a[2:] != ["0", "0"] and a[2:] == b[2:]
    return True


def _own_view(marker: str) -> str:
    """Script: the shell's own fds, cwd and root as links, as the files they lead to, and
    the files their targets name inside; then the host marker read through each and by `..`.

    The fds are listed by external commands only: a command substitution or a redirection
    of the shell itself would show up as an fd of its own."""
    walk, me = shlex.quote(UP + marker), "/proc/$me"
    links, listed = f"{me}/fd/* {me}/cwd {me}/root", f"/tmp/{token('conform-links')}"
    return (
        "me=$$\n"
        f"stat -c %N {links} > {listed} 2>/dev/null\n"
        f"stat -L -c '%n|{IDENTITY}' {links} 2>/dev/null\n"
        f"cat {listed}\n"
        f"sed -n \"s/^'.*' -> '\\(\\/.*\\)'$/\\1/p\" {listed} | while read -r t; do\n"
        f'  echo "path|$t|$(stat -L -c {IDENTITY} "$t" 2>/dev/null)"; done\n'
        f'for f in {links} .; do [ -e "$f"{walk} ] && cat "$f"{walk}; done\n'
        "echo conform-view-done\n"
    )


def _own_view_escapes(out: str, content: str, workdir: str) -> list[str]:
    """What of the shell's own fds beyond 0-2, cwd and root leads outside the container."""
    assert "conform-view-done" in out, f"the script did not run to its end: {out.strip()}"
    found = [f"read the host's marker file from inside ({content})"] if content in out else []
    targets, via_link, via_path = {}, {}, {}
    for line in out.splitlines():
        if m := _LINK.match(line):
            targets[m.group(1).rsplit("/", 1)[-1]] = m.group(3)
        elif line.startswith("path|"):
            _, target, ident = line.split("|", 2)
            via_path[target] = ident
        elif line.startswith("/proc/") and "|" in line:
            name, _, ident = line.partition("|")
            via_link[name.rsplit("/", 1)[-1]] = ident
    assert {"cwd", "root"} <= targets.keys(), f"cwd or root unreadable inside: {out.strip()}"
    for what, target in sorted(targets.items()):
        if what.isdigit() and int(what) <= 2:
            continue
        name = f"fd {what}" if what.isdigit() else what
        if not target.startswith("/"):
            found.append(f"{name} -> {target}: inherited from outside (not a file inside)")
        elif not _same_file(via_link.get(what, ""), via_path.get(target, "")):
            found.append(f"{name} -> {target} is a host file, not the container's {target}")
        elif what == "cwd" and target != workdir:
            found.append(f"cwd is {target}, want the working directory {workdir}")
        elif what == "root" and target != "/":
            found.append(f"root is {target}, want /")
    return found


@pytest.mark.behaviour("SEC-08")
def test_container_process_has_no_host_fd_cwd_or_root(runtime, host_marker):
    marker, content = host_marker
    res = ran(runtime, ContainerSpec(argv=sh(_own_view(marker)), workdir="/tmp"), "own view")
    escapes = _own_view_escapes(res.stdout, content, "/tmp")
    assert not escapes, f"the container's process reaches outside: {escapes}"


@pytest.mark.behaviour("SEC-08")
@pytest.mark.requires("exec", "detach")
def test_exec_process_has_no_host_fd_cwd_or_root(runtime, container, host_marker):
    marker, content = host_marker
    s = started(runtime, container, ContainerSpec(workdir="/tmp"))
    res = runtime.exec(s.container, sh(_own_view(marker))).check(f"{runtime.name} exec")
    escapes = _own_view_escapes(res.stdout, content, "/tmp")
    assert not escapes, f"the exec'd process reaches outside: {escapes}"


# ------------------------------------------------------------------ joining processes

#: Execs the scan watches; each runs long enough for the scan to see it.
EXECS = 30


def _scans(marker: str, tag: str, out: str, stop: str) -> str:
    """Script: two loops in the background of the init until `stop` exists. One lists every
    visible process's exe, cwd, root and fds as links and as identities (into `out`-links);
    the other tries the host marker through each (`..` from there) and notes the exec'd
    processes (argv holding `tag`) it saw (into `out`-reach). The first runs flat out (a
    joining process is inside for milliseconds only), the second leaves it the CPU."""
    links = "/proc/[0-9]*/exe /proc/[0-9]*/cwd /proc/[0-9]*/root /proc/[0-9]*/fd/*"
    walk = shlex.quote(UP + marker)
    return (
        f"( while [ ! -e {stop} ]; do\n"
        f"  stat -c %N {links} 2>/dev/null\n"
        f"  stat -L -c '%n|{IDENTITY}' {links} 2>/dev/null\n"
        "  echo conform-scan-pass\n"
        f"done > {out}-links 2>&1; : > {out}-links.done ) &\n"
        f"( while [ ! -e {stop} ]; do\n"
        f'  for l in {links}; do [ -e "$l"{walk} ] && echo "reached $l" && cat "$l"{walk}\n'
        "  done\n"
        f"  grep -l {tag} /proc/[0-9]*/cmdline 2>/dev/null\n"
        "  sleep 0.02\n"
        f"done > {out}-reach 2>&1; : > {out}-reach.done ) &\n"
    )


def _links(text: str) -> dict[tuple[str, str], str]:
    """(link target, identity) -> the first /proc link seen with them, for every link of the
    scan that was readable (a non-dumpable process's are not) and names a path; fds 0-2 are
    the stdio exec was given (and, in the scan's own children, change under it)."""
    found: dict[tuple[str, str], str] = {}
    for rnd in text.split("conform-scan-pass\n"):
        targets, ids = {}, {}
        for line in rnd.splitlines():
            if m := _LINK.match(line):
                targets[m.group(1)] = m.group(3)
            elif line.startswith("/proc/") and "|" in line:
                name, _, ident = line.partition("|")
                ids[name] = ident
        for name, target in targets.items():
            stdio = re.search(r"/fd/[012]$", name)
            if target.startswith("/") and not target.startswith("/memfd:") and not stdio:
                found.setdefault((target, ids.get(name, "")), name)
    return found


def _host_files(runtime, c, links: dict[tuple[str, str], str]) -> list[str]:
    """The links whose file is not the one their target names inside, nor a file of the
    container's own /proc (where a gone process's files no longer resolve)."""
    probe = "stat -c %d /proc\n" + "".join(
        f"stat -L -c {IDENTITY} {shlex.quote(t)} 2>/dev/null || echo -\n" for t, _ in links
    )
    proc_dev, *here = runtime.exec(c, sh(probe)).check(f"{runtime.name} exec").stdout.split()
    return [
        f"{name} -> {target}"
        for ((target, ident), name), found in zip(links.items(), here, strict=True)
        if ident and not _same_file(ident, found) and ident.split(":")[0] != proc_dev
    ]


@pytest.mark.behaviour("SEC-09")
@pytest.mark.requires("exec", "detach")
def test_joining_process_does_not_open_the_host_to_the_container(runtime, container, host_marker):
    marker, content = host_marker
    tag, out, stop = token("conform-exec"), f"/tmp/{token('scan')}", f"/tmp/{token('stop')}"
    s = started(runtime, container, ContainerSpec(), prepare=_scans(marker, tag, out, stop))
    for _ in range(EXECS):
        runtime.exec(s.container, sh(f": {tag}; sleep 0.05")).check(f"{runtime.name} exec")
    runtime.exec(s.container, ["touch", stop]).check(f"{runtime.name} exec")
    deadline = time.monotonic() + 20
    while any(facts.read_in_root(s.pid, f"{out}-{k}.done") is None for k in ("links", "reach")):
        if time.monotonic() > deadline or not facts.alive(s.pid):
            raise RuntimeFailure(f"the scans inside {s.container.id[:12]} never finished")
        time.sleep(0.05)
    text = facts.read_in_root(s.pid, f"{out}-reach") or ""
    seen = {ln for ln in text.splitlines() if ln.endswith("/cmdline")}
    assert seen, "the scan saw none of the exec'd processes (not in the container's pid ns?)"
    reached = sorted({ln for ln in text.splitlines() if ln.startswith("reached ")})
    host_files = _host_files(
        runtime, s.container, _links(facts.read_in_root(s.pid, f"{out}-links") or "")
    )
    assert not reached and content not in text, (
        f"the host's marker file was reached from inside through {reached[:4]} "
        f"({len(reached)} links)"
    )
    assert not host_files, f"links of processes inside lead to host files: {host_files}"
