"""Content-addressed image store and the default busybox image.

Layers live under image/layers/<diff_id hex>/diff (extracted, read-only to
containers); image configs are OCI image configs stored by their own sha256
(the image id); image/repositories.json maps name:tag -> image id.
`busybox:latest` is built locally from the host's static busybox on first use.
"""

from __future__ import annotations

import json
import os

from .errors import EXIT_RUNTIME, NotFound, RrefError
from .state import flock, read_json, write_json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DEFAULT_IMAGE = "busybox:latest"


class Image:
    """An image: its id ("sha256:<hex>"), OCI config, layer dirs (bottom first), tags."""

    def __init__(self, image_id: str, config: dict[str, Any], layer_dirs: list[str],
                 tags: list[str]) -> None:
        self.id = image_id
        self.config = config
        self.layer_dirs = layer_dirs
        self.tags = tags


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

    def remapped_layer_dirs(self, image: Image, uidmap: list[dict[str, int]],
                            gidmap: list[dict[str, int]]) -> list[str]:
        """The image's layers with owners shifted into a user-namespace map (cached)."""
        from .idmap import map_key, remap_tree

        base = os.path.join(self.root, "remapped", map_key(uidmap, gidmap))
        out = []
        for d in image.layer_dirs:
            target = os.path.join(base, os.path.basename(os.path.dirname(d)), "diff")
            if not os.path.isdir(target):
                with self.lock():
                    if not os.path.isdir(target):
                        os.makedirs(os.path.dirname(target), exist_ok=True)
                        tmp = f"{target}.tmp-{os.getpid()}"
                        if os.path.exists(tmp):
                            from .containers import remove_tree

                            remove_tree(tmp)
                        remap_tree(d, tmp, uidmap, gidmap)
                        os.rename(tmp, target)
            out.append(target)
        for p in (self.root, os.path.join(self.root, "remapped"), base):
            os.chmod(p, os.stat(p).st_mode | 0o011)
        return out

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
        import shutil

        from .layers import tar_digest

        digest = "sha256:" + tar_digest(tree)
        final = self.layer_dir(digest)
        if os.path.isdir(final):
            shutil.rmtree(tree)
        else:
            os.makedirs(os.path.dirname(final), exist_ok=True)
            os.rename(tree, final)
        return digest

    def add_image(self, config: dict[str, Any], tag: str | None = None) -> str:
        import hashlib

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
        from .busybox import build_image

        return build_image(self)
