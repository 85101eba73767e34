"""Benchmark `conform report` on 2,000+ results: the Allure report and the matrix.

Takes the results directory of a real `conform run` (``--from DIR``; without it one run of
``--runtime ref,runc`` is made first), replicates it as N runners (new runner labels, run
ids and Allure uuids, so nothing collides) until at least ``--tests`` test results exist,
then times, side by side in one process:

* ``matrix``: load + check + merge the Allure results + matrix/history/page (no Allure CLI),
* ``full``: the same plus `allure generate` -- what `conform report` does.

Prints the median of each over ``--rounds`` and whether the full report stays within the
``--budget`` seconds. Figures go into docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from reports.build import build_report

CONFORM = str(Path(sys.executable).with_name("conform"))
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def record(dest: Path) -> Path:
    """One real run of the suite (ref and runc) into ``dest``."""
    argv = [CONFORM, "run", "--runtime", "ref,runc", "-n", "2", "--results", str(dest)]
    subprocess.run([*argv, "-q", "-p", "no:cacheprovider"], capture_output=True, timeout=900)
    if not (dest / "summary.json").is_file():
        sys.exit(f"bench: the recording run wrote no summary.json in {dest}")
    return dest


def replicate(src: Path, dest: Path, label: str) -> int:
    """A copy of ``src`` as runner ``label``: new run id and Allure uuids; its test count."""
    dest.mkdir(parents=True)
    runner = json.loads((src / "runner.json").read_text())
    runner.update(label=label, run_id=uuid.uuid4().hex)
    (dest / "runner.json").write_text(json.dumps(runner))
    shutil.copyfile(src / "summary.json", dest / "summary.json")
    fresh: dict[str, str] = {}

    def new(m: re.Match[str]) -> str:
        return fresh.setdefault(m.group(0), str(uuid.uuid4()))

    (dest / "allure-results").mkdir()
    for f in (src / "allure-results").iterdir():
        name = UUID.sub(new, f.name)
        if f.suffix == ".json" and not f.name.endswith("-attachment.json"):
            (dest / "allure-results" / name).write_text(UUID.sub(new, f.read_text()))
        else:
            shutil.copyfile(f, dest / "allure-results" / name)
    return len(json.loads((src / "summary.json").read_text())["tests"])


def timed(dirs: list[str], out: Path, with_allure: bool) -> float:
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    build_report(dirs, out, with_allure=with_allure)
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--from", dest="src", help="results dir of a real conform run")
    ap.add_argument("--tests", type=int, default=2000, help="test results to reach")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--budget", type=float, default=30.0, help="seconds for the full report")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="conform-bench-report-") as tmp:
        work = Path(tmp)
        src = Path(args.src) if args.src else record(work / "recorded")
        dirs, total = [], 0
        while total < args.tests:
            d = work / f"runner-{len(dirs) + 1:02d}"
            total += replicate(src, d, f"runner-{len(dirs) + 1:02d}")
            dirs.append(str(d))
        files = sum(1 for d in dirs for _ in Path(d, "allure-results").iterdir())
        print(f"{total} test results, {len(dirs)} runners, {files} Allure files")
        times: dict[str, list[float]] = {"matrix": [], "full": []}
        for _ in range(args.rounds):  # interleaved, so load drifts hit both alike
            times["matrix"].append(timed(dirs, work / "out-matrix", with_allure=False))
            times["full"].append(timed(dirs, work / "out-full", with_allure=True))
        for kind, ts in times.items():
            print(
                f"{kind:>6}: median {statistics.median(ts):.2f}s  ("
                + ", ".join(f"{t:.2f}" for t in ts)
                + ")"
            )
        page = work / "out-full" / "matrix.html"
        print(
            f"matrix.html {page.stat().st_size / 1024:.0f} KiB, "
            f"matrix.json {(work / 'out-full' / 'matrix.json').stat().st_size / 1024:.0f} KiB"
        )
        full = statistics.median(times["full"])
        verdict = "within" if full <= args.budget else "OVER"
        print(f"full report {full:.2f}s: {verdict} the {args.budget:.0f}s budget")
        return 0 if full <= args.budget else 1


if __name__ == "__main__":
    sys.exit(main())
