"""An OCI changeset tar applied into an empty layer directory, safely (`apply_tar`)."""

from __future__ import annotations

import io
import os
import stat

from ._common import (
    _CHUNK,
    _O_CREATE,
    _O_DIR,
    OVL_OPAQUE,
    OVL_PREFIX,
    WH_META_PREFIX,
    WH_OPAQUE,
    WH_PREFIX,
    LayerError,
)
from .tarwrite import _write_all

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn

    from ._common import Source


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

    def checksum_ok(buf: bytes | bytearray, chk: bytes) -> bool:
        # tarfile's unsigned byte sum; for an ASCII block (sum < 65521) it is
        # adler32's low half minus one, which C computes faster than sum()
        try:
            want = int(chk[:7].partition(b"\x00")[0], 8) - 256 + sum(chk)
        except ValueError:
            return False
        got = (zlib.adler32(buf) & 0xFFFF) - 1 if buf.isascii() else sum(buf)
        return got == want

    # (not in typeshed's tarfile, but there since Python 3.3; EOF/empty headers are not errors)
    bad_header = (tarfile.InvalidHeaderError, tarfile.TruncatedHeaderError)  # type: ignore[attr-defined]

    class FastInfo(tarfile.TarInfo):
        __slots__ = ()

        @classmethod
        def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> Any:
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
            except bad_header as e:
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

    def fail(self, msg: str) -> NoReturn:
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
                for xname, xvalue in self.xattrs(m):  # after chown, which drops security.capability
                    os.setxattr(fd, xname, xvalue)
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


def apply_tar(src: Source, dest: str, *, allow_devices: bool = True) -> int:
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
            stream: Any = src  # r| reads only: typeshed wants a whole IO[bytes]
            with tarfile.open(fileobj=stream, mode="r|", tarinfo=_fast_tarinfo()) as tf:
                index: list[Any] = tf.members  # type: ignore[attr-defined]
                while True:
                    m = tf.next()
                    if m is None:
                        break
                    ap.entry(tf, m)
                    if len(index) > 4096:  # streaming: keep no index
                        index.clear()
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
