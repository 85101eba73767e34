"""An overlay upper dir (with its lowers) as an OCI changeset, or as `docker diff` lines."""

from __future__ import annotations

import os
import stat

from ._common import (
    _O_DIR,
    _O_READ,
    OVL_METACOPY,
    OVL_OPAQUE,
    OVL_PREFIX,
    OVL_REDIRECT,
    LayerError,
)
from .tarwrite import _TarSink, _walk

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

    from ._common import Sink


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
        out: list[str] = []
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
    upper: str, out: Sink, *, lowers: Iterable[str] = (), exclude: Iterable[str] = ()
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
