"""The suite's own base image: a busybox tree built from the host's static busybox.

Why: OCI runtimes need a rootfs and engines need an image, and the suite must not depend on
a registry or on the reference runtime's image store. The tree is small (one binary, hard
links for the applets, passwd/group) and its content hash names the engine image.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox", "/sbin/busybox")

_DIRS = (
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
    ("mnt", 0o755),
    ("run", 0o755),
)
_FILES = {
    "etc/passwd": "root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
    "nobody:x:65534:65534:nobody:/home:/bin/false\n",
    "etc/group": "root:x:0:\ndaemon:x:1:\ntty:x:5:\nnogroup:x:65534:\n",
}


def find_busybox() -> str | None:
    """The host's busybox if it is a static binary (it must run inside any rootfs)."""
    for path in BUSYBOX_CANDIDATES:
        if os.path.isfile(path) and _is_static(path):
            return path
    return None


def _is_static(path: str) -> bool:
    """An ELF without a PT_INTERP program header (no dynamic loader needed)."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if head[:4] != b"\x7fELF" or head[4] != 2:  # 64-bit only, enough here
                return False
            phoff = int.from_bytes(head[32:40], "little")
            phentsize = int.from_bytes(head[54:56], "little")
            phnum = int.from_bytes(head[56:58], "little")
            f.seek(phoff)
            table = f.read(phentsize * phnum)
    except OSError:
        return False
    return all(
        int.from_bytes(table[i : i + 4], "little") != 3  # PT_INTERP
        for i in range(0, len(table), phentsize)
    )


def build_tree(busybox: str, tree: Path) -> None:
    """Make the busybox root at ``tree`` (which must not exist)."""
    tree.mkdir(parents=True)
    for d, mode in _DIRS:
        (tree / d).mkdir(exist_ok=True)
        os.chmod(tree / d, mode)
    os.symlink("../bin", tree / "usr" / "bin")
    os.symlink("../bin", tree / "usr" / "sbin")
    os.symlink("bin", tree / "sbin")
    target = tree / "bin" / "busybox"
    shutil.copy2(busybox, target)
    os.chmod(target, 0o755)
    applets = subprocess.run(
        [busybox, "--list"], capture_output=True, text=True, check=True, timeout=10
    ).stdout.split()
    for applet in applets:
        if applet and "/" not in applet and applet != "busybox":
            os.link(target, tree / "bin" / applet)
    for rel, text in _FILES.items():
        (tree / rel).write_text(text)


def content_hash(tree: Path) -> str:
    """A short digest of the tree's paths, modes and file contents (names the image)."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in sorted(os.walk(tree)):
        dirnames.sort()
        for name in sorted(filenames + [d for d in dirnames if (Path(dirpath) / d).is_symlink()]):
            p = Path(dirpath) / name
            st = p.lstat()
            h.update(f"{p.relative_to(tree)}\0{st.st_mode:o}\0".encode())
            if p.is_symlink():
                h.update(os.readlink(p).encode())
            elif name == "busybox" or not os.path.samefile(p, tree / "bin" / "busybox"):
                h.update(p.read_bytes())
    return h.hexdigest()[:12]


def write_tar(tree: Path, out: Path) -> None:
    """A tar of the tree (hard links kept, owners root) for `podman import`."""

    def root_owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    with tarfile.open(out, "w") as tar:
        for entry in sorted(os.listdir(tree)):
            tar.add(tree / entry, arcname=entry, filter=root_owned)
