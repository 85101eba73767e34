#!/usr/bin/env python3
"""Layer formats: runtime_ref.layers vs GNU tar, side by side in one run.

Why: every image pull applies layers (apply_tar) and every commit/save writes
one (write_changeset / write_tree). Python doing a C program's job must not be
the reason rref is slow, so each operation is timed next to GNU tar doing the
same job on the same data, on the same machine, in the same run:

* extract: `apply_tar(open(tar))` into an empty dir vs `tar -xf TAR -C DIR`
  (as root GNU tar keeps owners and modes, as apply_tar does), both from the
  same pre-made tar file;
* create: `write_tree(tree, file)` and `write_changeset(tree, file)` (the tree
  read as an overlay upper dir, no lowers) vs `tar -cf FILE -C tree .`.

Two trees: "small", 100 dirs x 100 files of 1-4 KiB (10,000 files, per-entry
overhead), and "large", 4 files of 64 MiB of random data (throughput).
Rounds are interleaved and the order alternates each round; before each timed
operation the page cache's dirty data is synced (untimed), so that one
operation's writeback does not land in the next one's time. Times are
time.perf_counter() wall times; GNU tar's include its process start (~1 ms).
Output: median ms per operation and the ours/tar ratio of the medians.

Everything lives under /tmp/rref-bench-layers-* and is removed at the end
(also on failure). Not collected by pytest. Run as root (tar -x as root keeps
owners, the same work apply_tar does); stdlib only.

    .venv/bin/python bench/layers.py [--rounds 5] [--json FILE]
                                     [--profile small:apply_tar]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from runtime_ref.layers import apply_tar, write_changeset, write_tree  # noqa: E402

TAR = shutil.which("tar") or "tar"


def build_small(root: Path, dirs: int = 100, files: int = 100) -> None:
    rnd = random.Random(0)
    blob = os.urandom(4096 * 2)
    for i in range(dirs):
        d = root / f"dir{i:03d}"
        d.mkdir(parents=True)
        for j in range(files):
            n = rnd.randint(1024, 4096)
            off = rnd.randint(0, 4096)
            (d / f"file{j:03d}").write_bytes(blob[off:off + n])


def build_large(root: Path, count: int = 4, mib: int = 64) -> None:
    root.mkdir(parents=True)
    for i in range(count):
        with open(root / f"big{i}", "wb") as f:
            for _ in range(mib):
                f.write(os.urandom(1 << 20))


def _fresh(work: Path, tag: str) -> Path:
    d = work / f"{tag}-{time.monotonic_ns()}"
    d.mkdir()
    return d


def ops(work: Path, tree: Path, tarball: Path) -> dict[str, Callable[[], Callable[[], Any]]]:
    """name -> prepare() returning the timed call (preparation is untimed)."""

    def apply_ours() -> Callable[[], Any]:
        dest = _fresh(work, "x-ours")

        def run() -> None:
            with open(tarball, "rb") as f:
                apply_tar(f, str(dest))
        return run

    def apply_tar_cmd() -> Callable[[], Any]:
        dest = _fresh(work, "x-tar")
        return lambda: subprocess.run([TAR, "-xf", str(tarball), "-C", str(dest)], check=True)

    def write(fn: Callable[..., None]) -> Callable[[], Callable[[], Any]]:
        def prep() -> Callable[[], Any]:
            out = work / f"c-{time.monotonic_ns()}.tar"

            def run() -> None:
                with open(out, "wb") as f:
                    fn(str(tree), f)
            return run
        return prep

    def create_tar_cmd() -> Callable[[], Any]:
        out = work / f"c-{time.monotonic_ns()}.tar"
        return lambda: subprocess.run([TAR, "-cf", str(out), "-C", str(tree), "."], check=True)

    return {"apply_tar": apply_ours, "tar -xf": apply_tar_cmd,
            "write_tree": write(write_tree), "write_changeset": write(write_changeset),
            "tar -cf": create_tar_cmd}


def clean_outputs(work: Path, keep: set[Path]) -> None:
    for p in work.iterdir():
        if p in keep:
            continue
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", metavar="FILE")
    ap.add_argument("--profile", metavar="TREE:OP",
                    help="cProfile one operation once (e.g. small:apply_tar) and exit")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/layers.py: run as root (tar -x keeps owners only as root)", file=sys.stderr)
        return 2
    base = Path(tempfile.mkdtemp(prefix="rref-bench-layers-", dir="/tmp"))
    try:
        trees = {"small": base / "small", "large": base / "large"}
        build_small(trees["small"])
        build_large(trees["large"])
        works: dict[str, Path] = {}
        tarballs: dict[str, Path] = {}
        for name, tree in trees.items():
            works[name] = base / f"work-{name}"
            works[name].mkdir()
            tarballs[name] = base / f"{name}.tar"
            with open(tarballs[name], "wb") as f:
                write_tree(str(tree), f)
        if args.profile:
            import cProfile
            import pstats

            tname, op = args.profile.split(":", 1)
            run = ops(works[tname], trees[tname], tarballs[tname])[op]()
            os.sync()
            prof = cProfile.Profile()
            prof.runcall(run)
            pstats.Stats(prof).sort_stats("tottime").print_stats(15)
            return 0
        times: dict[str, dict[str, list[float]]] = {t: {} for t in trees}
        for r in range(args.rounds):
            for tname in trees:
                table = ops(works[tname], trees[tname], tarballs[tname])
                order = list(table) if r % 2 == 0 else list(reversed(table))
                for op in order:
                    run = table[op]()
                    os.sync()
                    t0 = time.perf_counter()
                    run()
                    times[tname].setdefault(op, []).append((time.perf_counter() - t0) * 1e3)
                    clean_outputs(works[tname], set())
        report(times, args)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


PAIRS = (("apply_tar", "tar -xf"), ("write_tree", "tar -cf"), ("write_changeset", "tar -cf"))


def report(times: dict[str, dict[str, list[float]]], args: argparse.Namespace) -> None:
    med = {t: {op: statistics.median(v) for op, v in ops_.items()} for t, ops_ in times.items()}
    version = subprocess.run([TAR, "--version"], capture_output=True, text=True).stdout
    print(f"rounds: {args.rounds}; python {platform.python_version()}, "
          f"{version.splitlines()[0] if version else TAR}")
    print(f"{'tree':<6} {'ours':<16} {'median ms':>10} {'tar':<8} {'median ms':>10} {'ratio':>6}")
    rows = []
    for t, m in med.items():
        for ours, theirs in PAIRS:
            ratio = m[ours] / m[theirs]
            rows.append({"tree": t, "ours": ours, "ours_ms": round(m[ours], 1), "tar": theirs,
                         "tar_ms": round(m[theirs], 1), "ratio": round(ratio, 2)})
            print(f"{t:<6} {ours:<16} {m[ours]:>10.1f} {theirs:<8} {m[theirs]:>10.1f} "
                  f"{ratio:>6.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rounds": args.rounds, "rows": rows, "samples_ms": times}, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
