"""Layer formats (runtime_ref.layers): OCI changesets <-> overlayfs layer dirs, on real mounts.

Overlays are mounted by the test process itself (names contain "rref") and
unmounted in `finally`; every temp dir is removed, also when a test fails.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import shutil
import stat
import struct
import subprocess
import tarfile
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from runtime_ref.errors import EXIT_RUNTIME
from runtime_ref.layers import (
    HashingReader,
    HashingWriter,
    LayerError,
    apply_tar,
    changes,
    tar_digest,
    write_changeset,
    write_tree,
)

T0 = 1_600_000_000
OPQ = "trusted.overlay.opaque"


@pytest.fixture
def tmp() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="rref-layers-"))
    try:
        yield d
    finally:
        _unmount_below(d)
        shutil.rmtree(d, ignore_errors=True)


def _unmount_below(d: Path) -> None:
    """Safety net: nothing of ours stays mounted, even if a test died mid-way."""
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for p in reversed(points):
        if p.startswith(str(d) + "/"):
            subprocess.run(["umount", "-l", p], check=False)


@contextmanager
def overlay(
    root: Path, lowers: list[Path], upper: Path | None = None, opts: str = ""
) -> Iterator[Path]:
    """Mount an overlay (read-only if no upper) on a fresh dir under `root`."""
    merged = root / f"merged-{uuid.uuid4().hex[:6]}"
    merged.mkdir()
    o = "lowerdir=" + ":".join(map(str, lowers))
    if upper is not None:
        work = root / f"work-{uuid.uuid4().hex[:6]}"
        work.mkdir()
        o += f",upperdir={upper},workdir={work}"
    if opts:
        o += "," + opts
    subprocess.run(
        ["mount", "-t", "overlay", "rref-layers-test", "-o", o, str(merged)],
        check=True,
        capture_output=True,
    )
    try:
        yield merged
    finally:
        subprocess.run(["umount", str(merged)], check=True)


def snapshot(root: Path) -> dict[str, Any]:
    """Everything a container sees: names, types, modes, owners, mtimes, data, xattrs,
    and which paths are hard links of each other."""
    out: dict[str, Any] = {}
    inodes: dict[int, list[str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            m = st.st_mode
            if stat.S_ISREG(m):
                body: Any = Path(p).read_bytes()
                inodes.setdefault(st.st_ino, []).append(rel)
            elif stat.S_ISLNK(m):
                body = os.readlink(p)
            elif stat.S_ISCHR(m) or stat.S_ISBLK(m):
                body = st.st_rdev
            else:
                body = None
            xattrs = {} if stat.S_ISLNK(m) else {n: os.getxattr(p, n) for n in os.listxattr(p)}
            out[rel] = (
                stat.S_IFMT(m),
                stat.S_IMODE(m),
                st.st_uid,
                st.st_gid,
                int(st.st_mtime),
                body,
                xattrs,
            )
    out[".hardlinks"] = sorted(sorted(v) for v in inodes.values() if len(v) > 1)
    return out


def tar_of(*members: dict[str, Any]) -> io.BytesIO:
    """A PAX tar of member specs: name, type, data, mode, uid, gid, mtime, link, dev, pax."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for spec in members:
            ti = tarfile.TarInfo(spec["name"])
            ti.type = spec.get("type", tarfile.REGTYPE)
            ti.mode = spec.get("mode", 0o644)
            ti.uid, ti.gid = spec.get("uid", 0), spec.get("gid", 0)
            ti.mtime = spec.get("mtime", T0)
            ti.linkname = spec.get("link", "")
            ti.devmajor, ti.devminor = spec.get("dev", (0, 0))
            ti.pax_headers = spec.get("pax", {})
            data = spec.get("data", b"")
            ti.size = len(data) if ti.type == tarfile.REGTYPE else 0
            tf.addfile(ti, io.BytesIO(data) if ti.size else None)
    buf.seek(0)
    return buf


def d(name: str, **kw: Any) -> dict[str, Any]:
    return {"name": name, "type": tarfile.DIRTYPE, "mode": 0o755, **kw}


def f(name: str, data: bytes = b"", **kw: Any) -> dict[str, Any]:
    return {"name": name, "data": data, **kw}


