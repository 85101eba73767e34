"""Image archives: `rref save` writes an OCI image layout tar, `rref load` reads one.

A saved archive holds `oci-layout`, `index.json` (one manifest per saved name,
annotated with the full image name the way podman and containerd read it),
`manifest.json` (the docker-archive index, so `docker load` and multi-image
`podman load` work too) and `blobs/sha256/<hex>`: configs kept byte for byte,
gzip layers from the store's cache, OCI manifests.

`load` accepts an OCI layout (tar or directory, nested image indexes resolved to
linux/<this machine's arch>) and docker-archive tars (`podman save`'s default).
Everything is checked before the store changes: entry paths (no absolute path,
no `..`, only the layout's own files), every blob against its descriptor's size
and digest, JSON, and each layer against the config's diff_id. A failed load
creates no image and no tag; the only thing it may leave is a complete layer
whose content matched its diff_id.
"""

from __future__ import annotations

import json
import os
import re

from .errors import EXIT_RUNTIME, RrefError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import IO, Any

    from .images import ImageStore

MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar"
MT_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
INDEX_TYPES = (MT_INDEX, MT_DOCKER_LIST)
MANIFEST_TYPES = (MT_MANIFEST, MT_DOCKER_MANIFEST)
ANN_REF_NAME = "org.opencontainers.image.ref.name"
ANN_CONTAINERD_NAME = "io.containerd.image.name"

# Manifests, indexes and configs are small documents; anything bigger is refused.
MAX_JSON = 8 << 20
_CHUNK = 1 << 20
_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
_SAFE = r"[A-Za-z0-9][A-Za-z0-9._-]*"
# Where entries may be: the layout's files, blobs/<alg>/<hex>, and docker-archive's
# top-level <id>.json / <id>.tar plus legacy <id>/{layer.tar,json,VERSION}.
_OCI_ALLOWED = re.compile(
    r"oci-layout|index\.json|manifest\.json|repositories"
    r"|blobs|blobs/[a-z0-9]+|blobs/[a-z0-9]+/[0-9a-f]{32,128}"
)
_ALLOWED = re.compile(rf"{_OCI_ALLOWED.pattern}|{_SAFE}|{_SAFE}/(?:layer\.tar|json|VERSION)")


