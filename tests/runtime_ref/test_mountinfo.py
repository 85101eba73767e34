"""runtime_ref.mountinfo: the one mountinfo parser (cgroup layout, container /sys/fs/cgroup)."""

from __future__ import annotations

import os

from runtime_ref import mountinfo
from runtime_ref.cgroups import parse_mountinfo

TEXT = (
    "22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw\n"
    r"95 29 8:1 /srv/a\040b /mnt/with\040space\134x rw,relatime - ext4 /dev/sda1 rw" + "\n"
    "31 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:9 master:3 - cgroup cgroup "
    "rw,cpu,cpuacct\n"
    "32 25 0:27 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n"
    "33 25 0:28 /user.slice /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate\n"
    "garbage line\n"
    "x 1 0:1 / /bad rw - tmpfs tmpfs rw\n"
)


def test_fields_optional_tags_and_escapes() -> None:
    ms = mountinfo.parse(TEXT)
    assert [m.mount_id for m in ms] == [22, 95, 31, 32, 33]  # malformed lines skipped
    proc = ms[0]
    assert (proc.parent_id, proc.root, proc.mountpoint, proc.fstype, proc.source) == (
        1,
        "/",
        "/proc",
        "proc",
        "proc",
    )
    assert proc.options == ["rw", "nosuid", "nodev", "noexec", "relatime"]
    assert ms[1].root == "/srv/a b" and ms[1].mountpoint == "/mnt/with space\\x"
    assert ms[2].super_options == ["rw", "cpu", "cpuacct"]  # optional fields did not shift it
    assert mountinfo.unescape(r"a\1b\09") == r"a\1b\09"  # not an escape: left alone


def test_cgroup_hierarchies_come_from_the_same_parser() -> None:
    hs = parse_mountinfo(TEXT)
    assert [(h.version, h.mountpoint, h.root, sorted(h.controllers)) for h in hs] == [
        (1, "/sys/fs/cgroup/cpu,cpuacct", "/", ["cpu", "cpuacct"]),
        (2, "/sys/fs/cgroup/unified", "/user.slice", []),
    ]  # name=systemd serves no controller


def test_reads_this_process_mounts() -> None:
    ms = mountinfo.read()
    assert any(m.mountpoint == "/" for m in ms)
    assert {m.mountpoint for m in ms} == {m.mountpoint for m in mountinfo.read(os.getpid())}
