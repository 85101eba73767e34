"""Bad input: one clear line, docker's exit code, and nothing else changed (the table of
refused commands is the catalogue in test_hostile_input.py; here, the cases that need a
state of their own)."""

from __future__ import annotations

import os

import pytest
from conftest import Rref, one_line_error, snapshot


@pytest.fixture
def primed(fresh_rref: Rref) -> Rref:
    """A fresh root with busybox built and one running container, to prove nothing moves."""
    fresh_rref.run_d("busybox", "sleep", "60")
    return fresh_rref


def test_duplicate_name_is_refused(primed: Rref) -> None:
    n = primed.name()
    cid = primed.out("create", "--name", n, "busybox", "true").strip()
    before = snapshot(primed.root)
    one_line_error(
        primed("run", "--name", n, "busybox", "true", check=False),
        125,
        f'The container name "/{n}" is already in use',
    )
    assert snapshot(primed.root) == before
    assert primed.inspect(n, "{{.Id}}") == cid


def test_missing_command_is_refused(primed: Rref) -> None:
    # An image without Cmd or Entrypoint, made through rref's own store API: rref has
    # no import verb yet, and busybox:latest carries Cmd ["sh"].
    from runtime_ref.images import ImageStore

    store = ImageStore(primed.root)
    base = store.resolve("busybox")
    store.add_image(
        {**base.config, "config": {"Env": base.config["config"]["Env"]}}, "nocmd:latest"
    )
    before = snapshot(primed.root)
    one_line_error(primed("run", "nocmd", check=False), 125, "no command specified")
    assert snapshot(primed.root) == before
    assert primed("run", "--rm", "nocmd", "true", check=False).returncode == 0


def test_corrupted_state_file(primed: Rref) -> None:
    n = primed.name()
    cid = primed.out("create", "--name", n, "busybox", "true").strip()
    state = os.path.join(primed.root, "containers", cid, "state.json")
    with open(state, "w") as f:
        f.write('{"Status": "runn')  # a torn write from some other tool
    before = snapshot(primed.root)
    one_line_error(primed("inspect", cid, check=False), 1, "corrupted state file")
    one_line_error(primed("start", cid, check=False), 1, "corrupted state file")
    one_line_error(primed("rm", cid, check=False), 1, "corrupted state file")
    ps = primed("ps", "-a", check=False)
    assert ps.returncode == 0
    assert "corrupted state file" in ps.stderr and len(ps.stdout.splitlines()) == 2
    assert snapshot(primed.root) == before
    primed("rm", "-f", cid)  # -f clears a record that cannot be read
    assert not os.path.exists(os.path.dirname(state))
    assert len(primed.out("ps", "-aq").split()) == 1


def test_failed_start_leaves_no_cgroup(primed: Rref) -> None:
    n = primed.name()
    p = primed("run", "--name", n, "busybox", "/no/such/program", check=False)
    one_line_error(p, 127, "/no/such/program")
    cid = primed.inspect(n, "{{.Id}}")
    assert primed.inspect(n, "{{.State.Status}}") == "exited"
    assert primed.inspect(n, "{{.State.ExitCode}}") == "127"
    from conftest import leaks

    assert leaks(cid) == []
