"""Content-addressed image store and the default busybox image.

Layers live under image/layers/<diff_id hex>/diff (extracted, read-only to
containers); image configs are OCI image configs stored by their own sha256
(the image id); image/repositories.json maps name:tag -> image id.
`busybox:latest` is built locally from the host's static busybox on first use.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import time
from dataclasses import dataclass
from typing import Any

from .errors import EXIT_RUNTIME, NotFound, RrefError
from .state import flock, read_json, write_json

DEFAULT_IMAGE = "busybox:latest"
BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")


@dataclass
class Image:
    id: str  # "sha256:<hex>"
    config: dict[str, Any]
    layer_dirs: list[str]  # bottom first
    tags: list[str]


def normalize_ref(ref: str) -> str:
    """`busybox` -> `busybox:latest`; digests and ids untouched."""
    if ref.startswith("sha256:") or "@" in ref:
        return ref
    last = ref.rsplit("/", 1)[-1]
    return ref if ":" in last else ref + ":latest"


class ImageStore:
    def __init__(self, root: str) -> None:
        self.root = os.path.join(os.path.abspath(root), "image")
        self.layers = os.path.join(self.root, "layers")
        self.configs = os.path.join(self.root, "configs")
        self.repos_file = os.path.join(self.root, "repositories.json")

    def ensure(self) -> None:
        for d in (self.layers, self.configs):
            os.makedirs(d, mode=0o700, exist_ok=True)

    def lock(self) -> Any:
        self.ensure()
        return flock(os.path.join(self.root, "lock"))

    def repositories(self) -> dict[str, str]:
        try:
            data = read_json(self.repos_file)
        except FileNotFoundError:
            return {}
        except ValueError as e:
            raise RrefError(f"corrupted image index {self.repos_file}: {e}") from None
        return data if isinstance(data, dict) else {}

    def layer_dir(self, diff_id: str) -> str:
        return os.path.join(self.layers, diff_id.removeprefix("sha256:"), "diff")

    def image_ids(self) -> list[str]:
        try:
            return sorted("sha256:" + f[:-5] for f in os.listdir(self.configs)
                          if f.endswith(".json"))
        except FileNotFoundError:
            return []

    def get(self, image_id: str) -> Image:
        path = os.path.join(self.configs, image_id.removeprefix("sha256:") + ".json")
        try:
            config = read_json(path)
        except FileNotFoundError:
            raise NotFound(f"No such image: {image_id}") from None
        except ValueError as e:
            raise RrefError(f"corrupted image config {path}: {e}") from None
        diff_ids = config.get("rootfs", {}).get("diff_ids", [])
        tags = [t for t, i in self.repositories().items() if i == image_id]
        return Image(image_id, config, [self.layer_dir(d) for d in diff_ids], tags)

    def resolve(self, ref: str) -> Image:
        """A name[:tag], a full id, or a unique id prefix; builds busybox on demand."""
        name = normalize_ref(ref)
        repos = self.repositories()
        if name in repos:
            return self.get(repos[name])
        hexref = ref.removeprefix("sha256:")
        if hexref and all(c in "0123456789abcdef" for c in hexref):
            matches = [i for i in self.image_ids() if i[7:].startswith(hexref)]
            if len(matches) == 1:
                return self.get(matches[0])
        if name == DEFAULT_IMAGE:
            return self.get(self.build_busybox())
        raise NotFound(f"Unable to find image '{name}' locally", EXIT_RUNTIME)

    # -- writing -------------------------------------------------------------

    def add_layer_from_dir(self, tree: str) -> str:
        """Adopt a prepared directory as a layer; its diff_id is the sha256 of its tar."""
        digest = "sha256:" + tar_digest(tree)
        final = self.layer_dir(digest)
        if os.path.isdir(final):
            shutil.rmtree(tree)
        else:
            os.makedirs(os.path.dirname(final), exist_ok=True)
            os.rename(tree, final)
        return digest

    def add_image(self, config: dict[str, Any], tag: str | None = None) -> str:
        raw = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
        image_id = "sha256:" + hashlib.sha256(raw).hexdigest()
        path = os.path.join(self.configs, image_id[7:] + ".json")
        if not os.path.exists(path):
            tmp = path + f".tmp.{os.getpid()}"
            with open(tmp, "wb") as f:
                f.write(raw)
            os.replace(tmp, path)
        if tag:
            repos = self.repositories()
            repos[normalize_ref(tag)] = image_id
            write_json(self.repos_file, repos)
        return image_id

    def build_busybox(self) -> str:
        with self.lock():
            repos = self.repositories()
            if DEFAULT_IMAGE in repos:
                return repos[DEFAULT_IMAGE]
            busybox = next((p for p in BUSYBOX_CANDIDATES if os.path.isfile(p)), None)
            if busybox is None:
                raise RrefError("cannot build busybox:latest: no static busybox on this host "
                                "(install busybox-static)", EXIT_RUNTIME)
            tree = os.path.join(self.layers, f".build-{os.getpid()}")
            shutil.rmtree(tree, ignore_errors=True)
            make_busybox_tree(busybox, tree)
            diff_id = self.add_layer_from_dir(tree)
            created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            config = {
                "architecture": _oci_arch(), "os": "linux", "created": created,
                "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:"
                                   "/sbin:/bin"], "Cmd": ["sh"]},
                "rootfs": {"type": "layers", "diff_ids": [diff_id]},
                "history": [{"created": created,
                             "created_by": f"rref: busybox from {busybox}"}],
            }
            return self.add_image(config, DEFAULT_IMAGE)


def _oci_arch() -> str:
    m = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(m, m)


def make_busybox_tree(busybox: str, tree: str) -> None:
    """A minimal root: /bin/busybox with its applets hard-linked, passwd/group, base dirs."""
    for d, mode in (("bin", 0o755), ("etc", 0o755), ("root", 0o700), ("tmp", 0o1777),
                    ("home", 0o755), ("var", 0o755), ("usr", 0o755), ("dev", 0o755),
                    ("proc", 0o555), ("sys", 0o555)):
        os.makedirs(os.path.join(tree, d), exist_ok=True)
        os.chmod(os.path.join(tree, d), mode)
    os.symlink("../bin", os.path.join(tree, "usr", "bin"))
    os.symlink("../bin", os.path.join(tree, "usr", "sbin"))
    os.symlink("bin", os.path.join(tree, "sbin"))
    target = os.path.join(tree, "bin", "busybox")
    shutil.copy2(busybox, target)
    os.chmod(target, 0o755)
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
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


class _HashWriter(io.RawIOBase):
    def __init__(self) -> None:
        self.h = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        self.h.update(b)
        return len(b)


def tar_digest(tree: str) -> str:
    """sha256 of a deterministic tar of `tree` (sorted, numeric owners, zero mtimes)."""
    w = _HashWriter()
    with tarfile.open(fileobj=w, mode="w|", format=tarfile.PAX_FORMAT) as tf:
        for dirpath, dirnames, filenames in os.walk(tree):
            dirnames.sort()
            for name in sorted(dirnames + filenames):
                full = os.path.join(dirpath, name)
                info = tf.gettarinfo(full, os.path.relpath(full, tree))
                info.mtime = 0
                info.uname = info.gname = ""
                if info.isreg():
                    with open(full, "rb") as f:
                        tf.addfile(info, f)
                else:
                    tf.addfile(info)
    return w.h.hexdigest()
