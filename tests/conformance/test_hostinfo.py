"""Tests for conformance.hostinfo and `conform doctor`.

Two kinds of test: the pure parsers on small literal /proc texts (v1, v2 and hybrid layouts),
and the real probe on this host (run as root), checked against facts read independently from
/proc and /sys.  Nothing is mocked; the synthetic HostInfo objects below are plain data fed to
pure functions.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conformance import cli, hostinfo
from conformance.hostinfo import (
    KNOWN_TOKENS,
    CgroupInfo,
    Check,
    ControllerInfo,
    HostInfo,
    capability_tokens,
    cgroup_mode,
    controller_versions,
    missing_capabilities,
    parse_cgroup_mounts,
    parse_kernel_config,
    parse_kernel_release,
    parse_mountinfo,
    parse_proc_cgroup,
    parse_proc_cgroups,
)

REPO = Path(__file__).resolve().parents[2]

# --------------------------------------------------------------------------------------------
# Literal layouts
# --------------------------------------------------------------------------------------------

# systemd "legacy": v1 only, cpu and cpuacct co-mounted, plus the named systemd hierarchy.
MOUNTINFO_V1 = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
25 22 0:22 / /sys/fs/cgroup ro,nosuid shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/systemd rw,nosuid shared:10 - cgroup cgroup rw,xattr,name=systemd
28 25 0:25 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:11 - cgroup cgroup rw,cpu,cpuacct
29 25 0:26 / /sys/fs/cgroup/memory rw,nosuid shared:12 - cgroup cgroup rw,memory
30 25 0:27 / /sys/fs/cgroup/pids rw,nosuid shared:13 - cgroup cgroup rw,pids
31 25 0:28 / /sys/fs/cgroup/net_cls,net_prio rw shared:14 - cgroup cgroup rw,net_cls,net_prio
"""

