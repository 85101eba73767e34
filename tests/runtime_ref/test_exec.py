"""`rref exec` joins every namespace and the cgroup of the container's pid 1."""

from __future__ import annotations

import os
import sys

from conftest import Rref

NS = ("pid", "mnt", "uts", "ipc", "net", "cgroup", "user")


def test_exec_joins_every_namespace_of_pid1(rref: Rref) -> None:
    cid = rref.run_d("busybox", "sleep", "60")
    pid = rref.pid(cid)
    script = "; ".join(f"readlink /proc/self/ns/{n}" for n in NS)
    inside = rref.out("exec", cid, "sh", "-c", script).split()
    outside = [os.readlink(f"/proc/{pid}/ns/{n}") for n in NS]
    assert inside == outside
    host = [os.readlink(f"/proc/self/ns/{n}") for n in NS[:-1]]
    assert not set(inside[:-1]) & set(host)


def test_exec_joins_the_container_cgroup(rref: Rref) -> None:
    cid = rref.run_d("busybox", "sleep", "60")
    pid = rref.pid(cid)
    out = rref.out("exec", cid, "sh", "-c", "cat /proc/self/cgroup; echo $$")
    inner_pid = out.strip().split("\n")[-1]
    # seen from inside, the exec'd shell sits at the root of the cgroup namespace
    seen = [ln for ln in out.split("\n")[:-2] if "name=" not in ln]
    assert seen and all(ln.endswith(":/") for ln in seen), out
    # seen from the host, it is in the container's cgroup: found in its cgroup.procs
    procs = rref.inspect(cid, "{{json .CgroupPaths}}")
    import json

    paths = json.loads(procs)
    with open(
        os.path.join(
            paths["unified"] if "unified" in paths else next(iter(paths.values())), "cgroup.procs"
        )
    ) as f:
        members = f.read().split()
    assert str(pid) in members
    assert inner_pid != "1"


def test_exec_sees_hostname_rootfs_env_and_workdir(rref: Rref) -> None:
    cid = rref.run_d(
        "--hostname",
        "exec-host",
        "-e",
        "ONE=1",
        "-w",
        "/srv",
        "busybox",
        "sh",
        "-c",
        "echo made > /srv/file; sleep 60",
    )
    out = rref.out(
        "exec",
        "-e",
        "TWO=2",
        cid,
        "sh",
        "-c",
        "hostname; echo $ONE$TWO; pwd; cat /srv/file; echo $$",
    )
    lines = out.strip().split("\n")
    assert lines[:4] == ["exec-host", "12", "/srv", "made"]
    assert lines[4] != "1"  # a new process in the container's pid namespace
    assert rref.out("exec", "-w", "/tmp", cid, "pwd").strip() == "/tmp"


def test_exec_exit_codes(rref: Rref) -> None:
    cid = rref.run_d("busybox", "sleep", "60")
    assert rref("exec", cid, "sh", "-c", "exit 7", check=False).returncode == 7
    nf = rref("exec", cid, "no-such-binary", check=False)
    assert nf.returncode == 127
    assert "no-such-binary" in nf.stderr and len(nf.stderr.strip().splitlines()) == 1
    assert rref("exec", cid, "/etc/passwd", check=False).returncode == 126
    killed = rref("exec", cid, "sh", "-c", "kill -9 $$", check=False)
    assert killed.returncode == 137


def test_exec_into_stopped_container_fails_clearly(rref: Rref) -> None:
    n = rref.name()
    rref("run", "--name", n, "busybox", "true")
    p = rref("exec", n, "true", check=False)
    assert p.returncode == 1
    assert p.stderr.strip() == f"rref: container {rref.inspect(n, '{{.Id}}')[:12]} is not running"
    assert rref.inspect(n, "{{.State.Status}}") == "exited"


def test_exec_as_other_user(rref: Rref) -> None:
    cid = rref.run_d("busybox", "sleep", "60")
    assert rref.out("exec", "-u", "nobody", cid, "id", "-u").strip() == "65534"


def test_exec_detached_keeps_running(rref: Rref) -> None:
    cid = rref.run_d("busybox", "sleep", "60")
    rref("exec", "-d", cid, "sh", "-c", "sleep 1; touch /done")
    rref(
        "exec",
        cid,
        "sh",
        "-c",
        "for i in $(seq 50); do [ -e /done ] && exit 0; sleep 0.1; done; exit 1",
    )


def _host_python() -> str:
    """dev:ino of the interpreter that runs rref (what a CVE-2019-5736 attacker wants)."""
    st = os.stat(os.path.realpath(sys.executable))
    return f"{st.st_dev}:{st.st_ino}"


def test_exec_joining_process_cannot_be_reached_from_inside(rref: Rref) -> None:
    """While `rref exec` joins, a container process scanning /proc/*/exe must not get the
    host's interpreter (the CVE-2019-5736 class): the joining process is non-dumpable."""
    scan = (
        "while :; do stat -L -c %d:%i /proc/[0-9]*/exe 2>/dev/null"
        ' | grep -qx "$HOSTEXE" && echo hit >> /hits; done'
    )
    cid = rref.run_d("-e", f"HOSTEXE={_host_python()}", "busybox", "sh", "-c", scan)
    for _ in range(40):
        rref("exec", cid, "true")
    hits = rref("exec", cid, "sh", "-c", "cat /hits 2>/dev/null; true").stdout.split()
    assert not hits, f"the host interpreter was reachable from inside {len(hits)} times"


def test_spawned_process_is_non_dumpable_until_its_execve() -> None:
    """The joining child and the process it forks are non-dumpable (checked in the forked
    process itself); the program they exec is dumpable again (its /proc files belong to it)."""
    import json

    from runtime_ref import process
    from runtime_ref import syscalls as sc

    def body(err_fd: int, _go: int) -> None:
        os.write(
            err_fd, json.dumps({"code": 0, "message": str(sc.prctl(sc.PR_GET_DUMPABLE))}).encode()
        )
        os._exit(0)

    null = os.open(os.devnull, os.O_RDWR)
    try:
        started = process.spawn((null, null, null), [], lambda: None, body)  # type: ignore[arg-type]
    finally:
        os.close(null)
    assert started.error == {"code": 0, "message": "0"}
    assert sc.prctl(sc.PR_GET_DUMPABLE) == 1  # the caller itself is untouched


def test_exec_program_is_dumpable_again(rref: Rref) -> None:
    cid = rref.run_d("-u", "1000", "busybox", "sleep", "60")
    pid = rref.pid(cid)
    # a non-dumpable process's /proc files belong to root; the user program owns its own
    assert os.stat(f"/proc/{pid}/environ").st_uid == 1000
