"""Hostile input, one catalogue: every case is refused with ONE line naming the problem,
docker's exit code (runc's, 1, for rref-oci), no traceback, and nothing written.

Nothing written means: the state root (files, directories, links) is the same before and
after, and so is a host sentinel directory that every escaping input aims at (a tar entry
`../../sentinel/evil`, a symlink to it, a digest walking to it, a mount destination
through it). A refused command is allowed to leave nothing at all.

Each row of `CASES` is (id, the command after `rref --root ROOT`, the input it reads,
the exit code, a fragment of the message); `{input}` in the command is the file the row's
input builder made, `{sentinel}` the sentinel directory.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import subprocess
import tarfile
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import RREF, Rref, one_line_error
from ocikit import Oci, leftovers

# ------------------------------------------------------------------------------ inputs

#: An input builder: (scratch dir, sentinel dir) -> the path the command is given.
Builder = Callable[[Path, Path], str]
Entry = tuple[str, bytes | None, bytes, str]  # name, content (None: no data), link, type


def _tar(entries: list[Entry], cut: Callable[[bytes], bytes] | None = None) -> bytes:
    """Tar bytes of (name, content, linkname, type) with type one of tarfile's; `cut` edits
    the finished bytes (truncate, corrupt a header)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for name, content, link, kind in entries:
            ti = tarfile.TarInfo(name)
            ti.type, ti.linkname = kind.encode(), link.decode()
            if kind == tarfile.BLKTYPE.decode():
                ti.devmajor, ti.devminor = 8, 0
            ti.size = len(content) if content is not None else 0
            tf.addfile(ti, io.BytesIO(content) if content is not None else None)
    data = buf.getvalue()
    return cut(data) if cut else data


REG, DIR, SYM, LNK, BLK = (t.decode() for t in (tarfile.REGTYPE, tarfile.DIRTYPE,
                                                 tarfile.SYMTYPE, tarfile.LNKTYPE,
                                                 tarfile.BLKTYPE))  # fmt: skip


def tar_input(make: Callable[[str], list[Entry]], cut: Callable[[bytes], bytes] | None = None):
    """A builder of a tar whose entries may name the sentinel (given as a path)."""

    def build(d: Path, sentinel: Path) -> str:
        p = d / f"{uuid.uuid4().hex[:8]}.tar"
        p.write_bytes(_tar(make(str(sentinel).lstrip("/")), cut))
        return str(p)

    return build


def _huge(data: bytes) -> bytes:
    """One header that claims 8 GiB, then 512 bytes of data."""
    ti = tarfile.TarInfo("f")
    ti.size = 8 << 30
    return ti.tobuf(tarfile.GNU_FORMAT) + b"x" * 512


def _bad_checksum(data: bytes) -> bytes:
    return data[:148] + b"7777777\0" + data[156:]


