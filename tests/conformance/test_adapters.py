"""Adapters without a runtime: the --runtime vocabulary and the translation of a
ContainerSpec into rref flags, podman flags and an OCI config.json."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

from conformance.adapters import ChoiceError, make, parse_choices
from conformance.adapters.base import ContainerSpec, IdMap, Volume
from conformance.adapters.engine import PodmanRuntime
from conformance.adapters.oci import OciRuntime
from conformance.adapters.ocispec import DEFAULT_CAPS, build_config
from conformance.adapters.ref import RefRuntime
from conformance.errors import Unsupported
from conformance.tokens import ADAPTER_TOKENS


def test_parse_choices():
    got = parse_choices("ref, runc,podman,mine=oci:/opt/bin/rt,oci:/x/crun2,ref-oci,fake:exec")
    assert [(c.name, c.kind, c.target) for c in got] == [
        ("ref", "ref", "rref"),
        ("runc", "oci", "runc"),
        ("podman", "engine", "podman"),
        ("mine", "oci", "/opt/bin/rt"),
        ("crun2", "oci", "/x/crun2"),
        ("ref-oci", "ref-oci", "rref-oci"),
        ("fake", "fake", "exec"),
    ]


def test_ref_choices_with_paths(tmp_path: Path):
    """`ref:/path` runs that rref binary (several in one session, each its own name)."""
    got = parse_choices("ref,a=ref:/opt/rref-a,ref:/x/rref-b")
    assert [(c.name, c.kind, c.target) for c in got] == [
        ("ref", "ref", "rref"),
        ("a", "ref", "/opt/rref-a"),
        ("rref-b", "ref", "/x/rref-b"),
    ]
    fake = tmp_path / "my-rref"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    rt = make(parse_choices(f"mine=ref:{fake}")[0])
    assert isinstance(rt, RefRuntime) and rt.binary == str(fake) and rt.name == "mine"
    assert rt.available() is None
    missing = make(parse_choices("x=ref:/no/such/rref")[0]).available()
    assert "not installed" in missing and "/no/such/rref" in missing
    assert make(parse_choices("ref")[0]).binary != str(fake)


def test_engine_on_another_oci_runtime(tmp_path: Path):
    """`podman-rref` and `engine:podman:RUNTIME`: podman --runtime RUNTIME on every call."""
    got = parse_choices("podman-rref,engine:podman:/opt/rt-oci,x=engine:podman:crun")
    assert [(c.name, c.kind, c.target, c.oci_runtime) for c in got] == [
        ("podman-rref", "engine", "podman", "rref-oci"),
        ("podman-rt", "engine", "podman", "/opt/rt-oci"),
        ("x", "engine", "podman", "crun"),
    ]
    rt = make(got[0])
    assert isinstance(rt, PodmanRuntime) and rt.oci_runtime
    assert os.path.basename(rt.oci_runtime) == "rref-oci" and os.path.isabs(rt.oci_runtime)
    assert rt._argv("ps")[1:] == ["--runtime", rt.oci_runtime, "ps"]
    assert make(parse_choices("podman")[0])._argv("ps")[1:] == ["ps"]  # type: ignore[attr-defined]
    missing = make(got[1]).available()
    assert missing is not None and "/opt/rt-oci" in missing


@pytest.mark.parametrize(
    "text",
    [
        "engine:docker:rref-oci",
        "engine:podman",
        "engine:podman:",
        "engine:podman:rel/rt",
        "podman-rref,podman-rref",
    ],
)
def test_bad_engine_choices(text):
    with pytest.raises(ChoiceError):
        parse_choices(text)


@pytest.mark.parametrize(
    "text",
    ["", "lxc", "runc,runc", "a=oci:relative", "b c=ref", "a=ref:relative", "ref,ref:/x/ref"],
)
def test_bad_choices(text):
    with pytest.raises(ChoiceError):
        parse_choices(text)


def test_capabilities_use_known_tokens():
    for text in ("ref", "runc", "podman", "fake"):
        rt = make(parse_choices(text)[0])
        assert rt.capabilities() <= ADAPTER_TOKENS.keys(), text
    ref_oci = make(parse_choices("ref-oci")[0])
    assert isinstance(ref_oci, OciRuntime) and ref_oci.available() is None
    assert ref_oci.binary and os.path.basename(ref_oci.binary) == "rref-oci"
    assert "not installed" in make(parse_choices("x=oci:/no/such/rt")[0]).available()


SPEC = ContainerSpec(
    argv=["sh", "-c", "true"],
    hostname="h1",
    env={"A": "1"},
    uid_map=[IdMap(0, 200000, 65536)],
    memory=32 << 20,
    cpu_quota=10000,
    cpu_period=50000,
    pids_limit=9,
    cpuset_cpus="1",
    volumes=[Volume("/tmp/src", "/vol", readonly=True)],
    readonly_rootfs=True,
    workdir="/home",
    user="1:1",
    cap_add=["SYS_ADMIN"],
    cap_drop=["NET_RAW"],
    no_new_privs=True,
    seccomp="unconfined",
)


def test_oci_config_from_spec(tmp_path: Path):
    (tmp_path / "etc").mkdir()
    cfg = build_config(SPEC, tmp_path, cgroups_path="conform-x")
    linux, proc = cfg["linux"], cfg["process"]
    assert sorted(n["type"] for n in linux["namespaces"]) == [
        "cgroup",
        "ipc",
        "mount",
        "network",
        "pid",
        "user",
        "uts",
    ]
    assert (
        linux["uidMappings"]
        == linux["gidMappings"]
        == [{"containerID": 0, "hostID": 200000, "size": 65536}]
    )
    assert linux["cgroupsPath"] == "conform-x"
    assert linux["resources"]["memory"] == {"limit": 32 << 20}
    assert linux["resources"]["cpu"] == {"quota": 10000, "period": 50000, "cpus": "1"}
    assert linux["resources"]["pids"] == {"limit": 9}
    assert linux["resources"]["devices"][0] == {"allow": False, "access": "rwm"}
    assert "/proc/kcore" in linux["maskedPaths"] and "/proc/sys" in linux["readonlyPaths"]
    caps = proc["capabilities"]["bounding"]
    assert "CAP_SYS_ADMIN" in caps and "CAP_NET_RAW" not in caps
    assert set(caps) == (set(DEFAULT_CAPS) - {"CAP_NET_RAW"}) | {"CAP_SYS_ADMIN"}
    assert proc["user"] == {"uid": 1, "gid": 1} and proc["cwd"] == "/home"
    assert proc["noNewPrivileges"] is True and "A=1" in proc["env"]
    assert cfg["root"] == {"path": str(tmp_path), "readonly": True}
    assert cfg["hostname"] == "h1"
    vol = next(m for m in cfg["mounts"] if m["destination"] == "/vol")
    assert vol == {
        "destination": "/vol",
        "type": "bind",
        "source": "/tmp/src",
        "options": ["rbind", "rprivate", "ro"],
    }
    assert {m["destination"] for m in cfg["mounts"]} >= {
        "/proc",
        "/dev",
        "/dev/pts",
        "/dev/shm",
        "/dev/mqueue",
        "/sys",
        "/sys/fs/cgroup",
    }


def test_oci_config_defaults(tmp_path: Path):
    cfg = build_config(ContainerSpec(), tmp_path, cgroups_path="c")
    assert "hostname" not in cfg, "no hostname unless asked: that is an engine's default"
    assert "user" not in [n["type"] for n in cfg["linux"]["namespaces"]]
    with pytest.raises(Unsupported):
        build_config(ContainerSpec(network="bridge"), tmp_path, cgroups_path="c")


def test_rref_flags():
    f = RefRuntime("ref", binary="/bin/true").flags(SPEC)
    pairs = set(itertools.pairwise(f))
    for pair in [
        ("--network", "none"),
        ("--hostname", "h1"),
        ("-e", "A=1"),
        ("--uidmap", "0:200000:65536"),
        ("--memory", str(32 << 20)),
        ("--cpu-quota", "10000"),
        ("--cpu-period", "50000"),
        ("--pids-limit", "9"),
        ("--cpuset-cpus", "1"),
        ("-v", "/tmp/src:/vol:ro"),
        ("-w", "/home"),
        ("-u", "1:1"),
        ("--cap-add", "SYS_ADMIN"),
        ("--cap-drop", "NET_RAW"),
        ("--security-opt", "no-new-privileges"),
        ("--security-opt", "seccomp=unconfined"),
    ]:
        assert pair in pairs, pair
    assert "--read-only" in f
    with pytest.raises(Unsupported):
        RefRuntime("ref", binary="/bin/true").flags(
            ContainerSpec(namespaces=frozenset({"mnt", "pid"}))
        )


def test_podman_flags_never_use_the_default_bridge():
    f = PodmanRuntime("podman", "/usr/bin/podman").flags(SPEC)
    assert f[:4] == ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
    assert ("--network", "none") in set(itertools.pairwise(f))
    assert {"--pid=private", "--ipc=private", "--uts=private", "--cgroupns=private"} <= set(f)
    assert ("--gidmap", "0:200000:65536") in set(itertools.pairwise(f))
    with pytest.raises(Unsupported):
        PodmanRuntime("podman", "/usr/bin/podman").flags(ContainerSpec(network="bridge"))


def test_profile_weight_and_named_volume_flags(tmp_path: Path):
    profile = tmp_path / "p.json"
    profile.write_text('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [], "comment": "x"}')
    spec = ContainerSpec(
        seccomp_profile=str(profile), blkio_weight=300, volumes=[Volume("conform-v", "/data")]
    )
    for f in (
        RefRuntime("ref", binary="/bin/true").flags(spec),
        PodmanRuntime("podman", "/usr/bin/podman").flags(spec),
    ):
        pairs = set(itertools.pairwise(f))
        assert ("--security-opt", f"seccomp={profile}") in pairs
        assert ("--blkio-weight", "300") in pairs and ("-v", "conform-v:/data") in pairs
    cfg = build_config(ContainerSpec(seccomp_profile=str(profile), blkio_weight=300), tmp_path, "c")
    assert cfg["linux"]["seccomp"] == {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": []}
    assert cfg["linux"]["resources"]["blockIO"] == {"weight": 300}
    with pytest.raises(Unsupported):
        build_config(spec, tmp_path, cgroups_path="c")  # a named volume: no store in OCI


def test_event_names_and_times():
    from conformance.adapters.base import event_action
    from conformance.adapters.dockercli import parse_event as _event

    assert [event_action(a) for a in ("exec_start: sh -c x", "died", "remove", "create")] == [
        "exec",
        "die",
        "destroy",
        "create",
    ]
    podman = _event({"ID": "c1", "Status": "died", "Time": "2026-01-02T03:04:05.25Z"})
    assert (podman.container, podman.action, podman.time) == ("c1", "die", 1767323045.25)
    docker = _event({"id": "c2", "Action": "exec_die", "timeNano": 1_500_000_000})
    assert (docker.container, docker.action, docker.time) == ("c2", "exec_die", 1.5)
    offset = _event({"ID": "c3", "Status": "start", "Time": "2026-01-02T05:04:05+02:00"})
    assert offset.time == 1767323045.0
    assert _event({"Type": "image", "Status": "pull"}).container == ""


def test_ref_bridge_is_the_sessions_own():
    from conformance.adapters import ref

    name, subnet = ref._free_bridge_name(), ref._free_subnet()
    assert len(name) == 15 and "rref" in name and "conform" in name
    assert subnet.subnet_of(ref.SUBNET_POOL) and subnet != ref.RREF_DEFAULT_SUBNET
    assert not any(subnet.overlaps(n) for n in ref._host_networks())
    assert ref._host_networks(), "the host's connected routes were not read"