def ln(name: str, target: str, hard: bool = False) -> dict[str, Any]:
    return {
        "name": name,
        "type": tarfile.LNKTYPE if hard else tarfile.SYMTYPE,
        "link": target,
        "mode": 0o777,
    }


def xattrs(p: Path) -> dict[str, bytes]:
    return {
        n: os.getxattr(p, n, follow_symlinks=False) for n in os.listxattr(p, follow_symlinks=False)
    }


def members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tf:
        return {m.name: m for m in tf.getmembers()}


# -- apply_tar ----------------------------------------------------------------

CAP_NET_BIND = struct.pack("<IIIII", 0x02000001, 1 << 10, 0, 0, 0)


def test_apply_tar_round_trip(tmp: Path) -> None:
    dest = tmp / "layer"
    dest.mkdir()
    own = {"uid": 1000, "gid": 1000}
    src = tar_of(
        f("late/inner", b"in late\n"),  # before its directory's entry: any order works
        d("dir", mode=0o750, mtime=T0 + 1, **own),
        f("dir/file", b"hello\n", mode=0o640, mtime=T0 + 2, **own),
        f("dir/suid", b"#!/bin/sh\n", mode=0o4755, mtime=T0 + 3),
        ln("dir/link", "../../etc/passwd"),
        ln("dir/hard", "dir/file", hard=True),
        {"name": "dir/fifo", "type": tarfile.FIFOTYPE, "mode": 0o620, **own},
        {"name": "dir/null", "type": tarfile.CHRTYPE, "mode": 0o666, "dev": (1, 3)},
        f(
            "dir/x",
            b"x",
            pax={
                "SCHILY.xattr.user.note": "v1",
                "SCHILY.xattr.user.bin": b"\xff\x00\xfe".decode("utf-8", "surrogateescape"),
                "SCHILY.xattr.security.capability": CAP_NET_BIND.decode("utf-8", "surrogateescape"),
                "SCHILY.xattr.security.selinux": "system_u:object_r:bin_t:s0",
                "SCHILY.xattr.trusted.overlay.opaque": "y",
            },
        ),
        d("tmp", mode=0o1777),
        f(".wh.gone"),
        f("sub/.wh..wh..opq"),  # sub has no entry of its own yet
        f("sub/kept", b"k"),
        f("./dotted", b"."),
        f("dir/replaced", b"first"),
        f("dir/replaced", b"second", mode=0o600),  # a later entry replaces
        d("late", mode=0o700, mtime=T0 + 4),
    )
    raw = src.getvalue()
    reader = HashingReader(src)
    total = apply_tar(reader, str(dest))
    assert total == len(b"in late\nhello\n#!/bin/sh\nxk.firstsecond")
    assert reader.hexdigest() == hashlib.sha256(raw).hexdigest() and reader.size == len(raw)

    gone = os.lstat(dest / "gone")
    assert stat.S_ISCHR(gone.st_mode) and gone.st_rdev == 0 and (gone.st_uid, gone.st_gid) == (0, 0)
    assert xattrs(dest / "sub") == {OPQ: b"y"}
    assert (dest / "sub/kept").read_bytes() == b"k"
    st = os.stat(dest / "dir")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime) == (
        0o750,
        1000,
        1000,
        T0 + 1,
    )
    st = os.stat(dest / "dir/file")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime) == (
        0o640,
        1000,
        1000,
        T0 + 2,
    )
    assert st.st_ino == os.stat(dest / "dir/hard").st_ino and st.st_nlink == 2
    assert stat.S_IMODE(os.stat(dest / "dir/suid").st_mode) == 0o4755
    assert os.readlink(dest / "dir/link") == "../../etc/passwd"
    assert os.lstat(dest / "dir/link").st_mtime == T0
    fifo = os.lstat(dest / "dir/fifo")
    assert stat.S_ISFIFO(fifo.st_mode) and stat.S_IMODE(fifo.st_mode) == 0o620
    assert fifo.st_uid == 1000
    assert os.lstat(dest / "dir/null").st_rdev == os.makedev(1, 3)
    assert xattrs(dest / "dir/x") == {
        "user.note": b"v1",
        "user.bin": b"\xff\x00\xfe",
        "security.capability": CAP_NET_BIND,
    }
    assert stat.S_IMODE(os.stat(dest / "tmp").st_mode) == 0o1777
    assert (dest / "dotted").read_bytes() == b"."
    assert (dest / "dir/replaced").read_bytes() == b"second"
    late = os.stat(dest / "late")
    assert stat.S_IMODE(late.st_mode) == 0o700 and late.st_mtime == T0 + 4
    assert (dest / "late/inner").read_bytes() == b"in late\n"


