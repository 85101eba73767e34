"""Init layer (INIT-01..04): the per-container /etc/hosts, /etc/hostname, /etc/resolv.conf.

/etc/hostname is a MUST (INIT-01); /etc/hosts and /etc/resolv.conf are a SHOULD with a network
and a MAY without one (INIT-04: podman leaves them out with `--network none` on purpose).

These are an engine's files (an OCI runtime writes none), hence `requires("engine")`. Before
anything is written, each test checks from the host that the container's files are not the
host's own (same device and inode), so a non-conforming runtime cannot make the suite write
to the host's /etc.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import pytest

from conformance import layertar
from conformance.adapters.base import ContainerSpec
from conformance.tests.support import Started, ran, sh, started, token

FILES = ("/etc/hosts", "/etc/hostname", "/etc/resolv.conf")


def _own_files(
    runtime, container, need: tuple[str, ...] = (), network: Literal["none", "host"] = "none"
) -> tuple[Started, list[str]]:
    """A running container and which of the three files it has (none may be the host's;
    those in ``need`` must exist; the other tests judge what exists)."""
    s = started(runtime, container, ContainerSpec(network=network))
    present, shared = [], []
    for f in FILES:
        try:
            inside = os.stat(f"/proc/{s.pid}/root{f}")
        except FileNotFoundError:
            continue
        present.append(f)
        host = os.stat(f) if os.path.exists(f) else None
        if host and (host.st_dev, host.st_ino) == (inside.st_dev, inside.st_ino):
            shared.append(f)
    assert not shared, f"the container uses the host's own file(s): {shared}"
    missing = [f for f in need if f not in present]
    assert present and not missing, f"missing inside the container: {missing}"
    return s, present


def _append(runtime, s: Started, files: list[str], mark: str) -> None:
    script = "; ".join(f'echo "# {mark}" >> {f} && echo "ok={f}"' for f in files)
    res = runtime.exec(s.container, sh(script))
    written = {ln[3:] for ln in res.stdout.splitlines() if ln.startswith("ok=")}
    assert written == set(files), (
        f"not writable inside: {sorted(set(files) - written)} ({res.describe()})"
    )


def _per_container_and_writable(runtime, container, files: tuple[str, ...], **kw) -> None:
    mark = token()
    a, _ = _own_files(runtime, container, need=files, **kw)
    b, _ = _own_files(runtime, container, need=files, **kw)
    _append(runtime, a, list(files), mark)
    for f in files:
        assert mark in Path(f"/proc/{a.pid}/root{f}").read_text(), f"{f}: the write did not stick"
        assert mark not in Path(f"/proc/{b.pid}/root{f}").read_text(), (
            f"{f} is shared between two containers"
        )
        if os.path.exists(f):
            assert mark not in Path(f).read_text(), f"the write reached the host's {f}"


@pytest.mark.behaviour("INIT-01")
@pytest.mark.requires("engine", "detach", "exec")
def test_files_exist_per_container_and_are_writable(runtime, container):
    _per_container_and_writable(runtime, container, ("/etc/hostname",))


@pytest.mark.behaviour("INIT-04")
@pytest.mark.requires("engine", "detach", "exec")
def test_hosts_and_resolv_conf_with_a_network(runtime, container):
    """With a network (the host's: no traffic, no address of ours), both files SHOULD exist
    per container; each is checked not to be the host's own file before anything is written."""
    _per_container_and_writable(
        runtime, container, ("/etc/hosts", "/etc/resolv.conf"), network="host"
    )


@pytest.mark.behaviour("INIT-02")
@pytest.mark.requires("engine", "detach", "exec", "diff", "commit", "layer-tar")
def test_files_not_in_diff_nor_commit(runtime, container):
    s, files = _own_files(runtime, container)
    _append(runtime, s, files, token())
    listed = [p for _, p in runtime.diff(s.container) if p in FILES]
    assert not listed, f"diff lists the init files: {listed}"
    members = layertar.members(runtime.layer_tar(container.commit(s.container)))
    held = {f: members[f[1:]] for f in FILES if f[1:] in members}
    # an empty regular placeholder (the mount point of a bind-mounted file) may remain
    held = {f: m for f, m in held.items() if not (m.kind == "file" and m.size == 0)}
    assert not held, "the committed layer holds init files: " + ", ".join(
        f"{f} ({m.kind}, {m.size} bytes)" for f, m in held.items()
    )


@pytest.mark.behaviour("INIT-03")
@pytest.mark.requires("engine", "detach", "exec", "commit")
def test_edits_are_lost_on_commit(runtime, container):
    mark = token()
    s, files = _own_files(runtime, container)
    _append(runtime, s, files, mark)
    image = container.commit(s.container)
    res = ran(runtime, ContainerSpec(image=image, argv=sh(f"cat {' '.join(files)}")))
    assert mark not in res.stdout, (
        f"a container of the committed image shows the edit: {res.stdout.strip()!r}"
    )
