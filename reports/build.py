"""`conform report RESULTS_DIR... -o OUT`: one Allure report and one matrix from many runs.

Why one entry point: the CLI, `make conformance`, the nightly merge job and the benchmark
all do the same steps -- load and check the inputs, merge their Allure results keyed by
runner, compare with the history, write matrix.json/.md/.html, render Allure with the
suite's configuration, and keep the history for the next report.

OUT holds: ``matrix.html`` (also ``index.html``), ``matrix.json``, ``matrix.md``,
``allure/`` (the Allure report) and ``history/`` (carry it to the next report).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from reports import allure, history, html, matrix, merge
from reports.model import ResultsError, load_run


@dataclass(frozen=True)
class Built:
    allure_index: Path | None
    matrix_html: Path
    matrix_json: Path
    matrix_md: Path
    history: Path


def basis_of_behaviours() -> dict[str, str]:
    """ID -> basis ("policy", "runtime-spec"...) as the catalogue states it."""
    from conformance import catalogue

    return {b.id: str(getattr(b, "basis", "")) for b in catalogue.load()}


def _seed_history(out_history: Path, given: Path | None) -> None:
    """Start OUT/history from an earlier report's history directory (when given)."""
    if given is None:
        return
    given = given.resolve()
    if not given.is_dir():
        raise ResultsError(f"--history {given}: not a directory")
    if given == out_history.resolve():
        return
    out_history.mkdir(parents=True, exist_ok=True)
    for name in (history.RUNS, history.ALLURE):
        if (given / name).is_file():
            shutil.copyfile(given / name, out_history / name)


def build_report(
    results_dirs: list[str],
    out: str | Path,
    *,
    history_dir: str | Path | None = None,
    compare: str | None = None,
    last: int = 14,
    name: str = "container-conformance",
    with_allure: bool = True,
) -> Built:
    if not results_dirs:
        raise ResultsError("no results directory given")
    runs = [load_run(d) for d in results_dirs]
    merge.check_inputs(runs)
    from conformance import catalogue

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    hist = out / "history"
    _seed_history(hist, Path(history_dir) if history_dir else None)
    entries = history.load(hist)
    base = history.baseline(entries, compare)
    basis = basis_of_behaviours()

    index = None
    links: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="conform-report-") as tmp:
        merged = Path(tmp) / "allure-results"
        links = merge.merge_allure(runs, merged, basis, write=with_allure)
        if with_allure:
            hist.mkdir(parents=True, exist_ok=True)
            index = allure.render(
                merged, out / "allure", name=name, runs=runs, history=hist / history.ALLURE
            )
    doc = matrix.build(runs, catalogue.load(), links, "allure/index.html", basis)
    history.annotate(doc, entries, base, last)
    history.append(hist, history.entry(doc, [r.run_id for r in runs]))
    page = html.render(doc)
    paths = Built(index, out / "matrix.html", out / "matrix.json", out / "matrix.md", hist)
    paths.matrix_json.write_text(json.dumps(doc, indent=1) + "\n")
    paths.matrix_md.write_text(matrix.render_md(doc) + "\n")
    paths.matrix_html.write_text(page)
    (out / "index.html").write_text(page)
    return paths
