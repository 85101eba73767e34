"""A container started by rref is isolated the way docker's are: checked for real."""

from __future__ import annotations

import os
import re

import pytest
from conftest import Rref, wait_for


def sh(rref: Rref, script: str, *flags: str) -> str:
    return rref.out("run", "--rm", *flags, "busybox", "sh", "-c", script)


def test_init_is_pid_1_with_hidden_parent(rref: Rref) -> None:
    out = sh(rref, 'echo $$; grep PPid /proc/1/status; ls /proc | grep -E "^[0-9]+$" | wc -l')
    pid, ppid, nprocs = out.split("\n")[:3]
    assert pid == "1"
    assert ppid.split() == ["PPid:", "0"]
    # sh (pid 1), ls, grep, wc: only the container's own processes are listed
    assert int(nprocs) <= 4


def test_host_pids_are_unreachable(rref: Rref) -> None:
    out = sh(rref, f"kill -0 {os.getpid()} 2>&1; echo rc=$?")
    assert "rc=1" in out


def test_namespaces_differ_from_host(rref: Rref) -> None:
    cid = rref.run_d("busybox", "sleep", "60")
    pid = rref.pid(cid)
    for ns in ("pid", "mnt", "uts", "ipc", "net", "cgroup"):
        assert os.readlink(f"/proc/{pid}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}"), ns
    # no user namespace unless asked for
    assert os.readlink(f"/proc/{pid}/ns/user") == os.readlink("/proc/self/ns/user")


def test_default_hostname_is_short_id(rref: Rref) -> None:
    n = rref.name()
    out = rref.out("run", "--name", n, "busybox", "sh", "-c", "hostname; cat /etc/hostname")
    cid = rref.inspect(n, "{{.Id}}")
    assert out == f"{cid[:12]}\n{cid[:12]}\n"
    assert os.uname().nodename != cid[:12]


def test_hostname_change_stays_inside(rref: Rref) -> None:
    host = os.uname().nodename
    out = sh(
        rref, "hostname changed-inside && hostname", "--hostname", "box1", "--cap-add", "SYS_ADMIN"
    )
    assert out.strip() == "changed-inside"
    assert os.uname().nodename == host


def test_two_containers_have_independent_hostnames(rref: Rref) -> None:
    a = rref.run_d("--hostname", "alpha", "--cap-add", "sys_admin", "busybox", "sleep", "60")
    b = rref.run_d("--hostname", "beta", "busybox", "sleep", "60")
    assert rref.out("exec", a, "hostname").strip() == "alpha"
    assert rref.out("exec", b, "hostname").strip() == "beta"
    rref("exec", a, "hostname", "alpha2")
    assert rref.out("exec", b, "hostname").strip() == "beta"


def test_network_none_has_only_lo_and_it_is_up(rref: Rref) -> None:
    out = sh(
        rref,
        "ls /sys/class/net; cat /sys/class/net/lo/operstate; ip -o link 2>/dev/null | wc -l",
        "--network",
        "none",
    )
    lines = out.split()
    assert lines[0] == "lo"
    assert lines[1] in ("unknown", "up")  # lo reports "unknown" when up
    assert lines[2] == "1"


def test_loopback_works_inside(rref: Rref) -> None:
    # the client retries until the listener is up (a condition, not a guessed delay)
    out = sh(
        rref,
        "nc -l -p 8080 -e echo pong & for i in $(seq 200); do "
        'r=$(echo ping | nc 127.0.0.1 8080 2>/dev/null); [ -n "$r" ] && break; usleep 20000; '
        'done; echo "$r"',
    )
    assert "pong" in out


def _host_mounts() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f]


def test_mounts_inside_are_invisible_on_host(rref: Rref) -> None:
    cid = rref.run_d(
        "--cap-add",
        "SYS_ADMIN",
        "busybox",
        "sh",
        "-c",
        "mkdir -p /mnt/x && mount -t tmpfs rref-inner /mnt/x && sleep 60",
    )

    def mounted() -> str:
        m = rref.out("exec", cid, "cat", "/proc/self/mountinfo")
        return m if " /mnt/x " in m else ""

    inside = str(wait_for(mounted, "the mount inside to happen"))
    assert " /mnt/x " in inside  # the mount really happened, inside
    host = _host_mounts()
    assert not [m for m in host if m.endswith("/mnt/x") or rref.root in m]
    with open("/proc/self/mountinfo") as f:
        assert "rref-inner" not in f.read()


def test_old_root_is_gone(rref: Rref) -> None:
    # the state root exists on the host, under /tmp; inside, / is the image
    assert os.path.isdir(rref.root)
    out = sh(
        rref,
        f"test -e {rref.root} && echo visible; cd /../../..; pwd; "
        "grep -c . /proc/self/mountinfo; awk '$5==\"/\"' /proc/self/mountinfo",
    )
    lines = out.strip().split("\n")
    assert "visible" not in lines
    assert lines[0] == "/"
    root_mounts = lines[2:]
    assert len(root_mounts) == 1 and " - overlay " in root_mounts[0], root_mounts


def test_proc_is_fresh_for_the_pid_namespace(rref: Rref) -> None:
    out = sh(
        rref,
        "cat /proc/1/cmdline | tr '\\0' ' '; echo; readlink /proc/self/ns/pid; "
        "grep ' /proc ' /proc/self/mountinfo",
    )
    cmd, nsl, mnt = out.strip().split("\n")[:3]
    assert cmd.startswith("sh -c")
    assert nsl != os.readlink("/proc/self/ns/pid")
    assert " - proc " in mnt