# Pure v2 (cgroup2 at /sys/fs/cgroup), as on current Debian/Fedora.
MOUNTINFO_V2 = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
26 24 0:23 / /sys/fs/cgroup rw,nosuid,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate
"""
V2_CONTROLLERS = "cpuset cpu io memory hugetlb pids rdma misc"

# Hybrid, the shape of this project's VM: every controller on v1, cgroup2 at .../unified.
MOUNTINFO_HYBRID = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""

PROC_CGROUP_HYBRID = """\
9:name=systemd:/
8:pids:/
4:memory:/process_api/d34839c14c9bb2d32aa9f9893c65090e
1:cpu:/
0::/user.slice
"""


def test_parse_mountinfo_fields_and_escapes():
    text = (
        "36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 shared:7 - ext3 /dev/root "
        "rw,errors=continue\n"
        "not a mountinfo line\n"
    )
    [entry] = parse_mountinfo(text)
    assert entry.mount_id == 36 and entry.parent_id == 35
    assert entry.root == "/mnt1"
    assert entry.mount_point == "/mnt/with space"
    assert entry.fstype == "ext3"  # found after the optional fields and the "-"
    assert entry.source == "/dev/root"
    assert entry.super_options == ("rw", "errors=continue")


def test_v1_layout():
    mounts = parse_cgroup_mounts(MOUNTINFO_V1)
    assert [m.version for m in mounts] == [1] * 5  # the tmpfs and ext4 are not cgroups
    assert cgroup_mode(mounts) == "v1"
    named = next(m for m in mounts if m.name)
    assert named.name == "systemd" and named.controllers == ()
    ctl = controller_versions(mounts, [])
    assert set(ctl) == {"cpu", "cpuacct", "memory", "pids", "net_cls", "net_prio"}
    assert ctl["cpu"] == ControllerInfo("v1", "/sys/fs/cgroup/cpu,cpuacct")
    assert ctl["cpuacct"].mount_point == ctl["cpu"].mount_point


def test_v2_layout():
    mounts = parse_cgroup_mounts(MOUNTINFO_V2)
    assert len(mounts) == 1 and mounts[0].version == 2
    assert cgroup_mode(mounts) == "v2"
    ctl = controller_versions(mounts, V2_CONTROLLERS.split())
    assert set(ctl) == set(V2_CONTROLLERS.split())
    assert {c.version for c in ctl.values()} == {"v2"}
    assert ctl["io"].mount_point == "/sys/fs/cgroup"


def test_hybrid_layout():
    mounts = parse_cgroup_mounts(MOUNTINFO_HYBRID)
    assert cgroup_mode(mounts) == "hybrid"
    ctl = controller_versions(mounts, ["hugetlb"])
    assert ctl["memory"] == ControllerInfo("v1", "/sys/fs/cgroup/memory")
    assert ctl["hugetlb"] == ControllerInfo("v2", "/sys/fs/cgroup/unified")
    assert "systemd" not in ctl and "name=systemd" not in ctl


def test_named_v1_hierarchy_next_to_v2_is_not_hybrid():
    text = MOUNTINFO_V2 + (
        "27 26 0:40 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n"
    )
    assert cgroup_mode(parse_cgroup_mounts(text)) == "v2"
    assert cgroup_mode([]) == "none"


def test_bind_mounted_hierarchy_reported_once_and_unknown_controllers_opt_in():
    text = MOUNTINFO_V1 + (
        "50 22 0:26 /docker /container/memory rw,relatime - cgroup cgroup rw,memory\n"
        "51 25 0:41 / /sys/fs/cgroup/newctl rw,relatime - cgroup cgroup rw,newctl\n"
    )
    mounts = parse_cgroup_mounts(text)
    assert [m.mount_point for m in mounts].count("/container/memory") == 0
    newctl = next(m for m in mounts if m.mount_point.endswith("newctl"))
    assert newctl.controllers == ()  # not a known controller name...
    mounts = parse_cgroup_mounts(text, [*hostinfo.CGROUP_CONTROLLERS, "newctl"])
    newctl = next(m for m in mounts if m.mount_point.endswith("newctl"))
    assert newctl.controllers == ("newctl",)  # ...unless /proc/cgroups says it is one


def test_parse_proc_cgroup_v1_v2_hybrid():
    hybrid = {m.key: m.path for m in parse_proc_cgroup(PROC_CGROUP_HYBRID)}
    assert hybrid == {
        "name=systemd": "/",
        "pids": "/",
        "memory": "/process_api/d34839c14c9bb2d32aa9f9893c65090e",
        "cpu": "/",
        "unified": "/user.slice",
    }
    [v2] = parse_proc_cgroup("0::/system.slice/a:b.service\n")
    assert (v2.hierarchy_id, v2.controllers, v2.key) == (0, (), "unified")
    assert v2.path == "/system.slice/a:b.service"  # a ':' in the path survives
    [v1] = parse_proc_cgroup("4:cpu,cpuacct:/x\n")
    assert v1.controllers == ("cpu", "cpuacct") and v1.key == "cpu,cpuacct"


def test_parse_proc_cgroups():
    text = "#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpu\t1\t1\t1\nrdma\t0\t1\t0\n"
    assert parse_proc_cgroups(text) == {"cpu": True, "rdma": False}


def test_capability_masks():
    # This VM's CapEff: everything up to cap_last_cap=40 except bit 24.
    assert missing_capabilities(0x000001FFFEFFFFFF, 40) == ["CAP_SYS_RESOURCE"]
    assert missing_capabilities(0x000001FFFFFFFFFF, 40) == []
    assert missing_capabilities(0, 1) == ["CAP_CHOWN", "CAP_DAC_OVERRIDE"]
    assert missing_capabilities(0, 41)[-1] == "CAP_41"  # newer than the name table


def test_small_parsers():
    cfg = parse_kernel_config('CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C="x"\n# comment\n')
    assert cfg == {"CONFIG_A": "y", "CONFIG_B": "n", "CONFIG_C": "x"}
    assert parse_kernel_release("6.18.44-fc-v595") == (6, 18, 44)
    assert parse_kernel_release("5.4-rc1") == (5, 4, 0)
    assert parse_kernel_release("custom") is None


# --------------------------------------------------------------------------------------------
# Tokens on synthetic facts (pure data, no probing)
# --------------------------------------------------------------------------------------------


def test_no_evidence_no_tokens():
    assert capability_tokens(HostInfo()) == set()


def test_cgroup_tokens_from_synthetic_v2_host():
    info = HostInfo()
    mounts = parse_cgroup_mounts(MOUNTINFO_V2)
    info.cgroups = CgroupInfo(
        mode="v2",
        mounts=mounts,
        controllers=controller_versions(mounts, [*V2_CONTROLLERS.split(), "brandnew"]),
    )
    tokens = capability_tokens(info)
    assert {"cgroup:v2", "cgroup:io", "cgroup:v2:io", "cgroup:blkio", "cgroup:v2:memory"} <= tokens
    assert "cgroup:v1" not in tokens and "cgroup:v1:memory" not in tokens
    assert not any("brandnew" in t for t in tokens)
    assert tokens <= KNOWN_TOKENS
    # no devices controller on v2: device rules are an eBPF program, given cgroup2 and bpf(2)
    assert "cgroup:devices" not in tokens
    info.cgroups.v2_mount = "/sys/fs/cgroup"
    info.bpf.bpf_syscall = Check(True, "map created")
    tokens = capability_tokens(info)
    assert {"cgroup:devices", "cgroup:v2:devices"} <= tokens <= KNOWN_TOKENS
    info.bpf.bpf_syscall = Check(False, "EPERM")
    assert "cgroup:devices" not in capability_tokens(info)


def test_known_tokens_cover_the_documented_vocabulary():
    documented = {
        "root", "userns", "overlay", "seccomp", "bpf", "btf", "tracepoints", "kprobes",
        "kernel-headers", "bcc", "cgroup:v1", "cgroup:v2", "cgroup:memory", "cgroup:pids",
        "cgroup:cpu", "cgroup:cpuset", "cgroup:freezer", "cgroup:devices", "cgroup:blkio",
    }  # fmt: skip
    documented |= {f"ns:{n}" for n in ("pid", "mnt", "uts", "ipc", "net", "user", "cgroup")}
    assert documented <= KNOWN_TOKENS
    assert all(re.fullmatch(r"[a-z0-9_:-]+", t) for t in KNOWN_TOKENS)


# --------------------------------------------------------------------------------------------
# The real probe on this host
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def info() -> HostInfo:
    return hostinfo.get_host_info()


def _mountinfo_fstypes() -> list[tuple[str, str, str]]:
    """(fstype, mount point, super options) per line, split independently of the module."""
    rows = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fstype, _source, super_opts = right.split(" ")[:3]
        rows.append((fstype, left.split(" ")[4], super_opts))
    return rows


def test_probe_recorded_no_errors(info):
    assert info.errors == {}
    assert info.kernel.release == os.uname().release
    assert info.privileges.is_root == (os.geteuid() == 0)


def test_capabilities_agree_with_proc_status(info):
    capeff = next(
        int(line.split()[1], 16)
        for line in Path("/proc/self/status").read_text().splitlines()
        if line.startswith("CapEff:")
    )
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    assert info.privileges.cap_eff == capeff
    assert len(info.privileges.effective) + len(info.privileges.missing) == last + 1
    for name in info.privileges.missing:
        bit = hostinfo.CAP_NAMES.index(name.removeprefix("CAP_").lower())
        assert not capeff & (1 << bit)


def test_cgroup_mode_agrees_with_mountinfo(info):
    rows = _mountinfo_fstypes()
    v1_ctl = {
        opt
        for fstype, _, opts in rows
        if fstype == "cgroup"
        for opt in opts.split(",")
        if opt in hostinfo.CGROUP_CONTROLLERS
    }
    has_v2 = any(fstype == "cgroup2" for fstype, _, _ in rows)
    expected = {(True, True): "hybrid", (True, False): "v1", (False, True): "v2"}.get(
        (bool(v1_ctl), has_v2), "none"
    )
    assert info.cgroups.mode == expected
    assert {c for c, w in info.cgroups.controllers.items() if w.version == "v1"} == v1_ctl


def test_controllers_really_live_where_reported(info):
    assert info.cgroups.controllers, "no cgroup controller found at all"
    # /proc/cgroups: a v1-bound controller has a non-zero hierarchy id, a v2 one has 0.
    hierarchy = {}
    for line in Path("/proc/cgroups").read_text().splitlines()[1:]:
        name, hid = line.split()[:2]
        hierarchy[name] = int(hid)
    own = [line.split(":")[1].split(",") for line in Path("/proc/self/cgroup").read_text().split()]
    for ctrl, where in info.cgroups.controllers.items():
        assert Path(where.mount_point, "cgroup.procs").is_file(), (ctrl, where)
        if where.version == "v1":
            assert hierarchy[ctrl] != 0, ctrl
            assert any(ctrl in ctrls for ctrls in own), ctrl
        else:
            listed = Path(where.mount_point, "cgroup.controllers").read_text().split()
            assert ctrl in listed
            assert hierarchy.get(ctrl, 0) == 0, ctrl


def test_own_cgroup_paths_contain_this_process(info):
    mounts = {",".join(m.controllers) or f"name={m.name}": m for m in info.cgroups.mounts}
    v2 = next((m for m in info.cgroups.mounts if m.version == 2), None)
    if v2 is not None:
        mounts["unified"] = v2
    checked = 0
    for key, path in info.cgroups.self_paths.items():
        mount = mounts.get(key)
        if mount is None or mount.root != "/":
            continue
        procs = Path(mount.mount_point, path.lstrip("/"), "cgroup.procs").read_text().split()
        assert str(os.getpid()) in procs, (key, path)
        checked += 1
    assert checked >= 1


def test_this_hosts_cgroups_are_hybrid_v1(info):
    # Facts of this project's VM: v1 controllers under /sys/fs/cgroup/<ctrl>, cgroup2 at
    # /sys/fs/cgroup/unified.
    assert info.cgroups.mode == "hybrid"
    for ctrl in ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids"):
        assert info.cgroups.controllers[ctrl] == ControllerInfo("v1", f"/sys/fs/cgroup/{ctrl}")
    assert info.cgroups.v2_mount == "/sys/fs/cgroup/unified"


@pytest.mark.parametrize("name", ["pid", "mnt", "uts", "ipc", "net", "user", "cgroup"])
def test_namespaces_usable_here(info, name):
    ns = info.namespaces[name]
    assert ns.present == os.path.exists(f"/proc/self/ns/{name}")
    assert ns.unshare.ok is True, ns.unshare
    assert f"ns:{name}" in capability_tokens(info)


def test_user_namespaces(info):
    expected = int(Path("/proc/sys/user/max_user_namespaces").read_text())
    assert info.userns.max_user_namespaces == expected
    assert info.userns.unprivileged.ok is (expected > 0), info.userns.unprivileged


def test_kernel_features_of_this_vm(info):
    tokens = capability_tokens(info)
    assert {"root", "overlay", "seccomp", "bpf", "btf", "tracepoints"} <= tokens
    # kprobes are compiled out here: the probe must not claim them.
    assert info.bpf.kprobes.ok is not True and "kprobes" not in tokens
    build = Path("/lib/modules", os.uname().release, "build")
    assert ("kernel-headers" in tokens) == (
        build.is_dir() and info.bpf.headers_release == os.uname().release
    )
    assert info.bpf.btf.ok == os.path.exists("/sys/kernel/btf/vmlinux")


def test_tools_match_path(info):
    for name in hostinfo.TOOLS:
        tool = info.tools[name]
        assert tool.path == shutil.which(name)
        if tool.path is None:
            assert f"tool:{name}" not in capability_tokens(info)


def test_tokens_are_known(info):
    tokens = capability_tokens(info)
    assert tokens, "a root VM with namespaces must yield tokens"
    assert tokens <= KNOWN_TOKENS, tokens - KNOWN_TOKENS


def test_overlay_probe_cleans_up():
    before = Path("/proc/self/mountinfo").read_text()
    again = hostinfo.probe_host()
    assert again.filesystems.overlay_mount.ok is True  # it did mount something...
    assert not list(Path("/tmp").glob(f"conform-overlay-{os.getpid()}-*"))  # ...and cleaned up
    after = Path("/proc/self/mountinfo").read_text()
    assert "conform-overlay" not in after  # the mounts stayed in the child's namespace
    assert after.count(" - tracefs ") == before.count(" - tracefs ")


def test_host_dict_is_json(info):
    data = json.loads(json.dumps(hostinfo.host_dict(info)))
    assert data["cgroups"]["mode"] == info.cgroups.mode
    assert data["namespaces"]["pid"]["unshare"]["ok"] is True
    assert sorted(data["tokens"]) == sorted(capability_tokens(info))


# --------------------------------------------------------------------------------------------
# The CLI
# --------------------------------------------------------------------------------------------

SECTIONS = ["Kernel", "Privileges", "Cgroups", "Namespaces", "Filesystems", "Security", "BPF"]


def test_doctor_text(capsys):
    assert cli.main(["doctor"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    headers = [ln for ln in lines if ln and not ln.startswith(" ")]
    assert headers[: len(SECTIONS) + 1] == [*SECTIONS, "Runtimes"]
    rows = [ln for ln in lines if re.match(r"  \[\w+\]", ln)]
    assert rows and all(re.match(r"  \[(ok|missing|error|unknown|info)\] +\S", r) for r in rows)
    # aligned: every row's text column starts at the same offset
    offsets = {len(m.group(1)) for r in rows if (m := re.match(r"(  \[\w+\] +\S.*?  +)\S", r))}
    assert len(offsets) == 1, offsets
    assert "Traceback" not in out


def test_doctor_json_subprocess():
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "conformance.cli", "doctor", "--json"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    expected = {"kernel", "privileges", "cgroups", "namespaces", "userns", "filesystems"}
    expected |= {"security", "bpf", "tools", "rref_path", "errors", "tokens"}
    assert expected <= set(data)
    assert data["kernel"]["release"] == os.uname().release
    assert set(data["tokens"]) <= KNOWN_TOKENS


@pytest.mark.parametrize(
    ("argv", "needle"),
    [(["frobnicate"], "invalid choice"), ([], "required"), (["doctor", "--nope"], "--nope")],
)
def test_bad_usage_exits_2_with_one_line(capsys, argv, needle):
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("conform: error: ") and needle in captured.err


def test_doctor_renders_probe_errors():
    info = HostInfo()
    info.errors["cgroups"] = "PermissionError: /proc/self/mountinfo"
    info.bpf.kprobes = Check(None, "probe failed", error="ValueError: bad")
    text = cli.render_doctor(info)
    assert re.search(r"\[error\] +kprobes +probe failed: ValueError: bad", text)
    assert re.search(r"\[error\] +cgroups +PermissionError", text)