def test_apply_tar_same_layer_whiteouts_and_merges(tmp: Path) -> None:
    dest = tmp / "layer"
    dest.mkdir()
    apply_tar(
        tar_of(
            d("a", mode=0o700),
            f("a/1"),
            d("a", mode=0o711),
            f("a/2"),
            f(".wh.b"),
            d("b"),
            f("b/new"),  # re-created over its whiteout
            d("c"),
            f(".wh.c"),  # a whiteout for a dir of this layer
            f("e"),
            d("e"),
        ),
        str(dest),
    )  # a dir replacing a file
    assert sorted(os.listdir(dest / "a")) == ["1", "2"]
    assert stat.S_IMODE(os.stat(dest / "a").st_mode) == 0o711
    assert xattrs(dest / "b") == {OPQ: b"y"} and os.listdir(dest / "b") == ["new"]
    assert xattrs(dest / "c") == {OPQ: b"y"}
    assert (dest / "e").is_dir()


def test_regular_file_replaces_a_symlink_and_never_writes_through_it(tmp: Path) -> None:
    canary = tmp / "rref-canary"
    canary.mkdir()
    (canary / "file").write_text("canary\n")
    dest = tmp / "layer"
    dest.mkdir()
    apply_tar(tar_of(ln("evil", str(canary / "file")), f("evil", b"mine")), str(dest))
    assert not (dest / "evil").is_symlink() and (dest / "evil").read_bytes() == b"mine"
    assert (canary / "file").read_text() == "canary\n"


def _reject_cases(canary: str) -> list[tuple[str, list[dict[str, Any]], str, bool]]:
    """(case id, members after some valid ones, the entry named, allow_devices)."""
    return [
        ("file-through-symlink", [ln("evil", canary), f("evil/file", b"x")], "evil/file", True),
        ("dir-through-symlink", [ln("evil", canary), d("evil/sub")], "evil/sub", True),
        (
            "hardlink-through-symlink",
            [f("t"), ln("evil", canary), ln("evil/h", "t", True)],
            "evil/h",
            True,
        ),
        ("dotdot", [f("../x", b"x")], "../x", True),
        ("dotdot-inside", [f("a/../../x", b"x")], "a/../../x", True),
        ("absolute", [f("/abs", b"x")], "/abs", True),
        ("hardlink-dotdot", [ln("h", "../../etc/passwd", True)], "h", True),
        ("hardlink-absolute", [ln("h", "/etc/passwd", True)], "h", True),
        ("hardlink-missing", [ln("h", "nowhere", True)], "h", True),
        (
            "hardlink-via-symlink-target",
            [ln("evil", canary), ln("h", "evil/file", True)],
            "h",
            True,
        ),
        ("bare-whiteout", [f(".wh.")], ".wh.", True),
        ("whiteout-dotdot", [f("ok/.wh...")], "ok/.wh...", True),
        ("whiteout-as-dir", [f(".wh.x/y")], ".wh.x/y", True),
        (
            "device-not-allowed",
            [{"name": "null", "type": tarfile.CHRTYPE, "dev": (1, 3)}],
            "null",
            False,
        ),
        (
            "block-not-allowed",
            [{"name": "sda", "type": tarfile.BLKTYPE, "dev": (8, 0)}],
            "sda",
            False,
        ),
        ("char-0-0", [{"name": "wh", "type": tarfile.CHRTYPE, "dev": (0, 0)}], "wh", True),
        ("nul-in-name", [f("a\x00b", b"x", pax={"path": "a\x00b"})], "a\x00b", True),
    ]


