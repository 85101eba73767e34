"""`conform trace`, the command users type: a real rref and runc run, traced by each backend,
printed as a timeline and written as JSONL; the traced command's exit status is conform's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import NS5, RUNC_HOSTNAME

from probes import bcc_backend
from probes.backend import Unavailable
from probes.trace import Trace

BIN = Path(sys.executable).parent
CONFORM = str(BIN / "conform")


def _conform(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PATH=f"{BIN}:{os.environ.get('PATH', '')}")
    return subprocess.run(
        [CONFORM, "trace", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


@pytest.fixture(params=["bcc", "ptrace"])
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "bcc":
        try:
            bcc_backend.preflight()
        except Unavailable as e:
            pytest.skip(f"bcc cannot run on this host: {e}")
    return str(request.param)


def _check_container_trace(p: subprocess.CompletedProcess[str], jsonl: Path, host: str) -> None:
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    head = next(line for line in lines if line.startswith("trace: backend"))
    assert ", 0 lost" in head, head
    # one unshare or several (rref's init unshares all but the pid namespace itself)
    unshares = [line for line in lines if " unshare(" in line]
    assert all(any(f in line for line in unshares) for f in NS5), unshares
    assert any(f'sethostname("{host}") = 0' in line for line in lines), p.stdout
    assert any(" pivot_root(" in line and line.endswith("= 0") for line in lines), p.stdout
    trace = Trace.from_jsonl(jsonl.read_text())
    assert trace.lost == 0 and trace.root_pid > 0
    assert f"{len(trace.events)} events" in head
    assert [e.args["name"] for e in trace.by_syscall("sethostname")] == [host]


def test_traces_an_rref_run(backend: str, rref_root: str, tmp_path: Path) -> None:
    jsonl = tmp_path / "t.jsonl"
    p = _conform(
        "--backend",
        backend,
        "--json",
        str(jsonl),
        "--",
        "rref",
        "--root",
        rref_root,
        "run",
        "--rm",
        "--hostname",
        "conform-trace",
        "busybox",
        "hostname",
    )
    assert p.stdout.startswith("conform-trace\n"), p.stdout[:200]  # the command's own output
    assert f"tracing with the {backend} backend" in p.stderr
    _check_container_trace(p, jsonl, "conform-trace")


def test_traces_a_runc_run(
    backend: str, runc_bundle: tuple[list[str], str], tmp_path: Path
) -> None:
    argv, _ = runc_bundle
    jsonl = tmp_path / "t.jsonl"
    p = _conform("--backend", backend, "--json", str(jsonl), "--", *argv)
    _check_container_trace(p, jsonl, RUNC_HOSTNAME)


@pytest.mark.parametrize(
    ("script", "code"), [("exit 3", 3), ("kill -TERM $$", 128 + 15), ("true", 0)]
)
def test_exit_status_is_the_commands(script: str, code: int) -> None:
    p = _conform("--backend", "ptrace", "--", "sh", "-c", script)
    assert p.returncode == code, p.stderr
    assert 'execve("/usr/bin/sh"' in p.stdout or 'execve("/bin/sh"' in p.stdout, p.stdout


def test_timeout_kills_and_says_so() -> None:
    t0 = time.monotonic()
    p = _conform("--backend", "ptrace", "--timeout", "1", "--", "sleep", "30")
    assert p.returncode == 124, p.stderr
    assert time.monotonic() - t0 < 20
    assert "did not finish within 1s" in p.stderr
    notes = [line for line in p.stdout.splitlines() if line.startswith("note: ")]
    assert any("did not finish within 1s" in n for n in notes), p.stdout


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        ([], 2, "no command given"),
        (["--"], 2, "no command given"),
        (["--backend", "dtrace", "--", "true"], 2, "invalid choice"),
        (["--timeout", "0", "--", "true"], 2, "must be more than 0"),
        (["--backend", "ptrace", "--", "/nonexistent/conform-cmd"], 127, "cannot run"),
    ],
)
def test_bad_usage_is_one_line(args: list[str], code: int, says: str) -> None:
    p = _conform(*args)
    assert p.returncode == code
    errors = [line for line in p.stderr.splitlines() if not line.endswith("backend")]
    assert len(errors) == 1 and says in errors[0], p.stderr
    assert "Traceback" not in p.stderr
