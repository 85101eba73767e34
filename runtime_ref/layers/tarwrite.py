"""Deterministic PAX tars of directory trees (`write_tree`, `tar_digest`)."""

from __future__ import annotations

import io
import os
import stat
from zlib import adler32 as _adler32

from ._common import (
    _CHUNK,
    _O_DIR,
    _O_READ,
    OVL_PREFIX,
    WH_OPAQUE,
    WH_PREFIX,
    LayerError,
)
from .hashing import HashingWriter

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ._common import Sink


_MAGIC = b"ustar\x0000"
_NUMS = b"%07o\x00%07o\x00%07o\x00%011o\x00%011o\x00"
_Z16 = b"\x00" * 16
_Z64 = b"\x00" * 64
_Z167 = b"\x00" * 167
_ZBLOCK = b"\x00" * 512
_REG, _LNK, _SYM, _CHR, _BLK, _DIR, _FIFO = b"0", b"1", b"2", b"3", b"4", b"5", b"6"
_MAX7, _MAX11 = 8**7, 8**11


def _pax_record(key: bytes, value: bytes) -> bytes:
    n = len(key) + len(value) + 3
    p = 0
    while True:  # the length field counts its own digits (as tarfile computes it)
        m = n + len(str(p))
        if m == p:
            break
        p = m
    return b"%d %s=%s\n" % (p, key, value)


def _ustar(
    name: bytes,
    mode: int,
    uid: int,
    gid: int,
    size: int,
    mtime: int,
    typ: bytes,
    link: bytes,
    dev: bytes,
) -> bytes:
    block = b"".join(
        (
            name.ljust(100, b"\x00"),
            _NUMS % (mode & 0o7777, uid, gid, size, mtime),
            b"        ",
            typ,
            link.ljust(100, b"\x00"),
            _MAGIC,
            _Z64,
            dev or _Z16,
            _Z167,
        )
    )
    # the byte sum; of an ASCII block (< 65521) adler32's low half minus one, in C
    chk = (_adler32(block) & 0xFFFF) - 1 if block.isascii() else sum(block)
    return b"%s%06o\x00 %s" % (block[:148], chk, block[156:])


def _header(
    name: str,
    mode: int,
    uid: int,
    gid: int,
    size: int,
    mtime: int,
    typ: bytes,
    link: str = "",
    dev: tuple[int, int] | None = None,
    xattrs: list[tuple[str, bytes]] | None = None,
) -> bytes:
    """One entry's header blocks, exactly as tarfile's PAX_FORMAT writes them."""
    nb = name.encode("utf-8", "surrogateescape")
    lb = link.encode("utf-8", "surrogateescape") if link else b""
    pax: list[tuple[bytes, bytes]] = []
    binary = False
    if len(nb) > 100 or not nb.isascii():
        pax.append((b"path", nb))
        binary = not _is_utf8(nb)
        nb = name.encode("ascii", "replace")[:100]
    if len(lb) > 100 or not lb.isascii():
        pax.append((b"linkpath", lb))
        binary = binary or not _is_utf8(lb)
        lb = link.encode("ascii", "replace")[:100]
    if not 0 <= uid < _MAX7:
        pax.append((b"uid", b"%d" % uid))
        uid = 0
    if not 0 <= gid < _MAX7:
        pax.append((b"gid", b"%d" % gid))
        gid = 0
    if size >= _MAX11:
        pax.append((b"size", b"%d" % size))
        size = 0
    if not 0 <= mtime < _MAX11:
        pax.append((b"mtime", b"%d" % mtime))
        mtime = 0
    devb = b"%07o\x00%07o\x00" % dev if dev is not None else b""
    main = _ustar(nb, mode, uid, gid, size, mtime, typ, lb, devb)
    if not pax and not xattrs:
        return main
    records = [b"21 hdrcharset=BINARY\n"] if binary else []
    records += [_pax_record(k, v) for k, v in pax]
    for k, v in xattrs or ():
        records.append(_pax_record(b"SCHILY.xattr." + k.encode("utf-8", "surrogateescape"), v))
    data = b"".join(records)
    ext = _ustar(b"././@PaxHeader", 0, 0, 0, len(data), 0, b"x", b"", b"")
    return ext + data + _ZBLOCK[: -len(data) % 512] + main


