"""The behaviour x (runtime @ runner) matrix as a document, and its Markdown form.

Why: the one page people read in the morning. Rows are behaviours grouped by area (ID,
title, level, reference); columns are a runtime on a runner (kernel, cgroup mode, distro,
host label), so a behaviour that fails only on one kernel stands out. Each cell is the
worst verdict of that behaviour's tests there, with the reason that matters (missing
capability, deviation and its upstream link) and a link to the test in the Allure report.
matrix.json is this document; matrix.md and matrix.html are renderings of it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from reports.model import (
    LABELS,
    SHORT,
    VERDICTS,
    Run,
    column_key,
    deviation_parts,
    missing_capability,
    worst,
)

SCHEMA = 1


def _cell(tests: list[Any], run: Run, links: dict[str, str], report_href: str) -> dict[str, Any]:
    verdict = worst([t.verdict for t in tests])
    chosen = next(t for t in tests if t.verdict == verdict)
    cell: dict[str, Any] = {"verdict": verdict, "tests": len(tests)}
    if verdict == "unsupported":
        cell["missing"] = missing_capability(chosen.reason)
    elif verdict == "xfail":
        cell["reason"], cell["upstream"] = deviation_parts(chosen.reason)
    elif verdict != "pass" and chosen.reason:
        cell["reason"] = chosen.reason[:300]
    rid = links.get(f"{run.label}|{chosen.nodeid}")
    if rid:
        cell["href"] = f"{report_href}#/{rid}"
    return cell


def _runner(run: Run) -> dict[str, Any]:
    r = run.runner
    return {
        k: r.get(k)
        for k in (
            "label",
            "kernel",
            "distro",
            "arch",
            "cgroup_mode",
            "cgroup_controllers",
            "lane",
            "harness_version",
            "probe_backend",
            "created",
            "run_id",
        )
    }


def build(
    runs: list[Run],
    catalogue: Any,
    links: dict[str, str] | None = None,
    report_href: str = "allure/index.html",
    basis: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The matrix document of ``runs`` (already checked by merge.check_inputs)."""
    links = links or {}
    basis = basis or {}
    columns: list[dict[str, Any]] = []
    cells: dict[str, dict[str, dict[str, Any]]] = {}  # behaviour -> column -> cell
    titles: dict[str, dict[str, str]] = {}
    for run in runs:
        titles.update({k: v for k, v in run.behaviour_titles().items() if k not in titles})
        by: dict[tuple[str, str], list[Any]] = {}
        for t in run.tests:
            for bid in t.behaviours:
                by.setdefault((t.runtime, bid), []).append(t)
        for rt in run.runtimes:
            key = column_key(rt, run.label)
            col_counts = dict.fromkeys(VERDICTS, 0)
            for (rt2, bid), tests in by.items():
                if rt2 != rt:
                    continue
                cell = _cell(tests, run, links, report_href)
                cells.setdefault(bid, {})[key] = cell
                col_counts[cell["verdict"]] += 1
            judged = sum(col_counts[v] for v in ("pass", "fail", "broken", "xfail"))
            columns.append(
                {
                    "key": key,
                    "runtime": rt,
                    "runner": run.label,
                    "version": run.runner.get("runtimes", {}).get(rt, "unknown"),
                    "kernel": run.runner.get("kernel"),
                    "cgroup_mode": run.runner.get("cgroup_mode"),
                    "lane": run.runner.get("lane") or "host",
                    "distro": run.runner.get("distro"),
                    "counts": col_counts,
                    "tests": sum(1 for t in run.tests if t.runtime == rt),
                    "pass_rate": round(col_counts["pass"] / judged, 4) if judged else None,
                }
            )
    areas: list[dict[str, Any]] = []
    known = set()
    for area, area_title in catalogue.areas.items():
        rows = []
        for b in catalogue:
            if b.area != area:
                continue
            known.add(b.id)
            refs = [r for r in (getattr(b, "clause", ""), *b.links) if r]
            rows.append(_row(b.id, b.title, b.level, refs, b.area, basis, cells))
        areas.append({"area": area, "title": area_title, "rows": rows})
    extra = [bid for bid in cells if bid not in known]  # IDs a newer/older catalogue had
    if extra:
        rows = [
            _row(
                bid,
                titles.get(bid, {}).get("title", ""),
                titles.get(bid, {}).get("level", ""),
                [],
                "",
                basis,
                cells,
            )
            for bid in sorted(extra)
        ]
        areas.append({"area": "OTHER", "title": "Not in this catalogue", "rows": rows})
    return {
        "schema": SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "harness_versions": sorted({str(r.runner.get("harness_version")) for r in runs}),
        "runners": [_runner(r) for r in _unique_runners(runs)],
        "columns": columns,
        "areas": areas,
        "changes": {},
        "trend": {},
    }


