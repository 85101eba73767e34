"""The resource table (runtime_ref.resources) against the CLI, the spec and this host's cgroups.

Each row must be a flag of `run`, `create` and `update`, land at its OCI path
and HostConfig field, be refused with its own message when it is not an
integer, and be written to the v1 file the row names (checked on real cgroups
made below this process's own, named rref-test-*, removed even on failure).
SAMPLES must name every row: a new row without a sample fails here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from runtime_ref import cli, limits, resources
from runtime_ref.cgroups import Cgroup, CgroupError, Layout, detect, parse_flat_keyed, validate
from runtime_ref.resources import BY_NAME, ROWS

MiB = 1 << 20

# name -> (CLI text, OCI value, the kernel's v1 file(s) for it, what that file reads back);
# the file names are written out here, not read from the table, so a wrong row fails
SAMPLES: dict[str, tuple[str | None, object, tuple[str, ...], str]] = {
    "memory": ("64m", 64 * MiB, ("memory.limit_in_bytes",), str(64 * MiB)),
    "memory_swap": ("128m", 128 * MiB, ("memory.memsw.limit_in_bytes",), str(128 * MiB)),
    "memory_reservation": ("32m", 32 * MiB, ("memory.soft_limit_in_bytes",), str(32 * MiB)),
    # a switch: no value on the command line
    "oom_kill_disable": (None, True, ("memory.oom_control",), "1"),
    "cpu_shares": ("512", 512, ("cpu.shares",), "512"),
    "cpu_period": ("50000", 50000, ("cpu.cfs_period_us",), "50000"),
    "cpu_quota": ("25000", 25000, ("cpu.cfs_quota_us",), "25000"),
    "cpuset_cpus": ("0", "0", ("cpuset.cpus",), "0"),
    "cpuset_mems": ("0", "0", ("cpuset.mems",), "0"),
    "pids_limit": ("64", 64, ("pids.max",), "64"),
    # the weight's file depends on the I/O scheduler: the driver takes the first that exists
    "blkio_weight": ("500", 500, ("blkio.weight", "blkio.bfq.weight"), "500"),
}
NEEDS = {"memory_swap": {"memory": "64m"}}  # docker refuses --memory-swap alone


def test_every_row_has_a_sample() -> None:
    assert set(SAMPLES) == set(BY_NAME)
    assert len(BY_NAME) == len(ROWS), "two rows share a name"
    assert len({r.path for r in ROWS}) == len(ROWS), "two rows share an OCI path"
    assert len({r.host[0] for r in ROWS}) == len(ROWS), "two rows share a HostConfig field"


@pytest.mark.parametrize("name", sorted(SAMPLES))
@pytest.mark.parametrize("command", ["run", "create", "update"])
def test_row_is_a_flag_and_lands_at_its_oci_path(command: str, name: str) -> None:
    row, (text, value, _, _) = BY_NAME[name], SAMPLES[name]
    argv = [command, *row.flags[-1:], *([] if text is None else [text])]
    extra = NEEDS.get(name, {})
    for dest, t in extra.items():
        argv += [BY_NAME[dest].flags[-1], t]
    argv += ["busybox"] if command != "update" else ["ctr"]
    args = cli.build_parser(command).parse_args(argv)
    flags = {k: getattr(args, k) for k in limits.FLAGS}
    assert flags[name] == (True if text is None else text)
    res = limits.build(flags)
    assert res[row.section][row.key] == value
    assert row.get(res) == value
    assert resources.host_config(res)[row.host[0]] == value
    # the short spelling, where docker has one, is the same option
    if len(row.flags) > 1:
        short = cli.build_parser(command).parse_args([command, row.flags[0], str(text), "x"])
        assert getattr(short, name) == text


def test_host_config_of_nothing_is_dockers_unset_values() -> None:
    assert resources.host_config({}) == {
        "Memory": 0,
        "MemorySwap": 0,
        "MemoryReservation": 0,
        "OomKillDisable": False,
        "CpuShares": 0,
        "CpuPeriod": 0,
        "CpuQuota": 0,
        "CpusetCpus": "",
        "CpusetMems": "",
        "PidsLimit": 0,
        "BlkioWeight": 0,
    }


@pytest.mark.parametrize("row", [r for r in ROWS if r.kind in ("bytes", "int")], ids=repr)
def test_integer_rows_refuse_text_with_their_own_message(row: resources.Resource) -> None:
    with pytest.raises(CgroupError) as e:
        validate({row.section: {row.key: "x"}})
    assert str(e.value) == f"invalid {row.what}: 'x' is not an integer"


def test_table_module_stays_cheap() -> None:
    code = (
        "import sys; before = set(sys.modules); import runtime_ref.resources; "
        "print(' '.join(sorted(set(sys.modules) - before)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert set(out) <= {
        "__future__",
        "runtime_ref",
        "runtime_ref.errors",
        "runtime_ref.resources",
    }, out


@pytest.fixture
def v1_cgroup() -> Iterator[Cgroup]:
    lay = detect()
    v1 = Layout([h for h in lay.hierarchies if h.version == 1], lay.own)
    if not v1.hierarchies:
        pytest.skip("no cgroup v1 hierarchy on this host (the v2 files are checked on v2 hosts)")
    cg = Cgroup.plan(f"rref-test-{uuid.uuid4().hex[:12]}", layout=v1)
    cg.create()
    try:
        yield cg
    finally:
        left = cg.remove()
        assert not left, left


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_row_is_written_to_its_v1_file(v1_cgroup: Cgroup, name: str) -> None:
    row, (_, value, names, want) = BY_NAME[name], SAMPLES[name]
    d = v1_cgroup.v1_dir(row.controller)
    if d is None:
        pytest.skip(f"no v1 hierarchy serves {row.controller} here")
    assert row.v1 == names[0]
    limit = {"memory": {"limit": 64 * MiB}} if name == "memory_swap" else {}
    path = next((os.path.join(d, n) for n in names if os.path.exists(os.path.join(d, n))), None)
    if path is None:
        pytest.skip(f"none of {names} exists here (swap accounting off, or no such I/O scheduler)")
    v1_cgroup.apply({**limit, row.section: {**limit.get(row.section, {}), row.key: value}})
    with open(path) as f:
        got = f.read().strip()
    if name == "oom_kill_disable":
        got = str(parse_flat_keyed(got)["oom_kill_disable"])
    assert got == want, f"{path}: {got!r}, want {want!r}"


# v2: this host's cgroup2 tree serves none of these controllers, so the files are
# plain files in a temporary directory (a stand-in for a v2 cgroup, named as the kernel
# names them): this checks which file each row reaches and the v1 -> v2 conversions.
V2_SAMPLES: dict[str, tuple[object, str, str]] = {
    "memory": (64 * MiB, "memory.max", str(64 * MiB)),
    "memory_swap": (96 * MiB, "memory.swap.max", str(32 * MiB)),  # swap alone: 96 - 64
    "memory_reservation": (32 * MiB, "memory.low", str(32 * MiB)),
    "cpu_shares": (1024, "cpu.weight", "39"),
    "cpu_quota": (25000, "cpu.max", "25000"),
    "cpu_period": (50000, "cpu.max", "max 50000"),
    "cpuset_cpus": ("0", "cpuset.cpus", "0"),
    "cpuset_mems": ("0", "cpuset.mems", "0"),
    "pids_limit": (0, "pids.max", "max"),
    "blkio_weight": (500, "io.weight", "default 500"),
}
V2_FILES = {f for _, f, _ in V2_SAMPLES.values()}


@pytest.mark.parametrize("name", sorted(V2_SAMPLES))
def test_row_is_written_to_its_v2_file(tmp_path: os.PathLike[str], name: str) -> None:
    from runtime_ref.cgroups import v2 as cgv2

    row, (value, file, want) = BY_NAME[name], V2_SAMPLES[name]
    assert row.v2 == file or (name == "cpu_period" and row.v2 == "cpu.max")
    for f in V2_FILES:
        with open(os.path.join(tmp_path, f), "w") as fh:
            fh.write("max\n" if f == "cpu.max" else "")
    values = {row.key: value}
    if row.section == "memory" and name != "memory":
        values["limit"] = 64 * MiB
    cgv2.SETTERS[row.controller](str(tmp_path), values)
    with open(os.path.join(tmp_path, file)) as f:
        assert f.read().strip() == want


def test_oom_kill_disable_has_no_v2_file() -> None:
    assert BY_NAME["oom_kill_disable"].v2 is None