def _digest(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


def layout_input(edit: Callable[[dict[str, Any], str], None], layer: list[Entry] | None = None):
    """A builder of an OCI image layout tar (one tiny image) that `edit(layout, sentinel)`
    spoils: layout["files"] maps archive paths to bytes, layout["index"] is index.json."""

    def build(d: Path, sentinel: Path) -> str:
        s = str(sentinel).lstrip("/")
        tar = _tar(layer or [("hello", b"hi\n", b"", REG)])
        config = json.dumps(
            {"os": "linux", "architecture": "amd64", "config": {"Cmd": ["/hello"]},
             "rootfs": {"type": "layers", "diff_ids": [_digest(tar)]}}
        ).encode()  # fmt: skip
        manifest = json.dumps(
            {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
             "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                        "digest": _digest(config), "size": len(config)},
             "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                         "digest": _digest(tar), "size": len(tar)}]}
        ).encode()  # fmt: skip
        lay: dict[str, Any] = {
            "files": {
                "oci-layout": b'{"imageLayoutVersion": "1.0.0"}',
                **{f"blobs/sha256/{_digest(b)[7:]}": b for b in (tar, config, manifest)},
            },
            "index": {
                "schemaVersion": 2,
                "manifests": [
                    {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                     "digest": _digest(manifest), "size": len(manifest),
                     "annotations": {"org.opencontainers.image.ref.name": "rref-hostile:1"}}
                ],
            },
            "layer": f"blobs/sha256/{_digest(tar)[7:]}",
            "manifest": f"blobs/sha256/{_digest(manifest)[7:]}",
        }  # fmt: skip
        edit(lay, s)
        files = {"index.json": json.dumps(lay["index"]).encode(), **lay["files"]}
        p = d / f"{uuid.uuid4().hex[:8]}-layout.tar"
        p.write_bytes(_tar([(k, v, b"", REG) for k, v in files.items()]))
        return str(p)

    return build


def _zero_layer(lay: dict[str, Any], s: str) -> None:
    """The layer blob's bytes zeroed, its size kept: only the digest tells."""
    lay["files"][lay["layer"]] = bytes(len(lay["files"][lay["layer"]]))


def _manifest0(**kw: Any) -> Callable[[dict[str, Any], str], None]:
    return lambda lay, s: lay["index"]["manifests"][0].update(
        {k: v.format(sentinel=s) if isinstance(v, str) else v for k, v in kw.items()}
    )


def context_input(dockerfile: bytes, links: dict[str, str] | None = None) -> Builder:
    """A builder of a build context: a Dockerfile, a file `f`, and symlinks."""

    def build(d: Path, sentinel: Path) -> str:
        ctx = d / f"ctx-{uuid.uuid4().hex[:8]}"
        ctx.mkdir()
        (ctx / "Dockerfile").write_bytes(dockerfile)
        (ctx / "f").write_text("f\n")
        for name, target in (links or {}).items():
            os.symlink(target.format(sentinel=sentinel), ctx / name)
        return str(ctx)

    return build


def file_input(data: bytes) -> Builder:
    def build(d: Path, sentinel: Path) -> str:
        p = d / f"{uuid.uuid4().hex[:8]}.in"
        p.write_bytes(data)
        return str(p)

    return build


def link_input(target: str) -> Builder:
    """A symlink in the scratch dir to `target` (may name {sentinel})."""

    def build(d: Path, sentinel: Path) -> str:
        p = d / f"{uuid.uuid4().hex[:8]}.link"
        os.symlink(target.format(sentinel=sentinel), p)
        return str(p)

    return build


def _sentinel_dir(d: Path, sentinel: Path) -> str:
    return str(sentinel)


def _nothing(d: Path, sentinel: Path) -> str:
    return ""


# ------------------------------------------------------------------------------ bundles

#: rref-oci: config.json edits (config, sentinel) -> None; the bundle runs `true`.
Edit = Callable[[dict[str, Any], str], None]


def _ns(kind: str, path: str) -> Edit:
    def edit(c: dict[str, Any], s: str) -> None:
        c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != kind]
        c["linux"]["namespaces"].append({"type": kind, "path": path.format(sentinel=s)})

    return edit


def _mount(**m: str) -> Edit:
    return lambda c, s: c["mounts"].append(
        {k: v.format(sentinel=s) for k, v in {"type": "tmpfs", "source": "x", **m}.items()}
    )


def _joined_with_userns(c: dict[str, Any], s: str) -> None:
    c["linux"].update(
        namespaces=[
            *({"type": t} for t in ("user", "uts", "mount")),
            {"type": "network", "path": "/proc/self/ns/net"},
        ],
        uidMappings=[{"containerID": 0, "hostID": 1000, "size": 1}],
        gidMappings=[{"containerID": 0, "hostID": 1000, "size": 1}],
    )


def _set(section: str | None, **kw: Any) -> Edit:
    return lambda c, s: (c[section] if section else c).update(kw)


#: Editions of a good bundle that spoil it in one way; the id names the case.
BUNDLES: dict[str, Edit | str] = {
    "args-not-a-list": _set("process", args="true"),
    "args-empty": _set("process", args=[]),
    "cwd-relative": _set("process", cwd="tmp"),
    "uid-negative": lambda c, s: c["process"]["user"].update(uid=-1),
    "unknown-cap": lambda c, s: c["process"]["capabilities"]["bounding"].append("CAP_NOPE"),
    "rlimit-unknown": _set("process", rlimits=[{"type": "RLIMIT_NOPE", "hard": 1, "soft": 1}]),
    "rlimit-soft-above-hard": _set(
        "process", rlimits=[{"type": "RLIMIT_NOFILE", "hard": 1, "soft": 2}]
    ),
    "old-version": _set(None, ociVersion="0.9"),
    "namespace-type": lambda c, s: c["linux"]["namespaces"].append({"type": "time"}),
    "mount-relative": _mount(destination="mnt"),
    "mount-bind-missing-source": _mount(type="bind", source="/{sentinel}/none", destination="/x"),
    "memory-not-int": lambda c, s: c["linux"]["resources"].update(memory={"limit": "lots"}),
    "host-sysctl": _set("linux", sysctl={"vm.swappiness": "1"}),
    "terminal": _set("process", terminal="yes"),
    "unsupported-field": _set("linux", intelRdt={"closID": "x"}),
    "unsupported-resource": lambda c, s: c["linux"]["resources"].update(
        hugepageLimits=[{"pageSize": "2MB", "limit": 1}]
    ),
    "hook-kind": _set(None, hooks={"prestop": []}),
    "hostname-without-uts": _set("linux", namespaces=[{"type": "mount"}, {"type": "pid"}]),
    "userns-with-joined-ns": _joined_with_userns,
    "userns-without-maps": lambda c, s: c["linux"]["namespaces"].append({"type": "user"}),
    "ns-path-not-a-namespace": _ns("network", "/etc/hostname"),
    "ns-path-missing": _ns("network", "/{sentinel}/no-such-ns"),
    "ns-path-wrong-type": _ns("network", "/proc/self/ns/ipc"),
    "ns-path-relative": _ns("network", "proc/self/ns/net"),
    "rootfs-missing": lambda c, s: c["root"].update(path="no-rootfs"),
    "malformed-json": "{",
    "config-not-an-object": "[]",
}


# ------------------------------------------------------------------------------ the table


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]  # after `rref --root ROOT`; {input} and {sentinel} filled in
    input: Builder
    code: int  # docker's exit code (runc's for rref-oci)
    says: str  # a fragment of the one line


