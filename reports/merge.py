"""Merge result directories of many runs into one set of Allure results, keyed by runner.

Why: a nightly job runs the suite on several hosts (kernels, cgroup v1/v2) and runtimes;
the morning page must show them side by side. Inputs that would hide each other are
refused with one line instead of one silently winning: the same directory or run given
twice, or two runs that both claim the same runtime on the same runner label.

Each Allure result is rewritten on the way: its status follows the suite's verdict (a
tear-down error is broken, a known deviation and an unsupported test are told apart by a
``verdict`` label the categories match), it gains a ``runner`` parameter and label (the
Allure environment), and its historyId includes the runner so that runc on two hosts is
two histories, not retries of one test.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from reports.model import ResultsError, Run

#: Allure status of each suite verdict.
STATUS = {
    "pass": "passed",
    "fail": "failed",
    "broken": "broken",
    "unsupported": "skipped",
    "xfail": "skipped",
    "skipped": "skipped",
}

#: Runner facts that must agree when two runs share a label.
_IDENTITY = ("kernel", "cgroup_mode", "distro", "arch")


def check_inputs(runs: list[Run]) -> None:
    """Refuse duplicate or conflicting inputs (ResultsError naming both directories)."""
    seen_path: dict[Path, Run] = {}
    seen_id: dict[str, Run] = {}
    claimed: dict[tuple[str, str], Run] = {}
    by_label: dict[str, Run] = {}
    for run in runs:
        if run.path in seen_path:
            raise ResultsError(f"{run.path} is given twice")
        seen_path[run.path] = run
        if run.run_id and run.run_id in seen_id:
            other = seen_id[run.run_id].path
            raise ResultsError(f"{other} and {run.path} are the same run (run_id {run.run_id})")
        seen_id[run.run_id] = run
        first = by_label.setdefault(run.label, run)
        for key in _IDENTITY:
            if first.runner.get(key) != run.runner.get(key):
                raise ResultsError(
                    f"runner label {run.label!r} names two hosts: {key} "
                    f"{first.runner.get(key)!r} in {first.path}, {run.runner.get(key)!r} in "
                    f"{run.path} (give each host its own --runner-label)"
                )
        for rt in run.runtimes:
            other_run = claimed.get((rt, run.label))
            if other_run is not None:
                raise ResultsError(
                    f"runtime {rt} on runner {run.label!r} is in both {other_run.path} and "
                    f"{run.path} (merge one run per runtime and runner; a rerun replaces the old "
                    "directory)"
                )
            claimed[(rt, run.label)] = run


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def allure_id(uuid: str) -> str:
    """The id Allure 3 gives a result (md5 of its uuid): the report's `#/<id>` route."""
    return _md5(uuid)


def _label(labels: list[dict[str, Any]], name: str) -> str | None:
    return next((lb.get("value") for lb in labels if lb.get("name") == name), None)


def rewrite_result(doc: dict[str, Any], run: Run, tests: dict[str, Any], basis: dict[str, str]):
    """One allure-pytest result made a result of this runner (in place); returns the
    suite's verdict for it (None: not a behaviour test)."""
    labels: list[dict[str, Any]] = doc.setdefault("labels", [])
    nodeid = _label(labels, "nodeid")
    test = tests.get(nodeid or "")
    label = run.label
    labels[:] = [lb for lb in labels if lb.get("name") not in ("host", "thread")]
    labels += [{"name": "runner", "value": label}, {"name": "host", "value": label}]
    doc.setdefault("parameters", []).append({"name": "runner", "value": label})
    if doc.get("historyId"):
        doc["historyId"] = _md5(f"{doc['historyId']}@{label}")
    if doc.get("testCaseId"):
        doc["testCaseId"] = _md5(f"{doc['testCaseId']}@{label}")
    if test is None:
        return None
    verdict = test.verdict
    labels.append({"name": "verdict", "value": verdict})
    for bid in test.behaviours:
        if basis.get(bid):
            labels.append({"name": "basis", "value": basis[bid]})
            break
    doc["status"] = STATUS[verdict]
    if verdict != "pass" and test.reason:
        details = doc.setdefault("statusDetails", {})
        details["message"] = test.reason
    return verdict


def _link_or_copy(src: Path, dst: Path) -> None:
    """Attachments are never rewritten: a hard link is enough (and fast for thousands)."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def merge_allure(
    runs: list[Run], dest: Path, basis: dict[str, str], write: bool = True
) -> dict[str, str]:
    """Copy and rewrite every run's allure-results into ``dest`` (``write=False``: only
    check them); returns (label|nodeid) -> Allure result id, for links from the matrix."""
    dest.mkdir(parents=True, exist_ok=True)
    links: dict[str, str] = {}
    origin: dict[str, Path] = {}
    for run in runs:
        src = run.path / "allure-results"
        if not src.is_dir():
            raise ResultsError(f"{run.path}: no allure-results directory")
        tests = {t.nodeid: t for t in run.tests}
        for f in sorted(src.iterdir()):
            target = dest / f.name
            if f.name in origin:
                raise ResultsError(
                    f"{origin[f.name]} and {run.path} hold the same Allure file {f.name} "
                    "(one directory is a copy of the other)"
                )
            origin[f.name] = run.path
            if not f.name.endswith("-result.json"):
                if f.name in ("categories.json", "environment.properties", "executor.json"):
                    continue  # per-run files; the merged report writes its own
                if write:
                    _link_or_copy(f, target)
                continue
            try:
                doc = json.loads(f.read_text())
            except ValueError as e:
                raise ResultsError(f"{f}: not an Allure result ({e})") from None
            rewrite_result(doc, run, tests, basis)
            nodeid = _label(doc.get("labels", []), "nodeid")
            if nodeid and doc.get("uuid"):
                links[f"{run.label}|{nodeid}"] = allure_id(doc["uuid"])
            if write:
                target.write_text(json.dumps(doc))
    return links
