"""Real runtimes for the backend tests: a busybox tree, a runc bundle, an rref state root.

Shared by the ptrace and bcc tests so both trace exactly the same kind of run.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from conformance.rootfs import build_tree, find_busybox
from probes.backend import Backend
from probes.trace import Trace

RUNC = shutil.which("runc")
#: runc 1.1.5's one unshare, and what rref asks for too.
NS5 = ["CLONE_NEWNS", "CLONE_NEWUTS", "CLONE_NEWIPC", "CLONE_NEWPID", "CLONE_NEWNET"]
#: The hostname every runc bundle below sets.
RUNC_HOSTNAME = "conform-probe"


@pytest.fixture(scope="module")
def busybox_tree() -> Iterator[Path]:
    busybox = find_busybox()
    if busybox is None or RUNC is None:
        pytest.skip("runc or a static busybox is not installed")
    top = Path(tempfile.mkdtemp(prefix="conform-probe-"))
    build_tree(busybox, top / "tree")
    yield top / "tree"
    shutil.rmtree(top, ignore_errors=True)


@pytest.fixture
def runc_bundle(busybox_tree: Path) -> Iterator[tuple[list[str], str]]:
    """A runc bundle whose process sets a hostname; yields the `runc run` argv and its id."""
    assert RUNC is not None
    work = Path(tempfile.mkdtemp(prefix="conform-probe-runc-"))
    bundle = work / "bundle"
    bundle.mkdir()
    shutil.copytree(busybox_tree, bundle / "rootfs", symlinks=True)
    subprocess.run([RUNC, "spec", "-b", str(bundle)], check=True)
    config = json.loads((bundle / "config.json").read_text())
    config["process"]["terminal"] = False
    config["process"]["args"] = ["true"]
    config["hostname"] = RUNC_HOSTNAME
    (bundle / "config.json").write_text(json.dumps(config))
    cid = f"conform-probe-{uuid.uuid4().hex[:8]}"
    root = str(work / "state")
    yield [RUNC, "--root", root, "run", "-b", str(bundle), cid], cid
    subprocess.run([RUNC, "--root", root, "delete", "-f", cid], capture_output=True)
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def rref_root(rref: str) -> Iterator[str]:
    root = tempfile.mkdtemp(prefix="rref-probe-")
    yield root
    subprocess.run([rref, "--root", root, "system", "prune", "-f"], capture_output=True)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def rref() -> str:
    """This checkout's rref (the venv the tests run from)."""
    import sys

    return str(Path(sys.executable).with_name("rref"))


def traced_ok(backend: Backend, argv: list[str], timeout: float = 60) -> Trace:
    """Trace ``argv``, which must succeed with nothing lost."""
    done, trace = backend.trace(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout
    )
    assert done.returncode == 0, done.stderr
    assert trace.backend == backend.name and trace.lost == 0, trace.notes
    return trace
