"""rref commands SIGKILLed part way: what they leave is listed or reclaimed, never lost.

The kills are real: the test starts a real `rref` and SIGKILLs it when its
temporaries appear on disk (or stops it with SIGSTOP to prove a live owner's
temporaries are left alone).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
from conftest import RREF, Rref, leaks, wait_for
from faultkit import TEMP_NAME, cgroups_of, temporaries

BIG_MB = 40


def _big_container(r: Rref) -> str:
    cid = r.run_d(
        "busybox", "sh", "-c", f"dd if=/dev/zero of=/big bs=1M count={BIG_MB} && sleep 300"
    )
    big = os.path.join(r.root, "containers", cid, "upper", "big")
    wait_for(lambda: os.path.exists(big) and os.path.getsize(big) == BIG_MB << 20, "the big file")
    return cid


def _layer_stage(r: Rref) -> list[str]:
    """Temporary directories in the layer store: a layer being staged."""
    d = os.path.join(r.root, "image", "layers")
    return [n for n in os.listdir(d) if TEMP_NAME.search(n) and os.path.isdir(os.path.join(d, n))]


def _start(r: Rref, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [RREF, "--root", r.root, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _exited(p: subprocess.Popen[bytes]) -> bool:
    """Whether `p` has exited, without reaping it (a zombie can still be signalled)."""
    return os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def _stop_when_staging(r: Rref, cid: str, sig: int) -> subprocess.Popen[bytes]:
    """A commit signalled while its layer is staged. A commit that outruns the polling (a
    loaded runner) made an ordinary image: that image is removed and the commit retried."""
    images = set(r.out("images", "-q").split())
    for _ in range(5):
        p = _start(r, "commit", cid)
        wait_for(lambda p=p: _layer_stage(r) or _exited(p), "a layer stage", timeout=30)
        if not _exited(p):
            os.kill(p.pid, sig)
            return p
        assert p.wait() == 0, "the commit failed"
        for image in set(r.out("images", "-q").split()) - images:
            r("rmi", image)
    raise AssertionError("five commits finished before their layer stage could be seen")


def _images_line(r: Rref) -> list[str]:
    return next(ln.split() for ln in r.out("system", "df").splitlines() if ln.startswith("Images"))


def test_killed_commit_is_not_counted_and_prune_reclaims_it(fresh_rref: Rref) -> None:
    r = fresh_rref
    cid = _big_container(r)
    before = _images_line(r)
    p = _stop_when_staging(r, cid, signal.SIGKILL)
    p.wait(10)
    left = temporaries(r.root)
    assert left, "the kill came while temporaries existed"
    assert _images_line(r) == before, "a dead commit's temporaries are not images"
    assert r.inspect(cid, "{{.State.Status}}") == "running"
    assert r("exec", cid, "true", timeout=10).returncode == 0, "not left frozen by the commit"
    out = r.out("system", "prune", "-f")
    assert "temporaries" in out, out
    assert temporaries(r.root) == []


def test_a_later_commit_reclaims_what_a_killed_one_left(fresh_rref: Rref) -> None:
    r = fresh_rref
    cid = _big_container(r)
    _stop_when_staging(r, cid, signal.SIGKILL).wait(10)
    assert temporaries(r.root)
    small = r.run_d("busybox", "sh", "-c", "echo x > /small && sleep 300")
    wait_for(
        lambda: os.path.exists(os.path.join(r.root, "containers", small, "upper", "small")),
        "the small file",
    )
    r("commit", small)
    assert temporaries(r.root) == []


def test_prune_leaves_a_live_commits_temporaries_alone(fresh_rref: Rref) -> None:
    r = fresh_rref
    cid = _big_container(r)
    p = _stop_when_staging(r, cid, signal.SIGSTOP)
    try:
        held = temporaries(r.root)
        assert held
        r("system", "prune", "-f")
        assert all(os.path.exists(t) for t in held), "a live owner's temporaries survive prune"
    finally:
        os.kill(p.pid, signal.SIGCONT)
    assert p.wait(60) == 0
    deadline = time.monotonic() + 5
    while temporaries(r.root) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert temporaries(r.root) == []


def _container_ids(r: Rref) -> list[str]:
    try:
        return [d for d in os.listdir(os.path.join(r.root, "containers")) if len(d) == 64]
    except FileNotFoundError:
        return []


@pytest.mark.parametrize("delay", [0.0, 0.01, 0.03])
def test_run_killed_early_is_listed_and_removable(fresh_rref: Rref, delay: float) -> None:
    r = fresh_rref
    r("run", "--rm", "busybox", "true")  # the image exists before the killed run
    p = _start(r, "run", "-d", "busybox", "sleep", "300")
    try:
        ids = wait_for(lambda: _container_ids(r) or p.poll() is not None, "a container dir")
        time.sleep(delay)
    finally:
        p.kill()
    p.wait(10)
    assert ids == _container_ids(r) and len(ids) == 1
    cid = ids[0]
    assert cid in r.out("ps", "-a", "-q", "--no-trunc").split()
    r("rm", "-f", cid)
    assert _container_ids(r) == [] and temporaries(r.root) == []
    assert cgroups_of(cid) == [] and leaks(cid) == []


SWEEP = int(os.environ.get("RREF_FAULT_SWEEP", "8"))  # kill moments; raise for a long run


@pytest.mark.slow
def test_run_and_rm_killed_at_a_sweep_of_moments(fresh_rref: Rref) -> None:
    """SIGKILL `run -d` and then `rm -f` at evenly spread moments of their life: after each,
    every container dir is listed, and rm -f plus prune leave nothing behind."""
    r = fresh_rref
    r("run", "--rm", "busybox", "true")
    t0 = time.monotonic()
    r("rm", "-f", r.run_d("busybox", "true"))
    span = time.monotonic() - t0  # how long one run + rm takes on this machine now
    made: list[str] = []
    for i in range(SWEEP):
        moment = span * i / max(SWEEP - 1, 1)
        p = _start(r, "run", "-d", "busybox", "sleep", "300")
        time.sleep(moment / 2)
        p.kill()
        p.wait(10)
        ids = _container_ids(r)
        listed = r.out("ps", "-a", "-q", "--no-trunc").split()
        assert sorted(listed) == sorted(ids), f"at {moment:.3f}s: listed {listed}, on disk {ids}"
        made += ids
        for cid in ids:
            q = _start(r, "rm", "-f", cid)
            time.sleep(moment / 4)
            q.kill()
            q.wait(10)
        left = _container_ids(r)
        assert sorted(r.out("ps", "-a", "-q", "--no-trunc").split()) == sorted(left)
        for cid in left:
            r("rm", "-f", cid)
    r("system", "prune", "-a", "-f")
    assert _container_ids(r) == [] and temporaries(r.root) == []
    for cid in made:
        assert cgroups_of(cid) == [] and leaks(cid) == []
