"""Content-addressed image store and the default busybox image.

Layers live under image/layers/<diff_id hex>/diff (extracted, read-only to
containers); image configs are OCI image configs stored by their own sha256
(the image id); image/repositories.json maps name:tag -> image id.
`busybox:latest` is built locally from the host's static busybox on first use.
"""

from __future__ import annotations

import json
import os

from . import faults, scratch
from .errors import EXIT_RUNTIME, NotFound, RrefError
from .state import flock, read_json, write_json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DEFAULT_IMAGE = "busybox:latest"


class Image:
    """An image: its id ("sha256:<hex>"), OCI config, layer dirs (bottom first), tags."""

    def __init__(
        self, image_id: str, config: dict[str, Any], layer_dirs: list[str], tags: list[str]
    ) -> None:
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

    def remapped_layer_dirs(
        self, image: Image, uidmap: list[dict[str, int]], gidmap: list[dict[str, int]]
    ) -> list[str]:
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
                        tmp = scratch.name(target)
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
            return sorted(
                "sha256:" + f[:-5] for f in os.listdir(self.configs) if f.endswith(".json")
            )
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

    def _stage(self) -> str:
        self.ensure()
        scratch.reclaim(self.layers)  # what a killed commit, build or import left
        d = scratch.path(self.layers, ".layer")
        os.mkdir(d, 0o700)
        return d

    def _adopt(self, stage: str, diff_id: str, size: int, content: int) -> str:
        """Move a staged layer (diff/ + layer.tar) into place; an existing one wins."""
        from .rmtree import remove_tree

        write_json(
            os.path.join(stage, "layer.json"),
            {"diff_id": diff_id, "size": size, "content_size": content},
        )
        final = os.path.dirname(self.layer_dir(diff_id))
        try:
            os.rename(stage, final)
        except OSError:
            if not os.path.isdir(os.path.join(final, "diff")):
                raise
            remove_tree(stage)  # the same layer arrived meanwhile
        return diff_id

    def add_layer_tar(self, src: Any, expected: str | None = None) -> str:
        """Store an UNCOMPRESSED layer tar read from `src`: kept as layer.tar, applied
        into diff/ (whiteouts converted, unsafe entries refused). With `expected`,
        a digest mismatch is refused and nothing is stored."""
        from . import layers
        from .rmtree import remove_tree

        stage = self._stage()
        try:
            with open(os.path.join(stage, "layer.tar"), "wb") as keep:
                tee = layers.HashingReader(_Tee(src, keep))
                os.mkdir(os.path.join(stage, "diff"), 0o755)
                content = layers.apply_tar(tee, os.path.join(stage, "diff"))
                faults.point("layer.applied")
                tee.drain()
            digest = "sha256:" + tee.hexdigest()
            if expected is not None and digest != expected:
                raise RrefError(
                    f"layer digest mismatch: expected {expected}, got {digest}", EXIT_RUNTIME
                )
            if self.has_layer(digest):
                remove_tree(stage)
                return digest
            return self._adopt(stage, digest, tee.size, content)
        except BaseException:
            if os.path.exists(stage):
                remove_tree(stage)
            raise

    def add_layer_from_dir(self, tree: str) -> str:
        """Adopt a prepared directory as a layer: its tar is written and kept as layer.tar."""
        from . import layers

        stage = self._stage()
        with open(os.path.join(stage, "layer.tar"), "wb") as out:
            w = layers.HashingWriter(out)
            layers.write_tree(tree, w)
        digest = "sha256:" + w.hexdigest()
        if self.has_layer(digest):
            from .rmtree import remove_tree

            remove_tree(stage)
            remove_tree(tree)
            return digest
        os.rename(tree, os.path.join(stage, "diff"))
        return self._adopt(stage, digest, w.size, _content_size(os.path.join(stage, "diff")))

    def has_layer(self, diff_id: str) -> bool:
        return os.path.isdir(self.layer_dir(diff_id))

    def layer_tar(self, diff_id: str) -> str:
        """Path of the layer's uncompressed tar (its sha256 is the diff_id)."""
        path = os.path.join(os.path.dirname(self.layer_dir(diff_id)), "layer.tar")
        if not os.path.isfile(path):
            raise NotFound(f"no such layer: {diff_id}")
        return path

    def layer_info(self, diff_id: str) -> dict[str, Any]:
        try:
            return read_json(os.path.join(os.path.dirname(self.layer_dir(diff_id)), "layer.json"))
        except FileNotFoundError:
            raise NotFound(f"no such layer: {diff_id}") from None

    def compressed_blob(self, diff_id: str) -> tuple[str, int, str]:
        """(digest, size, path) of the gzip blob of a layer, made once and cached."""
        import gzip
        import hashlib

        base = os.path.dirname(self.layer_dir(diff_id))
        meta = self.layer_info(diff_id)
        gz = os.path.join(base, "layer.tar.gz")
        if "gzip" in meta and os.path.isfile(gz):
            return meta["gzip"]["digest"], meta["gzip"]["size"], gz
        tmp = scratch.name(gz)
        with (
            open(self.layer_tar(diff_id), "rb") as src,
            open(tmp, "wb") as raw,
            gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0, compresslevel=6) as z,
        ):
            while chunk := src.read(1 << 20):
                z.write(chunk)
        h = hashlib.sha256()
        with open(tmp, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        os.replace(tmp, gz)
        meta["gzip"] = {"digest": "sha256:" + h.hexdigest(), "size": os.path.getsize(gz)}
        write_json(os.path.join(base, "layer.json"), meta)
        return meta["gzip"]["digest"], meta["gzip"]["size"], gz

    def image_size(self, image: Image) -> int:
        """Bytes of file content over all of the image's layers."""
        total = 0
        for d in image.config.get("rootfs", {}).get("diff_ids", []):
            try:
                total += self.layer_info(d).get("content_size", 0)
            except NotFound:
                continue
        return total

    def config_bytes(self, image_id: str) -> bytes:
        path = os.path.join(self.configs, image_id.removeprefix("sha256:") + ".json")
        try:
            with open(path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            raise NotFound(f"No such image: {image_id}") from None

    def add_image(self, config: dict[str, Any] | bytes, tag: str | None = None) -> str:
        """Store an image config (raw bytes are kept exactly: their sha256 is the id)."""
        import hashlib

        raw = (
            config
            if isinstance(config, bytes)
            else json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
        )
        cfg = json.loads(raw)
        for d in cfg.get("rootfs", {}).get("diff_ids", []):
            if not self.has_layer(d):
                raise RrefError(f"image config references a missing layer {d}", EXIT_RUNTIME)
        self.ensure()
        image_id = "sha256:" + hashlib.sha256(raw).hexdigest()
        path = os.path.join(self.configs, image_id[7:] + ".json")
        if not os.path.exists(path):
            tmp = scratch.name(path)
            with open(tmp, "wb") as f:
                f.write(raw)
            os.replace(tmp, path)
        if tag:
            self.tag(image_id, tag)
        return image_id

    def tag(self, image_id: str, ref: str) -> None:
        with self.lock():
            repos = self.repositories()
            repos[normalize_ref(ref)] = image_id
            write_json(self.repos_file, repos)

    def untag(self, ref: str) -> str:
        """Remove a name; return the image id it named."""
        with self.lock():
            repos = self.repositories()
            name = normalize_ref(ref)
            if name not in repos:
                raise NotFound(f"No such image: {ref}")
            image_id = repos.pop(name)
            write_json(self.repos_file, repos)
            return image_id

    def delete(self, image_id: str) -> None:
        """Drop an image config and its tags; layers go with `gc_layers`."""
        with self.lock():
            repos = {t: i for t, i in self.repositories().items() if i != image_id}
            write_json(self.repos_file, repos)
            path = os.path.join(self.configs, image_id.removeprefix("sha256:") + ".json")
            if os.path.exists(path):
                os.unlink(path)

    def gc_layers(self) -> list[str]:
        """Remove layers no image references any more; return their diff_ids."""
        from .rmtree import remove_tree

        used: set[str] = set()
        for i in self.image_ids():
            try:
                used.update(self.get(i).config.get("rootfs", {}).get("diff_ids", []))
            except RrefError:
                continue
        gone = []
        with self.lock():
            for hexid in os.listdir(self.layers):
                if hexid.startswith("."):
                    continue
                if "sha256:" + hexid not in used:
                    remove_tree(os.path.join(self.layers, hexid))
                    gone.append("sha256:" + hexid)
        return gone

    def build_busybox(self) -> str:
        from .busybox import build_image

        return build_image(self, DEFAULT_IMAGE)


def _content_size(tree: str) -> int:
    total, seen = 0, set()
    for dirpath, _, files in os.walk(tree):
        for f in files:
            st = os.lstat(os.path.join(dirpath, f))
            if st.st_ino not in seen:
                seen.add(st.st_ino)
                total += st.st_size
    return total


class _Tee:
    """Reads from `src`, keeping a copy of every byte in `keep` (the stored layer.tar)."""

    def __init__(self, src: Any, keep: Any) -> None:
        self.src, self.keep = src, keep

    def read(self, n: int = -1) -> bytes:
        data = self.src.read(n)
        if data:
            self.keep.write(data)
        return data
