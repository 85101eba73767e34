"""Security defaults and options on rref: capabilities, no_new_privs, seccomp, devices."""

from __future__ import annotations

import pytest
from conftest import Rref


def sh(rref: Rref, script: str, *flags: str) -> str:
    return rref.out("run", "--rm", *flags, "busybox", "sh", "-c", script)


def test_default_seccomp_filter_is_on_and_blocks_namespaces(rref: Rref) -> None:
    out = sh(rref, "grep '^Seccomp:' /proc/self/status; unshare -U true 2>&1; echo rc=$?")
    assert "Seccomp:\t2" in out
    assert "Operation not permitted" in out and "rc=1" in out


def test_seccomp_unconfined_and_custom_profile(rref: Rref, tmp_path: object) -> None:
    assert "Seccomp:\t0" in sh(
        rref, "grep '^Seccomp:' /proc/self/status", "--security-opt", "seccomp=unconfined"
    )
    import json
    import os
    import tempfile

    fd, path = tempfile.mkstemp(prefix="rref-seccomp-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}],
            },
            f,
        )
    try:
        out = sh(
            rref,
            "mkdir /x 2>&1; echo rc=$?; touch /y && echo touched",
            "--security-opt",
            f"seccomp={path}",
        )
    finally:
        os.unlink(path)
    assert "Operation not permitted" in out and "rc=1" in out and "touched" in out


def test_no_new_privileges(rref: Rref) -> None:
    assert "NoNewPrivs:\t0" in sh(rref, "grep NoNewPrivs /proc/self/status")
    assert "NoNewPrivs:\t1" in sh(
        rref, "grep NoNewPrivs /proc/self/status", "--security-opt", "no-new-privileges"
    )


def test_cap_drop_and_add(rref: Rref) -> None:
    out = sh(rref, "chown nobody /tmp 2>&1; echo rc=$?", "--cap-drop", "CHOWN")
    assert "rc=1" in out
    bnd = sh(rref, "grep CapBnd /proc/self/status", "--cap-drop", "ALL").split()[1]
    assert bnd == "0000000000000000"
    bnd = int(sh(rref, "grep CapBnd /proc/self/status", "--cap-add", "NET_ADMIN").split()[1], 16)
    assert bnd & (1 << 12)


def test_devices_beyond_the_default_set_cannot_be_opened(rref: Rref) -> None:
    out = sh(
        rref,
        "mknod /dev/rref-sda b 8 0 && echo made; head -c1 /dev/rref-sda 2>&1; "
        "echo rc=$?; mknod /dev/rref-mem c 1 1; head -c1 /dev/rref-mem 2>&1; "
        "echo rc2=$?; head -c1 /dev/zero | wc -c",
    )
    assert "made" in out  # CAP_MKNOD and the 'm' rule allow making the node...
    assert "Operation not permitted" in out and "rc=1" in out and "rc2=1" in out  # ...not use
    assert out.strip().endswith("1")  # the default set still works


def test_privileged(rref: Rref) -> None:
    out = sh(
        rref,
        "grep -E 'CapEff|Seccomp:' /proc/self/status; mkdir -p /m; "
        "mount -t tmpfs none /m && echo mounted; wc -c < /proc/keys; "
        "grep ' /sys ' /proc/self/mountinfo",
        "--privileged",
    )
    assert "Seccomp:\t0" in out and "mounted" in out
    assert " /sys rw" in out


@pytest.mark.parametrize("opt", ["no-new-privileges=maybe", "bogus", "seccomp=/no/such.json"])
def test_bad_security_opts(fresh_rref: Rref, opt: str) -> None:
    p = fresh_rref("run", "--rm", "--security-opt", opt, "busybox", "true", check=False)
    assert p.returncode == 125 and len(p.stderr.strip().splitlines()) == 1
    assert fresh_rref.out("ps", "-aq") == ""
