"""Layer tars the OVL tests write and read: hand-made entries (whiteouts, escaping paths),
the suite's rootfs plus extra entries, OCI image layouts, and a committed layer's members.

Why: applying a layer (OVL-09) is checked with tars no well-behaved tool would write
(`../x`, absolute names, links out of the tree, a bare `.wh.`), so entries are written
exactly as given; and a committed layer (OVL-08, INIT-02, VOL-02) is judged by its raw
members, PAX headers included.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar"
REF_NAME = "org.opencontainers.image.ref.name"


@dataclass(frozen=True)
class Entry:
    """One tar member, written with its name exactly as given."""

    name: str
    data: bytes = b""
    type: bytes = tarfile.REGTYPE
    linkname: str = ""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0


def file(name: str, data: bytes | str = b"", mode: int = 0o644) -> Entry:
    return Entry(name, data.encode() if isinstance(data, str) else data, mode=mode)


def directory(name: str, mode: int = 0o755) -> Entry:
    return Entry(name, type=tarfile.DIRTYPE, mode=mode)


def symlink(name: str, target: str) -> Entry:
    return Entry(name, type=tarfile.SYMTYPE, linkname=target, mode=0o777)


def hardlink(name: str, target: str) -> Entry:
    return Entry(name, type=tarfile.LNKTYPE, linkname=target)


def _add(tf: tarfile.TarFile, e: Entry) -> None:
    info = tarfile.TarInfo(e.name)
    info.type, info.linkname, info.mode = e.type, e.linkname, e.mode
    info.uid, info.gid, info.uname, info.gname = e.uid, e.gid, "", ""
    info.mtime = 1_700_000_000
    if e.type == tarfile.REGTYPE:
        info.size = len(e.data)
        tf.addfile(info, io.BytesIO(e.data))
    else:
        tf.addfile(info)


def write(out: Path, entries: Iterable[Entry], base: Path | None = None) -> Path:
    """A PAX tar: the tree ``base`` first (owners root, hard links kept), then ``entries``."""
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tf:
        if base is not None:
            for name in sorted(os.listdir(base)):
                tf.add(base / name, arcname=name, filter=_root_owned)
        for e in entries:
            _add(tf, e)
    return out


def _root_owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _arch() -> str:
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(m, m)


def oci_layout(out: Path, layers: list[Path], ref: str) -> Path:
    """An OCI image layout tar of one image: the uncompressed ``layers`` (bottom first),
    named ``ref`` by the index's ref.name annotation."""
    blobs: dict[str, bytes] = {}
    descs = []
    for layer in layers:
        data = layer.read_bytes()
        blobs[_digest(data)] = data
        descs.append({"mediaType": MT_LAYER, "digest": _digest(data), "size": len(data)})
    config = json.dumps(
        {
            "architecture": _arch(),
            "os": "linux",
            "config": {"Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in descs]},
        }
    ).encode()
    blobs[_digest(config)] = config
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MT_MANIFEST,
            "config": {"mediaType": MT_CONFIG, "digest": _digest(config), "size": len(config)},
            "layers": descs,
        }
    ).encode()
    blobs[_digest(manifest)] = manifest
    index = {
        "schemaVersion": 2,
        "mediaType": MT_INDEX,
        "manifests": [
            {
                "mediaType": MT_MANIFEST,
                "digest": _digest(manifest),
                "size": len(manifest),
                "annotations": {REF_NAME: ref},
            }
        ],
    }
    entries = [
        file("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"})),
        file("index.json", json.dumps(index)),
    ]
    entries += [file(f"blobs/sha256/{d[7:]}", data) for d, data in blobs.items()]
    return write(out, entries)


# ---------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Member:
    """A member of a layer tar, its name normalised (no `./`, no trailing `/`)."""

    name: str
    kind: str  # file, dir, symlink, hardlink, char, block, fifo, other
    size: int
    linkname: str
    uid: int
    gid: int
    mode: int
    pax: dict[str, str]

    @property
    def xattrs(self) -> list[str]:
        """xattr names from PAX headers (SCHILY.xattr.* or LIBARCHIVE.xattr.*)."""
        return [
            k.split(".xattr.", 1)[1]
            for k in self.pax
            if k.startswith(("SCHILY.xattr.", "LIBARCHIVE.xattr."))
        ]


def _kind(info: tarfile.TarInfo) -> str:
    for kind, test in (
        ("file", info.isreg),
        ("dir", info.isdir),
        ("symlink", info.issym),
        ("hardlink", info.islnk),
        ("char", info.ischr),
        ("block", info.isblk),
        ("fifo", info.isfifo),
    ):
        if test():
            return kind
    return "other"


def norm(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name.strip("/")


def members(tar: Path) -> dict[str, Member]:
    """name -> Member of every entry of a layer tar (a later entry of a name wins)."""
    out = {}
    with tarfile.open(tar, "r:") as tf:
        for info in tf:
            m = Member(
                norm(info.name),
                _kind(info),
                info.size,
                info.linkname,
                info.uid,
                info.gid,
                info.mode,
                dict(info.pax_headers),
            )
            out[m.name] = m
    return out
