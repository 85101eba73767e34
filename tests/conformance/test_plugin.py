"""The pytest plugin, through real pytest runs in subprocesses (the plugin loads through
the pytest11 entry point, as in any run): inertness, marker checks, the verdict mapping,
known deviations, the leak check, and `conform run` result files.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from probes.report import split_jsonl

REPO = Path(__file__).resolve().parents[2]


def pytest_run(
    tmp_path: Path, module: str, *args: str, name: str = "test_mod.py", timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    (tmp_path / name).write_text(textwrap.dedent(module))
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-o",
            "addopts=",
            str(tmp_path / name),
            *args,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_plugin_is_inert_without_runtime(tmp_path):
    p = pytest_run(
        tmp_path,
        """
        def test_plain(request):
            assert "runtime" not in request.fixturenames
    """,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    assert "conformance verdicts" not in p.stdout
    assert not (tmp_path / "reports").exists(), "results written without --runtime"
    help_text = subprocess.run(
        [sys.executable, "-m", "pytest", "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert "--runtime=LIST" in help_text and "--results=DIR" in help_text


def test_unknown_requires_token_is_an_error(tmp_path):
    p = pytest_run(
        tmp_path,
        """
        import pytest

        @pytest.mark.behaviour("PID-01")
        @pytest.mark.requires("cgroup:memory", "no-such-token")
        def test_x(runtime):
            pass
    """,
        "--runtime",
        "fake",
    )
    assert p.returncode == 2, p.stdout
    assert "unknown requires token(s) no-such-token" in p.stdout
    assert "skipped" not in p.stdout.splitlines()[-1]


def test_unknown_behaviour_id_is_a_collection_error(tmp_path):
    p = pytest_run(
        tmp_path,
        """
        import pytest

        @pytest.mark.behaviour("PID-99")
        def test_x(runtime):
            pass
    """,
        "--runtime",
        "fake",
    )
    assert p.returncode == 2, p.stdout
    assert "ERROR collecting" in p.stdout and "unknown behaviour ID(s) PID-99" in p.stdout


def test_behaviour_test_must_take_runtime(tmp_path):
    p = pytest_run(
        tmp_path,
        """
        import pytest

        @pytest.mark.behaviour("PID-01")
        def test_x():
            pass
    """,
        "--runtime",
        "fake",
    )
    assert p.returncode == 2 and "must take the `runtime` fixture" in p.stdout, p.stdout


def test_bad_runtime_option_is_a_usage_error(tmp_path):
    p = pytest_run(tmp_path, "def test_x():\n    pass\n", "--runtime", "ref,nonsense")
    assert p.returncode == 4, p.stdout + p.stderr
    assert "unknown runtime" in p.stderr


VERDICTS_MODULE = """
    import pytest
    from conformance.errors import Unsupported

    @pytest.fixture
    def broken_fixture():
        raise RuntimeError("host problem")

    @pytest.mark.behaviour("PID-01")
    def test_pass(runtime):
        pass

    @pytest.mark.behaviour("PID-02")
    def test_fail(runtime):
        assert 1 == 2, "the runtime violated it"

    @pytest.mark.behaviour("PID-03")
    def test_broken(runtime):
        raise KeyError("harness bug")

    @pytest.mark.behaviour("PID-04")
    def test_broken_fixture(runtime, broken_fixture):
        pass

    @pytest.mark.behaviour("PID-05")
    @pytest.mark.requires("exec")
    def test_unsupported_token(runtime):
        pass

    @pytest.mark.behaviour("PID-06")
    def test_known_deviation(runtime):
        assert False, "known"

    @pytest.mark.behaviour("PID-07")
    def test_cannot_start(runtime, container):
        container(argv=["true"])

    @pytest.mark.behaviour("PID-08")
    def test_stale_deviation(runtime):
        pass

    @pytest.mark.behaviour("MNT-01")
    def test_adapter_unsupported(runtime):
        raise Unsupported("a spec the adapter cannot express")

    @pytest.mark.behaviour("MNT-02")
    def test_two_tests_pass(runtime):
        pass

    @pytest.mark.behaviour("MNT-02")
    def test_two_tests_fail(runtime):
        assert False

    @pytest.mark.behaviour("MNT-03")
    def test_not_installed(runtime):
        pass

    @pytest.fixture
    def cleanup_fails():
        yield
        from conformance.errors import RuntimeFailure
        raise RuntimeFailure("podman rm: device or resource busy")

    @pytest.mark.behaviour("UTS-01")
    def test_teardown_error(runtime, cleanup_fails):
        pass
