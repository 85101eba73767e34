"""Escape attempts from a default container (SEC-05, SEC-06, SEC-07, SEC-10).

Safety: every attempt is one that changes nothing even when it succeeds: files are opened
read-write but never written, the hostname is set to the name it already has, the module
is 256 zero bytes (no kernel loads it), the signal is 0, the block device is only read.
A runtime that lets one through shows it as a success of the attempt, never as harm.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from conformance import mountinfo
from conformance.adapters.base import ContainerSpec
from conformance.tests.support import ran, sh

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
