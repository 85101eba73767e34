"""rref-oci through the OCI lifecycle with real bundles: create, start, state, kill, delete.

The user program must not run before `start` (it would write a file), `state`
must tell the truth at every step (also when the init was killed behind the
runtime's back), hooks run in the spec's order, and `run` exits as the
program did.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from ocikit import RREF_OCI, Oci

PROGRAM = ["sh", "-c", "echo ran > /tmp/marker; exec sleep 30"]


def _wait(pred: object, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


def test_create_does_not_run_the_program_before_start(oci: Oci) -> None:
    b = oci.bundle(PROGRAM)
    cid = oci.new_id()
    marker = b / "rootfs" / "tmp" / "marker"
    pid_file = oci.work / "pid"
    oci("create", "--bundle", str(b), "--pid-file", str(pid_file), cid)
    st = oci.state(cid)
    assert st["status"] == "created" and st["id"] == cid and st["bundle"] == str(b)
    assert st["pid"] == int(pid_file.read_text()) > 0
    assert st["ociVersion"].startswith("1.") and st["annotations"] == {}
    time.sleep(0.5)
    assert not marker.exists(), "the program ran before start"
    assert oci.state(cid)["status"] == "created"
    oci("start", cid)
    assert _wait(marker.exists), "the program did not run after start"
    assert oci.state(cid)["status"] == "running"
    again = oci("start", cid, check=False)
    assert again.returncode != 0 and "running" in again.stderr
    oci("kill", cid, "KILL")
    assert _wait(lambda: oci.state(cid)["status"] == "stopped")
    assert oci.state(cid)["pid"] == 0
    oci("delete", cid)
    gone = oci("state", cid, check=False)
    assert gone.returncode == 1 and "does not exist" in gone.stderr


def test_state_is_stopped_after_the_init_died_behind_its_back(oci: Oci) -> None:
    cid = oci.new_id()
    oci("run", "-d", "--bundle", str(oci.bundle(PROGRAM)), cid)
    pid = oci.state(cid)["pid"]
    os.kill(pid, signal.SIGKILL)
    assert _wait(lambda: oci.state(cid)["status"] == "stopped")
    listed = json.loads(oci("list", "--format", "json").stdout)
    assert [(s["id"], s["status"]) for s in listed] == [(cid, "stopped")]
    oci("delete", cid)


def test_a_created_container_can_be_killed_and_deleted(oci: Oci) -> None:
    b = oci.bundle(PROGRAM)
    cid = oci.new_id()
    oci("create", "-b", str(b), cid)
    oci("delete", cid)  # a created container needs no --force, as with runc
    assert not (b / "rootfs" / "tmp" / "marker").exists()
    assert oci("state", cid, check=False).returncode == 1


def test_delete_refuses_a_running_container_unless_forced(oci: Oci) -> None:
    cid = oci.new_id()
    oci("run", "-d", "-b", str(oci.bundle(PROGRAM)), cid)
    refused = oci("delete", cid, check=False)
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        f"rref-oci: cannot delete container {cid} that is not stopped: running"
    )
    oci("pause", cid)
    assert oci.state(cid)["status"] == "paused"
    oci("resume", cid)
    assert oci.state(cid)["status"] == "running"
    oci("delete", "--force", cid)
    assert oci("state", cid, check=False).returncode == 1


def test_run_exits_as_the_program_did_and_leaves_nothing(oci: Oci) -> None:
    cid = oci.new_id()
    p = oci(
        "run",
        "-b",
        str(oci.bundle(["sh", "-c", "echo out; echo err >&2; exit 3"])),
        cid,
        check=False,
    )
    assert (p.returncode, p.stdout, p.stderr) == (3, "out\n", "err\n")
    assert not (oci.root / cid).exists()
    killed = oci.new_id()
    argv = [
        RREF_OCI,
        "--root",
        str(oci.root),
        "run",
        "-b",
        str(oci.bundle(["sleep", "30"])),
        killed,
    ]
    held = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert _wait(lambda: oci("state", killed, check=False).stdout.count('"running"') == 1)
    oci("kill", killed, "KILL")
    assert held.wait(timeout=10) == 128 + 9
    assert not (oci.root / killed).exists()


def test_run_keep_leaves_a_stopped_container(oci: Oci) -> None:
    cid = oci.new_id()
    oci("run", "--keep", "-b", str(oci.bundle(["true"])), cid)
    assert oci.state(cid)["status"] == "stopped"
    oci("delete", cid)


def test_kill_sends_the_signal_and_all_reaches_every_process(oci: Oci) -> None:
    cid = oci.new_id()
    prog = ["sh", "-c", "trap 'echo got-usr1 > /tmp/sig' USR1; sleep 30 & wait; sleep 30 & wait"]
    b = oci.bundle(prog)
    oci("run", "-d", "-b", str(b), cid)
    oci("kill", cid, "USR1")
    assert _wait((b / "rootfs" / "tmp" / "sig").exists)
    assert len(json.loads(oci("ps", "--format", "json", cid).stdout)) >= 2
    oci("kill", "--all", cid, "KILL")
    assert _wait(lambda: oci.state(cid)["status"] == "stopped")
    assert _wait(lambda: json.loads(oci("ps", "--format", "json", cid).stdout) == [])
    oci("delete", cid)


def test_exec_runs_in_the_container(oci: Oci) -> None:
    cid = oci.new_id()
    oci("run", "-d", "-b", str(oci.bundle(PROGRAM, hostname="rref-oci-exec")), cid)
    init = oci.state(cid)["pid"]
    p = oci(
        "exec", cid, "sh", "-c", "hostname; cat /proc/1/cmdline | tr '\\0' ' '; exit 4", check=False
    )
    assert (p.returncode, p.stdout) == (4, "rref-oci-exec\nsleep 30 ")
    proc = oci.work / "process.json"
    proc.write_text(
        json.dumps(
            {
                "args": ["sh", "-c", "id -u; id -g; echo $FOO"],
                "cwd": "/tmp",
                "env": ["FOO=bar"],
                "user": {"uid": 1, "gid": 1},
            }
        )
    )
    p = oci("exec", "--process", str(proc), cid)
    assert p.stdout == "1\n1\nbar\n"
    pid_file = oci.work / "exec.pid"
    oci("exec", "-d", "--pid-file", str(pid_file), cid, "sleep", "20")
    pid = int(pid_file.read_text())
    assert Path(f"/proc/{pid}/ns/pid").stat().st_ino == Path(f"/proc/{init}/ns/pid").stat().st_ino
    assert pid in json.loads(oci("ps", "--format", "json", cid).stdout)
    missing = oci("exec", cid, "no-such-program", check=False)
    assert missing.returncode != 0 and "no-such-program" in missing.stderr
    oci("delete", "--force", cid)


HOOK = """#!/bin/sh
state=$(cat)
status=$(echo "$state" | sed 's/.*"status": *"\\([a-z]*\\)".*/\\1/')
echo "$1 $status" >> {log}
"""


def test_hooks_run_in_the_spec_order(oci: Oci) -> None:
    logdir = oci.work / "hooklog"
    logdir.mkdir()
    log = logdir / "hooks"
    host_hook = oci.work / "hook.sh"
    host_hook.write_text(HOOK.format(log=log))
    host_hook.chmod(0o755)

    def on_host(name: str) -> dict[str, object]:
        return {"path": str(host_hook), "args": ["hook.sh", name]}

    inside = {  # startContainer resolves in the container: its sh writes to the bind mount
        "path": "/bin/sh",
        "args": ["sh", "-c", "echo startContainer $(cat | grep -c created) >> /hooklog/hooks"],
    }
    hooks = {
        "prestart": [on_host("prestart")],
        "createRuntime": [on_host("createRuntime")],
        "createContainer": [on_host("createContainer")],
        "startContainer": [inside],
        "poststart": [on_host("poststart")],
        "poststop": [on_host("poststop")],
    }
    b = oci.bundle(["sleep", "30"], hooks=hooks)
    config = json.loads((b / "config.json").read_text())
    config["mounts"].append(
        {"destination": "/hooklog", "type": "bind", "source": str(logdir), "options": ["rbind"]}
    )
    (b / "config.json").write_text(json.dumps(config))
    cid = oci.new_id()
    oci("create", "-b", str(b), cid)
    assert log.read_text().split("\n") == [
        "prestart creating",
        "createRuntime creating",
        "createContainer created",
        "",
    ]
    oci("start", cid)
    oci("kill", cid, "KILL")
    assert _wait(lambda: oci.state(cid)["status"] == "stopped")
    oci("delete", cid)
    assert log.read_text().split("\n")[3:] == [
        "startContainer 1",
        "poststart running",
        "poststop stopped",
        "",
    ]


def test_a_failing_create_runtime_hook_fails_create_and_leaves_nothing(oci: Oci) -> None:
    bad = {"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", "echo nope >&2; exit 7"]}]}
    b = oci.bundle(PROGRAM, hooks=bad)
    cid = oci.new_id()
    p = oci("create", "-b", str(b), cid, check=False)
    assert p.returncode == 1
    assert p.stderr.strip().splitlines() == [
        "rref-oci: createRuntime hook #0 (/bin/sh) failed (exit 7) nope"
    ]
    assert not (oci.root / cid).exists()
    assert not (b / "rootfs" / "tmp" / "marker").exists()


@pytest.mark.parametrize("cgroupns", [True, False], ids=["cgroupns", "host-cgroupns"])
def test_run_joins_the_cgroups_before_the_program_and_hooks_stay_on_the_host(
    oci: Oci, cgroupns: bool
) -> None:
    """The init is forked straight into its pid namespace and joined to its cgroups while it
    mounts: the program must find itself there (with a cgroup namespace, made only once
    joined, its root is the container's cgroup: pids.max is the container's), and hooks
    forked afterwards by rref-oci must be in the host's pid namespace."""
    log = oci.work / "ns"
    hook = {"path": "/bin/sh", "args": ["sh", "-c", f"readlink /proc/self/ns/pid > {log}"]}
    cid = oci.new_id()
    prog = "cat /sys/fs/cgroup/pids/pids.max; cat /proc/self/cgroup"
    b = oci.bundle(["sh", "-c", prog], hooks={"poststart": [hook]})
    config = json.loads((b / "config.json").read_text())
    config["linux"]["resources"] = {"pids": {"limit": 77}}
    if not cgroupns:
        config["linux"]["namespaces"] = [
            ns for ns in config["linux"]["namespaces"] if ns["type"] != "cgroup"
        ]
    (b / "config.json").write_text(json.dumps(config))
    out = oci("run", "-b", str(b), cid).stdout.splitlines()
    assert out[0] == "77"
    wanted = {"pids", "memory", "devices", "freezer"}
    paths = {ln.split(":")[1]: ln.split(":")[2] for ln in out[1:] if ln.split(":")[1] in wanted}
    end = "/" if cgroupns else f"/rref-oci-{cid}"
    assert len(paths) == len(wanted) and all(p.endswith(end) for p in paths.values()), out
    assert log.read_text().strip() == os.readlink("/proc/self/ns/pid")


