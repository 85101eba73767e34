#!/usr/bin/env python3
"""What the pure cgroup v2 lane costs: guest boot, interpreter start, and container
start-up inside the guest (rref and runc on pure v2), over several boots, in one run.

Why: the lane's budget on CI is minutes of TCG emulation; these figures say where they
go (boot vs Python vs containers) and what a test in the guest costs compared with the
host. Each boot's guest script times its commands by /proc/uptime (10 ms steps); medians.
The whole lane's step times come from its own lane.json (`make test-v2`). Run as root;
scratch under /tmp/conform-bench-lane-*. Not collected by pytest.

    .venv/bin/python bench/lane.py [--boots 3] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from lanes import v2  # noqa: E402

SCRIPT = """\
export PATH={venv}/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
cd {repo}
R=/tmp/rref-bench-lane
B=/tmp/rref-bench-lane-bundle
ms() {{ awk '{{ printf "%d", $1 * 1000 }}' /proc/uptime; }}  # the guest's date lacks %N
t() {{ s=$(ms); "$@" >/dev/null 2>&1 || echo "failed: $*" >&2; e=$(ms); echo "$label $((e - s))"; }}
label=python t python3 -c pass
label=rref-first t rref --root $R run --rm busybox true
mkdir -p $B/rootfs/bin && cp /bin/busybox $B/rootfs/bin/ && ln -s busybox $B/rootfs/bin/true
(cd $B && runc spec)
sed -i 's/"terminal": true/"terminal": false/; s/"sh"/"true"/' $B/config.json
for i in $(seq {runs}); do
  label=rref t rref --root $R run --rm busybox true
  label=rref-mem t rref --root $R run --rm -m 64m --pids-limit 64 busybox true
  label=runc t runc run --bundle $B rref-bench-$i
done
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--boots", type=int, default=3)
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    ups, walls = [], []
    times: dict[str, list[int]] = {}
    scratch = tempfile.mkdtemp(prefix="conform-bench-lane-")
    try:
        for _ in range(a.boots):
            script = SCRIPT.format(venv=REPO / ".venv", repo=REPO, runs=a.runs)
            _, up, wall = v2.boot_guest(scratch, str(REPO), script, timeout=600)
            ups.append(up)
            walls.append(wall)
            log = Path(scratch, "guest.log").read_text()
            for line in log.splitlines():
                parts = line.split()
                if len(parts) == 2 and parts[1].isdigit():
                    times.setdefault(parts[0], []).append(int(parts[1]))
                elif line.startswith("failed:"):
                    print(f"in the guest: {line}", file=sys.stderr)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"boots {a.boots}, runs per boot {a.runs} (medians)")
    print(f"  guest up (kernel + initramfs + 9p root): {statistics.median(ups):.1f} s")
    print(f"  whole boot with the script, to power-off: {statistics.median(walls):.1f} s")
    for label, ms in times.items():
        print(f"  {label:11s} {statistics.median(ms):7.0f} ms  (n={len(ms)})")
    if "rref" in times and "runc" in times:
        ratio = statistics.median(times["rref"]) / statistics.median(times["runc"])
        print(f"  rref / runc in the guest: {ratio:.2f}x")
    return 0 if os.geteuid() == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