@pytest.mark.parametrize("path", ["/proc/kcore", "/proc/keys", "/proc/timer_list"])
def test_masked_files_read_empty(rref: Rref, path: str) -> None:
    if not os.path.exists(path):
        pytest.skip(f"{path} does not exist on this kernel")
    out = sh(rref, f"wc -c < {path}; stat -c %t,%T {path}")
    size, devnum = out.split()
    assert size == "0"
    assert devnum == "1,3"  # /dev/null bound over it


def test_masked_dirs_are_empty(rref: Rref) -> None:
    if not os.path.isdir("/sys/firmware") or not os.listdir("/sys/firmware"):
        pytest.skip("/sys/firmware is empty on this host")
    assert sh(rref, "ls -A /sys/firmware | wc -l").strip() == "0"


@pytest.mark.parametrize("path", ["/proc/sys/kernel/hostname", "/proc/sysrq-trigger"])
def test_readonly_paths_refuse_writes(rref: Rref, path: str) -> None:
    if not os.path.exists(path):
        pytest.skip(f"{path} does not exist on this kernel")
    out = sh(rref, f"{{ echo x > {path}; }} 2>&1; echo rc=$?", "--hostname", "ro-test")
    assert "Read-only file system" in out
    assert "rc=1" in out or "rc=2" in out


def test_sys_is_read_only(rref: Rref) -> None:
    out = sh(rref, "grep ' /sys ' /proc/self/mountinfo")
    assert re.search(r" /sys ro[, ]", out), out


def test_read_only_rootfs(rref: Rref) -> None:
    out = sh(rref, "touch /newfile 2>&1; echo rc=$?; touch /tmp/x; echo tmp=$?", "--read-only")
    assert "Read-only file system" in out
    assert "rc=1" in out


def test_writable_rootfs_by_default(rref: Rref) -> None:
    assert "rc=0" in sh(rref, "touch /newfile; echo rc=$?")


def test_minimal_dev(rref: Rref) -> None:
    out = sh(
        rref,
        "ls /dev | sort | tr '\\n' ' '; echo; head -c 4 /dev/zero | wc -c; "
        "echo x > /dev/full; echo full=$?",
    )
    names = set(out.split("\n")[0].split())
    assert {
        "null",
        "zero",
        "full",
        "random",
        "urandom",
        "tty",
        "pts",
        "shm",
        "mqueue",
        "ptmx",
        "fd",
        "stdin",
        "stdout",
        "stderr",
    } <= names
    assert "sda" not in names and "kmsg" not in names and "mem" not in names
    assert "full=1" in out


def test_default_capabilities_are_dockers(rref: Rref) -> None:
    out = sh(rref, "grep -E 'Cap(Eff|Bnd|Prm|Inh|Amb)' /proc/self/status")
    caps = dict(line.split(":\t") for line in out.strip().split("\n"))
    # CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP NET_BIND_SERVICE NET_RAW
    # SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP
    expected = "00000000a80425fb"
    assert caps["CapBnd"] == expected
    assert caps["CapEff"] == expected
    assert caps["CapInh"] == "0000000000000000"
    assert caps["CapAmb"] == "0000000000000000"


def test_no_cap_sys_admin_means_mount_fails(rref: Rref) -> None:
    out = sh(rref, "mkdir -p /m; mount -t tmpfs none /m 2>&1; echo rc=$?")
    assert "rc=0" not in out
    assert "denied" in out.lower() or "not permitted" in out.lower()


def test_user_switch(rref: Rref) -> None:
    out = sh(rref, "id -u; id -g; grep CapEff /proc/self/status", "--user", "nobody")
    uid, gid, capeff = out.strip().split("\n")
    assert (uid, gid) == ("65534", "65534")
    assert capeff.split()[1] == "0000000000000000"
    assert sh(rref, "id -u; id -g", "-u", "1234:42").split() == ["1234", "42"]


def test_env_and_workdir(rref: Rref) -> None:
    os.environ["RREF_TEST_PASSTHROUGH"] = "from-host"
    out = sh(
        rref,
        "echo $FOO; echo $RREF_TEST_PASSTHROUGH; pwd; echo $HOSTNAME; echo $PATH",
        "-e",
        "FOO=bar",
        "-e",
        "RREF_TEST_PASSTHROUGH",
        "-w",
        "/work/dir",
        "--hostname",
        "envhost",
    )
    assert out.split("\n")[:5] == [
        "bar",
        "from-host",
        "/work/dir",
        "envhost",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ]


def test_cgroup_namespace_root(rref: Rref) -> None:
    out = sh(rref, "cat /proc/self/cgroup")
    lines = [ln for ln in out.strip().split("\n") if not ln.split(":")[1].startswith("name=")]
    assert lines and all(ln.endswith(":/") for ln in lines), out


def test_container_has_its_own_cgroup(rref: Rref) -> None:
    cid = rref.run_d("busybox", "sleep", "60")
    pid = rref.pid(cid)
    with open(f"/proc/{pid}/cgroup") as f:
        lines = f.read().strip().split("\n")
    own = [ln for ln in lines if not ln.split(":")[1].startswith("name=")]
    assert own and all(ln.endswith(f"/rref-{cid}") for ln in own), lines
