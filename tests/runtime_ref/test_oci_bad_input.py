"""rref-oci refuses bad bundles and bad requests: one line naming the problem, exit 1,
no traceback, and nothing made (no state directory, cgroup or mount)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from ocikit import Oci, leftovers


def _refused(oci: Oci, p: Any, cid: str, *words: str) -> None:
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 1, p.stderr
    assert len(lines) == 1 and lines[0].startswith("rref-oci: "), p.stderr
    assert "Traceback" not in p.stderr
    for w in words:
        assert w in lines[0], lines[0]
    assert not (oci.root / cid).exists()
    assert leftovers(cid) == []


def _create(oci: Oci, bundle: Path) -> tuple[Any, str]:
    cid = oci.new_id()
    return oci("create", "-b", str(bundle), cid, check=False), cid


def _edit(bundle: Path, fn: Any) -> Path:
    config = json.loads((bundle / "config.json").read_text())
    fn(config)
    (bundle / "config.json").write_text(json.dumps(config))
    return bundle


def test_malformed_json(oci: Oci) -> None:
    b = oci.bundle(["true"])
    (b / "config.json").write_text('{"ociVersion": "1.0.2", ')
    p, cid = _create(oci, b)
    _refused(oci, p, cid, "config.json: invalid JSON")


def test_no_config_and_no_bundle(oci: Oci) -> None:
    b = oci.bundle(["true"])
    (b / "config.json").unlink()
    p, cid = _create(oci, b)
    _refused(oci, p, cid, "no config.json")
    p, cid = _create(oci, oci.work / "no-such-bundle")
    _refused(oci, p, cid, "not a directory")


BAD_CONFIGS = {
    "args-not-a-list": (lambda c: c["process"].update(args="true"), "process.args"),
    "args-empty": (lambda c: c["process"].update(args=[]), "process.args: empty"),
    "cwd-relative": (lambda c: c["process"].update(cwd="tmp"), "process.cwd"),
    "uid-negative": (lambda c: c["process"]["user"].update(uid=-1), "process.user.uid"),
    "unknown-cap": (
        lambda c: c["process"]["capabilities"]["bounding"].append("CAP_NOPE"),
        "unknown capability 'CAP_NOPE'",
    ),
    "rlimit-unknown": (
        lambda c: c["process"].update(rlimits=[{"type": "RLIMIT_NOPE", "hard": 1, "soft": 1}]),
        "unknown rlimit",
    ),
    "rlimit-soft-above-hard": (
        lambda c: c["process"].update(rlimits=[{"type": "RLIMIT_NOFILE", "hard": 1, "soft": 2}]),
        "soft limit 2 is above hard 1",
    ),
    "old-version": (lambda c: c.update(ociVersion="0.9"), "only runtime-spec 1.x"),
    "namespace-type": (
        lambda c: c["linux"]["namespaces"].append({"type": "time"}),
        "unknown namespace type 'time'",
    ),
    "mount-relative": (
        lambda c: c["mounts"].append({"destination": "mnt", "type": "tmpfs", "source": "x"}),
        "mounts[7].destination",
    ),
    "memory-not-int": (
        lambda c: c["linux"]["resources"].update(memory={"limit": "lots"}),
        "linux.resources",
    ),
    "host-sysctl": (
        lambda c: c["linux"].update(sysctl={"vm.swappiness": "1"}),
        "not a namespaced sysctl",
    ),
    "terminal": (lambda c: c["process"].update(terminal="yes"), "process.terminal"),
    "unsupported-field": (lambda c: c["linux"].update(intelRdt={"closID": "x"}), "intelRdt"),
    "unsupported-resource": (
        lambda c: c["linux"]["resources"].update(hugepageLimits=[{"pageSize": "2MB", "limit": 1}]),
        "hugepageLimits: not supported",
    ),
    "hook-kind": (lambda c: c.update(hooks={"prestop": []}), "hooks.prestop"),
    "hostname-without-uts": (
        lambda c: c["linux"].update(namespaces=[{"type": "mount"}, {"type": "pid"}]),
        "needs a uts namespace",
    ),
    "userns-with-joined-ns": (
        lambda c: c["linux"].update(
            namespaces=[
                *({"type": t} for t in ("user", "uts", "mount")),
                {"type": "network", "path": "/proc/self/ns/net"},
            ],
            uidMappings=[{"containerID": 0, "hostID": 1000, "size": 1}],
            gidMappings=[{"containerID": 0, "hostID": 1000, "size": 1}],
        ),
        "joining a namespace by path with a new user namespace",
    ),
    "userns-without-maps": (
        lambda c: c["linux"]["namespaces"].append({"type": "user"}),
        "needs uid and gid mappings",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_invalid_config_is_refused_with_its_field(oci: Oci, case: str) -> None:
    edit, words = BAD_CONFIGS[case]
    p, cid = _create(oci, _edit(oci.bundle(["true"]), edit))
    _refused(oci, p, cid, "config.json: ", words)


def test_missing_rootfs(oci: Oci) -> None:
    b = _edit(oci.bundle(["true"]), lambda c: c["root"].update(path="no-rootfs"))
    p, cid = _create(oci, b)
    _refused(oci, p, cid, f"rootfs {b / 'no-rootfs'}: no such directory")


def test_a_namespace_path_that_is_not_a_namespace(oci: Oci) -> None:
    def join(path: str, kind: str = "network") -> Any:
        def fn(c: dict[str, Any]) -> None:
            c["linux"]["namespaces"] = [
                ns for ns in c["linux"]["namespaces"] if ns["type"] != kind
            ] + [{"type": kind, "path": path}]

        return fn

    p, cid = _create(oci, _edit(oci.bundle(["true"]), join("/etc/hostname")))
    _refused(oci, p, cid, "network namespace path /etc/hostname: not a namespace")
    p, cid = _create(oci, _edit(oci.bundle(["true"]), join("/no/such/ns")))
    _refused(oci, p, cid, "/no/such/ns: No such file or directory")
    p, cid = _create(oci, _edit(oci.bundle(["true"]), join("/proc/self/ns/ipc")))
    _refused(oci, p, cid, "/proc/self/ns/ipc: is a ipc namespace")


def test_create_of_an_existing_id_leaves_the_first_alone(oci: Oci) -> None:
    b = oci.bundle(["sleep", "30"])
    cid = oci.new_id()
    oci("create", "-b", str(b), cid)
    p = oci("create", "-b", str(b), cid, check=False)
    assert p.returncode == 1 and p.stderr.strip() == f"rref-oci: container with id exists: {cid}"
    assert oci.state(cid)["status"] == "created"
    oci("delete", cid)


def test_unknown_signal_and_unknown_id(oci: Oci) -> None:
    cid = oci.new_id()
    oci("run", "-d", "-b", str(oci.bundle(["sleep", "30"])), cid)
    p = oci("kill", cid, "SIGNOPE", check=False)
    assert (p.returncode, p.stderr) == (1, "rref-oci: unknown signal 'SIGNOPE'\n")
    assert oci.state(cid)["status"] == "running"
    for verb in ("state", "start", "kill", "delete", "pause", "exec"):
        p = oci(verb, "rref-oci-nosuch", *(["true"] if verb == "exec" else []), check=False)
        assert p.returncode == 1, verb
        assert p.stderr == "rref-oci: container rref-oci-nosuch does not exist\n", verb
    bad = oci("state", "../x", check=False)
    assert bad.returncode == 1 and "invalid container id" in bad.stderr
    oci("delete", "-f", cid)


def test_a_program_that_is_not_there_fails_create(oci: Oci) -> None:
    p, cid = _create(oci, oci.bundle(["no-such-program"]))
    _refused(oci, p, cid, '"no-such-program": executable file not found')


def test_errors_go_to_the_log_in_the_format_asked(oci: Oci) -> None:
    log = oci.work / "log.json"
    p = oci("--log", str(log), "--log-format", "json", "state", "rref-oci-nosuch", check=False)
    assert p.returncode == 1
    entry = json.loads(log.read_text())
    assert entry["level"] == "error" and entry["msg"] == "container rref-oci-nosuch does not exist"
