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
operation dirty data is synced (untimed), so that one operation's writeback
does not land in the next one's time. Wall time is time.perf_counter();
CPU time is user+sys from getrusage (ours: this process; GNU tar: the child,
including its ~1 ms start). Output: medians and the ours/tar ratios.

Outputs of the large tree are deleted after each round; those of the small
tree only at the end: for ~30 s after mass deletions, ext4's inode allocator
(find_inode_bit -> recently_deleted) re-reads the inode table on every
create, which costs ~0.3 ms of kernel time per file, for tar and apply_tar
alike, and would drown both. `--tmpfs` mounts a tmpfs on the bench dir
(named rref-bench-layers, unmounted at the end) to measure CPU cost without
the disk.

Everything lives under /tmp/rref-bench-layers-* and is removed at the end
(also on failure). Not collected by pytest. Run as root (tar -x as root keeps
owners, the same work apply_tar does); stdlib only.

    .venv/bin/python bench/layers.py [--rounds 5] [--json FILE] [--tmpfs]
                                     [--only small,large] [--profile small:apply_tar]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
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
            (d / f"file{j:03d}").write_bytes(blob[off : off + n])


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


def _cpu(who: int) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


# name -> (prepare(work, tree, tarball) -> the timed call, whose CPU time counts)
Op = Callable[[Path, Path, Path], Callable[[], Any]]


def _apply_ours(work: Path, tree: Path, tarball: Path) -> Callable[[], Any]:
    dest = _fresh(work, "x-ours")

    def run() -> None:
        with open(tarball, "rb") as f:
            apply_tar(f, str(dest))

    return run


def _apply_gnu(work: Path, tree: Path, tarball: Path) -> Callable[[], Any]:
    dest = _fresh(work, "x-tar")
    return lambda: subprocess.run([TAR, "-xf", str(tarball), "-C", str(dest)], check=True)


def _writer(fn: Callable[..., None]) -> Op:
    def prep(work: Path, tree: Path, tarball: Path) -> Callable[[], Any]:
        out = work / f"c-ours-{time.monotonic_ns()}.tar"

        def run() -> None:
            with open(out, "wb") as f:
                fn(str(tree), f)

        return run

    return prep


def _create_gnu(work: Path, tree: Path, tarball: Path) -> Callable[[], Any]:
    out = work / f"c-tar-{time.monotonic_ns()}.tar"
    return lambda: subprocess.run([TAR, "-cf", str(out), "-C", str(tree), "."], check=True)


OPS: dict[str, tuple[Op, int]] = {
    "apply_tar": (_apply_ours, resource.RUSAGE_SELF),
    "tar -xf": (_apply_gnu, resource.RUSAGE_CHILDREN),
    "write_tree": (_writer(write_tree), resource.RUSAGE_SELF),
    "write_changeset": (_writer(write_changeset), resource.RUSAGE_SELF),
    "tar -cf": (_create_gnu, resource.RUSAGE_CHILDREN),
}
PAIRS = (("apply_tar", "tar -xf"), ("write_tree", "tar -cf"), ("write_changeset", "tar -cf"))