"""


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["single", "xdist"])
def test_verdict_mapping(tmp_path, xdist):
    devs = tmp_path / "devs"
    devs.mkdir()
    (devs / "fake.toml").write_text(
        '[[deviation]]\nid = "PID-06"\nreason = "fake never does this"\n'
        'link = "https://example.invalid/1"\n\n'
        '[[deviation]]\nid = "PID-08"\nreason = "stale entry"\n'
    )
    results = tmp_path / "res"
    p = pytest_run(
        tmp_path,
        VERDICTS_MODULE,
        "--runtime",
        "fake,gone=oci:/nonexistent/rt",
        "--results",
        str(results),
        "--deviations",
        str(devs),
        *xdist,
    )
    assert p.returncode == 1, p.stdout + p.stderr
    doc = json.loads((results / "summary.json").read_text())
    fake = doc["results"]["fake"]["behaviours"]
    assert doc["matrix"]["fake"] == {
        "PID-01": "pass",
        "PID-02": "fail",
        "PID-03": "broken",
        "PID-04": "broken",
        "PID-05": "unsupported",
        "PID-06": "xfail",
        "PID-07": "fail",
        "PID-08": "broken",
        "MNT-01": "unsupported",
        "MNT-02": "fail",
        "MNT-03": "pass",
        "UTS-01": "broken",  # a tear-down error, even a runtime's, is never fail
    }
    assert fake["UTS-01"]["reasons"] == [
        "teardown: RuntimeFailure: podman rm: device or resource busy"
    ]
    assert fake["PID-02"]["reasons"] == ["AssertionError: the runtime violated it"]
    assert fake["PID-03"]["reasons"] == ["KeyError: 'harness bug'"]
    assert fake["PID-04"]["reasons"][0].startswith("setup: RuntimeError: host problem")
    assert fake["PID-05"]["reasons"] == ["unsupported: exec (runtime fake)"]
    assert fake["PID-06"]["reasons"] == [
        "known deviation PID-06: fake never does this (https://example.invalid/1)"
    ]
    assert "fake: cannot start containers" in fake["PID-07"]["reasons"][0]
    assert "XPASS(strict)" in fake["PID-08"]["reasons"][0]
    assert fake["MNT-01"]["reasons"] == ["unsupported: a spec the adapter cannot express"]
    assert sorted(t["verdict"] for t in fake["MNT-02"]["tests"]) == ["fail", "pass"]
    gone = doc["matrix"]["gone"]
    assert set(gone.values()) == {"unsupported"}
    assert doc["results"]["gone"]["behaviours"]["PID-01"]["reasons"] == [
        "unsupported: runtime gone not installed (/nonexistent/rt not found)"
    ]
    assert doc["results"]["fake"]["counts"] == {
        "fail": 3,
        "broken": 4,
        "xfail": 1,
        "pass": 3,
        "unsupported": 2,
        "skipped": 0,
    }
    assert doc["leftovers"] == []
    junit = ET.parse(results / "junit.xml").getroot()
    assert len(junit.findall(".//testcase")) == 26
    assert list((results / "allure-results").glob("*-result.json"))


LEAKY_MODULE = """
    import subprocess
    import pytest
    from conformance import facts

    @pytest.mark.behaviour("LIFE-04")
    def test_leaks_a_process(runtime, workspace):
        p = subprocess.Popen(["sh", "-c", "sleep 60", str(workspace.dir / "leak")],
                             start_new_session=True)
        facts.wait_for(lambda: b"leak" in open(f"/proc/{p.pid}/cmdline", "rb").read())
