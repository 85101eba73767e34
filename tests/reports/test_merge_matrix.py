"""Merging runs, the matrix document, history and the matrix page (no Allure CLI here:
`build_report(..., with_allure=False)`; the browser test renders the real thing)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conformance import catalogue
from reports import history, html, matrix, merge
from reports.build import build_report
from reports.model import ResultsError, load_run

CONFORM = str(Path(sys.executable).with_name("conform"))
UNSUP = "unsupported: commit, events (runtime runc)"
DEV = "known deviation UTS-04: no trailing newline (https://example.org/issue/1)"


def test_duplicate_and_conflicting_inputs_are_refused(make_run, tmp_path):
    a = make_run("lab-a", [("ref", "PID-01", "pass", "")])
    b = make_run("lab-a", [("ref", "PID-01", "fail", "AssertionError: x")])
    c = make_run("lab-a", [("runc", "PID-01", "pass", "")], kernel="5.15.0")
    d = make_run("lab-a", [("runc", "PID-01", "pass", "")])
    copy = tmp_path / "conform-copy"
    subprocess.run(["cp", "-a", str(a), str(copy)], check=True)
    cases = {
        (a, a): "is given twice",
        (a, copy): "are the same run",
        (a, b): "runtime ref on runner 'lab-a' is in both",
        (a, c): "runner label 'lab-a' names two hosts: kernel",
    }
    for (x, y), want in cases.items():
        with pytest.raises(ResultsError, match=want):
            merge.check_inputs([load_run(x), load_run(y)])
    merge.check_inputs([load_run(a), load_run(d)])  # same host, another runtime: fine


def test_bad_directories_get_one_line(tmp_path):
    (tmp_path / "conform-empty").mkdir()
    for arg, want in [
        (str(tmp_path / "conform-nope"), "not a directory"),
        (str(tmp_path / "conform-empty"), "no summary.json"),
    ]:
        p = subprocess.run(
            [CONFORM, "report", arg, "-o", str(tmp_path / "o")],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert p.returncode == 1
        assert want in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
        assert "Traceback" not in p.stderr


def test_rewrite_follows_the_verdict_and_keys_history_by_runner(make_run, tmp_path):
    a = make_run(
        "lab-a",
        [
            ("podman", "LIFE-01", "broken", "teardown: RuntimeFailure: EBUSY"),
            ("podman", "UTS-04", "xfail", DEV),
        ],
    )
    b = make_run("lab-b", [("podman", "LIFE-01", "pass", "")])
    runs = [load_run(a), load_run(b)]
    links = merge.merge_allure(runs, tmp_path / "merged", {"LIFE-01": "policy"})
    docs = [json.loads(f.read_text()) for f in (tmp_path / "merged").glob("*-result.json")]
    by = {(d["parameters"][-1]["value"], d["name"].split("_")[1]): d for d in docs}
    broken = by[("lab-a", "life")]
    assert broken["status"] == "broken"  # allure-pytest said "failed"
    assert broken["statusDetails"]["message"].startswith("teardown:")
    labels = {(lb["name"], lb["value"]) for lb in broken["labels"]}
    assert {("runner", "lab-a"), ("verdict", "broken"), ("basis", "policy")} <= labels
    assert ("host", "somehost") not in labels
    assert by[("lab-a", "uts")]["status"] == "skipped"
    assert ("verdict", "xfail") in {
        (lb["name"], lb["value"]) for lb in by[("lab-a", "uts")]["labels"]
    }
    assert broken["historyId"] != by[("lab-b", "life")]["historyId"]  # two histories, no retry
    assert len(links) == 3 and all(len(v) == 32 for v in links.values())


def test_matrix_cells_counts_and_reasons(make_run):
    a = make_run(
        "lab-a",
        [
            ("ref", "PID-01", "pass", ""),
            ("ref", "PID-01", "fail", "AssertionError: pid 7"),
            ("runc", "LIFE-05", "unsupported", UNSUP),
            ("runc", "UTS-04", "xfail", DEV),
        ],
    )
    runs = [load_run(a)]
    doc = matrix.build(runs, catalogue.load(), {}, "allure/index.html", {})
    cols = {c["key"]: c for c in doc["columns"]}
    assert set(cols) == {"ref@lab-a", "runc@lab-a"}
    assert cols["ref@lab-a"]["counts"]["fail"] == 1 and cols["ref@lab-a"]["tests"] == 2
    rows = {r["id"]: r for a in doc["areas"] for r in a["rows"]}
    assert rows["PID-01"]["cells"]["ref@lab-a"]["verdict"] == "fail"  # worst test wins
    assert rows["PID-01"]["level"] == "MUST" and rows["PID-01"]["link"].startswith("https://")
    assert rows["LIFE-05"]["cells"]["runc@lab-a"]["missing"] == "commit, events"
    dev = rows["UTS-04"]["cells"]["runc@lab-a"]
    assert (dev["reason"], dev["upstream"]) == (
        "no trailing newline",
        "https://example.org/issue/1",
    )
    md = matrix.render_md(doc)
    assert "| PID-01 | MUST | container init is pid 1 | FAIL | · |" in md


def _build(dirs, out, **kw):
    return build_report([str(d) for d in dirs], out, with_allure=False, **kw)


def test_history_lists_what_changed_and_flaky(make_run, tmp_path):
    out = tmp_path / "conform-out"
    seq = [
        ("pass", "pass", "pass"),
        ("fail", "unsupported", "pass"),
        ("pass", "unsupported", "xfail"),
    ]
    for pid, life, uts in seq:
        run = make_run(
            "lab",
            [
                ("ref", "PID-01", pid, "AssertionError: x" if pid == "fail" else ""),
                ("ref", "LIFE-05", life, UNSUP if life == "unsupported" else ""),
                ("ref", "UTS-04", uts, DEV if uts == "xfail" else ""),
            ],
        )
        built = _build([run], out)
        doc = json.loads(built.matrix_json.read_text())
        if (pid, life, uts) == seq[1]:
            kinds = {(i["kind"], i["id"]) for i in doc["changes"]["items"]}
            assert kinds == {("new failure", "PID-01"), ("newly unsupported", "LIFE-05")}
    kinds = {(i["kind"], i["id"]) for i in doc["changes"]["items"]}
    assert kinds == {("flaky", "PID-01"), ("new deviation", "UTS-04")}  # pass, fail, pass
    assert doc["trend"]["ref@lab"] == [1.0, 0.5, 0.5]
    assert len(history.load(out / "history")) == 3
    page = built.matrix_html.read_text()
    assert "<script" not in page and 'class="c pass chg"' in page and "<svg" in page
    # against a run given by id: the first one
    first = history.load(out / "history")[0]["id"]
    run = make_run("lab", [("ref", "UTS-04", "fail", "AssertionError: x")])
    doc = json.loads(
        _build(
            [run], tmp_path / "o2", history_dir=out / "history", compare=first
        ).matrix_json.read_text()
    )
    assert doc["changes"]["against"] == first
    assert [(i["kind"], i["before"]) for i in doc["changes"]["items"]] == [("new failure", "pass")]
    with pytest.raises(ResultsError, match="no such run in the history"):
        _build([run], tmp_path / "o3", compare="nope")


def test_html_has_every_column_and_escapes(make_run):
    a = make_run("lab-<a>", [("ref", "PID-01", "fail", "AssertionError: <b>bad</b>")])
    b = make_run("lab-b", [("runc", "PID-01", "pass", "")])
    doc = matrix.build([load_run(a), load_run(b)], catalogue.load(), {}, "allure/index.html", {})
    page = html.render(doc)
    assert 'data-col="ref@lab-&lt;a&gt;"' in page and 'data-col="runc@lab-b"' in page
    assert "<b>bad</b>" not in page and "&lt;b&gt;bad&lt;/b&gt;" in page


def test_allure_history_path_is_absolute(tmp_path, monkeypatch):
    """A relative OUT (make conformance's default) must not send Allure's history into
    reports/reports/... (allure runs with its cwd in reports/)."""
    from reports.allure import config_text

    monkeypatch.chdir(tmp_path)
    text = config_text("x", [], Path("out/html/history/allure-history.jsonl"))
    assert f'"{tmp_path}/out/html/history/allure-history.jsonl"' in text, text