class ArchiveError(RrefError):
    """A broken or hostile image archive: one line, exit 125, store unchanged."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()), EXIT_RUNTIME)  # always one line


# -- references -------------------------------------------------------------

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_HOSTNAME = (
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*"
    r"[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?"
)
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"


def parse_ref(ref: str) -> tuple[str | None, str, str | None, str | None]:
    """docker's reference grammar -> (registry host or None, repository, tag, digest).

    The first path component is a registry host when there are more components and
    it has a dot or a port or is `localhost` (or a bracketed IPv6 address). The tag
    defaults to `latest` unless a digest is given.
    """
    rest, _, digest = ref.partition("@")
    if digest and not _DIGEST_RE.fullmatch(digest):
        raise UsageError(f"invalid reference format: {ref!r}")
    host = None
    first, slash, remainder = rest.partition("/")
    if slash and (first == "localhost" or first.startswith("[") or "." in first or ":" in first):
        if not re.fullmatch(_HOSTNAME, first):
            raise UsageError(f"invalid reference format: {ref!r}")
        host, rest = first, remainder
    repo, colon, tag = rest.rpartition(":") if ":" in rest else (rest, "", "")
    if (
        not all(re.fullmatch(_COMPONENT, c) for c in repo.split("/"))
        or len(repo) > 255
        or (colon and not re.fullmatch(_TAG, tag))
    ):
        raise UsageError(f"invalid reference format: {ref!r}")
    return host, repo, tag or (None if digest else "latest"), digest or None


def full_name(ref: str) -> str:
    """A docker-normalised name: `busybox` -> `docker.io/library/busybox:latest`."""
    host, repo, tag, digest = parse_ref(ref)
    if host is None:
        host = "docker.io"
        if "/" not in repo:
            repo = "library/" + repo
    return f"{host}/{repo}" + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


def short_name(name: str) -> str:
    """The name rref keeps: `localhost/` and `docker.io/[library/]` dropped, tag added."""
    host, repo, tag, digest = parse_ref(name)
    if host in ("localhost", "docker.io", "index.docker.io"):
        host = None
        repo = repo.removeprefix("library/")
    return (
        (f"{host}/" if host else "")
        + repo
        + (f":{tag}" if tag else "")
        + (f"@{digest}" if digest else "")
    )


def oci_arch() -> str:
    m = os.uname().machine
    return {
        "x86_64": "amd64",
        "aarch64": "arm64",
        "armv7l": "arm",
        "i686": "386",
        "ppc64le": "ppc64le",
        "s390x": "s390x",
        "riscv64": "riscv64",
    }.get(m, m)


def pick_platform(index: dict[str, Any], what: str) -> dict[str, Any]:
    """The linux/<this arch> manifest descriptor of an image index."""
    arch = oci_arch()
    for d in _descriptors(index, what):
        p = d.get("platform") or {}
        if p.get("os") == "linux" and p.get("architecture") == arch:
            return d
    raise ArchiveError(f"{what}: no image for linux/{arch} in the image index")


def _descriptors(doc: dict[str, Any], what: str) -> list[dict[str, Any]]:
    out = doc.get("manifests")
    if not isinstance(out, list) or not all(isinstance(d, dict) for d in out):
        raise ArchiveError(f"{what}: image index without a manifests list")
    return out


# -- descriptors and digests --------------------------------------------------


def check_descriptor(d: Any, what: str) -> tuple[str, int]:
    """(digest, size) of a well-formed sha256 descriptor."""
    if not isinstance(d, dict):
        raise ArchiveError(f"{what}: descriptor is not an object")
    digest, size = d.get("digest"), d.get("size")
    if not isinstance(digest, str) or not _DIGEST_RE.fullmatch(digest):
        raise ArchiveError(f"{what}: unsupported or malformed digest {digest!r}")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ArchiveError(f"{what}: descriptor {digest} has no valid size")
    return digest, size


def parse_json(raw: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise ArchiveError(f"{what}: bad JSON: {str(e).splitlines()[0]}") from None
    if not isinstance(doc, dict):
        raise ArchiveError(f"{what}: JSON document is not an object")
    return doc


def parse_manifest(raw: bytes, what: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(config descriptor, layer descriptors) of an OCI or docker schema2 manifest."""
    doc = parse_json(raw, what)
    mt = doc.get("mediaType")
    if mt in INDEX_TYPES or (mt is None and "manifests" in doc):
        raise ArchiveError(f"{what}: is an image index, not a manifest")
    if doc.get("schemaVersion") != 2 or mt not in (*MANIFEST_TYPES, None):
        raise ArchiveError(
            f"{what}: unsupported manifest (schemaVersion "
            f"{doc.get('schemaVersion')!r}, mediaType {mt!r})"
        )
    config, layers = doc.get("config"), doc.get("layers")
    check_descriptor(config, f"{what} config")
    if not isinstance(layers, list):
        raise ArchiveError(f"{what}: manifest without a layers list")
    for i, layer in enumerate(layers):
        check_descriptor(layer, f"{what} layer {i}")
    assert isinstance(config, dict)  # check_descriptor refused anything else
    return config, layers


def config_diff_ids(raw: bytes, what: str, nlayers: int | None) -> list[str]:
    """The config's rootfs.diff_ids, checked (and counted against the manifest)."""
    cfg = parse_json(raw, what)
    rootfs = cfg.get("rootfs")
    ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(ids, list) or not all(
        isinstance(i, str) and _DIGEST_RE.fullmatch(i) for i in ids
    ):
        raise ArchiveError(f"{what}: image config without valid rootfs.diff_ids")
    if nlayers is not None and len(ids) != nlayers:
        raise ArchiveError(f"{what}: config lists {len(ids)} layers, manifest has {nlayers}")
    return ids


def hash_stream(f: IO[bytes], limit: int | None = None) -> tuple[str, int]:
    """("sha256:<hex>", bytes read) of a stream, reading at most limit + 1 bytes."""
    import hashlib

    h, n = hashlib.sha256(), 0
    while chunk := f.read(_CHUNK if limit is None else min(_CHUNK, limit + 1 - n)):
        h.update(chunk)
        n += len(chunk)
        if limit is not None and n > limit:
            break
    return "sha256:" + h.hexdigest(), n


def verify(digest: str, size: int | None, got: str, n: int, what: str) -> None:
    if size is not None and n != size:
        raise ArchiveError(
            f"{what}: blob {digest} has {n}{'+' if n > size else ''} bytes, descriptor says {size}"
        )
    if got != digest:
        raise ArchiveError(f"{what}: digest mismatch for blob {digest} (content is {got})")


