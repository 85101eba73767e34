"""A full state root: the commands that free space (ps -a, rm -f, system prune) still work.

The root is a small tmpfs filled to the last byte, so every new block fails
with ENOSPC from the kernel; removal and prune must need none.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal

from conftest import leaks, one_line_error, wait_for
from faultkit import cgroups_of, container_dirs, fill, temporaries, tmpfs_root


def _state(root: str, cid: str) -> dict[str, int]:
    with open(os.path.join(root, "containers", cid, "state.json")) as f:
        return json.load(f)


def _kill(pid: int) -> None:
    if pid > 0:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_full_root_still_lists_removes_and_prunes() -> None:
    with tmpfs_root("16m") as r:
        running = r.run_d("busybox", "sleep", "300")
        exited = r("run", "-d", "--name", r.name(), "busybox", "true").stdout.strip()
        wait_for(lambda: _state(r.root, exited).get("Status") == "exited", "the short one to exit")
        st = _state(r.root, running)
        assert cgroups_of(running), "the running container has cgroups to reclaim"
        _kill(st["MonitorPid"])  # the monitor dies: the next reader must record the exit
        _kill(st["Pid"])
        wait_for(lambda: not os.path.exists(f"/proc/{st['Pid']}"), "pid 1 to die")
        fill(os.path.join(r.root, "rref-fill"))

        ps = r("ps", "-a", "--no-trunc", check=False)
        assert ps.returncode == 0 and ps.stderr == "", ps.stderr
        assert running in ps.stdout and exited in ps.stdout
        one_line_error(r("run", "busybox", "true", check=False), 125, "No space left on device")

        assert os.statvfs(r.root).f_bavail == 0, "still full when rm starts"
        rm = r("rm", "-f", running, exited, check=False)
        assert rm.returncode == 0, rm.stderr
        prune = r("system", "prune", "-a", "-f", check=False)
        assert prune.returncode == 0, prune.stderr
        assert container_dirs(r.root) == []
        assert temporaries(r.root) == []
        assert cgroups_of(running) == [] and leaks(running) == []
        assert r("ps", "-a", "-q").stdout == ""
