"""Every MUST of the catalogue is checked by at least one behaviour test.

Collect-only (`conform list --json`): no container starts. MUST IDs that have no test yet
are listed in PENDING; the list may only shrink -- a PENDING ID that gains a test fails
here until it is removed from the list, and a MUST outside PENDING without a test fails.
"""

from __future__ import annotations

import json
import subprocess
import sys

from conformance import catalogue

# MUST behaviours without a test yet. Remove an ID when its test lands.
PENDING: set[str] = set()


def _coverage() -> dict[str, list[str]]:
    p = subprocess.run(
        [sys.executable, "-m", "conformance.cli", "list", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    return {row["id"]: row["tests"] for row in json.loads(p.stdout)}


def test_every_must_is_covered_or_pending():
    cov = _coverage()
    musts = catalogue.load().ids("MUST")
    uncovered = [b for b in musts if not cov[b] and b not in PENDING]
    assert not uncovered, f"MUST behaviours without a behaviour test: {uncovered}"
    now_covered = sorted(b for b in PENDING if cov.get(b))
    assert not now_covered, f"covered now, remove from PENDING: {now_covered}"
    assert set(musts) >= PENDING, f"PENDING holds non-MUST ids: {PENDING - set(musts)}"


def test_required_first_set_is_covered():
    cov = _coverage()
    first = (
        [f"PID-0{i}" for i in range(1, 9)]
        + [f"MNT-0{i}" for i in range(1, 10)]
        + [f"UTS-0{i}" for i in range(1, 5)]
        + [
            "NET-01",
            "NET-02",
            "NET-03",
            "NET-04",
            "NET-06",
            "IPC-01",
            "IPC-02",
            "IPC-03",
            "CGNS-01",
            "USR-01",
            "USR-03",
            "USR-06",
            "SEC-01",
            "SEC-02",
            "SEC-03",
        ]
        + [f"LIFE-0{i}" for i in range(1, 5)]
        + [f"CG-0{i}" for i in range(1, 10)]
        + ["EXEC-01", "EXEC-02", "EXEC-03"]
    )
    assert [b for b in first if not cov[b]] == []
