"""Hostile input: one `rref: ...` line, docker's exit code, nothing written under the root.

Each case is refused before anything is made, so the state root's files are
byte-identical afterwards and no container appears.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from conftest import Rref, one_line_error, snapshot


@pytest.fixture
def files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    d = tmp_path_factory.mktemp("rref-hostile-")
    paths = {
        "binary": (b"A=1\n\xff\xfe\x00\x81garbage\n"),
        "nul": b"A=1\nB=x\x00y\n",
    }
    out = {}
    for name, data in paths.items():
        p = d / f"{name}.env"
        p.write_bytes(data)
        out[name] = str(p)
    yield out


CASES = [
    (["run", "--env-file", "{binary}", "busybox", "true"], 125, "invalid utf8 bytes at line 2"),
    (["run", "--env-file", "{nul}", "busybox", "true"], 125, "NUL byte at line 2"),
    (["run", "-u", "99999999999", "busybox", "true"], 125, "uids and gids must be in range"),
    (["run", "-u", "0:99999999999", "busybox", "true"], 125, "uids and gids must be in range"),
    (["create", "-u", "4294967296", "busybox"], 125, "uids and gids must be in range"),
    (["run", "-m", "99999999999999999999g", "busybox", "true"], 125, "value out of range"),
    (["run", "-m", "nang", "busybox", "true"], 125, "want a size like 512m"),
    (["run", "-m", "inf", "busybox", "true"], 125, "--memory"),
    (["run", "--pids-limit", "1" + "0" * 30, "busybox", "true"], 125, "value out of range"),
    (["run", "--cpu-shares", "-5", "busybox", "true"], 125, "--cpu-shares"),
]


@pytest.mark.parametrize(("args", "code", "needle"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_hostile_input_is_refused_cleanly(
    fresh_rref: Rref, files: dict[str, str], args: list[str], code: int, needle: str
) -> None:
    r = fresh_rref
    r("run", "--rm", "busybox", "true")
    before = snapshot(r.root)
    argv = [a.format(**files) for a in args]
    one_line_error(r(*argv, check=False), code, needle)
    assert snapshot(r.root) == before
    assert r.out("ps", "-a", "-q") == ""
    assert not os.listdir(os.path.join(r.root, "containers"))