def case(id: str, argv: str | tuple[str, ...], code: int, says: str, input: Builder = _nothing):
    return Case(id, tuple(argv.split()) if isinstance(argv, str) else argv, input, code, says)


S = "{sentinel}"
CASES = [
    # --- usage and references
    case("no-command", (), 125, "a command is required"),
    case("run-no-args", "run", 125, "requires at least 1 argument"),
    case("unknown-flag", "run --bogus-flag busybox true", 125, "unrecognized arguments"),
    case("no-such-image", "run nosuchimage", 125, "Unable to find image 'nosuchimage:latest'"),
    case("network-bogus", "run --network bogus busybox true", 125, "invalid network mode"),
    case("workdir-relative", "run -w relative/dir busybox true", 125, "needs to be an absolute"),
    case("cap-unknown", "run --cap-add NOT_A_CAP busybox true", 125, "unknown capability"),
    case("cap-control-char", ("run", "--cap-add", "CAP\x01", "busybox", "true"), 125, "\\x01"),
    case("env-no-name", "run -e =x busybox true", 125, "invalid environment variable"),
    case("stop-timeout-negative", "stop -t -1 whatever", 125, "invalid stop timeout"),
    case("kill-signal-unknown", "kill -s NOPE whatever", 125, "invalid signal"),
    case("inspect-bad-field", "inspect -f {{.NoSuchField}} busybox", 125, "can't evaluate field"),
    case("logs-tail-words", "logs --tail many x", 125, "invalid value for --tail"),
    case("exec-no-such", "exec nosuchcontainer true", 1, "No such container: nosuchcontainer"),
    case("rm-no-such", "rm nosuchcontainer", 1, "No such container: nosuchcontainer"),
    case("inspect-no-such", "inspect nosuchthing", 1, "No such object: nosuchthing"),
    case("tag-double-slash", "tag busybox bad//ref", 125, "invalid reference format"),
    case("tag-too-long", ("tag", "busybox", "a" * 300), 125, "more than 255 characters"),
    case("tag-uppercase", "tag busybox Busy:1", 125, "invalid reference format"),
    # --- names, ids, hostnames
    case("name-bang", ("run", "--name", "bad name!", "busybox", "true"), 125, "invalid container"),
    case("name-slash", "run --name a/b busybox true", 125, "invalid container name"),
    case("name-control-char", ("run", "--name", "a\x01b", "busybox", "true"), 125, "a\\x01b"),
    case("name-newline", ("run", "--name", "a\nb", "busybox", "true"), 125, "a\\nb"),
    case("id-newline", ("rm", "x\ny"), 1, "No such container: x\\ny"),
    case("hostname-dashes", "run --hostname=-bad- busybox true", 125, "invalid hostname"),
    case("hostname-too-long", ("run", "--hostname", "h" * 70, "busybox", "true"), 125, "invalid"),
    # --- absurd limits and ids
    case("uid-huge", "run -u 99999999999 busybox true", 125, "uids and gids must be in range"),
    case("gid-huge", "run -u 0:99999999999 busybox true", 125, "uids and gids must be in range"),
    case("uid-2^32", "create -u 4294967296 busybox", 125, "uids and gids must be in range"),
    case("uidmap-huge", "run --uidmap 0:100000:99999999999 busybox true", 125, "beyond 2^32-1"),
    case("memory-huge", "run -m 99999999999999999999g busybox true", 125, "value out of range"),
    case("memory-words", "run -m nang busybox true", 125, "want a size like 512m"),
    case("memory-inf", "run -m inf busybox true", 125, "--memory"),
    case("swap-below-memory", "run --memory-swap 1m -m 10m busybox true", 125, "memoryswap"),
    case("pids-huge", ("run", "--pids-limit", "1" + "0" * 30, "busybox", "true"), 125, "range"),
    case("cpu-shares-negative", "run --cpu-shares -5 busybox true", 125, "--cpu-shares"),
    case("cpus-huge", "run --cpus 1e309 busybox true", 125, "range of CPUs"),
    case("cpus-negative", "run --cpus -1 busybox true", 125, "must be positive"),
    case("cpu-period-tiny", "run --cpu-period 1 busybox true", 125, "CPU cfs period"),
    case("cpuset-absent", "run --cpuset-cpus 99999 busybox true", 125, "not available"),
    case("blkio-weight-low", "run --blkio-weight 5 busybox true", 125, "blkio weight"),
    case("port-huge", "run --network bridge -p 127.0.0.1:80:99999 busybox true", 125, "99999"),
    # --- env files
    case("env-file-binary", "run --env-file {input} busybox true", 125,
         "invalid utf8 bytes at line 2", file_input(b"A=1\n\xff\xfe\x00\x81garbage\n")),
    case("env-file-nul", "run --env-file {input} busybox true", 125, "NUL byte at line 2",
         file_input(b"A=1\nB=x\x00y\n")),
    case("env-file-directory", "run --env-file {input} busybox true", 125, "Is a directory",
         _sentinel_dir),
    case("env-file-dangling-link", "run --env-file {input} busybox true", 125,
         "No such file or directory", link_input("{sentinel}/none")),
    # --- volumes and mounts
    case("bind-source-missing", f"run --mount type=bind,source={S}/none,target=/x busybox true",
         125, "bind source path does not exist"),
    case("bind-source-dangling-link", "run --mount type=bind,source={input},target=/x busybox true",
         125, "bind source path does not exist", link_input("{sentinel}/none")),
    case("volume-target-relative", f"run -v {S}:relative busybox true", 125, "must be absolute"),
    case("volume-target-root", f"run -v {S}:/ busybox true", 125, "destination can't be '/'"),
    case("volume-name-path", "run -v relative/x:/x busybox true", 125, "invalid characters"),
    case("tmpfs-target-relative", "run --tmpfs relative busybox true", 125, "must be absolute"),
    case("tmpfs-size-negative", "run --mount type=tmpfs,target=/x,tmpfs-size=-1 busybox true",
         125, "invalid size '-1'"),
    case("tmpfs-mode-words", "run --mount type=tmpfs,target=/x,tmpfs-mode=zz busybox true", 125,
         "invalid mode 'zz'"),
    case("mount-type-unknown", "run --mount type=nope,target=/x busybox true", 125,
         "invalid mount type"),
    case("seccomp-not-json", "run --security-opt seccomp={input} busybox true", 125,
         "invalid JSON", file_input(b"\x7fELF\x00")),
    # --- tars (import)
    case("tar-dotdot", "import {input}", 125, "'..' in the path",
         tar_input(lambda s: [(f"../../../../{s}/evil", b"x", b"", REG)])),
    case("tar-dotdot-inner", "import {input}", 125, "'..' in the path",
         tar_input(lambda s: [("a/../../evil", b"x", b"", REG)])),
    case("tar-absolute", "import {input}", 125, "invalid layer entry",
         tar_input(lambda s: [(f"/{s}/evil", b"x", b"", REG)])),
    case("tar-symlink-absolute", "import {input}", 125, "parent 'l' is a symlink",
         tar_input(lambda s: [("l", None, f"/{s}".encode(), SYM), ("l/evil", b"x", b"", REG)])),
    case("tar-symlink-relative", "import {input}", 125, "parent 'l' is a symlink",
         tar_input(lambda s: [("l", None, f"../../../../{s}".encode(), SYM),
                              ("l/evil", b"x", b"", REG)])),
    case("tar-hardlink-absolute", "import {input}", 125, "is absolute",
         tar_input(lambda s: [("h", None, f"/{s}/keep".encode(), LNK)])),
    case("tar-hardlink-dotdot", "import {input}", 125, "has '..'",
         tar_input(lambda s: [("h", None, f"../../../../{s}/keep".encode(), LNK)])),
    case("tar-device-dotdot", "import {input}", 125, "'..' in the path",
         tar_input(lambda s: [(f"../../../../{s}/sda", None, b"", BLK)])),
    case("tar-device-through-symlink", "import {input}", 125, "parent 'l' is a symlink",
         tar_input(lambda s: [("l", None, f"/{s}".encode(), SYM), ("l/sda", None, b"", BLK)])),
    case("tar-bare-whiteout", "import {input}", 125, "whiteout",
         tar_input(lambda s: [("dir", None, b"", DIR), ("dir/.wh.", b"", b"", REG)])),
    case("tar-whiteout-dotdot", "import {input}", 125, "whiteout of '..'",
         tar_input(lambda s: [("a/.wh...", b"", b"", REG)])),
    case("tar-huge", "import {input}", 125, "unexpected end of data",
         tar_input(lambda s: [], cut=_huge)),
    case("tar-truncated", "import {input}", 125, "unexpected end of data",
         tar_input(lambda s: [("big", b"x" * 10000, b"", REG)], cut=lambda b: b[:1536])),
    case("tar-bad-checksum", "import {input}", 125, "bad checksum",
         tar_input(lambda s: [("f", b"x", b"", REG)], cut=_bad_checksum)),
    case("tar-garbage", "import {input}", 125, "invalid tar header",
         file_input(bytes(range(256)) * 16)),
    case("tar-empty", "import {input}", 125, "empty file", file_input(b"")),
    # --- OCI image layouts (load)
    case("layout-missing", f"load -i {S}/none.tar", 125, "no such file or directory"),
    case("layout-not-an-archive", "load -i {input}", 125, "not an image archive", _sentinel_dir),
    case("layout-index-bad-json", "load -i {input}", 125, "index.json: bad JSON",
         layout_input(lambda lay, s: lay["files"].update({"index.json": b'{"manifests": ['}))),
    case("layout-digest-mismatch", "load -i {input}", 125, "digest mismatch",
         layout_input(_zero_layer)),
    case("layout-missing-layer", "load -i {input}", 125, "missing blob",
         layout_input(lambda lay, s: lay["files"].pop(lay["layer"]))),
    case("layout-missing-manifest", "load -i {input}", 125, "missing blob",
         layout_input(lambda lay, s: lay["files"].pop(lay["manifest"]))),
    case("layout-dotdot-digest", "load -i {input}", 125, "malformed digest",
         layout_input(_manifest0(digest="sha256:../../../../../../{sentinel}/keep"))),
    case("layout-empty-digest", "load -i {input}", 125, "malformed digest",
         layout_input(_manifest0(digest="sha256:"))),
    case("layout-bad-algorithm", "load -i {input}", 125, "malformed digest",
         layout_input(_manifest0(digest="md5:abc"))),
    case("layout-size-lies", "load -i {input}", 125, "descriptor says 1",
         layout_input(_manifest0(size=1))),
    case("layout-no-manifests", "load -i {input}", 125, "no image for linux",
         layout_input(lambda lay, s: lay["index"].update(manifests=[]))),
    case("layout-archive-dotdot", "load -i {input}", 125, "unsafe path in image archive",
         layout_input(lambda lay, s: lay["files"].update({f"../../../../{s}/evil": b"x"}))),
    case("layout-archive-absolute", "load -i {input}", 125, "unsafe path in image archive",
         layout_input(lambda lay, s: lay["files"].update({f"/{s}/evil": b"x"}))),
    case("layout-layer-dotdot", "load -i {input}", 125, "'..' in the path",
         layout_input(lambda lay, s: None, layer=[("../../../../tmp/evil", b"x", b"", REG)])),
    # --- Dockerfiles (build)
    case("build-no-dockerfile", "build {input}", 1, "cannot read", _sentinel_dir),
    case("build-empty", "build {input}", 1, "the first instruction must be FROM",
         context_input(b"")),
    case("build-binary", "build {input}", 1, "Dockerfile:1: invalid utf8 bytes",
         context_input(b"\x00\xff\xfe\n")),
    case("build-unknown-instruction", "build {input}", 1, "unknown instruction: BOGUS",
         context_input(b"FROM busybox\nBOGUS x\n")),
    case("build-from-missing", "build {input}", 1, "Unable to find image",
         context_input(b"FROM nosuchimage-rref\n")),
    case("build-copy-dotdot", "build {input}", 1, "forbidden path outside the build context",
         context_input(b"FROM busybox\nCOPY ../x /\n")),
    case("build-copy-symlink-out", "build {input}", 1, "forbidden path outside the build context",
         context_input(b"FROM busybox\nCOPY out/keep /\n", {"out": "{sentinel}"})),
    case("build-copy-symlink-up", "build {input}", 1, "no such file or directory in the build",
         context_input(b"FROM busybox\nCOPY up/etc/passwd /\n", {"up": "../../../.."})),
    case("build-add-url", "build {input}", 1, "sources from URLs are not supported",
         context_input(b"FROM busybox\nADD http://127.0.0.1:1/x /\n")),
    case("build-arg-empty", "build {input}", 1, "ARG requires at least one argument",
         context_input(b"FROM busybox\nARG\n")),
    case("build-env-empty", "build {input}", 1, "ENV requires at least one argument",
         context_input(b"FROM busybox\nENV\n")),
    case("build-expose-huge", "build {input}", 1, "invalid EXPOSE port '99999'",
         context_input(b"FROM busybox\nEXPOSE 99999\n")),
    case("build-copy-from-missing", "build {input}", 1, "no stage or image named 'nosuch'",
         context_input(b"FROM busybox\nCOPY --from=nosuch f /\n")),
]  # fmt: skip

