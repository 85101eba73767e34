"""Benchmark the conformance suite against rref: serial vs pytest-xdist, side by side.

Runs `conform run --runtime ref` with -n 0 and -n N (interleaved, R rounds),
and prints the median wall time of each, the speed-up, tests per second, and
the ten slowest tests (from junit.xml). Figures go into docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

CONFORM = str(Path(sys.executable).with_name("conform"))


Case = tuple[float, str]


def run_once(workers: str, results: str, runtime: str) -> tuple[float, int, list[Case]]:
    argv = [
        CONFORM,
        "run",
        "--runtime",
        runtime,
        "--results",
        results,
        "-q",
        "-p",
        "no:cacheprovider",
    ]
    if workers != "0":
        argv += ["-n", workers]
    t = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode not in (0, 1):
        raise SystemExit(f"conform run failed ({proc.returncode}): {proc.stderr[-500:]}")
    cases = []
    for tc in ET.parse(os.path.join(results, "junit.xml")).getroot().iter("testcase"):
        cases.append((float(tc.get("time", 0)), f"{tc.get('classname')}::{tc.get('name')}"))
    return wall, len(cases), cases


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", default="2")
    ap.add_argument("--runtime", default="ref")
    ap.add_argument("--json", help="also write the figures here")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="conform-bench-suite-")
    walls: dict[str, list[float]] = {"serial": [], f"-n {a.workers}": []}
    slow: list[tuple[float, str]] = []
    count = 0
    try:
        for r in range(a.rounds):
            for label, w in (("serial", "0"), (f"-n {a.workers}", a.workers)):
                wall, count, cases = run_once(w, os.path.join(tmp, f"{r}-{w}"), a.runtime)
                walls[label].append(wall)
                if w == "0":
                    slow = sorted(cases, reverse=True)[:10]
                print(f"round {r + 1}: {label:<8} {wall:6.1f} s  ({count} tests)", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in walls.items()}
    par = f"-n {a.workers}"
    print(
        f"\nkernel {os.uname().release}, {os.cpu_count()} CPUs, runtime {a.runtime}, "
        f"{count} tests, {a.rounds} rounds (median)"
    )
    print(f"{'mode':<10}{'wall s':>8}{'tests/s':>9}")
    for k, v in med.items():
        print(f"{k:<10}{v:>8.1f}{count / v:>9.2f}")
    print(f"speed-up from xdist: {med['serial'] / med[par]:.2f}x")
    print("slowest tests (serial run):")
    for t, name in slow:
        print(f"  {t:6.2f} s  {name}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"median": med, "tests": count, "slowest": slow, "walls": walls}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
