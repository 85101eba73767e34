"""Which behaviour tests cover which catalogue IDs, from a collect-only pytest run.

Why: `conform list` shows it, and the project's own tests use it to prove every MUST is
covered. Collection only: nothing is probed and no container starts.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import pytest


def tests_dir() -> Path:
    """The packaged behaviour tests (conformance/tests)."""
    import conformance.tests

    return Path(conformance.tests.__file__).parent


class _Collector:
    def __init__(self) -> None:
        self.by_id: dict[str, list[str]] = {}
        self.requires: dict[str, list[str]] = {}

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            test = f"{Path(str(item.path)).stem}::{getattr(item, 'originalname', item.name)}"
            tokens = [a for m in item.iter_markers("requires") for a in m.args]
            for m in item.iter_markers("behaviour"):
                for bid in m.args:
                    tests = self.by_id.setdefault(bid, [])
                    if test not in tests:
                        tests.append(test)
            self.requires[test] = tokens


def collect(paths: list[str] | None = None) -> tuple[int, dict[str, list[str]], str]:
    """(pytest exit code, behaviour ID -> covering tests, pytest's output)."""
    collector = _Collector()
    args = [*(paths or [str(tests_dir())]), "--collect-only", "-q", "-p", "no:cacheprovider"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = pytest.main(args, plugins=[collector])
    return int(code), collector.by_id, out.getvalue()


def table(catalogue: Any, by_id: dict[str, list[str]]) -> list[dict[str, Any]]:
    return [
        {
            "id": b.id,
            "level": b.level,
            "area": b.area,
            "title": b.title,
            "basis": b.basis,
            "clause": b.clause,
            "derived": b.derived,
            "tests": by_id.get(b.id, []),
        }
        for b in catalogue
    ]
