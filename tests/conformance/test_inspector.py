"""The inspector: its JSON survives awkward content, and its facts match the host's when
it runs directly on the host (the same script runs inside containers)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conformance import facts
from conformance.errors import RuntimeFailure
from conformance.inspector import Inside, InspectorError, inspector_argv, parse
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
    assert {"pid", "mnt", "uts", "ipc", "net", "user", "cgroup"} <= set(on_host.ns)
    readable = {k: v for k, v in on_host.ns.items() if v is not None}
    assert readable == {k: facts.ns_id("self", k) for k in readable}
    assert on_host.ns_id("pid") == facts.ns_id("self", "pid")
    assert on_host.ns_links["net"] == os.readlink("/proc/self/ns/net")
    assert on_host.interfaces == facts.host_interfaces()
    assert on_host.uid == 0 and on_host.cwd == os.getcwd()
    assert on_host.env["CONFORM_ODD"] == 'a "quoted" \\back\\ttab'
    assert any(m["mount_point"] == "/" for m in on_host.mounts())
    assert "chown" in on_host.caps("CapEff")
    assert on_host.cgroup == Path("/proc/self/cgroup").read_text().splitlines()


def test_parse_takes_the_last_json_line():
    text = 'noise\n{"pid": 1}\n'
    with pytest.raises(InspectorError, match="not the inspector's JSON"):
        parse(text)  # a JSON line, but not the inspector's
    with pytest.raises(ValueError, match="not JSON"):
        parse("no json at all")
    # the script always prints its JSON: other output means the runtime lost it (a FAIL)
    assert issubclass(InspectorError, RuntimeFailure)


def test_unreadable_facts_are_none_and_fail_by_name():
    """A non-dumpable init, or a /proc that is not the container's, hides facts: they parse
    as None (never a missing key that breaks the test), and a test that needs one fails
    naming the file."""
    doc = {
        "pid": 1,
        "ppid": None,
        "pid1_ppid": None,
        "ns": {"pid": {"id": None, "link": ""}, "net": {"id": "4:4026531840", "link": "x"}},
        "mountinfo": [],
        "status": {},
        "uid": None,
        "gid": 0,
    }
    inside = parse("noise\n" + json.dumps(doc))
    assert inside.ns == {"pid": None, "net": (4, 4026531840)}
    assert inside.ppid is None and inside.uid is None and inside.gid == 0
    assert inside.ns_id("net") == (4, 4026531840)
    with pytest.raises(AssertionError, match=r"/proc/self/ns/pid could not be read"):
        inside.ns_id("pid")
    with pytest.raises(AssertionError, match=r"/proc/self/ns/uts could not be read"):
        inside.ns_id("uts")


def test_script_reads_namespaces_of_a_non_dumpable_shell(tmp_path):
    """The inspector reads namespaces through /proc/self, which a process may always read:
    through /proc/<shell pid>, its children get EPERM when the shell is non-dumpable and
    they lack CAP_SYS_PTRACE (what a runtime granting CAP_SYS_ADMIN, or bind-mounting the
    host's /proc, does to a container's init). Here the shell is non-dumpable because its
    binary is execute-only for a root that exec()s it without CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH."""
    busybox = find_busybox()
    if busybox is None or not shutil.which("setpriv"):
        pytest.skip("no static busybox or setpriv")
    unreadable = tmp_path / "busybox"
    shutil.copy(busybox, unreadable)
    unreadable.chmod(0o111)
    drop = "--bounding-set=-sys_ptrace,-dac_override,-dac_read_search"
    env = {"PATH": os.path.dirname(shutil.which("stat") or "/usr/bin") + ":/usr/bin:/bin"}

    def run(script: str) -> str:  # the second exec is the one without the capabilities
        argv = ["setpriv", drop, "/bin/sh", "-c", 'exec "$0" sh -c "$1"', unreadable, script]
        p = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=env)
        assert p.returncode == 0, p.stderr
        return p.stdout

    assert run("stat -L -c %i /proc/$$/ns/uts 2>/dev/null || echo denied").split() == ["denied"]
    inside = parse(run(inspector_argv()[2]))
    assert inside.ns_id("uts") == facts.ns_id("self", "uts")
    assert inside.ns_id("pid") == facts.ns_id("self", "pid")
