"""Verdicts: how one test outcome maps to pass/fail/broken/unsupported/xfail, how several
tests of one behaviour aggregate, and the summary.json document.

Why: pytest knows passed/failed/skipped; a conformance report must separate "the runtime
violated the behaviour" (fail) from "the harness or host broke" (broken) and from "this
cannot be tested here" (unsupported), and keep known deviations visible (xfail).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conformance.catalogue import Catalogue

PASS, FAIL, BROKEN, UNSUPPORTED, XFAIL, SKIPPED = (
    "pass",
    "fail",
    "broken",
    "unsupported",
    "xfail",
    "skipped",
)

#: Worst first: the aggregate verdict of a behaviour is the worst of its tests.
PRECEDENCE = (FAIL, BROKEN, XFAIL, PASS, UNSUPPORTED, SKIPPED)
VERDICTS = PRECEDENCE


def worst(verdicts: Iterable[str]) -> str | None:
    found = set(verdicts)
    return next((v for v in PRECEDENCE if v in found), None)


def classify(
    when: str,
    outcome: str,
    *,
    runtime_failure: bool,
    assertion: bool,
    wasxfail: str | None,
    unsupported: bool = False,
) -> str | None:
    """The verdict one report phase contributes (None: this phase says nothing).

    ``runtime_failure``: the exception was a RuntimeFailure (the runtime could not do what
    was asked: fail in the test body). A failed set-up or tear-down is broken whatever
    raised: the test never judged the behaviour, or judged it before cleanup failed.
    ``assertion``: an AssertionError or pytest.fail in the test body (fail); any other
    exception is the harness's or host's problem (broken).
    ``unsupported``: the skip came from an `Unsupported` (any other skip is just skipped).
    """
    if outcome == "passed":
        return PASS if when == "call" else None
    if outcome == "skipped":
        if wasxfail is not None:
            return XFAIL
        return UNSUPPORTED if unsupported else SKIPPED
    if when != "call":
        return BROKEN  # a fixture's set-up or tear-down (e.g. `podman rm` EBUSY), not a verdict
    if runtime_failure or assertion:
        return FAIL
    return BROKEN


@dataclass
class TestRecord:
    """One test (one runtime parameter) with the verdict of each phase folded in."""

    __test__ = False  # not a pytest test class, despite the name

    nodeid: str
    runtime: str
    behaviours: list[str]
    verdict: str | None = None
    reason: str = ""
    duration: float = 0.0
    phases: dict[str, str] = field(default_factory=dict)

    def add(self, when: str, verdict: str | None, reason: str, duration: float) -> None:
        self.duration += duration
        if verdict is None:
            return
        self.phases[when] = verdict
        new = worst([v for v in (self.verdict, verdict) if v])
        if new != self.verdict or (verdict == self.verdict and not self.reason):
            self.verdict = new
            if verdict == new:
                self.reason = reason


def aggregate(records: Iterable[TestRecord]) -> dict[str, dict[str, dict[str, Any]]]:
    """runtime -> behaviour ID -> {verdict, reasons, tests} (worst test wins)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for r in records:
        for bid in r.behaviours:
            slot = out.setdefault(r.runtime, {}).setdefault(
                bid, {"verdict": None, "reasons": [], "tests": []}
            )
            slot["tests"].append(
                {
                    "nodeid": r.nodeid,
                    "verdict": r.verdict or SKIPPED,
                    "reason": r.reason,
                    "duration": round(r.duration, 3),
                }
            )
            slot["verdict"] = worst([v for v in (slot["verdict"], r.verdict or SKIPPED) if v])
            if r.reason and r.verdict != PASS and r.reason not in slot["reasons"]:
                slot["reasons"].append(r.reason)
    return out


def counts(records: Iterable[TestRecord]) -> dict[str, dict[str, int]]:
    """runtime -> verdict -> number of tests."""
    out: dict[str, dict[str, int]] = {}
    for r in records:
        c = out.setdefault(r.runtime, dict.fromkeys(VERDICTS, 0))
        c[r.verdict or SKIPPED] += 1
    return out


def summary(
    records: list[TestRecord],
    *,
    runtimes: list[str],
    catalogue: Catalogue,
    host: dict[str, Any],
    leftovers: list[str],
    started: float,
) -> dict[str, Any]:
    """The summary.json document."""
    agg = aggregate(records)
    by_runtime: dict[str, Any] = {}
    for rt in runtimes:
        behaviours = {}
        for bid, slot in sorted(
            agg.get(rt, {}).items(), key=lambda kv: list(catalogue.behaviours).index(kv[0])
        ):
            b = catalogue[bid]
            behaviours[bid] = {"level": b.level, "area": b.area, "title": b.title, **slot}
        by_runtime[rt] = {
            "counts": counts(r for r in records if r.runtime == rt).get(
                rt, dict.fromkeys(VERDICTS, 0)
            ),
            "behaviours": behaviours,
        }
    covered = {bid for rt in agg.values() for bid in rt}
    return {
        "schema": 1,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": round(time.time() - started, 1),
        "host": host,
        "runtimes": list(runtimes),
        "matrix": {
            rt: {bid: s["verdict"] for bid, s in by_runtime[rt]["behaviours"].items()}
            for rt in runtimes
        },
        "results": by_runtime,
        "not_covered": [bid for bid in catalogue.behaviours if bid not in covered],
        "leftovers": leftovers,
        "tests": [asdict(r) for r in records],
    }


def write_summary(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    tmp.replace(path)
