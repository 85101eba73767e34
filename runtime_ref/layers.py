"""Layer formats of the image store: OCI changesets (layer.md) and overlayfs layer dirs.

An OCI layer is a tar "changeset": added and changed files as ordinary
entries, deletions as empty `.wh.<name>` files and "everything below this
directory from lower layers is gone" as an empty `<dir>/.wh..wh..opq`.
An overlayfs layer directory says the same with a char device 0/0 named
`<name>` and the xattr trusted.overlay.opaque=y on the directory.

- `apply_tar` turns a changeset into a layer directory (an overlay lower),
  refusing anything that would write outside it or through a symlink;
- `write_changeset` turns a container's writable layer (an overlay upper)
  back into a changeset, and `changes` lists it like `docker diff`;
- `write_tree` writes a plain directory as a tar, and `tar_digest` (the
  diff_id of a layer built from a directory) hashes `write_tree(tree,
  mtime=0)`, byte for byte the stream it has always hashed;
- `HashingReader` / `HashingWriter` hash a layer as it streams past.

Tars written here are PAX, deterministic (each directory's entries sorted by
name, every directory before its contents: os.walk order), with numeric
owners, no user/group names and mtimes in whole seconds.
"""

from __future__ import annotations

import io
import os
import stat
from zlib import adler32 as _adler32

from .errors import EXIT_RUNTIME, RrefError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any, BinaryIO


class LayerError(RrefError):
    """A layer that cannot be applied or written (exits 125 like docker's daemon errors)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_RUNTIME)


WH_PREFIX = ".wh."
WH_META_PREFIX = ".wh..wh."
WH_OPAQUE = ".wh..wh..opq"
OVL_PREFIX = "trusted.overlay."
OVL_OPAQUE = "trusted.overlay.opaque"
OVL_REDIRECT = "trusted.overlay.redirect"
OVL_METACOPY = "trusted.overlay.metacopy"

_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_O_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_O_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 1 << 20


# -- hashing ----------------------------------------------------------------


class HashingWriter(io.RawIOBase):
    """A writable that sha256-hashes and counts what passes, then hands it to `f` (if any)."""

    def __init__(self, f: BinaryIO | None = None) -> None:
        import hashlib

        self._f = f
        self._h = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        self._h.update(b)
        n = memoryview(b).nbytes
        self.size += n
        if self._f is not None:
            self._f.write(b)
        return n

    def flush(self) -> None:
        if self._f is not None:
            self._f.flush()

    def hexdigest(self) -> str:
        return self._h.hexdigest()

    @property
    def digest(self) -> str:
        """ "sha256:<hex>" of everything written so far."""
        return "sha256:" + self._h.hexdigest()


class HashingReader(io.RawIOBase):
    """A readable over `f` that sha256-hashes and counts the bytes it returns."""

    def __init__(self, f: BinaryIO) -> None:
        import hashlib

        self._f = f
        self._h = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        b = self._f.read(n)
        if b:
            self._h.update(b)
            self.size += len(b)
        return b

    def readinto(self, b: Any) -> int:
        data = self.read(memoryview(b).nbytes)
        n = len(data)
        memoryview(b).cast("B")[:n] = data
        return n

    def drain(self) -> None:
        """Read (and hash) whatever is left, e.g. the zero padding after a tar's end."""
        while self.read(_CHUNK):
            pass

    def hexdigest(self) -> str:
        return self._h.hexdigest()

    @property
    def digest(self) -> str:
        return "sha256:" + self._h.hexdigest()


# -- writing tars -----------------------------------------------------------

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

    def __init__(self, out: BinaryIO) -> None:
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

    def __init__(self, out: BinaryIO) -> None:
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


def write_tree(tree: str, out: BinaryIO, *, mtime: int | None = None) -> None:
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


# -- overlay upper -> changeset ---------------------------------------------


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _norm(path: str) -> str:
    parts = [p for p in path.split("/") if p and p != "."]
    if ".." in parts:
        raise LayerError(f"invalid path {path!r}: '..' component")
    return "/".join(parts)


