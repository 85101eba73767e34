"""rref-oci refuses bad bundles and bad requests: one line naming the problem, exit 1,
no traceback, and nothing made (no state directory, cgroup or mount). Bad config.json
fields, namespace paths and rootfs are rows of the catalogue in test_hostile_input.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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


def test_no_config_and_no_bundle(oci: Oci) -> None:
    b = oci.bundle(["true"])
    (b / "config.json").unlink()
    p, cid = _create(oci, b)
    _refused(oci, p, cid, "no config.json")
    p, cid = _create(oci, oci.work / "no-such-bundle")
    _refused(oci, p, cid, "not a directory")


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
