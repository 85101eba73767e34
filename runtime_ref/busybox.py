"""The default image, busybox:latest, built locally from the host's static busybox.

No registry is needed: the layer is the busybox binary with its applets
hard-linked into /bin, a passwd and group file, and the usual directories.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

from . import scratch
from .errors import EXIT_RUNTIME, RrefError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .images import ImageStore

BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")


def build_image(store: ImageStore, name: str) -> str:
    """Build and tag `name` (busybox:latest) once, under the store lock; return its image id."""
    from .state import flock

    store.ensure()
    with flock(os.path.join(store.root, "busybox.lock")):
        repos = store.repositories()
        if name in repos:
            return repos[name]
        busybox = next((p for p in BUSYBOX_CANDIDATES if os.path.isfile(p)), None)
        if busybox is None:
            raise RrefError(
                "cannot build busybox:latest: no static busybox on this host "
                "(install busybox-static)",
                EXIT_RUNTIME,
            )
        tree = scratch.path(store.layers, ".busybox")
        make_busybox_tree(busybox, tree)
        diff_id = store.add_layer_from_dir(tree)
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        config = {
            "architecture": _oci_arch(),
            "os": "linux",
            "created": created,
            "config": {
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "Cmd": ["sh"],
            },
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created": created, "created_by": f"rref: busybox from {busybox}"}],
        }
        return store.add_image(config, name)


def _oci_arch() -> str:
    m = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(m, m)


def make_busybox_tree(busybox: str, tree: str) -> None:
    """A minimal root: /bin/busybox with its applets hard-linked, passwd/group, base dirs."""
    for d, mode in (
        ("bin", 0o755),
        ("etc", 0o755),
        ("root", 0o700),
        ("tmp", 0o1777),
        ("home", 0o755),
        ("var", 0o755),
        ("usr", 0o755),
        ("dev", 0o755),
        ("proc", 0o555),
        ("sys", 0o555),
    ):
        os.makedirs(os.path.join(tree, d), exist_ok=True)
        os.chmod(os.path.join(tree, d), mode)
    os.symlink("../bin", os.path.join(tree, "usr", "bin"))
    os.symlink("../bin", os.path.join(tree, "usr", "sbin"))
    os.symlink("bin", os.path.join(tree, "sbin"))
    target = os.path.join(tree, "bin", "busybox")
    shutil.copy2(busybox, target)
    os.chmod(target, 0o755)
    applets = subprocess.run(
        [busybox, "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    for a in applets:
        if a and "/" not in a and a != "busybox":
            os.link(target, os.path.join(tree, "bin", a))
    files = {
        "etc/passwd": "root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
        "nobody:x:65534:65534:nobody:/home:/bin/false\n",
        "etc/group": "root:x:0:\ndaemon:x:1:\ntty:x:5:\nnogroup:x:65534:\n",
    }
    for rel, text in files.items():
        with open(os.path.join(tree, rel), "w") as f:
            f.write(text)
