"""Verdict classification and aggregation (pure functions)."""

from __future__ import annotations

import pytest

from conformance.verdicts import TestRecord, aggregate, classify, counts, worst


@pytest.mark.parametrize(
    "when, outcome, kw, want",
    [
        ("call", "passed", {}, "pass"),
        ("setup", "passed", {}, None),
        ("call", "failed", {"assertion": True}, "fail"),
        ("call", "failed", {}, "broken"),
        ("setup", "failed", {}, "broken"),
        ("setup", "failed", {"runtime_failure": True}, "broken"),
        ("teardown", "failed", {"runtime_failure": True}, "broken"),
        ("call", "failed", {"runtime_failure": True}, "fail"),
        ("teardown", "failed", {"assertion": True}, "broken"),
        ("setup", "skipped", {"unsupported": True}, "unsupported"),
        ("call", "skipped", {"unsupported": True}, "unsupported"),
        ("call", "skipped", {}, "skipped"),
        ("call", "skipped", {"wasxfail": "known deviation X"}, "xfail"),
    ],
)
def test_classify(when, outcome, kw, want):
    args = {"runtime_failure": False, "assertion": False, "wasxfail": None, **kw}
    assert classify(when, outcome, **args) == want


def test_worst_order():
    assert worst(["pass", "fail", "broken"]) == "fail"
    assert worst(["pass", "broken"]) == "broken"
    assert worst(["pass", "xfail"]) == "xfail"
    assert worst(["unsupported", "pass"]) == "pass"
    assert worst([]) is None


def test_record_and_aggregate():
    a = TestRecord("t::a[rt]", "rt", ["CG-02"])
    a.add("setup", None, "", 0.1)
    a.add("call", "pass", "", 1.0)
    a.add("teardown", "broken", "teardown: boom", 0.1)
    b = TestRecord("t::b[rt]", "rt", ["CG-02", "CG-03"])
    b.add("setup", "unsupported", "unsupported: pause", 0.0)
    assert (a.verdict, a.reason) == ("broken", "teardown: boom")
    agg = aggregate([a, b])
    assert agg["rt"]["CG-02"]["verdict"] == "broken"
    assert agg["rt"]["CG-03"]["verdict"] == "unsupported"
    assert agg["rt"]["CG-02"]["reasons"] == ["teardown: boom", "unsupported: pause"]
    assert counts([a, b])["rt"]["broken"] == 1
