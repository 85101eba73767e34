"""config.json fields take effect: process identity and limits, mounts, namespaces
(new and joined by path), id maps, cgroup resources and paths, sysctls."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ocikit import Oci

# the program reports what the fields should have changed, one fact per line
REPORT = (
    "id -u; id -g; id -G; ulimit -n; cat /proc/self/oom_score_adj; hostname; "
    "cat /proc/sys/kernel/msgmax; cat /proc/sys/kernel/domainname; "
    "cat /mnt/a/which /mnt/b/which; touch /etc/x 2>&1 | grep -c Read-only; "
    "wc -c < /proc/keys; (echo 1 > /proc/sys/kernel/ns_last_pid) 2>&1 | grep -c Read-only; "
    "grep NoNewPrivs /proc/self/status | tr -d ' \\t'"
)


def test_process_mounts_and_sysctl_fields(oci: Oci) -> None:
    a, b = oci.work / "a", oci.work / "b"
    for d in (a, b):
        d.mkdir()
        (d / "which").write_text(d.name + "\n")
    mounts = [  # the second mount on /mnt/a is over the first: order is kept
        {"destination": "/mnt/a", "type": "bind", "source": str(b), "options": ["rbind"]},
        {"destination": "/mnt/a", "type": "bind", "source": str(a), "options": ["rbind", "ro"]},
        {"destination": "/mnt/b", "type": "bind", "source": str(b), "options": ["rbind"]},
    ]
    bundle = oci.bundle(
        ["sh", "-c", REPORT],
        hostname="rref-oci-h",
        domainname="rref-oci-d",
        process_user={"uid": 1, "gid": 2, "additionalGids": [5, 65534]},
        process_rlimits=[{"type": "RLIMIT_NOFILE", "soft": 321, "hard": 654}],
        process_oomScoreAdj=123,
        process_noNewPrivileges=True,
        linux_sysctl={"kernel.msgmax": "4321"},
    )
    config = json.loads((bundle / "config.json").read_text())
    config["mounts"] += mounts
    config["root"]["readonly"] = True
    (bundle / "config.json").write_text(json.dumps(config))
    p = oci("run", "-b", str(bundle), oci.new_id())
    assert p.stdout.splitlines() == [
        "1",
        "2",
        "2 5 65534",
        "321",
        "123",
        "rref-oci-h",
        "4321",
        "rref-oci-d",
        "a",
        "b",
        "1",
        "0",
        "1",
        "NoNewPrivs:1",
    ]


def _cgroup_dir(controller: str, pid: int) -> Path:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, ctrls, path = line.split(":", 2)
        if controller in ctrls.split(","):
            return Path("/sys/fs/cgroup") / ctrls / path.lstrip("/")
    raise AssertionError(f"no {controller} cgroup for {pid}")


def test_resources_and_cgroups_path(oci: Oci) -> None:
    cid = oci.new_id()
    bundle = oci.bundle(
        ["sleep", "30"],
        linux_resources={
            "memory": {"limit": 64 * 1024 * 1024},
            "pids": {"limit": 17},
            "cpu": {"shares": 512},
            "devices": [{"allow": False, "access": "rwm"}],
        },
        linux_cgroupsPath=f"rref-oci-nest/{cid}",
    )
    oci("run", "-d", "-b", str(bundle), cid)
    pid = oci.state(cid)["pid"]
    mem = _cgroup_dir("memory", pid)
    assert mem.name == cid and mem.parent.name == "rref-oci-nest"
    assert (mem / "memory.limit_in_bytes").read_text().strip() == str(64 * 1024 * 1024)
    assert (_cgroup_dir("pids", pid) / "pids.max").read_text().strip() == "17"
    assert (_cgroup_dir("cpu", pid) / "cpu.shares").read_text().strip() == "512"
    update = oci.work / "res.json"
    update.write_text(json.dumps({"pids": {"limit": 9}}))
    oci("update", "--resources", str(update), cid)
    assert (_cgroup_dir("pids", pid) / "pids.max").read_text().strip() == "9"
    oci("delete", "-f", cid)
    assert not mem.exists() and not mem.parent.exists()  # the parent it made, too


def test_systemd_cgroup_path_is_read_as_slice_prefix_name(oci: Oci) -> None:
    cid = oci.new_id()
    bundle = oci.bundle(["sleep", "30"], linux_cgroupsPath=f"rref-oci-test.slice:rref:{cid}")
    oci("--systemd-cgroup", "run", "-d", "-b", str(bundle), cid)
    mem = _cgroup_dir("memory", oci.state(cid)["pid"])
    slices = Path("/sys/fs/cgroup/memory/rref.slice/rref-oci.slice/rref-oci-test.slice")
    assert mem == slices / f"rref-{cid}.scope"  # systemd nests slices by their dashes
    oci("delete", "-f", cid)
    assert not Path("/sys/fs/cgroup/memory/rref.slice").exists()


def test_namespaces_joined_by_path(oci: Oci) -> None:
    first = oci.new_id()
    oci("run", "-d", "-b", str(oci.bundle(["sleep", "30"])), first)
    pid = oci.state(first)["pid"]
    joined = [{"type": "network", "path": f"/proc/{pid}/ns/net"}, {"type": "ipc", "path": ""}]
    joined[1]["path"] = f"/proc/{pid}/ns/ipc"
    bundle = oci.bundle(["sleep", "30"])
    config = json.loads((bundle / "config.json").read_text())
    config["linux"]["namespaces"] = [
        ns for ns in config["linux"]["namespaces"] if ns["type"] not in ("network", "ipc")
    ] + joined
    (bundle / "config.json").write_text(json.dumps(config))
    second = oci.new_id()
    oci("run", "-d", "-b", str(bundle), second)
    other = oci.state(second)["pid"]
    for ns in ("net", "ipc"):
        assert os.stat(f"/proc/{other}/ns/{ns}").st_ino == os.stat(f"/proc/{pid}/ns/{ns}").st_ino
    for ns in ("pid", "uts", "mnt"):
        assert os.stat(f"/proc/{other}/ns/{ns}").st_ino != os.stat(f"/proc/{pid}/ns/{ns}").st_ino
    oci("delete", "-f", second)
    oci("delete", "-f", first)


def test_user_namespace_maps(oci: Oci) -> None:
    bundle = oci.bundle(["sleep", "30"])
    config = json.loads((bundle / "config.json").read_text())
    config["linux"]["namespaces"].append({"type": "user"})
    config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]
    config["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]
    config["mounts"] = [m for m in config["mounts"] if m["type"] not in ("sysfs", "cgroup")]
    (bundle / "config.json").write_text(json.dumps(config))
    os.chown(bundle / "rootfs", 200000, 200000)
    cid = oci.new_id()
    oci("run", "-d", "-b", str(bundle), cid)
    pid = oci.state(cid)["pid"]
    assert Path(f"/proc/{pid}/uid_map").read_text().split() == ["0", "200000", "65536"]
    assert os.stat(f"/proc/{pid}").st_uid == 200000
    p = oci("exec", cid, "sh", "-c", "cat /proc/self/uid_map; id -u")
    assert p.stdout.split() == ["0", "200000", "65536", "0"]
    oci("delete", "-f", cid)


def test_tmpfs_tmpcopyup_keeps_what_it_covers(oci: Oci) -> None:
    """runc's tmpcopyup (podman --read-only): the tmpfs starts with the covered files."""
    bundle = oci.bundle(
        [
            "sh",
            "-c",
            "cat /etc/rref-seed/a/f; readlink /etc/rref-seed/l; touch /etc/rref-seed/w "
            "&& echo written; touch /etc/x 2>&1 | grep -c Read-only; stat -c %a /etc/rref-seed/a",
        ]
    )
    seed = bundle / "rootfs" / "etc" / "rref-seed"
    (seed / "a").mkdir(parents=True)
    (seed / "a" / "f").write_text("seeded\n")
    (seed / "a").chmod(0o750)
    (seed / "l").symlink_to("a/f")
    config = json.loads((bundle / "config.json").read_text())
    config["root"]["readonly"] = True
    config["mounts"].append(
        {
            "destination": "/etc/rref-seed",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["rw", "nosuid", "nodev", "tmpcopyup"],
        }
    )
    (bundle / "config.json").write_text(json.dumps(config))
    p = oci("run", "-b", str(bundle), oci.new_id())
    assert p.stdout.splitlines() == ["seeded", "a/f", "written", "1", "750"]
    assert not (seed / "w").exists(), "the write went through to the rootfs"
