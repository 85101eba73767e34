"""Render the Allure HTML report from a results directory with the pinned Allure 3 CLI.

The CLI comes from reports/package.json (installed by `make setup` with npm ci);
`ALLURE` names another binary. The report is written next to the results.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent


class ReportError(Exception):
    """The report could not be rendered (one line, for the CLI)."""


def allure_binary() -> str:
    env = os.environ.get("ALLURE")
    candidates = [env] if env else []
    candidates += [str(HERE / "node_modules" / ".bin" / "allure"), shutil.which("allure") or ""]
    for c in candidates:
        if c and os.access(c, os.X_OK):
            return c
    raise ReportError("the Allure 3 CLI is not installed: run `make setup` (npm ci in reports/)")


def render(results: str, output: str, name: str = "container-conformance") -> Path:
    """allure generate RESULTS/allure-results -o OUTPUT; return the index.html path."""
    src = Path(results).resolve() / "allure-results"
    if not src.is_dir() or not any(src.iterdir()):
        raise ReportError(f"no Allure results in {src}: run `conform run` first")
    out = Path(output).resolve()
    proc = subprocess.run(
        [allure_binary(), "generate", str(src), "-o", str(out), "--name", name],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=str(HERE),
    )
    index = out / "index.html"
    if proc.returncode != 0 or not index.is_file():
        last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ReportError(f"allure generate failed ({proc.returncode}): {last[0]}")
    return index