"""


def test_session_end_reports_leftovers(tmp_path):
    results = tmp_path / "res"
    p = pytest_run(tmp_path, LEAKY_MODULE, "--runtime", "fake", "--results", str(results))
    try:
        doc = json.loads((results / "summary.json").read_text())
        assert doc["matrix"]["fake"] == {"LIFE-04": "pass"}
        assert p.returncode == 1, "leftovers must make the session fail"
        assert "host resources left behind" in p.stdout
        assert len(doc["leftovers"]) == 1 and doc["leftovers"][0].startswith("process: ")
    finally:
        for line in p.stdout.splitlines():
            if line.startswith("LEFTOVER process: "):  # its own session: kill sh and sleep
                os.killpg(int(line.split()[2]), signal.SIGKILL)


def test_behaviour_id_selects_with_k(tmp_path):
    p = pytest_run(
        tmp_path,
        VERDICTS_MODULE,
        "--runtime",
        "fake",
        "--results",
        str(tmp_path / "r"),
        "-k",
        "PID-01 or MNT-03",
    )
    assert p.returncode == 0 and "2 passed" in p.stdout, p.stdout


def test_conform_run_writes_summary_junit_and_allure(tmp_path):
    results = tmp_path / "results"
    started = time.monotonic()
    p = subprocess.run(
        [
            str(Path(sys.executable).with_name("conform")),
            "run",
            "--runtime",
            "ref",
            "--results",
            str(results),
            "-k",
            "PID-01",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert time.monotonic() - started < 60
    doc = json.loads((results / "summary.json").read_text())
    assert doc["matrix"] == {"ref": {"PID-01": "pass"}}
    assert doc["results"]["ref"]["behaviours"]["PID-01"]["level"] == "MUST"
    case = ET.parse(results / "junit.xml").getroot().find(".//testcase")
    props = {pr.get("name"): pr.get("value") for pr in case.iter("property")}
    assert props == {"behaviour": "PID-01", "runtime": "ref"}
    allure = [json.loads(f.read_text()) for f in (results / "allure-results").glob("*-result.json")]
    assert len(allure) == 1
    labels = {(lb["name"], lb["value"]) for lb in allure[0]["labels"]}
    assert {
        ("epic", "PID namespace"),
        ("feature", "PID"),
        ("story", "PID-01 container init is pid 1"),
        ("behaviour", "PID-01"),
        ("level", "MUST"),
        ("severity", "critical"),
        ("tag", "ref"),
    } <= labels
    evidence = {a["name"]: a["source"] for a in allure[0]["attachments"]}
    assert {"runtime commands", "runtime stdout and stderr", "inspector JSON"} <= set(evidence)
    inspected = json.loads((results / "allure-results" / evidence["inspector JSON"]).read_text())
    assert inspected["pid"] == 1  # the inspector's own view, as the test read it
    facts = json.loads((results / "runner.json").read_text())
    assert facts["runtimes"]["ref"].startswith("rref ")
    assert facts["kernel"] == os.uname().release
    assert facts["cgroup_controllers"]["memory"] in ("v1", "v2")
    assert {"name": "runtime", "value": "'ref'"} in [
        {"name": pr["name"], "value": pr["value"]} for pr in allure[0]["parameters"]
    ]
    assert allure[0]["status"] == "passed"
    # conform run traces by default (--probe auto): the trace of every runtime command
    assert facts["probe_backend"] in ("bcc", "ptrace")
    assert {"syscall trace", "syscall trace (JSONL)"} <= set(evidence)
    traced = split_jsonl(
        (results / "allure-results" / evidence["syscall trace (JSONL)"]).read_text()
    )
    runs = [t for argv, t in traced if "run" in argv]
    assert runs and all(t.backend == facts["probe_backend"] for _, t in traced)
    flags = {
        f for t in runs for e in t.by_syscall("unshare", "clone", "clone3") for f in e.args["flags"]
    }
    assert "CLONE_NEWPID" in flags, flags
    timeline = (results / "allure-results" / evidence["syscall trace"]).read_text()
    assert "$ " in timeline and "unshare(" in timeline


def test_probe_none_makes_trace_behaviours_unsupported(tmp_path):
    results = tmp_path / "results"
    p = subprocess.run(
        [
            str(Path(sys.executable).with_name("conform")),
            "run",
            "--runtime",
            "ref",
            "--probe",
            "none",
            "--results",
            str(results),
            "--behaviour",
            "TRACE-04",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    doc = json.loads((results / "summary.json").read_text())
    slot = doc["results"]["ref"]["behaviours"]["TRACE-04"]
    assert slot["verdict"] == "unsupported", slot
    assert "no syscall trace: tracing disabled" in " ".join(slot["reasons"])
    assert json.loads((results / "runner.json").read_text())["probe_backend"] == "none"


SELECTION_MODULE = """
import pytest