def _is_utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _write_all(fd: int, data: Any) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class _TarOut:
    """Buffered tar output; file data goes fd-to-fd (sendfile) when `out` is a plain file."""

    def __init__(self, out: Sink) -> None:
        self.out = out
        self.fd = -1
        if type(out) in (io.BufferedWriter, io.BufferedRandom, io.FileIO):
            out.flush()
            self.fd = out.fileno()
        self.buf = bytearray()
        self.offset = 0

    def _flush(self) -> None:
        if self.buf:
            data, self.buf = self.buf, bytearray()
            if self.fd >= 0:
                _write_all(self.fd, data)
            else:
                self.out.write(data)

    def add(self, header: bytes) -> None:
        self.buf += header
        self.offset += len(header)
        if len(self.buf) >= _CHUNK:
            self._flush()

    def data(self, fd: int, size: int, what: str) -> None:
        """`size` bytes of the open file `fd` (from offset 0), padded to a block."""
        if size <= 256 << 10:
            data = os.read(fd, size)
            while len(data) < size:
                more = os.read(fd, size - len(data))
                if not more:
                    raise LayerError(f"{what}: file shrank while it was archived")
                data += more
            self.buf += data
        else:
            self._flush()
            done = 0
            if self.fd >= 0:
                try:
                    while done < size:
                        n = os.sendfile(self.fd, fd, done, min(size - done, 1 << 30))
                        if not n:
                            raise LayerError(f"{what}: file shrank while it was archived")
                        done += n
                except OSError as e:
                    import errno

                    if e.errno not in (errno.EINVAL, errno.ENOSYS) or done:
                        raise
            while done < size:
                chunk = os.pread(fd, min(size - done, _CHUNK), done)
                if not chunk:
                    raise LayerError(f"{what}: file shrank while it was archived")
                if self.fd >= 0:
                    _write_all(self.fd, chunk)
                else:
                    self.out.write(chunk)
                done += len(chunk)
        pad = -size % 512
        if pad:
            self.buf += _ZBLOCK[:pad]
        self.offset += size + pad
        if len(self.buf) >= _CHUNK:
            self._flush()

    def close(self) -> None:
        self.buf += _ZBLOCK * 2
        self.offset += 1024
        rem = self.offset % 10240  # filled up to a whole record, like tar -b20
        if rem:
            self.buf += b"\x00" * (10240 - rem)
        self._flush()
        if self.fd >= 0:
            if self.out.seekable():  # resync the buffered object's idea of its position
                self.out.seek(0, os.SEEK_CUR)
        else:
            self.out.flush()


def _xattrs(src: int | str) -> list[tuple[str, bytes]]:
    """Non-overlay xattrs of an fd or a path (not followed), sorted by name."""
    follow = not isinstance(src, str)
    names = os.listxattr(src, follow_symlinks=follow)
    if not names:
        return []
    return [
        (n, os.getxattr(src, n, follow_symlinks=follow))
        for n in sorted(names)
        if not n.startswith(OVL_PREFIX)
    ]


class _TarSink:
    """Writes what a walk finds as tar entries (hard links to the first path of an inode)."""

    def __init__(self, out: Sink) -> None:
        self.w = _TarOut(out)
        self.inodes: dict[tuple[int, int], str] = {}
        self.mtime: int | None = None

    def _mt(self, st: os.stat_result) -> int:
        return self.mtime if self.mtime is not None else st.st_mtime_ns // 1_000_000_000

    def whiteout(self, rel: str, st: os.stat_result) -> None:
        d, _, b = rel.rpartition("/")
        name = f"{d}/{WH_PREFIX}{b}" if d else WH_PREFIX + b
        self.w.add(_header(name, 0o644, 0, 0, 0, self._mt(st), _REG))

    def entry(
        self,
        rel: str,
        st: os.stat_result,
        dfd: int,
        name: str,
        fd: int,
        xattrs: list[tuple[str, bytes]],
        data: str | None = None,
        opaque: bool = False,
    ) -> None:
        """One node: `fd` is open on it if it is a regular file; `data` is a metacopy's data."""
        m = st.st_mode
        w = self.w
        if stat.S_ISREG(m):
            if st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                first = self.inodes.get(key)
                if first is not None and first != rel:
                    w.add(_header(rel, m, st.st_uid, st.st_gid, 0, self._mt(st), _LNK, first))
                    return
                self.inodes[key] = rel
            if data is None:
                w.add(
                    _header(
                        rel, m, st.st_uid, st.st_gid, st.st_size, self._mt(st), _REG, xattrs=xattrs
                    )
                )
                w.data(fd, st.st_size, rel)
                return
            dfd2 = os.open(data, _O_READ)
            try:
                size = os.fstat(dfd2).st_size
                w.add(
                    _header(rel, m, st.st_uid, st.st_gid, size, self._mt(st), _REG, xattrs=xattrs)
                )
                w.data(dfd2, size, rel)
            finally:
                os.close(dfd2)
        elif stat.S_ISDIR(m):
            w.add(_header(rel + "/", m, st.st_uid, st.st_gid, 0, self._mt(st), _DIR, xattrs=xattrs))
            if opaque:
                w.add(_header(f"{rel}/{WH_OPAQUE}", 0o644, 0, 0, 0, self._mt(st), _REG))
        elif stat.S_ISLNK(m):
            w.add(
                _header(
                    rel,
                    m,
                    st.st_uid,
                    st.st_gid,
                    0,
                    self._mt(st),
                    _SYM,
                    os.readlink(name, dir_fd=dfd),
                    xattrs=xattrs,
                )
            )
        elif stat.S_ISCHR(m) or stat.S_ISBLK(m):
            dev = (os.major(st.st_rdev), os.minor(st.st_rdev))
            w.add(
                _header(
                    rel,
                    m,
                    st.st_uid,
                    st.st_gid,
                    0,
                    self._mt(st),
                    _CHR if stat.S_ISCHR(m) else _BLK,
                    dev=dev,
                    xattrs=xattrs,
                )
            )
        elif stat.S_ISFIFO(m):
            w.add(_header(rel, m, st.st_uid, st.st_gid, 0, self._mt(st), _FIFO, xattrs=xattrs))
        # sockets are left out, as docker and tar do

    def close(self) -> None:
        self.w.close()