@pytest.mark.parametrize("case", [c[0] for c in _reject_cases("/x")])
def test_apply_tar_rejects(tmp: Path, case: str) -> None:
    canary = tmp / "rref-canary"
    canary.mkdir()
    (canary / "file").write_text("canary\n")
    _, bad, named, allow = next(c for c in _reject_cases(str(canary)) if c[0] == case)
    dest = tmp / "layer"
    dest.mkdir(mode=0o755)
    os.utime(dest, (T0, T0))
    before = sorted(os.listdir(canary)), sorted(os.listdir(tmp))
    valid = [
        d("./", mode=0o700),
        f(".wh..wh..opq"),
        d("ok", uid=5),
        f("ok/file", b"data"),
        f(".wh.w"),
        ln("ok/sym", "/etc"),
    ]
    with pytest.raises(LayerError) as ei:
        apply_tar(tar_of(*valid, *bad), str(dest), allow_devices=allow)
    msg = str(ei.value)
    assert ei.value.code == EXIT_RUNTIME
    assert "\n" not in msg and repr(named)[1:-1] in msg, msg
    assert os.listdir(dest) == [], "dest must be left empty"
    st = os.stat(dest)
    assert stat.S_IMODE(st.st_mode) == 0o755 and st.st_mtime == T0 and xattrs(dest) == {}
    assert (sorted(os.listdir(canary)), sorted(os.listdir(tmp))) == before
    assert (canary / "file").read_text() == "canary\n"


def test_apply_tar_rejects_a_corrupt_stream_and_leaves_dest_empty(tmp: Path) -> None:
    dest = tmp / "layer"
    dest.mkdir()
    raw = tar_of(f("a", b"x" * 5000), f("b", b"y")).getvalue()
    with pytest.raises(LayerError) as ei:
        apply_tar(io.BytesIO(raw[:2048]), str(dest))
    assert "\n" not in str(ei.value)
    assert os.listdir(dest) == []
    bad = bytearray(raw)
    bad[512 + 5120] ^= 1  # b's header (after a's 5000 bytes of data): a bad checksum
    with pytest.raises(LayerError, match="invalid tar header at byte 5632"):
        apply_tar(io.BytesIO(bytes(bad)), str(dest))  # tarfile alone would just stop there
    assert os.listdir(dest) == []
    apply_tar(io.BytesIO(raw[: 512 + 5120 + 1024]), str(dest))  # no end-of-archive blocks
    assert sorted(os.listdir(dest)) == ["a", "b"]
    shutil.rmtree(dest)
    dest.mkdir()
    (dest / "old").touch()
    with pytest.raises(LayerError, match="not empty"):
        apply_tar(io.BytesIO(raw), str(dest))
    assert os.listdir(dest) == ["old"]


# -- write_tree / tar_digest -------------------------------------------------


def _old_tar_digest(tree: str) -> str:
    """tar_digest as it was (tarfile, os.walk): the diff_ids of stores built before."""
    h = HashingWriter()
    with tarfile.open(fileobj=h, mode="w|", format=tarfile.PAX_FORMAT) as tf:
        for dirpath, dirnames, filenames in os.walk(tree):
            dirnames.sort()
            for name in sorted(dirnames + filenames):
                full = os.path.join(dirpath, name)
                info = tf.gettarinfo(full, os.path.relpath(full, tree))
                info.mtime = 0
                info.uname = info.gname = ""
                if info.isreg():
                    with open(full, "rb") as fh:
                        tf.addfile(info, fh)
                else:
                    tf.addfile(info)
    return h.hexdigest()