#: rref-oci rows: (bundle edition, fragment of the one line).
OCI_CASES = {
    "args-not-a-list": "process.args",
    "args-empty": "process.args: empty",
    "cwd-relative": "process.cwd",
    "uid-negative": "process.user.uid",
    "unknown-cap": "unknown capability 'CAP_NOPE'",
    "rlimit-unknown": "unknown rlimit",
    "rlimit-soft-above-hard": "soft limit 2 is above hard 1",
    "old-version": "only runtime-spec 1.x",
    "namespace-type": "unknown namespace type 'time'",
    "mount-relative": "mounts[7].destination",
    "mount-bind-missing-source": "bind source /tmp/rref-hostile-sentinel-",
    "memory-not-int": "linux.resources",
    "host-sysctl": "not a namespaced sysctl",
    "terminal": "process.terminal",
    "unsupported-field": "intelRdt",
    "unsupported-resource": "hugepageLimits: not supported",
    "hook-kind": "hooks.prestop",
    "hostname-without-uts": "needs a uts namespace",
    "userns-with-joined-ns": "joining a namespace by path with a new user namespace",
    "userns-without-maps": "needs uid and gid mappings",
    "ns-path-not-a-namespace": "network namespace path /etc/hostname: not a namespace",
    "ns-path-missing": "No such file or directory",
    "ns-path-wrong-type": "/proc/self/ns/ipc: is a ipc namespace",
    "ns-path-relative": "path",
    "rootfs-missing": "no such directory",
    "malformed-json": "config.json: invalid JSON",
    "config-not-an-object": "config.json",
}