def _walk(root_fd: int, root_ctx: Any, visit: Any) -> None:
    """Depth-first, os.walk order: visit(fd, ctx) handles a directory's entries and
    returns [(name or None, ctx)] for the subdirectories to visit next, in order.
    A subdirectory is opened (never through a symlink) relative to its parent."""
    stack = [(root_fd, iter(visit(root_fd, root_ctx)))]
    try:
        while stack:
            fd, it = stack[-1]
            child = next(it, None)
            if child is None:
                stack.pop()
                if fd >= 0 and fd != root_fd:
                    os.close(fd)
                continue
            name, ctx = child
            cfd = os.open(name, _O_DIR, dir_fd=fd) if name is not None else -1
            try:
                subs = visit(cfd, ctx)
            except BaseException:
                if cfd >= 0:
                    os.close(cfd)
                raise
            stack.append((cfd, iter(subs)))
    finally:
        for fd, _ in stack:
            if fd >= 0 and fd != root_fd:
                os.close(fd)


def write_tree(tree: str, out: Sink, *, mtime: int | None = None) -> None:
    """Write directory `tree` (its contents, not itself) to `out` as a deterministic PAX tar.

    Regular files (hard links within the tree as LNKTYPE to the first path),
    directories, symlinks, fifos and devices with numeric owners, modes, mtimes
    (whole seconds, or all `mtime` when given) and xattrs (SCHILY.xattr, except
    trusted.overlay.*). Nothing is interpreted: for an overlay layer directory
    (whiteout devices, opaque xattrs) use `write_changeset`.
    """
    sink = _TarSink(out)
    sink.mtime = mtime
    w = sink.w
    root = os.open(tree, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def visit(dfd: int, prefix: str) -> list[tuple[str, str]]:
        names = os.listdir(dfd)
        names.sort()
        subs = []
        proc = f"/proc/self/fd/{dfd}/"
        for name in names:
            st = os.lstat(name, dir_fd=dfd)
            m = st.st_mode
            rel = prefix + name
            if stat.S_ISREG(m):
                if st.st_nlink > 1 and (st.st_dev, st.st_ino) in sink.inodes:
                    sink.entry(rel, st, dfd, name, -1, [])
                    continue
                fd = os.open(name, _O_READ, dir_fd=dfd)
                try:
                    sink.entry(rel, st, dfd, name, fd, _xattrs(fd))
                finally:
                    os.close(fd)
            elif stat.S_ISDIR(m):
                mt = mtime if mtime is not None else st.st_mtime_ns // 1_000_000_000
                w.add(
                    _header(
                        rel + "/", m, st.st_uid, st.st_gid, 0, mt, _DIR, xattrs=_xattrs(proc + name)
                    )
                )
                subs.append((name, rel + "/"))
            else:
                sink.entry(rel, st, dfd, name, -1, _xattrs(proc + name))
        return subs

    try:
        _walk(root, "", visit)
        sink.close()
    finally:
        os.close(root)


def tar_digest(tree: str) -> str:
    """sha256 of a deterministic tar of `tree` (sorted, numeric owners, zero mtimes):
    `write_tree(tree, out, mtime=0)` hashed as it is written."""
    w = HashingWriter()
    write_tree(tree, w, mtime=0)
    return w.hexdigest()