def layer_stream(f: IO[bytes], what: str) -> IO[bytes]:
    """The uncompressed tar of a layer blob: gzip by its magic, plain tar as is."""
    import io

    buffered = f if isinstance(f, io.BufferedReader) else io.BufferedReader(f)  # type: ignore[type-var]
    head = buffered.peek(4)[:4]
    if head[:2] == b"\x1f\x8b":
        import gzip

        return gzip.GzipFile(fileobj=buffered, mode="rb")  # type: ignore[return-value]
    if head == b"\x28\xb5\x2f\xfd":
        raise ArchiveError(f"{what}: zstd-compressed layers are not supported (use gzip)")
    if head[:3] == b"BZh" or head[:4] == b"\xfd7zX":
        raise ArchiveError(f"{what}: bzip2/xz-compressed layers are not supported")
    return buffered


def add_layer_blob(store: ImageStore, f: IO[bytes], diff_id: str, what: str) -> None:
    """Decompress a layer blob into the store; its tar must hash to `diff_id`."""
    import gzip
    import tarfile
    import zlib

    try:
        got = store.add_layer_tar(layer_stream(f, what), expected=diff_id)
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile, tarfile.TarError) as e:
        raise ArchiveError(f"{what}: cannot read layer {diff_id}: {e}") from None
    if got != diff_id:  # pragma: no cover - add_layer_tar checks `expected` itself
        raise ArchiveError(f"{what}: layer digest mismatch: expected {diff_id}, got {got}")


# -- save -----------------------------------------------------------------------


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def make_manifest(config_digest: str, config_size: int, layers: list[dict[str, Any]]) -> bytes:
    """An OCI image manifest (compact JSON bytes; its sha256 is the manifest digest)."""
    return _dumps(
        {
            "schemaVersion": 2,
            "mediaType": MT_MANIFEST,
            "config": {"mediaType": MT_CONFIG, "digest": config_digest, "size": config_size},
            "layers": layers,
        }
    )


