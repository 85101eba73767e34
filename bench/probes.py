#!/usr/bin/env python3
"""What tracing costs: `rref run --rm busybox true` and `runc run`, untraced vs bcc vs ptrace,
side by side in one run.

Why: a trace is only evidence worth attaching to every test if taking it does not change
what is measured or make the nightly run slow. Rounds are interleaved (rref untraced, rref
bcc, rref ptrace, runc untraced, ...) so machine noise hits every variant alike. Also
reported: the bcc backend's compile + load + attach time, this process's RSS after it, and
events and lost records per traced run. Medians and ratios to the untraced run of the same
runtime; p10/p90 for spread.

Uses bench/startup.py's set-up (a private rref root /tmp/rref-bench-*, a runc bundle under
/tmp/conform-bench-*), removed at the end. Not collected by pytest. Run as root.

    .venv/bin/python bench/probes.py [--runs 20] [--warmup 2] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import startup

from probes import backend as probe_backend

VARIANTS = ("untraced", "bcc", "ptrace")


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _once(tracer: Any, argv: list[str]) -> tuple[float, int, int]:
    """ms, events, lost of one run (untraced when ``tracer`` is None)."""
    t0 = time.perf_counter()
    if tracer is None:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
        events = lost = 0
    else:
        p, trace = tracer.trace(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        events, lost = len(trace.events), trace.lost
    ms = (time.perf_counter() - t0) * 1000
    if p.returncode != 0:
        raise startup.BenchError(f"{argv[0]} exited {p.returncode}: {startup.first_line(p.stderr)}")
    return ms, events, lost


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    rref = str(Path(sys.executable).with_name("rref"))
    runc = startup.find_tool("runc", "/usr/sbin/runc", "/usr/bin/runc")
    bench = startup.Bench(rref, runc, None)
    rss0 = _rss_mib()
    t0 = time.monotonic()
    bcc, why_bcc = probe_backend.select("bcc")
    compile_s = time.monotonic() - t0
    rss_bcc = _rss_mib()
    ptrace, why_ptrace = probe_backend.select("ptrace")
    tracers = {"untraced": None, "bcc": bcc, "ptrace": ptrace}
    samples: dict[str, dict[str, list[tuple[float, int, int]]]] = {}
    try:
        layer = bench.setup_rref()
        bench.setup_runc(layer)
        assert bench.work
        state = os.path.join(bench.work, "conform-runc-state")
        bundle = os.path.join(bench.work, "bundle")

        def commands(i: int) -> dict[str, list[str]]:
            return {
                "rref": bench.rref_argv("run", "--rm", "busybox", "true"),
                "runc": [runc or "runc", "--root", state, "run", "-b", bundle,
                         f"conform-bench-{bench.tag}-{i}"],
            }  # fmt: skip

        for rnd in range(args.warmup + args.runs):
            for rt, cmd in commands(rnd).items():
                for variant in VARIANTS:
                    tracer = tracers[variant]
                    if variant != "untraced" and tracer is None:
                        continue
                    got = _once(tracer, cmd)
                    if rnd >= args.warmup:
                        samples.setdefault(rt, {}).setdefault(variant, []).append(got)
    finally:
        probe_backend.close_all()
        bench.cleanup()
    doc: dict[str, Any] = {
        "machine": startup.machine_info(runc, None),
        "runs": args.runs,
        "bcc": {
            "available": bcc is not None,
            "why": why_bcc,
            "compile_attach_s": round(compile_s, 2),
            "rss_mib_before": round(rss0, 1),
            "rss_mib_after": round(rss_bcc, 1),
        },
        "ptrace": {"available": ptrace is not None, "why": why_ptrace},
        "results": {},
    }
    print(f"bcc: {why_bcc}; compile+load+attach {compile_s:.2f}s; RSS {rss0:.0f} -> "
          f"{rss_bcc:.0f} MiB")  # fmt: skip
    print(f"{'runtime':8} {'variant':9} {'median':>8} {'p10':>8} {'p90':>8} {'ratio':>6} "
          f"{'events':>7} {'lost':>5}")  # fmt: skip
    for rt, by_variant in samples.items():
        base = statistics.median(ms for ms, _, _ in by_variant["untraced"])
        for variant, runs in by_variant.items():
            ms = [m for m, _, _ in runs]
            pct = startup.percentiles(ms)
            events = statistics.median(e for _, e, _ in runs)
            lost = sum(lost for _, _, lost in runs)
            ratio = pct["median_ms"] / base
            doc["results"].setdefault(rt, {})[variant] = {
                **{k: round(v, 2) for k, v in pct.items()},
                "ratio": round(ratio, 3),
                "events_median": events,
                "lost_total": lost,
            }
            print(f"{rt:8} {variant:9} {pct['median_ms']:8.1f} {pct['p10_ms']:8.1f} "
                  f"{pct['p90_ms']:8.1f} {ratio:6.2f} {events:7.0f} {lost:5d}")  # fmt: skip
    if bench.warnings:
        print("\n".join(bench.warnings), file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
