"""runner.json: the facts that make a results directory self-describing.

Why: `conform report A B ...` merges result directories from many hosts into one report
keyed by runner. Each directory must therefore say which host produced it (a label, the
kernel, cgroup version per controller, distribution), with which runtime versions and
harness version, and when -- without the report having to ask the host again.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import socket
import subprocess
import time
import uuid
from importlib import metadata
from pathlib import Path
from typing import Any

SCHEMA = 1
FILENAME = "runner.json"
LABEL_ENV = "CONFORM_RUNNER_LABEL"


def harness_version() -> str:
    try:
        return metadata.version("container-conformance")
    except metadata.PackageNotFoundError:
        return "unknown"


def distro(os_release: str = "/etc/os-release") -> str:
    """PRETTY_NAME of /etc/os-release ("Debian GNU/Linux 12 (bookworm)")."""
    with contextlib.suppress(OSError):
        for line in Path(os_release).read_text().splitlines():
            key, _, value = line.partition("=")
            if key == "PRETTY_NAME":
                return value.strip().strip('"')
    return platform.system()


def _first_line(argv: list[str]) -> str | None:
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=15, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    text = (p.stdout or p.stderr).strip().splitlines()
    return text[0].strip() if p.returncode == 0 and text else None


def runtime_version(kind: str, target: str, tools: dict[str, Any]) -> str:
    """The version line of one --runtime choice ("runc version 1.1.5+ds1")."""
    if kind in ("ref", "ref-oci"):
        where = "" if target in ("rref", "") else f" ({target})"
        return f"rref {harness_version()}{where}"
    if kind == "fake":
        return "fake"
    tool = tools.get(target)
    if tool is not None and getattr(tool, "version", None):
        return str(tool.version)
    return _first_line([target, "--version"]) or "unknown"


def lane() -> str:
    """Where this run happens: "host", or the lane's name when the v2 lane's guest runs it."""
    name = os.environ.get("CONFORM_LANE", "").strip()
    return f"{name} guest" if name else "host"


def collect(
    choices: list[Any], label: str | None = None, probe_backend: str | None = None
) -> dict[str, Any]:
    """The runner.json document for a run of ``choices`` (adapters.Choice) on this host."""
    from conformance import hostinfo

    info = hostinfo.get_host_info()
    cg = info.cgroups
    host = socket.gethostname()
    return {
        "schema": SCHEMA,
        "run_id": uuid.uuid4().hex,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "label": label or os.environ.get(LABEL_ENV) or host,
        "hostname": host,
        "kernel": info.kernel.release,
        "arch": info.kernel.machine,
        "distro": distro(),
        "cgroup_mode": cg.mode,
        "lane": lane(),
        "cgroup_controllers": {c: w.version for c, w in sorted(cg.controllers.items())},
        "harness_version": harness_version(),
        "python": platform.python_version(),
        "probe_backend": probe_backend or "none",
        "runtimes": {c.name: runtime_version(c.kind, c.target, info.tools) for c in choices},
        "ci": {
            k: os.environ[k]
            for k in ("GITHUB_RUN_ID", "GITHUB_SHA", "CI_PIPELINE_ID", "CI_COMMIT_SHA")
            if os.environ.get(k)
        },
    }


def write(results: Path, doc: dict[str, Any]) -> Path:
    path = Path(results) / FILENAME
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    tmp.replace(path)
    return path