def save(store: ImageStore, refs: list[str], out_path: str) -> None:
    """Write the images `refs` as one OCI layout tar at out_path (temp, then rename);
    `-` writes the tar to standard output."""
    import sys
    import tarfile

    from .images import normalize_ref

    if not refs:
        raise UsageError("save: requires at least 1 image")
    blobs: dict[str, tuple[int, str | bytes]] = {}  # digest -> (size, path or bytes)
    index: list[dict[str, Any]] = []
    legacy: list[dict[str, Any]] = []
    for ref in refs:
        img = store.resolve(ref)
        raw = store.config_bytes(img.id)
        blobs[img.id] = (len(raw), raw)
        name = normalize_ref(ref)
        named = name in img.tags
        layers: list[dict[str, Any]] = []
        for diff_id in config_diff_ids(raw, f"image {ref}", None):
            digest, size, path = store.compressed_blob(diff_id)
            blobs[digest] = (size, path)
            layers.append({"mediaType": MT_LAYER_GZIP, "digest": digest, "size": size})
        manifest = make_manifest(img.id, len(raw), layers)
        mdigest = sha256_of(manifest)
        blobs[mdigest] = (len(manifest), manifest)
        desc: dict[str, Any] = {"mediaType": MT_MANIFEST, "digest": mdigest, "size": len(manifest)}
        if named:
            full = full_name(name)
            desc["annotations"] = {ANN_REF_NAME: full, ANN_CONTAINERD_NAME: full}
        if img.config.get("os") and img.config.get("architecture"):
            desc["platform"] = {"os": img.config["os"], "architecture": img.config["architecture"]}
        index.append(desc)
        legacy.append(
            {
                "Config": f"blobs/sha256/{img.id[7:]}",
                "RepoTags": [full_name(name)] if named else None,
                "Layers": [f"blobs/sha256/{d['digest'][7:]}" for d in layers],
            }
        )
    files = {
        "oci-layout": _dumps({"imageLayoutVersion": "1.0.0"}),
        "index.json": _dumps({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": index}),
        "manifest.json": _dumps(legacy),
    }

    def write(fileobj: IO[bytes]) -> None:
        with tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT) as tf:
            for d in ("blobs", "blobs/sha256"):
                info = tarfile.TarInfo(d)
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(info)
            for digest, (size, data) in blobs.items():
                _add(tf, f"blobs/sha256/{digest[7:]}", size, data)
            for name, data in files.items():
                _add(tf, name, len(data), data)

    if out_path == "-":
        write(sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return
    out_dir = os.path.dirname(os.path.abspath(out_path))
    tmp = os.path.join(out_dir, f".{os.path.basename(out_path)}.rref-save-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out_path)
    except OSError as e:
        raise RrefError(f"save: cannot write {out_path}: {e.strerror}", EXIT_RUNTIME) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def sha256_of(data: bytes) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(data).hexdigest()


def _add(tf: Any, name: str, size: int, data: str | bytes) -> None:
    import io
    import tarfile

    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 0
    if isinstance(data, bytes):
        tf.addfile(info, io.BytesIO(data))
        return
    with open(data, "rb") as f:
        if os.fstat(f.fileno()).st_size != size:
            raise RrefError(f"save: cached layer blob {name} changed size", EXIT_RUNTIME)
        tf.addfile(info, f)


# -- reading archives -----------------------------------------------------------


class _Entry:
    """An archive entry: 'file', 'dir' or 'link' (with its in-archive target)."""

    def __init__(self, kind: str, ref: Any = None, target: str | None = None) -> None:
        self.kind = kind
        self.ref = ref
        self.target = target


class Source:
    """A read-only view of an image archive (a tar, read in place, or a directory),
    with every entry's path checked before anything is read."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.tar: Any = None
        self.entries: dict[str, _Entry] = {}
        if os.path.isdir(path):
            self._scan_dir(path)
        else:
            self._scan_tar(path)

    def close(self) -> None:
        if self.tar is not None:
            self.tar.close()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _clean(raw: str) -> str:
        parts = [p for p in raw.split("/") if p not in ("", ".")]
        if raw.startswith("/") or ".." in parts or "\\" in raw or "\0" in raw:
            raise ArchiveError(f"unsafe path in image archive: {raw!r}")
        name = "/".join(parts)
        if name and not _ALLOWED.fullmatch(name):
            raise ArchiveError(f"unexpected entry in image archive: {raw!r}")
        return name

    def _link_target(self, name: str, link: str, hard: bool) -> str:
        import posixpath

        if link.startswith("/"):
            raise ArchiveError(f"unsafe link in image archive: {name} -> {link}")
        target = posixpath.normpath(link if hard else posixpath.join(posixpath.dirname(name), link))
        if target == ".." or target.startswith("../"):
            raise ArchiveError(f"unsafe link in image archive: {name} -> {link}")
        return self._clean(target)

    def _scan_tar(self, path: str) -> None:
        import tarfile

        try:
            # kept open for the life of the Source; close() ends it
            self.tar = tarfile.open(path, "r:*")  # noqa: SIM115
            members = self.tar.getmembers()
        except tarfile.ReadError:
            self.close()
            raise ArchiveError(
                f"cannot read image archive {path}: not a tar archive "
                "(plain or gzip/bzip2/xz-compressed) or a directory"
            ) from None
        except (OSError, tarfile.TarError, EOFError) as e:
            self.close()
            raise ArchiveError(f"cannot read image archive {path}: {e}") from None
        try:
            for m in members:
                name = self._clean(m.name)
                if not name:
                    continue
                if m.isfile():
                    self.entries[name] = _Entry("file", m)
                elif m.isdir():
                    self.entries[name] = _Entry("dir")
                elif m.issym() or m.islnk():
                    self.entries[name] = _Entry(
                        "link", m, self._link_target(name, m.linkname, m.islnk())
                    )
                else:
                    raise ArchiveError(f"unexpected entry type in image archive: {m.name!r}")
        except BaseException:
            self.close()
            raise

    def _scan_dir(self, top: str) -> None:
        for dirpath, dirnames, filenames in os.walk(top):
            for n in dirnames + filenames:
                full = os.path.join(dirpath, n)
                name = self._clean(os.path.relpath(full, top).replace(os.sep, "/"))
                if os.path.islink(full):
                    self.entries[name] = _Entry(
                        "link", None, self._link_target(name, os.readlink(full), False)
                    )
                elif os.path.isdir(full):
                    self.entries[name] = _Entry("dir")
                elif os.path.isfile(full):
                    self.entries[name] = _Entry("file", full)
                else:
                    raise ArchiveError(f"unexpected entry type in image archive: {name!r}")

    def has(self, name: str) -> bool:
        e = self.entries.get(name)
        return e is not None and e.kind != "dir"

    def _resolve(self, name: str) -> _Entry | None:
        e = self.entries.get(name)
        for _ in range(8):
            if e is None or e.kind != "link":
                break
            e = self.entries.get(e.target or "")
        return e if e is not None and e.kind == "file" else None

    def open(self, name: str, what: str) -> IO[bytes]:
        e = self._resolve(self._clean(name))
        if e is None:
            raise ArchiveError(f"{what}: missing from the image archive: {name}")
        if self.tar is not None:
            f = self.tar.extractfile(e.ref)
            if f is None:  # pragma: no cover - regular members always extract
                raise ArchiveError(f"{what}: unreadable entry {name}")
            return f
        fd = os.open(e.ref, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        return os.fdopen(fd, "rb")

    def read_small(self, name: str, what: str) -> bytes:
        with self.open(name, what) as f:
            data = f.read(MAX_JSON + 1)
        if len(data) > MAX_JSON:
            raise ArchiveError(f"{what}: {name} is larger than {MAX_JSON} bytes")
        return data

    def blob_name(self, digest: str) -> str:
        return f"blobs/sha256/{digest[7:]}"

    def read_blob(self, d: Any, what: str, limit: int = MAX_JSON) -> bytes:
        """A small blob (manifest, index, config) read whole and verified."""
        digest, size = check_descriptor(d, what)
        if size > limit:
            raise ArchiveError(f"{what}: blob {digest} is too large ({size} bytes)")
        name = self.blob_name(digest)
        if not self.has(name):
            raise ArchiveError(f"{what}: missing blob {digest}")
        with self.open(name, what) as f:
            data = f.read(size + 1)
        verify(digest, size, sha256_of(data), len(data), what)
        return data

    def verify_blob(self, digest: str, size: int | None, what: str) -> None:
        """Hash a (large) blob in place against its descriptor."""
        name = self.blob_name(digest)
        if not self.has(name):
            raise ArchiveError(f"{what}: missing blob {digest}")
        with self.open(name, what) as f:
            got, n = hash_stream(f, size)
        verify(digest, size, got, n, what)


# -- load -----------------------------------------------------------------------


class _Plan:
    """One image to load: its names, raw config, and (blob name, diff_id) per layer."""

    def __init__(self, names: list[str], config: bytes, layers: list[tuple[str, str]]) -> None:
        self.names = names
        self.config = config
        self.layers = layers


def _name_from(annotations: Any, what: str) -> list[str]:
    """The image name a descriptor carries (containerd's annotation first, as podman)."""
    if not isinstance(annotations, dict):
        return []
    for key in (ANN_CONTAINERD_NAME, ANN_REF_NAME):
        v = annotations.get(key)
        if isinstance(v, str) and v and ("/" in v or ":" in v):  # a bare tag names nothing
            try:
                return [short_name(v)]
            except UsageError:
                raise ArchiveError(f"{what}: invalid image name {v!r}") from None
    return []


def _plan_oci(src: Source) -> list[_Plan]:
    if src.has("oci-layout"):
        layout = parse_json(src.read_small("oci-layout", "oci-layout"), "oci-layout")
        if layout.get("imageLayoutVersion") != "1.0.0":
            raise ArchiveError(
                f"oci-layout: unsupported imageLayoutVersion {layout.get('imageLayoutVersion')!r}"
            )
    index = parse_json(src.read_small("index.json", "index.json"), "index.json")
    arch, plans = oci_arch(), []
    descs = _descriptors(index, "index.json")
    for i, d in enumerate(descs):
        what = f"index.json manifest {i}"
        check_descriptor(d, what)
        names = _name_from(d.get("annotations"), what)
        mt = d.get("mediaType")
        if mt in INDEX_TYPES:
            nested = parse_json(src.read_blob(d, what), what)
            d = pick_platform(nested, what)
            check_descriptor(d, what)
            mt = d.get("mediaType")
        elif isinstance(d.get("platform"), dict) and len(descs) > 1:
            p = d["platform"]
            if (p.get("os"), p.get("architecture")) != ("linux", arch):
                continue  # another platform's (or an attestation) manifest
        if mt not in (*MANIFEST_TYPES, None):
            raise ArchiveError(f"{what}: unsupported manifest media type {mt!r}")
        config, layers = parse_manifest(src.read_blob(d, what), what)
        raw = src.read_blob(config, f"{what} config")
        diff_ids = config_diff_ids(raw, f"{what} config", len(layers))
        for j, layer in enumerate(layers):
            digest, size = check_descriptor(layer, f"{what} layer {j}")
            if layer.get("mediaType") == MT_LAYER_ZSTD:
                raise ArchiveError(
                    f"{what} layer {j}: zstd-compressed layers are not supported (use gzip)"
                )
            src.verify_blob(digest, size, f"{what} layer {j}")
        plans.append(
            _Plan(
                names,
                raw,
                [(src.blob_name(layer["digest"]), diff_ids[j]) for j, layer in enumerate(layers)],
            )
        )
    if not plans:
        raise ArchiveError(f"index.json: no image for linux/{arch}")
    return plans


def _plan_docker(src: Source) -> list[_Plan]:
    doc = src.read_small("manifest.json", "manifest.json")
    try:
        entries = json.loads(doc)
    except (ValueError, UnicodeDecodeError) as e:
        raise ArchiveError(f"manifest.json: bad JSON: {str(e).splitlines()[0]}") from None
    if not isinstance(entries, list) or not entries:
        raise ArchiveError("manifest.json: expected a non-empty list of images")
    plans = []
    for i, entry in enumerate(entries):
        what = f"manifest.json image {i}"
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("Config"), str)
            or not isinstance(entry.get("Layers"), list)
            or not all(isinstance(x, str) for x in entry["Layers"])
        ):
            raise ArchiveError(f"{what}: needs Config and Layers")
        cfg_name = Source._clean(entry["Config"])
        raw = src.read_small(cfg_name, what)
        m = re.fullmatch(r"(?:blobs/sha256/)?([0-9a-f]{64})(?:\.json)?", cfg_name)
        if m:
            verify("sha256:" + m.group(1), None, sha256_of(raw), len(raw), f"{what} config")
        diff_ids = config_diff_ids(raw, f"{what} config", len(entry["Layers"]))
        layers = []
        for j, lname in enumerate(entry["Layers"]):
            name = Source._clean(lname)
            if not src.has(name):
                raise ArchiveError(f"{what} layer {j}: missing from the image archive: {name}")
            b = re.fullmatch(r"blobs/sha256/([0-9a-f]{64})", name)
            if b:
                src.verify_blob("sha256:" + b.group(1), None, f"{what} layer {j}")
            layers.append((name, diff_ids[j]))
        tags = entry.get("RepoTags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise ArchiveError(f"{what}: RepoTags is not a list of names")
        try:
            names = [short_name(t) for t in tags]
        except UsageError:
            raise ArchiveError(f"{what}: invalid image name in {tags!r}") from None
        plans.append(_Plan(names, raw, layers))
    return plans


def load(store: ImageStore, path: str, log: Callable[[str], None] | None = None) -> list[str]:
    """Load the images of an archive; return their names (or ids when unnamed)."""
    if not os.path.exists(path):
        raise RrefError(f"open {path}: no such file or directory", EXIT_RUNTIME)
    with Source(path) as src:
        if src.has("index.json"):
            for name in src.entries:
                if not _OCI_ALLOWED.fullmatch(name):
                    raise ArchiveError(f"unexpected entry in OCI image archive: {name!r}")
            plans = _plan_oci(src)
        elif src.has("manifest.json"):
            plans = _plan_docker(src)
        else:
            raise ArchiveError(f"{path}: not an image archive (no index.json or manifest.json)")
        # Every blob and document is verified; now layers go in (each checked
        # against its diff_id), and only then configs and tags.
        done: set[str] = set()
        for plan in plans:
            for name, diff_id in plan.layers:
                if diff_id in done or store.has_layer(diff_id):
                    continue
                if log:
                    log(f"Loading layer {diff_id[7:19]}")
                with src.open(name, f"layer {diff_id}") as f:
                    add_layer_blob(store, f, diff_id, f"layer {name}")
                done.add(diff_id)
    loaded = []
    for plan in plans:
        image_id = store.add_image(plan.config)
        for n in plan.names:
            store.tag(image_id, n)
        loaded += plan.names or [image_id]
    return loaded