def _sample_tree(root: Path) -> None:
    (root / "bin").mkdir(parents=True)
    (root / "bin/busybox").write_bytes(os.urandom(300_000))
    (root / "bin/large").write_bytes(os.urandom(3 * 1024 * 1024 + 123))  # > 1 MiB paths
    os.chmod(root / "bin/busybox", 0o4755)
    os.link(root / "bin/busybox", root / "bin/sh")
    (root / "usr").mkdir()
    os.symlink("../bin", root / "usr/bin")
    deep = root / ("a" * 70) / ("b" * 70)
    deep.mkdir(parents=True)
    (deep / "c").write_text("long name")
    (root / "naïve").write_text("utf-8")
    (root / b"raw\xff".decode("utf-8", "surrogateescape")).write_text("not utf-8")
    os.symlink("t" * 150, root / "longlink")
    os.mkfifo(root / "fifo")
    os.mknod(root / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    (root / "big-uid").write_text("u")
    os.chown(root / "big-uid", 3_000_000, 7)
    (root / "etc").mkdir(mode=0o750)
    os.chown(root / "etc", 1000, 1000)


def test_tar_digest_unchanged_and_equal_to_write_tree(tmp: Path) -> None:
    tree = tmp / "tree"
    _sample_tree(tree)
    buf = io.BytesIO()
    write_tree(str(tree), buf, mtime=0)
    assert tar_digest(str(tree)) == _old_tar_digest(str(tree))
    assert tar_digest(str(tree)) == hashlib.sha256(buf.getvalue()).hexdigest()
    with open(tmp / "rref-tree.tar", "wb") as fh:  # the sendfile path writes the same bytes
        write_tree(str(tree), fh, mtime=0)
        fh.write(b"after")
    assert (tmp / "rref-tree.tar").read_bytes() == buf.getvalue() + b"after"


def test_write_tree_round_trips_through_apply_tar_and_gnu_tar(tmp: Path) -> None:
    tree = tmp / "tree"
    _sample_tree(tree)
    os.setxattr(tree / "etc", "user.k", b"v")
    with open(tmp / "rref-tree.tar", "wb") as fh:
        write_tree(str(tree), fh)
    copy = tmp / "copy"
    copy.mkdir()
    with open(tmp / "rref-tree.tar", "rb") as fh:
        apply_tar(fh, str(copy))
    assert snapshot(copy) == snapshot(tree)
    listing = subprocess.run(
        ["tar", "-tf", str(tmp / "rref-tree.tar")], check=True, capture_output=True
    ).stdout.decode("utf-8", "surrogateescape")
    assert "bin/busybox" in listing.split("\n") and "etc/" in listing.split("\n")
    raw = (tmp / "rref-tree.tar").read_bytes()
    copy2 = tmp / "copy2"
    copy2.mkdir()
    reader = HashingReader(io.BytesIO(raw))  # not a real file: the read() paths
    apply_tar(reader, str(copy2))
    assert reader.hexdigest() == hashlib.sha256(raw).hexdigest()
    assert snapshot(copy2) == snapshot(tree)


@pytest.mark.parametrize("fmt", ["gnu", "posix"])
def test_apply_tar_reads_gnu_tar_archives(tmp: Path, fmt: str) -> None:
    """GNU tar's own formats: long names and links, base-256 ids (gnu), PAX (posix)."""
    tree = tmp / "tree"
    _sample_tree(tree)
    os.setxattr(tree / "etc", "user.k", b"v")
    subprocess.run(
        [
            "tar",
            f"--format={fmt}",
            "--xattrs",
            "--xattrs-include=user.*",
            "--numeric-owner",
            "-cf",
            str(tmp / "rref-gnu.tar"),
            "-C",
            str(tree),
            ".",
        ],
        check=True,
    )
    copy = tmp / "copy"
    copy.mkdir()
    with open(tmp / "rref-gnu.tar", "rb") as fh:
        apply_tar(fh, str(copy))
    assert snapshot(copy) == snapshot(tree)


# -- write_changeset / changes on real overlays -------------------------------


def _lower(root: Path) -> Path:
    lower = root / "lower"
    for p in ("etc", "d_opq/sub", "keep", "old/nest", "x/y"):
        (lower / p).mkdir(parents=True)
    for p, body in (
        ("etc/conf", "conf"),
        ("f_mod", "mod"),
        ("f_chmod", "chmod"),
        ("f_del", "del"),
        ("hl_src", "hl"),
        ("d_opq/old1", "1"),
        ("d_opq/old2", "2"),
        ("d_opq/sub/deep", "deep"),
        ("keep/k1", "k"),
        ("old/a", "a"),
        ("old/b", "b"),
        ("old/nest/c", "c"),
        ("x/y/z", "z"),
        ("big", "B" * 100_000),
    ):
        (lower / p).write_text(body)
    os.chown(lower / "keep/k1", 1000, 1000)
    os.chown(lower / "f_chmod", 1000, 1000)
    os.chmod(lower / "old/b", 0o600)
    return lower


def _changeset(upper: Path, **kw: Any) -> bytes:
    buf = io.BytesIO()
    write_changeset(str(upper), buf, **kw)
    return buf.getvalue()


def _reapply(root: Path, cs: bytes, lower: Path) -> dict[str, Any]:
    layer = root / f"layer-{uuid.uuid4().hex[:6]}"
    layer.mkdir()
    apply_tar(io.BytesIO(cs), str(layer))
    with overlay(root, [layer, lower]) as merged:
        return snapshot(merged)


def test_changeset_of_a_real_overlay_reproduces_the_tree(tmp: Path) -> None:
    lower = _lower(tmp)
    upper = tmp / "upper"
    upper.mkdir()
    with overlay(tmp, [lower], upper) as m:
        (m / "f_mod").write_text("modified")  # copy-up
        os.chmod(m / "f_chmod", 0o600)  # metadata-only change
        os.unlink(m / "f_del")  # whiteout
        shutil.rmtree(m / "d_opq")
        (m / "d_opq").mkdir()  # opaque
        (m / "d_opq/new").write_text("new")
        (m / "d_opq/old1").write_text("again")
        (m / "etc/conf").write_text("changed")
        (m / "new").mkdir()
        (m / "new/a").write_text("pair")
        os.link(m / "new/a", m / "new/b")
        os.chown(m / "new/a", 1000, 1001)
        os.setxattr(m / "new/a", "user.note", b"kept")
        os.link(m / "hl_src", m / "hl_dst")  # a hard link to a lower file
        os.symlink("/etc/conf", m / "new/sym")
        os.mkfifo(m / "new/fifo")
        want = snapshot(m)
    cs = _changeset(upper, lowers=[lower])
    ms = members(cs)
    assert ".wh.f_del" in ms and ms[".wh.f_del"].isreg() and ms[".wh.f_del"].size == 0
    assert "d_opq/.wh..wh..opq" in ms
    names = list(ms)
    assert names.index("d_opq") < names.index("d_opq/.wh..wh..opq") < names.index("d_opq/new")
    assert not [m for m in ms.values() if m.ischr() or m.isblk()]
    assert not [k for m in ms.values() for k in m.pax_headers if "overlay" in k]
    assert ms["new/b"].islnk() and ms["new/b"].linkname == "new/a"
    assert ms["hl_src"].islnk() and ms["hl_src"].linkname == "hl_dst"
    assert ms["new/a"].pax_headers["SCHILY.xattr.user.note"] == "kept"
    assert (ms["new/a"].uid, ms["new/a"].gid, ms["new/a"].uname) == (1000, 1001, "")
    assert ms["f_chmod"].mode == 0o600 and ms["f_chmod"].uid == 1000
    assert "keep" not in ms and "big" not in ms
    assert _changeset(upper, lowers=[lower]) == cs, "deterministic"
    assert _reapply(tmp, cs, lower) == want

    assert changes(str(upper), lowers=[str(lower)]) == [
        ("C", "/d_opq"),
        ("A", "/d_opq/new"),
        ("C", "/d_opq/old1"),
        ("D", "/d_opq/old2"),
        ("D", "/d_opq/sub"),
        ("C", "/etc"),
        ("C", "/etc/conf"),
        ("C", "/f_chmod"),
        ("D", "/f_del"),
        ("C", "/f_mod"),
        ("A", "/hl_dst"),
        ("C", "/hl_src"),
        ("A", "/new"),
        ("A", "/new/a"),
        ("A", "/new/b"),
        ("A", "/new/fifo"),
        ("A", "/new/sym"),
    ]


def test_redirect_dir_rename_reproduces_the_tree(tmp: Path) -> None:
    lower = _lower(tmp)
    upper = tmp / "upper"
    upper.mkdir()
    with overlay(tmp, [lower], upper, "redirect_dir=off") as m:
        with pytest.raises(OSError) as ei:
            os.rename(m / "old", m / "renamed")
        assert ei.value.errno == errno.EXDEV == 18
    shutil.rmtree(upper)
    upper.mkdir()
    with overlay(tmp, [lower], upper, "redirect_dir=on") as m:
        os.rename(m / "old", m / "renamed")  # same parent: relative redirect
        (m / "renamed/a").write_text("changed inside")
        os.unlink(m / "renamed/b")
        (m / "renamed/nest/new").write_text("n")
        (m / "z").mkdir()
        os.rename(m / "x/y", m / "z/y")  # another parent: absolute redirect
        want = snapshot(m)
    assert xattrs(upper / "renamed").get("trusted.overlay.redirect") == b"old"
    assert xattrs(upper / "z/y").get("trusted.overlay.redirect") == b"/x/y"
    cs = _changeset(upper, lowers=[lower])
    ms = members(cs)
    assert {".wh.old", "x/.wh.y", "renamed/nest/c", "renamed/a", "z/y/z"} <= set(ms)
    assert "renamed/b" not in ms and ms["renamed/a"].size == len("changed inside")
    assert _reapply(tmp, cs, lower) == want
    got = changes(str(upper), lowers=[str(lower)])
    assert ("D", "/old") in got and ("A", "/renamed/nest/c") in got and ("A", "/z/y/z") in got
    with pytest.raises(LayerError, match="renamed"):
        _changeset(upper)


def test_metacopy_files_take_their_data_from_the_lower(tmp: Path) -> None:
    lower = _lower(tmp)
    upper = tmp / "upper"
    upper.mkdir()
    with overlay(tmp, [lower], upper, "redirect_dir=on,metacopy=on") as m:
        os.chmod(m / "big", 0o640)  # metadata-only copy-up: no data in upper
        os.chown(m / "keep/k1", 0, 0)
        os.rename(m / "f_mod", m / "keep/moved")  # a metacopy renamed: redirect on the file
        want = snapshot(m)
    assert "trusted.overlay.metacopy" in xattrs(upper / "big")
    assert xattrs(upper / "keep/moved").get("trusted.overlay.redirect") == b"/f_mod"
    cs = _changeset(upper, lowers=[lower])
    ms = members(cs)
    assert ms["big"].size == 100_000 and ms["keep/moved"].size == len("mod")
    assert _reapply(tmp, cs, lower) == want


def test_exclude_leaves_out_mount_points_and_their_contents(tmp: Path) -> None:
    lower = _lower(tmp)
    upper = tmp / "upper"
    upper.mkdir()
    with overlay(tmp, [lower], upper) as m:
        (m / "etc/hostname").write_text("box\n")  # bind-mount targets
        (m / "etc/hosts").write_text("127.0.0.1 localhost\n")
        (m / "data").mkdir()  # a volume's mount point, made for it
        (m / "data/file").write_text("volume data")
        (m / "keep/vol-file").write_text("volume over an image dir")
        (m / "vol/in").mkdir(parents=True)  # nested mount point
        (m / "vol/in/x").write_text("x")
        (m / "real").write_text("committed")
    excl = ["etc/hostname", "/etc/hosts", "data", "keep/", "vol/in"]
    ms = members(_changeset(upper, lowers=[lower], exclude=excl))
    assert set(ms) == {"etc", "keep", "vol", "real"}, set(ms)
    assert not [n for n in ms if n.endswith(".wh..wh..opq")]
    assert "data" not in members(_changeset(upper, exclude=excl))
    assert changes(str(upper), lowers=[str(lower)], exclude=excl) == [
        ("C", "/etc"),
        ("C", "/keep"),
        ("A", "/real"),
        ("A", "/vol"),
    ]


def test_changeset_of_a_hand_made_upper_and_hashing_writer(tmp: Path) -> None:
    upper = tmp / "upper"
    (upper / "opq").mkdir(parents=True)
    os.setxattr(upper / "opq", OPQ, b"y")
    os.setxattr(upper / "opq", "trusted.overlay.origin", b"\x00\x01")
    os.mknod(upper / "gone", stat.S_IFCHR, os.makedev(0, 0))
    os.utime(upper / "gone", (T0, T0))
    (upper / "opq/f").write_text("f")
    h = HashingWriter(io.BytesIO())
    write_changeset(str(upper), h)
    data = h._f.getvalue()  # type: ignore[union-attr]
    assert h.digest == "sha256:" + hashlib.sha256(data).hexdigest() and h.size == len(data)
    ms = members(data)
    assert list(ms) == [".wh.gone", "opq", "opq/.wh..wh..opq", "opq/f"]
    wh = ms[".wh.gone"]
    assert (wh.mode, wh.uid, wh.gid, wh.size, wh.mtime) == (0o644, 0, 0, 0, T0)
    assert ms["opq"].pax_headers == {}
    assert changes(str(upper)) == [("D", "/gone"), ("A", "/opq"), ("A", "/opq/f")]