# ------------------------------------------------------------------------------ the checks


def tree(top: str) -> dict[str, str]:
    """Every file (its content's hash; a hard-linked file read once), directory, symlink
    and special file under `top`; lock files aside (taking a lock is not a change)."""
    out: dict[str, str] = {}
    hashed: dict[tuple[int, int], str] = {}
    for dirpath, dirnames, files in os.walk(top):
        for name in dirnames + files:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            if name == "lock" or name.endswith(".lock"):
                continue
            if stat.S_ISLNK(st.st_mode):
                what = f"-> {os.readlink(p)}"
            elif stat.S_ISREG(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if key not in hashed:
                    with open(p, "rb") as fh:
                        hashed[key] = hashlib.sha256(fh.read()).hexdigest()
                what = hashed[key]
            else:
                what = f"{stat.filemode(st.st_mode)} {st.st_rdev}"
            out[os.path.relpath(p, top)] = what
    return out


def unchanged(before: dict[str, str], after: dict[str, str], where: str) -> None:
    new = sorted(after.keys() - before.keys())
    gone = sorted(before.keys() - after.keys())
    changed = sorted(k for k in before.keys() & after.keys() if before[k] != after[k])
    assert not (new or gone or changed), f"{where}: new {new}, gone {gone}, changed {changed}"


@pytest.fixture(scope="module")
def sentinel() -> Iterator[Path]:
    """The host directory escaping inputs aim at, with one file (`keep`) to aim links at."""
    d = Path(tempfile.mkdtemp(prefix="rref-hostile-sentinel-"))
    (d / "keep").write_text("keep\n")
    yield d
    import shutil

    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def primed() -> Iterator[Rref]:
    """A state root with busybox built and one running container, to prove nothing moves."""
    import shutil

    r = Rref(tempfile.mkdtemp(prefix="rref-test-hostile-"))
    try:
        r.run_d("busybox", "sleep", "600")
        yield r
    finally:
        r.cleanup()
        shutil.rmtree(r.root, ignore_errors=True)


def test_catalogue_is_large_and_its_ids_unique() -> None:
    ids = [c.id for c in CASES] + [f"oci-{k}" for k in OCI_CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 60, len(ids)
    assert set(OCI_CASES) == set(BUNDLES)


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_hostile_input_is_refused_cleanly(
    primed: Rref, sentinel: Path, tmp_path: Path, c: Case
) -> None:
    spot = c.input(tmp_path, sentinel)
    argv = [a.replace("{input}", spot).replace("{sentinel}", str(sentinel)) for a in c.argv]
    before, watched = tree(primed.root), tree(str(sentinel))
    p = subprocess.run(
        [RREF, "--root", primed.root, *argv],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    one_line_error(p, c.code, c.says)
    unchanged(before, tree(primed.root), "the state root")
    unchanged(watched, tree(str(sentinel)), "the host sentinel")


@pytest.mark.parametrize("edit", sorted(OCI_CASES))
def test_hostile_bundle_is_refused_cleanly(oci: Oci, sentinel: Path, edit: str) -> None:
    b = oci.bundle(["true"])
    how = BUNDLES[edit]
    if isinstance(how, str):
        (b / "config.json").write_text(how)
    else:
        config = json.loads((b / "config.json").read_text())
        how(config, str(sentinel).lstrip("/"))
        (b / "config.json").write_text(json.dumps(config))
    oci.root.mkdir(parents=True, exist_ok=True)
    before, watched = tree(str(oci.root)), tree(str(sentinel))
    cid = oci.new_id()
    p = oci("create", "-b", str(b), cid, check=False)
    one_line_error(p, 1, OCI_CASES[edit], prefix="rref-oci: ")
    unchanged(before, tree(str(oci.root)), "the state root")
    unchanged(watched, tree(str(sentinel)), "the host sentinel")
    assert leftovers(cid) == []


# ------------------------------------------------------------------------------ contained


def test_escaping_mount_destination_lands_inside_the_rootfs(oci: Oci, sentinel: Path) -> None:
    """A destination that climbs out with `..` is taken inside the rootfs (as runc does):
    the mount is made there, the host's directory of that name is left alone."""
    s = str(sentinel).lstrip("/")
    b = oci.bundle(["sh", "-c", f"grep -c ' /{s}/evil ' /proc/self/mountinfo"])
    config = json.loads((b / "config.json").read_text())
    config["mounts"].append(
        {"destination": f"/../../../../{s}/evil", "type": "tmpfs", "source": "x"}
    )
    (b / "config.json").write_text(json.dumps(config))
    watched = tree(str(sentinel))
    p = oci("run", "-b", str(b), oci.new_id(), check=False)
    assert (p.returncode, p.stdout.strip()) == (0, "1"), p.stderr
    assert (b / "rootfs" / s / "evil").is_dir()
    unchanged(watched, tree(str(sentinel)), "the host sentinel")


def test_volume_target_through_an_image_symlink_stays_inside(
    primed: Rref, sentinel: Path, tmp_path: Path
) -> None:
    """An image whose /evil is a symlink to a host path: `-v SRC:/evil/x` mounts at the
    rootfs's own /{sentinel}/x, never at the host's."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM busybox\nRUN ln -s {sentinel} /evil\n")
    image = f"rref-hostile-{uuid.uuid4().hex[:8]}:1"
    primed("build", "-q", "-t", image, str(ctx))
    src = tmp_path / "src"
    src.mkdir()
    (src / "seen").write_text("from the volume\n")
    watched = tree(str(sentinel))
    try:
        out = primed.out("run", "--rm", "-v", f"{src}:/evil/x", image, "cat", "/evil/x/seen")
    finally:
        primed("rmi", "-f", image, check=False)
    assert out == "from the volume\n"
    unchanged(watched, tree(str(sentinel)), "the host sentinel")
