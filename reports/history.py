"""History between reports: what changed since the previous (or a given) run, and trends.

Why: the morning question is "what is new?", not "what is red?". Each report appends one
line to ``history/runs.jsonl`` (column -> behaviour -> verdict, pass rate per column); the
next report compares against the last line (or one named by id, or an old matrix.json)
and lists new failures, fixes, newly unsupported behaviours, new deviations and flaky ones
(verdict flipped back and forth over the last N runs). The history directory travels
between nightly runs as an artifact, next to Allure's own history file.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path
from typing import Any

from reports.matrix import verdicts
from reports.model import ResultsError

RUNS = "runs.jsonl"
ALLURE = "allure-history.jsonl"
BAD = ("fail", "broken")

#: Kinds of change, in the order the page lists them.
KINDS = ("new failure", "fixed", "newly unsupported", "new deviation", "flaky")


def load(directory: Path) -> list[dict[str, Any]]:
    path = Path(directory) / RUNS
    if not path.is_file():
        return []
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except ValueError as e:
            raise ResultsError(f"{path}:{n}: not a history line ({e})") from None
    return out


def entry(doc: dict[str, Any], inputs: list[str]) -> dict[str, Any]:
    """The history line of a matrix document."""
    ident = doc["created"] + "-" + hashlib.sha1("".join(inputs).encode()).hexdigest()[:6]
    return {
        "id": ident,
        "created": doc["created"],
        "inputs": inputs,
        "columns": verdicts(doc),
        "pass_rate": {c["key"]: c["pass_rate"] for c in doc["columns"]},
    }


def append(directory: Path, line: dict[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / RUNS).open("a") as f:
        f.write(json.dumps(line, separators=(",", ":")) + "\n")


def baseline(entries: list[dict[str, Any]], against: str | None) -> dict[str, Any] | None:
    """The entry to compare with: the last one, one by id, or an old report's matrix.json."""
    if against is None:
        return entries[-1] if entries else None
    for e in entries:
        if e["id"] == against or e["id"].startswith(against):
            return e
    path = Path(against)
    if path.is_dir():
        path = path / "matrix.json"
    if path.is_file():
        try:
            doc = json.loads(path.read_text())
            return {"id": str(path), "created": doc["created"], "columns": verdicts(doc)}
        except (ValueError, KeyError, TypeError) as e:
            raise ResultsError(f"{path}: not a matrix.json ({e})") from None
    known = ", ".join(e["id"] for e in entries[-5:]) or "the history is empty"
    raise ResultsError(f"--compare {against}: no such run in the history ({known}) nor file")


def _kind(before: str | None, after: str) -> str | None:
    if before is None or before == after:
        return None
    if after in BAD and before not in BAD:
        return "new failure"
    if before in BAD and after == "pass":
        return "fixed"
    if after == "unsupported":
        return "newly unsupported"
    if after == "xfail":
        return "new deviation"
    return None


def _flips(seq: list[str]) -> int:
    states = [v in BAD for v in seq if v in ("pass", *BAD)]
    return sum(1 for a, b in itertools.pairwise(states) if a != b)


def annotate(
    doc: dict[str, Any], entries: list[dict[str, Any]], base: dict[str, Any] | None, last: int
) -> None:
    """Mark changed cells, list the changes and fill the per-column trend (in place)."""
    window = entries[-(last - 1) :] if last > 1 else []
    items: list[dict[str, Any]] = []
    for area in doc["areas"]:
        for row in area["rows"]:
            for key, cell in row["cells"].items():
                now = cell["verdict"]
                before = (base or {}).get("columns", {}).get(key, {}).get(row["id"])
                kind = _kind(before, now)
                seq = [e["columns"].get(key, {}).get(row["id"]) for e in window] + [now]
                if _flips([v for v in seq if v]) >= 2:
                    kind = "flaky"
                if kind:
                    cell["change"] = kind
                    cell["before"] = before
                    items.append(
                        {
                            "kind": kind,
                            "id": row["id"],
                            "column": key,
                            "before": before or "-",
                            "after": now,
                        }
                    )
    items.sort(key=lambda i: (KINDS.index(i["kind"]), i["column"], i["id"]))
    doc["changes"] = {
        "against": (base or {}).get("id"),
        "against_created": (base or {}).get("created"),
        "items": items,
        "counts": {k: sum(1 for i in items if i["kind"] == k) for k in KINDS},
    }
    doc["trend"] = {
        c["key"]: [e.get("pass_rate", {}).get(c["key"]) for e in window] + [c["pass_rate"]]
        for c in doc["columns"]
    }
