#!/usr/bin/env python3
"""rref under load: N clients at once on one state root, each `run -d`, `exec`, `commit`,
`rm -f`; latency percentiles per verb and lifecycles per second, next to the same work
done by one client at a time, in one run.

Why: nightly runners run suites side by side; what matters is that rref stays correct
(tests/runtime_ref/test_load.py) and how its latency grows with contention (this).
Everything is under a private root /tmp/rref-bench-load-*, pruned and removed at the end.
Not collected by pytest. Run as root.

    .venv/bin/python bench/load.py [--clients 32] [--rounds 2]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

RREF = str(Path(sys.executable).with_name("rref"))
VERBS = ("run -d", "exec", "commit", "rm -f")


def _rref(root: str, *args: str) -> float:
    t0 = time.perf_counter()
    p = subprocess.run([RREF, "--root", root, *args], capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise SystemExit(f"rref {' '.join(args)} exited {p.returncode}: {p.stderr.strip()}")
    return (time.perf_counter() - t0) * 1000


def lifecycle(root: str, i: int, tag: str) -> dict[str, float]:
    name = f"rref-bench-{tag}-{i}"
    return {
        "run -d": _rref(root, "run", "-d", "--name", name, "busybox", "sleep", "60"),
        "exec": _rref(root, "exec", name, "sh", "-c", "echo x > /x"),
        "commit": _rref(root, "commit", name, f"rref-bench-{tag}:{i}"),
        "rm -f": _rref(root, "rm", "-f", name),
    }


def measure(root: str, clients: int, concurrent_: bool) -> tuple[float, list[dict[str, float]]]:
    tag = uuid.uuid4().hex[:6]
    t0 = time.perf_counter()
    if concurrent_:
        with concurrent.futures.ThreadPoolExecutor(clients) as pool:
            got = list(pool.map(lambda i: lifecycle(root, i, tag), range(clients)))
    else:
        got = [lifecycle(root, i, tag) for i in range(clients)]
    wall = time.perf_counter() - t0
    _rref(root, "system", "prune", "-a", "-f")
    return wall, got


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * (len(xs) - 1) + 0.5))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="rref-bench-load-")
    try:
        _rref(root, "run", "--rm", "busybox", "true")  # the image, untimed
        results: dict[str, list[tuple[float, list[dict[str, float]]]]] = {"serial": [], "32": []}
        for _ in range(args.rounds):
            results["serial"].append(measure(root, args.clients, False))
            results["32"].append(measure(root, args.clients, True))
    finally:
        subprocess.run([RREF, "--root", root, "system", "prune", "-a", "-f"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
    label = {"serial": "one at a time", "32": f"{args.clients} at once"}
    print(f"{args.clients} lifecycles (run -d, exec, commit, rm -f), {args.rounds} rounds")
    for mode, runs in results.items():
        walls = [w for w, _ in runs]
        per_s = args.clients / statistics.median(walls)
        print(
            f"{label[mode]}: median wall {statistics.median(walls):.1f} s, {per_s:.1f} lifecycles/s"
        )
        for verb in VERBS:
            ms = [d[verb] for _, got in runs for d in got]
            print(
                f"  {verb:7} p50 {pct(ms, 0.5):7.0f} ms  p90 {pct(ms, 0.9):7.0f} ms  "
                f"p99 {pct(ms, 0.99):7.0f} ms"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