class _Overlay:
    """An overlay upper dir and its lower dirs (top first), read as the kernel would."""

    def __init__(
        self, upper: str, lowers: Iterable[str], exclude: Iterable[str], sink: Any
    ) -> None:
        self.upper = upper
        self.lowers = [os.path.abspath(p) for p in lowers]
        self.exclude = {_norm(p) for p in exclude} - {""}
        self.sink = sink

    # lower-layer lookups (lowers are OCI layers extracted by apply_tar: whiteouts
    # and opaque dirs, but no redirects of their own)

    def _is_opaque(self, path: str) -> bool:
        try:
            return os.getxattr(path, OVL_OPAQUE, follow_symlinks=False) == b"y"
        except OSError:
            return False

    def lower_find(self, rel: str) -> tuple[str, os.stat_result] | None:
        """The visible lower entry at `rel` (path, lstat), or None."""
        comps = rel.split("/") if rel else []
        if not comps:
            return None
        last = len(comps) - 1
        for layer in self.lowers:
            p = layer
            stop = False
            for i, c in enumerate(comps):
                p = f"{p}/{c}"
                try:
                    st = os.lstat(p)
                except FileNotFoundError:
                    break
                except NotADirectoryError:
                    return None
                if _is_whiteout(st):
                    return None
                if i == last:
                    return p, st
                if not stat.S_ISDIR(st.st_mode):
                    return None
                if self._is_opaque(p):
                    stop = True
            if stop:
                return None
        return None

    def lower_dirs(self, rel: str) -> list[str]:
        """The lower directories merged at `rel`, top first."""
        comps = rel.split("/") if rel else []
        out = []
        for layer in self.lowers:
            p = layer
            stop = False
            found = True
            for c in comps:
                p = f"{p}/{c}"
                try:
                    st = os.lstat(p)
                except FileNotFoundError:
                    found = False
                    break
                if not stat.S_ISDIR(st.st_mode):  # a whiteout or a file hides all below
                    return out
                if self._is_opaque(p):
                    stop = True
            if found:
                out.append(p)
            if stop:
                break
        return out

    def lower_isdir(self, rel: str) -> bool:
        found = self.lower_find(rel)
        return found is not None and stat.S_ISDIR(found[1].st_mode)

    def _need_lowers(self, rel: str, what: str) -> None:
        if not self.lowers:
            raise LayerError(f"{rel}: {what} in {self.upper} needs the lower layers")

    def _resolve(self, redirect: bytes, parent_lower: str, rel: str) -> str:
        v = os.fsdecode(redirect)
        path = v if v.startswith("/") else parent_lower + v
        try:
            return _norm(path)
        except LayerError:
            raise LayerError(f"{rel}: invalid overlay redirect {v!r}") from None

    def _data(self, ovl: dict[str, bytes], parent_lower: str, name: str, rel: str) -> str:
        """The lower file that holds a metacopy upper file's data."""
        self._need_lowers(rel, "a metacopy file")
        redirect = ovl.get(OVL_REDIRECT)
        path = self._resolve(redirect, parent_lower, rel) if redirect else parent_lower + name
        found = self.lower_find(path)
        if found is None or not stat.S_ISREG(found[1].st_mode):
            raise LayerError(f"{rel}: the data of this metacopy file ({path}) is in no lower")
        return found[0]

    # the walk

    def _node(
        self, dfd: int, name: str, proc: str
    ) -> tuple[os.stat_result, int, list[tuple[str, bytes]], dict[str, bytes]]:
        """lstat, an fd if a regular file (caller closes), xattrs, overlay xattrs."""
        st = os.lstat(name, dir_fd=dfd)
        fd = -1
        if stat.S_ISREG(st.st_mode):
            fd = os.open(name, _O_READ, dir_fd=dfd)
            src: int | str = fd
        else:
            src = proc + name
        follow = fd >= 0
        try:
            names = os.listxattr(src, follow_symlinks=follow)
            xattrs: list[tuple[str, bytes]] = []
            ovl: dict[str, bytes] = {}
            for n in sorted(names):
                v = os.getxattr(src, n, follow_symlinks=follow)
                if n.startswith(OVL_PREFIX):
                    ovl[n] = v
                else:
                    xattrs.append((n, v))
        except BaseException:
            if fd >= 0:
                os.close(fd)
            raise
        return st, fd, xattrs, ovl

    def visit(
        self, dfd: int, ctx: tuple[str, str | None, list[str] | None]
    ) -> list[tuple[str | None, Any]]:
        """ctx: (path prefix, lower path prefix or None, merged lower dirs or None).
        With merged lower dirs, the directory is shown whole (a redirected subtree)."""
        prefix, lp, merged = ctx
        if merged is not None:
            return self._visit_merged(dfd, prefix, lp or "", merged)
        names = os.listdir(dfd)
        names.sort()
        proc = f"/proc/self/fd/{dfd}/"
        sink = self.sink
        subs: list[tuple[str | None, Any]] = []
        for name in names:
            rel = prefix + name
            st, fd, xattrs, ovl = self._node(dfd, name, proc)
            try:
                if rel in self.exclude:
                    if stat.S_ISDIR(st.st_mode) and self.lower_isdir(rel):
                        sink.entry(rel, st, dfd, name, fd, xattrs)
                elif _is_whiteout(st):
                    sink.whiteout(rel, st)
                elif stat.S_ISDIR(st.st_mode):
                    if ovl.get(OVL_OPAQUE) == b"y":
                        sink.entry(rel, st, dfd, name, fd, xattrs, opaque=True)
                        subs.append((name, (rel + "/", None, None)))
                    elif OVL_REDIRECT in ovl:
                        self._need_lowers(rel, "a redirected directory")
                        src = self._resolve(ovl[OVL_REDIRECT], prefix if lp is None else lp, rel)
                        sink.entry(
                            rel, st, dfd, name, fd, xattrs, opaque=bool(self.lower_dirs(rel))
                        )
                        subs.append((name, (rel + "/", src + "/", self.lower_dirs(src))))
                    else:
                        sink.entry(rel, st, dfd, name, fd, xattrs)
                        subs.append(
                            (name, (rel + "/", None if lp is None else lp + name + "/", None))
                        )
                else:
                    data = None
                    if fd >= 0 and OVL_METACOPY in ovl:
                        data = self._data(ovl, prefix if lp is None else lp, name, rel)
                    sink.entry(rel, st, dfd, name, fd, xattrs, data=data)
            finally:
                if fd >= 0:
                    os.close(fd)
        return subs

    def _visit_merged(
        self, dfd: int, prefix: str, lp: str, lower_dirs: list[str]
    ) -> list[tuple[str | None, Any]]:
        """Everything visible in a directory of a redirected subtree: the upper's
        entries over the lower dirs' (no whiteouts needed: the new path is opaque
        or absent from the lowers)."""
        where: dict[str, int] = {}  # name -> -1 (upper) or index into lfds
        lfds: list[int] = []
        sink = self.sink
        subs: list[tuple[str | None, Any]] = []
        try:
            if dfd >= 0:
                where = dict.fromkeys(os.listdir(dfd), -1)
            for d in lower_dirs:
                lfds.append(os.open(d, _O_DIR))
                i = len(lfds) - 1
                for name in os.listdir(lfds[i]):
                    where.setdefault(name, i)
            for name in sorted(where):
                i = where[name]
                fd_dir = dfd if i < 0 else lfds[i]
                rel = prefix + name
                st, fd, xattrs, ovl = self._node(fd_dir, name, f"/proc/self/fd/{fd_dir}/")
                try:
                    if _is_whiteout(st):
                        continue
                    if rel in self.exclude:
                        if stat.S_ISDIR(st.st_mode) and self.lower_isdir(rel):
                            sink.entry(rel, st, fd_dir, name, fd, xattrs)
                        continue
                    if stat.S_ISDIR(st.st_mode):
                        sink.entry(rel, st, fd_dir, name, fd, xattrs)
                        if i >= 0:
                            src = lp + name
                            subs.append((None, (rel + "/", src + "/", self.lower_dirs(src))))
                        elif ovl.get(OVL_OPAQUE) == b"y":
                            subs.append((name, (rel + "/", None, None)))
                        else:
                            redirect = ovl.get(OVL_REDIRECT)
                            src = self._resolve(redirect, lp, rel) if redirect else lp + name
                            subs.append((name, (rel + "/", src + "/", self.lower_dirs(src))))
                    else:
                        data = None
                        if i < 0 and fd >= 0 and OVL_METACOPY in ovl:
                            data = self._data(ovl, lp, name, rel)
                        sink.entry(rel, st, fd_dir, name, fd, xattrs, data=data)
                finally:
                    if fd >= 0:
                        os.close(fd)
        finally:
            for fd in lfds:
                os.close(fd)
        return subs

    def run(self) -> None:
        root = os.open(self.upper, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            _walk(root, ("", "", None), self.visit)
        finally:
            os.close(root)


def write_changeset(
    upper: str, out: BinaryIO, *, lowers: Iterable[str] = (), exclude: Iterable[str] = ()
) -> None:
    """Write the OCI changeset of overlay upper dir `upper` to `out` (PAX, deterministic).

    - a whiteout (char device 0/0) becomes an empty `.wh.<name>` (mode 0644,
      owner 0:0, the device's mtime);
    - a directory with trusted.overlay.opaque=y is written, followed at once by
      an empty `<dir>/.wh..wh..opq`;
    - trusted.overlay.* xattrs are dropped, other xattrs kept (SCHILY.xattr);
      hard links within `upper` stay hard links (LNKTYPE to the first path);
    - `lowers` (lower layer dirs, top first, as in lowerdir=) are needed only
      for what `upper` cannot say alone: a directory renamed with
      redirect_dir=on (trusted.overlay.redirect) is written whole at its new
      path (the lower directory named by the redirect, overlaid with the
      upper's entries; opaque if the new path is a directory in the lowers);
      its old path is a whiteout in `upper` already; a metacopy file
      (trusted.overlay.metacopy) takes its data from the lower file named by
      its redirect xattr, or else at its own (lower) path.

    `exclude` lists container paths ("etc/hosts", a volume's mount point
    "data") whose contents are never written. What remains of each: nothing
    if it is a file, symlink, device or whiteout in `upper`; if it is a
    directory, only its own entry, and only when that path is also a
    directory in `lowers` (a mount point that existed in the image, kept with
    the upper's metadata, never marked opaque); a directory made just to be a
    mount point is left out. Directories above an excluded path that were
    copied up or created to hold it remain, as directory entries.
    """
    sink = _TarSink(out)
    _Overlay(upper, lowers, exclude, sink).run()
    sink.close()


class _ChangesSink:
    def __init__(self) -> None:
        self.ov: _Overlay | None = None
        self.kinds: dict[str, str] = {}
        self.opaque: list[str] = []

    def whiteout(self, rel: str, st: os.stat_result) -> None:
        self.kinds[rel] = "D"

    def entry(
        self,
        rel: str,
        st: os.stat_result,
        dfd: int,
        name: str,
        fd: int,
        xattrs: Any,
        data: str | None = None,
        opaque: bool = False,
    ) -> None:
        assert self.ov is not None
        self.kinds[rel] = "C" if self.ov.lower_find(rel) is not None else "A"
        if opaque:
            self.opaque.append(rel)


def changes(
    upper: str, *, lowers: Iterable[str] = (), exclude: Iterable[str] = ()
) -> list[tuple[str, str]]:
    """`docker diff` of overlay upper dir `upper`: [(kind, "/path")] sorted by path.

    D: a whiteout, or (below an opaque directory) a lower entry not re-created;
    A: a path absent from the (merged) lowers; C: a path present in them, which
    includes every directory that holds a change. The contents of a directory
    renamed with redirect_dir=on are listed at the new path, all of them.
    `exclude` leaves out what `write_changeset` leaves out.
    """
    sink = _ChangesSink()
    ov = _Overlay(upper, lowers, exclude, sink)
    sink.ov = ov
    ov.run()
    kinds = sink.kinds
    for rel in sink.opaque:
        seen: set[str] = set()
        for d in ov.lower_dirs(rel):
            for name in os.listdir(d):
                child = f"{rel}/{name}"
                if (
                    name not in seen
                    and child not in kinds
                    and not _is_whiteout(os.lstat(f"{d}/{name}"))
                ):
                    kinds[child] = "D"
                seen.add(name)
    for rel in list(kinds):
        parent = rel.rpartition("/")[0]
        while parent and parent not in kinds:
            kinds[parent] = "C" if ov.lower_find(parent) is not None else "A"
            parent = parent.rpartition("/")[0]
    return sorted(((k, "/" + rel) for rel, k in kinds.items()), key=lambda c: c[1])


# -- changeset -> layer dir -------------------------------------------------


_REGULAR = (b"0", b"\x00", b"7")
_T_DIR, _T_SYM, _T_LNK, _T_CHR, _T_BLK, _T_FIFO = b"5", b"2", b"1", b"3", b"4", b"6"


def _copy_member(tf: Any, size: int, fd: int, ap: _Applier) -> None:
    """Write the `size` data bytes of the current member, and consume its padding, so
    that tarfile finds the next header where it is (no seek)."""
    want = size + (-size % 512)
    s = tf.fileobj
    if want <= _CHUNK or type(s).__name__ != "_Stream" or getattr(s, "comptype", "") != "tar":
        left = want
        while left:
            chunk = s.read(left if left < _CHUNK else _CHUNK)
            if not chunk:
                ap.fail("unexpected end of data")
            n = len(chunk)
            if n > left - (want - size):  # the tail of this chunk is padding
                chunk = memoryview(chunk)[: max(0, left - (want - size))]
            if chunk:
                _write_all(fd, chunk)
            left -= n
        return
    # Large data: take what tarfile's stream has buffered, then read the source
    # directly into one reused buffer (tarfile would join and slice 10 KiB reads).
    head = s.buf[:want]
    s.buf = s.buf[len(head) :]
    _write_all(fd, memoryview(head)[:size])
    done = len(head)
    raw = s.fileobj
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    readinto = raw.readinto if type(raw) in (io.BufferedReader, io.FileIO) else None
    while done < want:
        n = min(want - done, _CHUNK)
        if readinto is not None:
            got = readinto(view[:n])
        else:
            data = raw.read(n)
            got = len(data)
            view[:got] = data
        if not got:
            ap.fail("unexpected end of data")
        data_end = min(done + got, size)
        if data_end > done:
            _write_all(fd, view[: data_end - done])
        done += got
    s.pos += want


def _umask() -> int:
    """The process umask, read without setting it (os.umask would, for all threads)."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return -1


def _fast_tarinfo() -> Any:
    """A TarInfo for tarfile's stream mode that parses the common ustar header
    itself (tarfile's frombuf and member processing are most of the per-entry
    cost) and leaves anything unusual (PAX and GNU extension headers, base-256
    numbers, ustar prefixes, sparse files) to tarfile. Unlike tarfile, a corrupt
    or truncated header ends nothing quietly: it is an error. User and group
    names are not read (owners are numeric)."""
    global _FastInfo
    if _FastInfo is not None:
        return _FastInfo
    import struct
    import tarfile
    import zlib

    unpack = struct.Struct("100s7sx7sx7sx11sx11sx8sc100s8s64x7sx7sx155s12x").unpack
    simple = (b"0", b"\x00", b"7", b"1", b"2", b"3", b"4", b"5", b"6")

    def checksum_ok(buf: bytes, chk: bytes) -> bool:
        # tarfile's unsigned byte sum; for an ASCII block (sum < 65521) it is
        # adler32's low half minus one, which C computes faster than sum()
        try:
            want = int(chk[:7].partition(b"\x00")[0], 8) - 256 + sum(chk)
        except ValueError:
            return False
        got = (zlib.adler32(buf) & 0xFFFF) - 1 if buf.isascii() else sum(buf)
        return got == want

    class FastInfo(tarfile.TarInfo):
        __slots__ = ()

        @classmethod
        def frombuf(cls, buf: bytes, encoding: str, errors: str) -> Any:
            if len(buf) != 512 or buf[345] or buf[156:157] not in simple:
                return super().frombuf(buf, encoding, errors)
            (name, mode, uid, gid, size, mtime, chk, typ, link, _magic, major, minor, _prefix) = (
                unpack(buf)
            )
            try:
                obj = cls()
                obj.mode = int(mode, 8)
                obj.uid = int(uid, 8)
                obj.gid = int(gid, 8)
                obj.size = int(size, 8)
                obj.mtime = int(mtime, 8)
                if typ in (b"3", b"4"):
                    obj.devmajor = int(major or b"0", 8)
                    obj.devminor = int(minor or b"0", 8)
            except ValueError:  # NUL-padded or base-256 numbers, an all-zero block
                return super().frombuf(buf, encoding, errors)
            if not checksum_ok(buf, chk):
                return super().frombuf(buf, encoding, errors)  # or the signed sum
            obj.chksum = int(chk[:7].partition(b"\x00")[0], 8)
            obj.type = typ
            obj.name = name.partition(b"\x00")[0].decode(encoding, errors)
            if typ in (b"1", b"2"):
                obj.linkname = link.partition(b"\x00")[0].decode(encoding, errors)
            if typ == b"\x00" and obj.name.endswith("/"):
                obj.type = typ = b"5"
            if typ == b"5":
                obj.name = obj.name.rstrip("/")
            return obj

        @classmethod
        def fromtarfile(cls, tf: Any) -> Any:
            s = tf.fileobj
            buf = s.read(512)
            try:
                obj = cls.frombuf(buf, tf.encoding, tf.errors)
            except (tarfile.InvalidHeaderError, tarfile.TruncatedHeaderError) as e:
                raise LayerError(f"invalid tar header at byte {s.tell() - len(buf)}: {e}") from None
            obj.offset = s.tell() - 512
            if obj.type not in simple:
                return obj._proc_member(tf)
            obj.offset_data = off = obj.offset + 512
            if obj.type in (b"0", b"\x00", b"7"):
                off += obj.size + (-obj.size % 512)
            tf.offset = off
            if tf.pax_headers:  # global (pax 'g') headers
                obj._apply_pax_info(tf.pax_headers, tf.encoding, tf.errors)
            return obj

    _FastInfo = FastInfo
    return FastInfo


_FastInfo: Any = None


class _Applier:
    """Extracts tar entries into `dest` through dir fds, never following a symlink.

    `kinds` records what this layer made at each path ("d" dir, "f" file,
    "l" symlink, "n" fifo/device, "w" whiteout): a parent must be a "d" (or
    is made, 0755 root), so no path can lead through a symlink of the layer's.
    """

    def __init__(self, dest: str, allow_devices: bool) -> None:
        self.allow_devices = allow_devices
        self.root = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.kinds: dict[str, str] = {"": "d"}
        self.fds: dict[str, int] = {"": self.root}
        self.dir_times: dict[str, tuple[int, int]] = {}
        self.name = ""
        self.total = 0
        self.root_st = os.fstat(self.root)
        self.root_xattrs = {n: os.getxattr(self.root, n) for n in os.listxattr(self.root)}
        self.root_touched = False
        # Skipped syscalls for the common regular file: no fchown when the owner is
        # who creates it (and no setgid parent hands down its group), no fchmod when
        # the mode survives the umask at creation (not with default ACLs around).
        self.ids = (os.geteuid(), os.getegid())
        self.sgid = {""} if self.root_st.st_mode & stat.S_ISGID else set()
        self.umask = _umask() if "system.posix_acl_default" not in self.root_xattrs else -1

    def fail(self, msg: str) -> None:
        raise LayerError(f"invalid layer entry {self.name!r}: {msg}")

    # directories

    def evict(self) -> None:
        for key, fd in self.fds.items():
            if key:
                os.close(fd)
        self.fds = {"": self.root}

    def dirfd(self, key: str) -> int:
        """An fd on directory `key` of the layer, made (0755 root) if missing."""
        fd = self.fds.get(key)
        if fd is not None:
            return fd
        parent, _, base = key.rpartition("/")
        pfd = self.dirfd(parent) if parent in self.fds else self._dirfd_slow(parent)
        kind = self.kinds.get(key)
        if kind is None or kind == "w":
            if kind == "w":  # a directory over a whiteout of ours: the lower one is gone
                os.unlink(base, dir_fd=pfd)
            os.mkdir(base, 0o755, dir_fd=pfd)
            self.kinds[key] = "d"
            fd = os.open(base, _O_DIR, dir_fd=pfd)
            self.fds[key] = fd
            os.fchown(fd, 0, 0)
            os.fchmod(fd, 0o755)
            if kind == "w":
                os.setxattr(fd, OVL_OPAQUE, b"y")
            return fd
        if kind == "l":
            self.fail(f"parent {key!r} is a symlink")
        if kind != "d":
            self.fail(f"parent {key!r} is not a directory")
        fd = os.open(base, _O_DIR, dir_fd=pfd)
        self.fds[key] = fd
        return fd

    def _dirfd_slow(self, key: str) -> int:
        comps = key.split("/")
        fd = self.root
        for i in range(1, len(comps) + 1):  # iterative, for deep paths
            fd = self.dirfd("/".join(comps[:i]))
        return fd

    def clear(self, pfd: int, key: str, base: str, for_dir: bool) -> str | None:
        """Make room at `key` for a new entry (a later entry replaces an earlier one,
        a directory over a directory merges). Returns what was there."""
        kind = self.kinds.get(key)
        if kind is None or (kind == "d" and for_dir):
            return kind
        if kind == "d":
            import shutil

            sub = key + "/"
            for k in [k for k in self.fds if k == key or k.startswith(sub)]:
                os.close(self.fds.pop(k))
            for table in (self.kinds, self.dir_times):
                for k in [k for k in table if k.startswith(sub)]:
                    del table[k]
            self.dir_times.pop(key, None)
            shutil.rmtree(base, dir_fd=pfd)
        else:
            os.unlink(base, dir_fd=pfd)
        del self.kinds[key]
        return kind

    # metadata

    @staticmethod
    def times(m: Any) -> tuple[int, int]:
        mt = int(m.mtime * 1_000_000_000) if isinstance(m.mtime, float) else m.mtime * 1_000_000_000
        at = m.pax_headers.get("atime")
        if at is not None:
            try:
                return int(float(at) * 1_000_000_000), mt
            except ValueError:
                pass
        return mt, mt

    @staticmethod
    def xattrs(m: Any) -> list[tuple[str, bytes]]:
        out = []
        if m.pax_headers:
            for k, v in m.pax_headers.items():
                if k.startswith("SCHILY.xattr."):
                    n = k[13:]
                    if n.startswith(OVL_PREFIX) or (
                        n.startswith("security.") and n != "security.capability"
                    ):
                        continue
                    out.append((n, v.encode("utf-8", "surrogateescape")))
        return out

    def meta_dir(self, fd: int, key: str, m: Any) -> None:
        os.fchown(fd, m.uid, m.gid)
        os.fchmod(fd, m.mode & 0o7777)
        if m.mode & stat.S_ISGID:
            self.sgid.add(key)
        else:
            self.sgid.discard(key)
        for n, v in self.xattrs(m):
            if n.startswith("system.posix_acl_default"):
                self.umask = -1
            os.setxattr(fd, n, v)
        self.dir_times[key] = self.times(m)

    def meta_node(self, pfd: int, base: str, m: Any, chmod: bool) -> None:
        os.chown(base, m.uid, m.gid, dir_fd=pfd, follow_symlinks=False)
        if chmod:  # a fifo or device we have just made (never a symlink)
            os.chmod(base, m.mode & 0o7777, dir_fd=pfd)
        xattrs = self.xattrs(m)
        if xattrs:
            path = f"/proc/self/fd/{pfd}/{base}"
            for n, v in xattrs:
                os.setxattr(path, n, v, follow_symlinks=False)
        os.utime(base, ns=self.times(m), dir_fd=pfd, follow_symlinks=False)

    # entries

    def entry(self, tf: Any, m: Any) -> None:
        if len(self.fds) > 64:
            self.evict()
        name = self.name = m.name
        t = m.type
        if (
            t in _REGULAR
            and "/." not in name
            and "//" not in name
            and name[:1] not in "/."
            and name[-1:] != "/"
            and "\x00" not in name
            and m.sparse is None
        ):
            # the common case: a regular file at a plain relative path (no '.', '..',
            # '' or .wh.* component: no component starts with a dot)
            pkey, _, base = name.rpartition("/")
            self.regular(tf, m, pkey, name, base)
            return
        if "\x00" in name:
            self.fail("NUL in the name")
        if name.startswith("/"):
            self.fail("absolute path")
        parts = [p for p in name.split("/") if p and p != "."]
        if ".." in parts:
            self.fail("'..' in the path")
        if m.sparse is not None:
            self.fail("sparse files are not supported")
        if not parts:
            if t != _T_DIR:
                self.fail("the layer root must be a directory")
            self.root_touched = True
            self.meta_dir(self.root, "", m)
            return
        for p in parts[:-1]:
            if p.startswith(WH_PREFIX):
                if p.startswith(WH_META_PREFIX):
                    return  # inside aufs metadata (.wh..wh.plnk etc.): skipped
                self.fail("a whiteout name used as a directory")
        base = parts[-1]
        pkey = "/".join(parts[:-1])
        if base.startswith(WH_PREFIX):
            self.whiteout(pkey, base, m)
            return
        key = f"{pkey}/{base}" if pkey else base
        if t in _REGULAR:
            self.regular(tf, m, pkey, key, base)
        elif t == _T_DIR:
            pfd = self.dirfd(pkey)
            prev = self.clear(pfd, key, base, True)
            if prev != "d":
                os.mkdir(base, 0o700, dir_fd=pfd)
                self.kinds[key] = "d"
            fd = self.dirfd(key)
            if prev == "w":
                os.setxattr(fd, OVL_OPAQUE, b"y")
            self.meta_dir(fd, key, m)
        elif t == _T_SYM:
            if "\x00" in m.linkname:
                self.fail("NUL in the symlink target")
            pfd = self.dirfd(pkey)
            self.clear(pfd, key, base, False)
            os.symlink(m.linkname, base, dir_fd=pfd)
            self.kinds[key] = "l"
            self.meta_node(pfd, base, m, False)
        elif t == _T_LNK:
            self.hardlink(m, pkey, key, base)
        elif t in (_T_CHR, _T_BLK, _T_FIFO):
            if t == _T_CHR and m.devmajor == 0 and m.devminor == 0:
                self.fail("char device 0/0 (a whiteout must be a .wh. file)")
            if t != _T_FIFO and not self.allow_devices:
                self.fail("device nodes are not allowed")
            pfd = self.dirfd(pkey)
            self.clear(pfd, key, base, False)
            if t == _T_FIFO:
                os.mkfifo(base, 0o600, dir_fd=pfd)
            else:
                fmt = stat.S_IFCHR if t == _T_CHR else stat.S_IFBLK
                os.mknod(base, fmt | 0o600, os.makedev(m.devmajor, m.devminor), dir_fd=pfd)
            self.kinds[key] = "n"
            self.meta_node(pfd, base, m, True)
        else:
            self.fail(f"unsupported entry type {t!r}")

    def regular(self, tf: Any, m: Any, pkey: str, key: str, base: str) -> None:
        pfd = self.fds.get(pkey)
        if pfd is None:
            pfd = self.dirfd(pkey)
        if key in self.kinds:
            self.clear(pfd, key, base, False)
        mode = m.mode & 0o7777
        umask = self.umask
        direct = umask >= 0 and not mode & (0o7000 | umask)
        fd = os.open(base, _O_CREATE, mode if direct else 0o600, dir_fd=pfd)
        self.kinds[key] = "f"
        try:
            size = m.size
            if size:
                want = size + (-size % 512)  # with the padding: tarfile then needs no seek
                if want <= _CHUNK:
                    chunk = tf.fileobj.read(want)
                    if len(chunk) != want:
                        self.fail("unexpected end of data")
                    n = os.write(fd, chunk[:size] if want != size else chunk)
                    if n != size:
                        _write_all(fd, memoryview(chunk)[n:size])
                else:
                    _copy_member(tf, size, fd, self)
            if (m.uid, m.gid) != self.ids or pkey in self.sgid:
                os.fchown(fd, m.uid, m.gid)
            if not direct:
                os.fchmod(fd, mode)
            if m.pax_headers:
                for n, v in self.xattrs(m):  # after chown, which drops security.capability
                    os.setxattr(fd, n, v)
            mt = m.mtime
            if type(mt) is int and not m.pax_headers:
                mt *= 1_000_000_000
                os.utime(fd, ns=(mt, mt))
            else:
                os.utime(fd, ns=self.times(m))
        finally:
            os.close(fd)
        self.total += size

    def hardlink(self, m: Any, pkey: str, key: str, base: str) -> None:
        link = m.linkname
        if "\x00" in link:
            self.fail("NUL in the hardlink target")
        if link.startswith("/"):
            self.fail(f"hardlink target {link!r} is absolute")
        tparts = [p for p in link.split("/") if p and p != "."]
        if ".." in tparts:
            self.fail(f"hardlink target {link!r} has '..'")
        tkey = "/".join(tparts)
        tkind = self.kinds.get(tkey) if tkey else "d"
        if tkind is None:
            self.fail(f"hardlink target {link!r} does not exist in this layer")
        if tkind == "d":
            self.fail(f"hardlink target {link!r} is a directory")
        if tkind == "w":
            self.fail(f"hardlink target {link!r} is a whiteout")
        if tkey == key:
            return
        pfd = self.dirfd(pkey)
        self.clear(pfd, key, base, False)
        if tkey not in self.kinds:
            self.fail(f"hardlink target {link!r} was replaced by this entry")
        tparent, _, tbase = tkey.rpartition("/")
        tpfd = self.dirfd(tparent)
        os.link(tbase, base, src_dir_fd=tpfd, dst_dir_fd=pfd, follow_symlinks=False)
        self.kinds[key] = tkind

    def whiteout(self, pkey: str, base: str, m: Any) -> None:
        if base == WH_OPAQUE:
            os.setxattr(self.dirfd(pkey), OVL_OPAQUE, b"y")
            self.root_touched = self.root_touched or not pkey
            return
        if base.startswith(WH_META_PREFIX):
            return  # other aufs metadata (.wh..wh.aufs, .wh..wh.plnk): skipped
        target = base[len(WH_PREFIX) :]
        if not target:
            self.fail("bare whiteout name '.wh.'")
        if target in (".", ".."):
            self.fail(f"whiteout of {target!r}")
        pfd = self.dirfd(pkey)
        key = f"{pkey}/{target}" if pkey else target
        kind = self.kinds.get(key)
        if kind is None:
            os.mknod(target, stat.S_IFCHR, os.makedev(0, 0), dir_fd=pfd)
            os.chown(target, 0, 0, dir_fd=pfd, follow_symlinks=False)
            mt = self.times(m)
            os.utime(target, ns=mt, dir_fd=pfd, follow_symlinks=False)
            self.kinds[key] = "w"
        elif kind == "d":  # the lower directory is gone; this layer's stays: opaque
            os.setxattr(self.dirfd(key), OVL_OPAQUE, b"y")
        # anything else of this layer's at that name hides the lower one already

    def finish(self) -> None:
        depth = {k: (k.count("/") + 1 if k else 0) for k in self.dir_times}
        for key in sorted(self.dir_times, key=lambda k: (-depth[k], k)):
            if len(self.fds) > 64:
                self.evict()
            os.utime(self.dirfd(key), ns=self.dir_times[key])

    def abort(self) -> None:
        """Leave dest as it was: empty, with its own metadata."""
        import shutil

        self.evict()
        for name in os.listdir(self.root):
            if stat.S_ISDIR(os.lstat(name, dir_fd=self.root).st_mode):
                shutil.rmtree(name, dir_fd=self.root)
            else:
                os.unlink(name, dir_fd=self.root)
        if self.root_touched:
            st = self.root_st
            for n in os.listxattr(self.root):
                if n not in self.root_xattrs:
                    os.removexattr(self.root, n)
            for n, v in self.root_xattrs.items():
                os.setxattr(self.root, n, v)
            os.fchown(self.root, st.st_uid, st.st_gid)
            os.fchmod(self.root, stat.S_IMODE(st.st_mode))
            os.utime(self.root, ns=(st.st_atime_ns, st.st_mtime_ns))

    def close(self) -> None:
        self.evict()
        os.close(self.root)


def apply_tar(src: BinaryIO, dest: str, *, allow_devices: bool = True) -> int:
    """Extract the uncompressed OCI layer tar streaming from `src` into the empty
    directory `dest`, as an overlay lower layer. Returns the bytes of regular-file
    content. `src` is read to its end (so a HashingReader sees the whole blob).

    `.wh.<name>` becomes a whiteout (char device 0/0, root-owned) and
    `<dir>/.wh..wh..opq` the xattr trusted.overlay.opaque=y on <dir>; other
    `.wh..wh.*` names (aufs metadata) are skipped. A whiteout for a path this
    layer also creates leaves that path (a directory of it becomes opaque); a
    directory entry replacing a whiteout of the layer's is made opaque. Owners
    are numeric; modes keep setuid/setgid/sticky; xattrs come from PAX
    SCHILY.xattr.* (not trusted.overlay.*, nor security.* but
    security.capability); directory mtimes are set last. A hard link's own
    header metadata is ignored (its inode's comes from its target's entry).

    Raises LayerError (and leaves `dest` empty, its own metadata restored) for:
    absolute names, `..` components, NUL in a name or link target, a parent
    path through a symlink (or a non-directory) of this layer, a hard link
    whose target is absolute, has `..`, is missing from this layer or is a
    directory or whiteout, a bare `.wh.`, a whiteout of `.`/`..`, `.wh.` used
    as a directory name, a char device 0/0, device nodes unless
    `allow_devices`, sparse or unknown entry types, a non-directory root
    entry, a corrupt or truncated header (tarfile alone would take it for the
    end of the archive), data cut short, and any other tar or OS error.
    Nothing outside `dest` is touched: every path is opened relative to a
    directory fd, with O_NOFOLLOW.
    """
    import tarfile

    ap = _Applier(dest, allow_devices)
    try:
        if os.listdir(ap.root):
            raise LayerError(f"cannot apply a layer into {dest}: not empty")
    except BaseException:
        ap.close()
        raise
    try:
        try:
            with tarfile.open(fileobj=src, mode="r|", tarinfo=_fast_tarinfo()) as tf:
                while True:
                    m = tf.next()
                    if m is None:
                        break
                    ap.entry(tf, m)
                    if len(tf.members) > 4096:  # streaming: keep no index
                        tf.members.clear()
            ap.finish()
        except LayerError:
            ap.abort()
            raise
        except (OSError, tarfile.TarError, ValueError, UnicodeError, RecursionError) as e:
            ap.abort()
            what = f"layer entry {ap.name!r}" if ap.name else "layer"
            msg = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            raise LayerError(f"invalid {what}: {msg}".replace("\n", " ")) from None
        except BaseException:
            ap.abort()
            raise
    finally:
        ap.close()
    while src.read(_CHUNK):
        pass
    return ap.total
