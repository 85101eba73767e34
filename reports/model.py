"""What a results directory holds, read once: the runner's facts and the test verdicts.

Why: every part of the report (matrix, history, merged Allure results) works on the same
view of a run -- a runner (host label, kernel, cgroups, runtime versions) and the verdict
of each (runtime, behaviour) -- so a malformed directory is refused in one place, with
one line that names it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Cell verdicts, worst first (summary.json's vocabulary; xfail = known deviation).
VERDICTS = ("fail", "broken", "xfail", "pass", "unsupported", "skipped")
SHORT = {
    "pass": "pass",
    "fail": "FAIL",
    "broken": "broken",
    "unsupported": "unsup",
    "xfail": "dev",
    "skipped": "skip",
}
LABELS = {
    "pass": "pass",
    "fail": "fail",
    "broken": "broken",
    "unsupported": "unsupported",
    "xfail": "known deviation",
    "skipped": "skipped",
}
_URL = re.compile(r"https?://[^\s)]+")


class ResultsError(Exception):
    """A results directory is missing, malformed or conflicts with another (one line)."""


@dataclass(frozen=True)
class Test:
    nodeid: str
    runtime: str
    behaviours: tuple[str, ...]
    verdict: str
    reason: str
    duration: float


@dataclass
class Run:
    """One `conform run`: its directory, runner facts and test verdicts."""

    path: Path
    runner: dict[str, Any]
    summary: dict[str, Any]
    tests: list[Test] = field(default_factory=list)

    @property
    def label(self) -> str:
        return str(self.runner["label"])

    @property
    def run_id(self) -> str:
        return str(self.runner.get("run_id", ""))

    @property
    def runtimes(self) -> list[str]:
        return list(self.summary.get("runtimes", []))

    def behaviour_titles(self) -> dict[str, dict[str, str]]:
        """ID -> {title, level, area} as the run's summary recorded them."""
        out: dict[str, dict[str, str]] = {}
        for rt in self.summary.get("results", {}).values():
            for bid, b in rt.get("behaviours", {}).items():
                out.setdefault(bid, {k: b.get(k, "") for k in ("title", "level", "area")})
        return out


def column_key(runtime: str, label: str) -> str:
    """The matrix column of a runtime on a runner: ``runc@ubuntu-24.04``."""
    return f"{runtime}@{label}"


def _json(path: Path, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise ResultsError(f"{path.parent}: no {path.name} ({what})") from None
    except (OSError, ValueError) as e:
        raise ResultsError(f"{path}: not readable JSON ({e})") from None
    if not isinstance(doc, dict):
        raise ResultsError(f"{path}: not a JSON object")
    return doc


def load_run(path: str | Path) -> Run:
    """The Run in ``path`` (a `conform run --results` directory)."""
    p = Path(path)
    if not p.is_dir():
        raise ResultsError(f"{p}: not a directory (give the --results directory of a run)")
    summary = _json(p / "summary.json", "not the results of `conform run`?")
    runner = _json(p / "runner.json", "written by `conform run`; an older run cannot merge")
    if not runner.get("label"):
        raise ResultsError(f"{p / 'runner.json'}: no runner label")
    tests = []
    for t in summary.get("tests", []):
        try:
            tests.append(
                Test(
                    nodeid=t["nodeid"],
                    runtime=t["runtime"],
                    behaviours=tuple(t["behaviours"]),
                    verdict=t.get("verdict") or "skipped",
                    reason=t.get("reason", ""),
                    duration=float(t.get("duration", 0.0)),
                )
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ResultsError(f"{p / 'summary.json'}: malformed test entry ({e})") from None
    return Run(p.resolve(), runner, summary, tests)


def worst(verdicts: list[str]) -> str:
    return next((v for v in VERDICTS if v in verdicts), "skipped")


def missing_capability(reason: str) -> str:
    """`unsupported: commit, events (runtime runc)` -> `commit, events`."""
    text = reason.removeprefix("Skipped: ").removeprefix("unsupported:").strip()
    return re.sub(r"\s*\(runtime [^)]*\)$", "", text)


def deviation_parts(reason: str) -> tuple[str, str]:
    """`known deviation UTS-04: why (https://...)` -> (why, url)."""
    url = next(iter(_URL.findall(reason)), "")
    text = re.sub(r"^\s*known deviation [A-Z]+-\d+:\s*", "", reason)
    if url:
        text = text.replace(f"({url})", "").strip()
    return text, url.rstrip(".,")
