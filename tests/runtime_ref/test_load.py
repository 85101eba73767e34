"""32 clients at once on one state root: run, exec, commit, rm (and racing names), nothing
corrupted, collided or leaked.

Why: nightly runners run many suites side by side; rref's state, image store and cgroups
must stay consistent when its commands interleave at every step. The timings are measured
by bench/load.py, not asserted here.
"""

from __future__ import annotations

import concurrent.futures
import os
import uuid

from conftest import Rref, leaks

CLIENTS = 32


def _client(r: Rref, i: int, tag: str) -> tuple[str, str]:
    """One client's life: a detached container, an exec, a commit, a removal."""
    name = f"t-load-{tag}-{i}"
    cid = r("run", "-d", "--name", name, "busybox", "sleep", "60").stdout.strip()
    out = r("exec", name, "sh", "-c", f"echo {name} > /mine && cat /mine").stdout
    assert out == f"{name}\n", out
    image = f"rref-t-load-{tag}:{i}"
    iid = r("commit", name, image).stdout.strip()
    r("rm", "-f", name)
    return cid, iid


def test_32_concurrent_clients_leave_a_consistent_store(fresh_rref: Rref) -> None:
    r, tag = fresh_rref, uuid.uuid4().hex[:6]
    with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
        done = list(pool.map(lambda i: _client(r, i, tag), range(CLIENTS)))
    cids = [c for c, _ in done]
    assert len(set(cids)) == CLIENTS and len({i for _, i in done}) == CLIENTS
    assert r.out("ps", "-aq") == ""
    rows = [ln.split() for ln in r.out("images").splitlines()[1:]]
    images = [f"{row[0]}:{row[1]}" for row in rows if row]
    assert sorted(i for i in images if tag in i) == sorted(
        f"rref-t-load-{tag}:{i}" for i in range(CLIENTS)
    )
    # each committed image holds its own client's file, nobody else's
    for i in (0, CLIENTS // 2, CLIENTS - 1):
        got = r.out("run", "--rm", f"rref-t-load-{tag}:{i}", "cat", "/mine")
        assert got == f"t-load-{tag}-{i}\n", got
    assert all(leaks(c) == [] for c in cids)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: r("rmi", f"rref-t-load-{tag}:{i}"), range(CLIENTS)))
    r("system", "prune", "-a", "-f")
    left = [
        os.path.join(d, f)
        for d, _, files in os.walk(r.root)
        for f in files
        if ".tmp-" in f or f.startswith((".commit-", "state.json.tmp"))
    ]
    assert left == [], left
    assert not os.listdir(os.path.join(r.root, "containers"))


def test_racing_names_give_one_winner_each(fresh_rref: Rref) -> None:
    r = fresh_rref
    names = [f"t-race-{uuid.uuid4().hex[:6]}" for _ in range(4)]

    def create(n: str) -> int:
        return r("create", "--name", n, "busybox", "true", check=False).returncode

    with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
        codes = list(pool.map(create, [n for n in names for _ in range(CLIENTS // 4)]))
    assert codes.count(0) == len(names), codes
    assert set(codes) <= {0, 125}, codes
    listed = [ln.split()[-1] for ln in r.out("ps", "-a").splitlines()[1:] if ln.strip()]
    assert sorted(listed) == sorted(names)
    r("rm", *names)
    assert r.out("ps", "-aq") == ""
