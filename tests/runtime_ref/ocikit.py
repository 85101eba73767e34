"""Real bundles and a private state root for the rref-oci tests.

A bundle is a copy of the suite's busybox tree plus `rref-oci spec`'s config.json,
edited per test. The fixture deletes every container it made and then proves
that no state directory, cgroup or mount of theirs is left on the host.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conformance.rootfs import build_tree, find_busybox

RREF_OCI = str(Path(sys.executable).with_name("rref-oci"))


def leftovers(token: str) -> list[str]:
    """Cgroup directories and mounts on the host whose path contains `token`."""
    found: list[str] = []
    for dirpath, dirnames, _ in os.walk("/sys/fs/cgroup"):  # others' cgroups come and go
        found += [os.path.join(dirpath, d) for d in dirnames if token in d]
    found += [ln for ln in Path("/proc/self/mountinfo").read_text().splitlines() if token in ln]
    return found


class Oci:
    def __init__(self, work: Path, tree: Path) -> None:
        self.work = work
        self.tree = tree
        self.root = work / "state"
        self.ids: list[str] = []

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 60, root: bool = True
    ) -> subprocess.CompletedProcess[str]:
        argv = [RREF_OCI, *(["--root", str(self.root)] if root else []), *args]
        # files, not pipes: a created or detached init keeps its stdio open
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            rc = subprocess.run(
                argv, stdout=out, stderr=err, timeout=timeout, stdin=subprocess.DEVNULL
            ).returncode
            out.seek(0)
            err.seek(0)
            p = subprocess.CompletedProcess(
                argv, rc, out.read().decode(errors="replace"), err.read().decode(errors="replace")
            )
        if check and p.returncode != 0:
            raise AssertionError(f"rref-oci {' '.join(args)} exited {p.returncode}: {p.stderr}")
        return p

    def new_id(self) -> str:
        cid = f"rref-oci-{uuid.uuid4().hex[:10]}"
        self.ids.append(cid)
        return cid

    def bundle(self, args: list[str], **edits: Any) -> Path:
        """A bundle running `args`; `edits` replace top-level keys, `process_*` process keys."""
        b = self.work / f"bundle-{uuid.uuid4().hex[:8]}"
        b.mkdir()
        shutil.copytree(self.tree, b / "rootfs", symlinks=True)
        self("spec", "-b", str(b), root=False)
        config = json.loads((b / "config.json").read_text())
        config["process"]["args"] = args
        config["root"]["readonly"] = False
        for key, value in edits.items():
            if key.startswith("process_"):
                config["process"][key[len("process_") :]] = value
            elif key.startswith("linux_"):
                config["linux"][key[len("linux_") :]] = value
            else:
                config[key] = value
        (b / "config.json").write_text(json.dumps(config))
        return b

    def state(self, cid: str) -> dict[str, Any]:
        return json.loads(self("state", cid).stdout)

    def cleanup(self) -> None:
        for cid in self.ids:
            self("delete", "--force", cid, check=False)


@pytest.fixture(scope="module")
def busybox_tree() -> Iterator[Path]:
    busybox = find_busybox()
    if busybox is None:
        pytest.skip("no static busybox on this host")
    top = Path(tempfile.mkdtemp(prefix="rref-oci-tree-"))
    build_tree(busybox, top / "tree")
    yield top / "tree"
    shutil.rmtree(top, ignore_errors=True)


@pytest.fixture
def oci(busybox_tree: Path) -> Iterator[Oci]:
    work = Path(tempfile.mkdtemp(prefix="rref-oci-test-"))
    o = Oci(work, busybox_tree)
    try:
        yield o
    finally:
        o.cleanup()
        left = [str(p) for p in o.root.iterdir()] if o.root.exists() else []
        for cid in o.ids:
            left += leftovers(cid)
        shutil.rmtree(work, ignore_errors=True)
    assert not left, f"left behind: {left}"