def clean(work: Path) -> None:
    for p in work.iterdir():
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", metavar="FILE")
    ap.add_argument(
        "--tmpfs",
        action="store_true",
        help="work on a tmpfs mounted on the bench dir (no disk noise: CPU cost)",
    )
    ap.add_argument("--only", default="small,large", help="trees to run (small,large)")
    ap.add_argument(
        "--profile",
        metavar="TREE:OP",
        help="cProfile one operation once (e.g. small:apply_tar) and exit",
    )
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/layers.py: run as root (tar -x keeps owners only as root)", file=sys.stderr)
        return 2
    base = Path(tempfile.mkdtemp(prefix="rref-bench-layers-", dir="/tmp"))
    mounted = False
    try:
        if args.tmpfs:
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "size=6g", "rref-bench-layers", str(base)],
                check=True,
            )
            mounted = True
        names = [t for t in args.only.split(",") if t]
        trees = {t: base / t for t in names}
        for t, tree in trees.items():
            (build_small if t == "small" else build_large)(tree)
        works: dict[str, Path] = {}
        tarballs: dict[str, Path] = {}
        for t, tree in trees.items():
            works[t] = base / f"work-{t}"
            works[t].mkdir()
            tarballs[t] = base / f"{t}.tar"
            with open(tarballs[t], "wb") as f:
                write_tree(str(tree), f)
        os.sync()
        if args.profile:
            import cProfile
            import pstats

            t, op = args.profile.split(":", 1)
            run = OPS[op][0](works[t], trees[t], tarballs[t])
            os.sync()
            prof = cProfile.Profile()
            prof.runcall(run)
            pstats.Stats(prof).sort_stats("tottime").print_stats(15)
            return 0
        wall: dict[str, dict[str, list[float]]] = {t: {} for t in trees}
        cpu: dict[str, dict[str, list[float]]] = {t: {} for t in trees}
        for r in range(args.rounds):
            for t in trees:
                order = list(OPS) if r % 2 == 0 else list(reversed(OPS))
                for op in order:
                    prep, who = OPS[op]
                    run = prep(works[t], trees[t], tarballs[t])
                    os.sync()  # the previous operation's writeback is not this one's
                    c0, t0 = _cpu(who), time.perf_counter()
                    run()
                    t1, c1 = time.perf_counter(), _cpu(who)
                    wall[t].setdefault(op, []).append((t1 - t0) * 1e3)
                    cpu[t].setdefault(op, []).append((c1 - c0) * 1e3)
                if t != "small":  # small: kept to the end (ext4 recently_deleted, above)
                    clean(works[t])
                    os.sync()
        report(wall, cpu, args)
    finally:
        if mounted:
            subprocess.run(["umount", str(base)], check=False)
        shutil.rmtree(base, ignore_errors=True)
    return 0


def report(
    wall: dict[str, dict[str, list[float]]],
    cpu: dict[str, dict[str, list[float]]],
    args: argparse.Namespace,
) -> None:
    version = subprocess.run([TAR, "--version"], capture_output=True, text=True).stdout
    print(
        f"rounds: {args.rounds}; {'tmpfs' if args.tmpfs else 'disk (/tmp)'}; "
        f"python {platform.python_version()}; {version.splitlines()[0] if version else TAR}"
    )
    print(
        f"{'tree':<6} {'ours':<16} {'tar':<8} {'wall ms':>15} {'ratio':>6} "
        f"{'cpu ms':>15} {'ratio':>6}"
    )
    rows = []
    for t in wall:
        mw = {op: statistics.median(v) for op, v in wall[t].items()}
        mc = {op: statistics.median(v) for op, v in cpu[t].items()}
        for ours, theirs in PAIRS:
            row = {
                "tree": t,
                "ours": ours,
                "tar": theirs,
                "ours_wall_ms": round(mw[ours], 1),
                "tar_wall_ms": round(mw[theirs], 1),
                "wall_ratio": round(mw[ours] / mw[theirs], 2),
                "ours_cpu_ms": round(mc[ours], 1),
                "tar_cpu_ms": round(mc[theirs], 1),
                "cpu_ratio": round(mc[ours] / mc[theirs], 2) if mc[theirs] else None,
            }
            rows.append(row)
            print(
                f"{t:<6} {ours:<16} {theirs:<8} {mw[ours]:>7.1f}/{mw[theirs]:<7.1f} "
                f"{row['wall_ratio']:>6.2f} {mc[ours]:>7.1f}/{mc[theirs]:<7.1f} "
                f"{row['cpu_ratio']:>6.2f}"
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "rounds": args.rounds,
                    "tmpfs": args.tmpfs,
                    "rows": rows,
                    "wall_ms": wall,
                    "cpu_ms": cpu,
                },
                f,
                indent=1,
            )


if __name__ == "__main__":
    sys.exit(main())