@pytest.mark.parametrize("after", ["pid-gone", "pid-reused"])
def test_state_after_the_init_was_rebooted_away(oci: Oci, after: str) -> None:
    """The record outlived its init (a reboot, or the host's pid counter wrapped): a pid
    that no longer exists, or that now belongs to an unrelated process with another
    start time, is "stopped"; delete removes the record and touches no other process."""
    cid = oci.new_id()
    oci("run", "-d", "-b", str(oci.bundle(PROGRAM)), cid)
    record = oci.root / cid / "state.json"
    rec = json.loads(record.read_text())
    os.kill(rec["pid"], signal.SIGKILL)
    assert _wait(lambda: not Path(f"/proc/{rec['pid']}").exists())
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        if after == "pid-reused":
            rec["pid"] = stranger.pid  # its start time differs from the recorded pidStart
        else:
            rec["pid"] = max(int(Path("/proc/sys/kernel/pid_max").read_text()) - 7, 2)
            assert not Path(f"/proc/{rec['pid']}").exists()
        record.write_text(json.dumps(rec))
        st = oci.state(cid)
        assert (st["status"], st["pid"]) == ("stopped", 0)
        listed = json.loads(oci("list", "--format", "json").stdout)
        assert [(s["id"], s["status"]) for s in listed] == [(cid, "stopped")]
        assert oci("kill", cid, "KILL", check=False).returncode == 1
        oci("delete", cid)
        assert stranger.poll() is None, "delete signalled a process that is not the container's"
        assert oci("state", cid, check=False).returncode == 1
    finally:
        stranger.kill()
        stranger.wait()


def test_delete_of_an_unknown_or_half_made_id_is_runc_s(oci: Oci) -> None:
    """runc: "does not exist" and exit 1, but 0 with --force; a directory without a record
    (a create killed before writing it) is removed in both cases."""
    p = oci("delete", "rref-oci-nope", check=False)
    assert p.returncode == 1 and "does not exist" in p.stderr
    assert oci("delete", "--force", "rref-oci-nope").returncode == 0
    for args in (["delete"], ["delete", "--force"]):
        half = oci.root / "rref-oci-half"
        half.mkdir(parents=True)
        (half / "lock").touch()
        p = oci(*args, "rref-oci-half", check=False)
        assert p.returncode == (0 if "--force" in args else 1), p.stderr
        assert not half.exists()
