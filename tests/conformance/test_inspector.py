"""The inspector: its JSON survives awkward content, and its facts match the host's when
it runs directly on the host (the same script runs inside containers)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conformance import facts
from conformance.inspector import Inside, inspector_argv, parse
from conformance.rootfs import find_busybox


@pytest.fixture(scope="module")
def on_host() -> Inside:
    busybox = find_busybox()
    if busybox is None:
        pytest.skip("no static busybox")
    argv = inspector_argv(before='export CONFORM_ODD="a \\"quoted\\" \\\\back\\ttab"')
    env = {"PATH": os.path.dirname(shutil.which("stat") or "/usr/bin") + ":/usr/bin:/bin"}
    p = subprocess.run([busybox, *argv], capture_output=True, text=True, timeout=30, env=env)
    assert p.returncode == 0, p.stderr
    return parse(p.stdout)


def test_parses_on_the_host(on_host: Inside):
    assert on_host.pid > 1 and on_host.ppid == os.getpid()
    assert on_host.ns == {k: facts.ns_id("self", k) for k in on_host.ns}
    assert on_host.interfaces == facts.host_interfaces()
    assert on_host.uid == 0 and on_host.cwd == os.getcwd()
    assert on_host.env["CONFORM_ODD"] == 'a "quoted" \\back\\ttab'
    assert any(m["mount_point"] == "/" for m in on_host.mounts())
    assert "chown" in on_host.caps("CapEff")
    assert on_host.cgroup == Path("/proc/self/cgroup").read_text().splitlines()


def test_parse_takes_the_last_json_line():
    text = 'noise\n{"pid": 1}\n'
    with pytest.raises(KeyError):
        parse(text)  # a JSON line, but not the inspector's
    with pytest.raises(ValueError, match="not JSON"):
        parse("no json at all")


def test_saved_variant_writes_a_file(tmp_path):
    argv = inspector_argv(save=True, then="echo after")
    assert argv[0:2] == ["sh", "-c"] and argv[2].endswith("echo after")
    assert "mv /tmp/.conform-inside.json.tmp /tmp/.conform-inside.json" in argv[2]
