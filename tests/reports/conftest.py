"""Helpers of the report tests: results directories written the way `conform run` writes
them (summary.json, runner.json, allure-results), small enough to reason about."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest


def write_run(
    root: Path,
    label: str,
    tests: list[tuple[str, str, str, str]],
    *,
    kernel: str = "6.18.0",
    cgroup_mode: str = "v2",
) -> Path:
    """A results dir: ``tests`` are (runtime, behaviour, verdict, reason); one Allure result
    per test whose status is what allure-pytest would have written (a tear-down error raised
    as RuntimeFailure is "failed" there)."""
    root.mkdir(parents=True)
    allure = root / "allure-results"
    allure.mkdir()
    runtimes = sorted({t[0] for t in tests})
    records = []
    for n, (rt, bid, verdict, reason) in enumerate(tests):
        nodeid = f"conformance/tests/test_x.py::test_{bid.lower().replace('-', '_')}_{n}[{rt}]"
        records.append(
            {
                "nodeid": nodeid,
                "runtime": rt,
                "behaviours": [bid],
                "verdict": verdict,
                "reason": reason,
                "duration": 0.1,
                "phases": {"call": verdict},
            }
        )
        uid = str(uuid.uuid4())
        status = {"pass": "passed", "fail": "failed", "broken": "failed"}.get(verdict, "skipped")
        doc: dict[str, Any] = {
            "name": nodeid.rsplit("::", 1)[1],
            "status": status,
            "uuid": uid,
            "historyId": f"h-{nodeid}",
            "testCaseId": f"c-{nodeid}",
            "labels": [
                {"name": "nodeid", "value": nodeid},
                {"name": "story", "value": bid},
                {"name": "host", "value": "somehost"},
            ],
            "parameters": [{"name": "runtime", "value": repr(rt)}],
        }
        (allure / f"{uid}-result.json").write_text(json.dumps(doc))
    summary = {"schema": 1, "runtimes": runtimes, "results": {}, "tests": records}
    (root / "summary.json").write_text(json.dumps(summary))
    runner = {
        "schema": 1,
        "run_id": uuid.uuid4().hex,
        "created": "2026-12-01T00:00:00Z",
        "label": label,
        "kernel": kernel,
        "arch": "x86_64",
        "distro": "Ubuntu 24.04",
        "cgroup_mode": cgroup_mode,
        "cgroup_controllers": {"memory": "v2", "pids": "v2"},
        "harness_version": "0.1.0",
        "probe_backend": "none",
        "runtimes": {rt: f"{rt} 1.0" for rt in runtimes},
    }
    (root / "runner.json").write_text(json.dumps(runner))
    return root


@pytest.fixture
def make_run(tmp_path: Path):
    counter = iter(range(1000))

    def make(label: str, tests: list[tuple[str, str, str, str]], **kw: Any) -> Path:
        return write_run(tmp_path / f"conform-run-{next(counter)}", label, tests, **kw)

    return make