def _unique_runners(runs: Iterable[Run]) -> list[Run]:
    seen: dict[str, Run] = {}
    for r in runs:
        seen.setdefault(r.label, r)
    return list(seen.values())


def _row(
    bid: str,
    title: str,
    level: str,
    refs: list[str],
    area: str,
    basis: dict[str, str],
    cells: dict[str, dict[str, dict[str, Any]]],
) -> dict[str, Any]:
    return {
        "id": bid,
        "title": title,
        "level": level,
        "basis": basis.get(bid, ""),
        "link": refs[0] if refs else "",
        "area": area,
        "cells": cells.get(bid, {}),
    }


def verdicts(doc: dict[str, Any]) -> dict[str, dict[str, str]]:
    """column -> behaviour -> verdict (the part history keeps)."""
    out: dict[str, dict[str, str]] = {c["key"]: {} for c in doc["columns"]}
    for area in doc["areas"]:
        for row in area["rows"]:
            for key, cell in row["cells"].items():
                out.setdefault(key, {})[row["id"]] = cell["verdict"]
    return out


def _md_cell(cell: dict[str, Any] | None) -> str:
    if cell is None:
        return "·"
    text = SHORT[cell["verdict"]]
    if cell.get("change"):
        text = f"**{text}** ({cell['change']})"
    return text


def render_md(doc: dict[str, Any]) -> str:
    """matrix.md: header, counts per column, what changed, then one table per area."""
    cols = doc["columns"]
    out = [f"# Conformance matrix ({doc['created']})", ""]
    out.append(f"Harness {', '.join(doc['harness_versions'])}.")
    out.append("")
    for r in doc["runners"]:
        cg = ", ".join(f"{k} {v}" for k, v in (r.get("cgroup_controllers") or {}).items())
        out.append(
            f"- runner **{r['label']}**: {r.get('distro')}, kernel {r.get('kernel')}, "
            f"cgroups {r.get('cgroup_mode')} ({cg}), lane {r.get('lane') or 'host'}, "
            f"probes {r.get('probe_backend')}"
        )
    out.append("")
    out.append("| column | version | " + " | ".join(LABELS[v] for v in VERDICTS) + " |")
    out.append("|---|---|" + "---|" * len(VERDICTS))
    for c in cols:
        counts = " | ".join(str(c["counts"][v]) for v in VERDICTS)
        out.append(f"| {c['key']} | {c['version']} | {counts} |")
    changes = doc.get("changes") or {}
    if changes.get("items"):
        out += ["", f"## What changed (against {changes.get('against', '?')})", ""]
        for item in changes["items"]:
            out.append(
                f"- {item['kind']}: {item['id']} on {item['column']} "
                f"({item['before']} -> {item['after']})"
            )
    out.append("")
    for area in doc["areas"]:
        if not area["rows"]:
            continue
        out += [f"## {area['area']}: {area['title']}", ""]
        out.append("| ID | level | behaviour | " + " | ".join(c["key"] for c in cols) + " |")
        out.append("|---|---|---|" + "---|" * len(cols))
        for row in area["rows"]:
            cells = " | ".join(_md_cell(row["cells"].get(c["key"])) for c in cols)
            title = row["title"].replace("|", "\\|")
            out.append(f"| {row['id']} | {row['level']} | {title} | {cells} |")
        out.append("")
    return "\n".join(out)