@pytest.mark.behaviour("PID-01")
def test_init_is_pid_1(runtime):
    pass

@pytest.mark.behaviour("CG-01")
def test_cg_one(runtime):
    pass

@pytest.mark.behaviour("CG-10")
def test_cg_ten(runtime):
    pass

@pytest.mark.behaviour("INIT-01", "INIT-02")
def test_init_files(runtime):
    pass

def test_not_a_behaviour():
    pass
"""


def _selected(p: subprocess.CompletedProcess[str]) -> list[str]:
    return sorted(ln.split("::", 1)[1] for ln in p.stdout.splitlines() if "::" in ln)


def test_k_matches_substrings_of_names_too(tmp_path):
    """Why --behaviour exists: `-k INIT` also selects test_init_is_pid_1 (PID-01), and
    `-k CG-1` (no such ID) selects CG-10."""
    p = pytest_run(
        tmp_path, SELECTION_MODULE, "--runtime", "fake", "--collect-only", "-q", "-k", "INIT"
    )
    assert "test_init_is_pid_1[fake]" in _selected(p), p.stdout
    p = pytest_run(
        tmp_path, SELECTION_MODULE, "--runtime", "fake", "--collect-only", "-q", "-k", "CG-1"
    )
    assert _selected(p) == ["test_cg_ten[fake]"], p.stdout


def test_behaviour_option_selects_exact_ids(tmp_path):
    run = ("--runtime", "a=fake,b=fake", "--collect-only", "-q")
    p = pytest_run(tmp_path, SELECTION_MODULE, *run, "--behaviour", "INIT-02,CG-1")
    assert p.returncode == 4 and "unknown behaviour ID(s) CG-1" in p.stderr, p.stdout + p.stderr
    p = pytest_run(tmp_path, SELECTION_MODULE, *run, "--behaviour", "INIT-02")
    assert _selected(p) == ["test_init_files[a]", "test_init_files[b]"], p.stdout
    p = pytest_run(
        tmp_path, SELECTION_MODULE, *run, "--behaviour", "CG-01", "--behaviour", "b:PID-01,CG-10"
    )
    assert _selected(p) == [
        "test_cg_one[a]",
        "test_cg_one[b]",
        "test_cg_ten[b]",
        "test_init_is_pid_1[b]",
    ], p.stdout
    p = pytest_run(tmp_path, SELECTION_MODULE, *run, "--behaviour", "c:PID-01")
    assert p.returncode == 4 and "'c' is not a runtime of --runtime" in p.stderr, p.stderr


def test_behaviour_option_runs_only_those(tmp_path):
    p = pytest_run(
        tmp_path,
        SELECTION_MODULE,
        "--runtime",
        "fake",
        "--results",
        str(tmp_path / "r"),
        "--behaviour",
        "CG-10",
    )
    assert p.returncode == 0 and "1 passed, 4 deselected" in p.stdout, p.stdout
    doc = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert doc["matrix"] == {"fake": {"CG-10": "pass"}}
