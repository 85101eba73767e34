"""COPY and ADD for `rref build`: a layer built straight from files, no container needed.

Sources come from the build context (through .dockerignore) or, with
--from, from another stage's image, read through a temporary read-only
overlay of its layers. Directories on the way to the destination take their
mode and owner from the image being built on, so a COPY into /tmp keeps /tmp
sticky; everything copied is owned by root unless --chown says otherwise.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat

from . import scratch
from . import syscalls as sc
from .errors import RrefError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

_ARCHIVE_MAGIC = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")


@contextlib.contextmanager
def merged_view(images: Any, image_id: str) -> Iterator[str]:
    """A read-only overlay of an image's layers, mounted for the duration of the block."""
    from .rmtree import remove_tree

    img = images.get(image_id)
    base = scratch.path(images.layers, ".view")
    target, empty = os.path.join(base, "merged"), os.path.join(base, "empty")
    os.makedirs(target)
    os.makedirs(empty)
    lowers = [*reversed(img.layer_dirs), empty]  # two lowers at least: no upper needed
    sc.mount("overlay", target, "overlay", sc.MS_RDONLY, f"lowerdir={':'.join(lowers)}")
    try:
        yield target
    finally:
        sc.umount2(target, sc.MNT_DETACH)
        remove_tree(base)


def _is_archive(path: str) -> bool:
    import tarfile

    try:
        with open(path, "rb") as f:
            head = f.read(6)
    except OSError:
        return False
    if any(head.startswith(m) for m in _ARCHIVE_MAGIC):
        return True
    return tarfile.is_tarfile(path)


def _owner(spec: str, root: str) -> tuple[int, int]:
    from .users import resolve

    user, _, group = spec.partition(":")
    uid, gid, _, _ = resolve(user if not group else f"{user}:{group}", root)
    return uid, gid


def _ensure_parents(stage: str, dest: str, view: str) -> None:
    """Create dest's ancestors in the stage with the base image's metadata where it has them."""
    path = stage
    for part in [p for p in dest.split("/") if p][:-1]:
        path = os.path.join(path, part)
        rel = os.path.relpath(path, stage)
        if os.path.isdir(path):
            continue
        os.mkdir(path)
        try:
            st = os.stat(os.path.join(view, rel))  # follows the image's own links: fine here
        except OSError:
            os.chmod(path, 0o755)
            continue
        os.chown(path, st.st_uid, st.st_gid)
        os.chmod(path, stat.S_IMODE(st.st_mode))


def _copy_entry(src: str, dst: str, owner: tuple[int, int] | None, mode: int | None) -> None:
    st = os.lstat(src)
    if stat.S_ISDIR(st.st_mode):
        os.makedirs(dst, exist_ok=True)
    elif stat.S_ISLNK(st.st_mode):
        if os.path.lexists(dst):
            os.unlink(dst)
        os.symlink(os.readlink(src), dst)
    elif stat.S_ISREG(st.st_mode):
        if os.path.lexists(dst):
            os.unlink(dst)
        shutil.copyfile(src, dst, follow_symlinks=False)
    else:
        raise RrefError(f"cannot copy {src}: not a file, directory or symlink", 1)
    uid, gid = owner or (0, 0)
    os.lchown(dst, uid, gid)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(dst, mode if mode is not None else stat.S_IMODE(st.st_mode))
        os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))


def _copy_tree(
    src: str, dst: str, owner: tuple[int, int] | None, mode: int | None, keep: Any = None
) -> None:
    """Copy `src` (file, link or the CONTENTS of a dir) to `dst`; `keep(rel)` filters."""
    if not os.path.isdir(src) or os.path.islink(src):
        _copy_entry(src, dst, owner, mode)
        return
    _copy_entry(src, dst, owner, mode)
    for dirpath, dirnames, filenames in os.walk(src):
        rel_dir = os.path.relpath(dirpath, src)
        for name in sorted(dirnames + filenames):
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if keep is not None and not keep(rel):
                if name in dirnames:
                    dirnames.remove(name)
                continue
            _copy_entry(os.path.join(dirpath, name), os.path.join(dst, rel), owner, mode)


def _extract(archive: str, dst: str, owner: tuple[int, int] | None) -> None:
    """ADD of a local archive: unpacked into dst with the layer extractor's safety rules."""
    import bz2
    import gzip
    import lzma

    from . import layers
    from .rmtree import remove_tree

    with open(archive, "rb") as f:
        head = f.read(6)
    opener = (
        gzip.open
        if head.startswith(b"\x1f\x8b")
        else bz2.open
        if head.startswith(b"BZh")
        else lzma.open
        if head.startswith(b"\xfd7zXZ")
        else open
    )
    tmp = scratch.name(dst)
    os.mkdir(tmp)
    try:
        with opener(archive, "rb") as src:
            layers.apply_tar(src, tmp, allow_devices=False)
        os.makedirs(dst, exist_ok=True)
        _copy_tree(tmp, dst, owner, None)
    finally:
        remove_tree(tmp)


def build_copy_layer(
    b: Any,
    ins: str,
    flags: dict[str, str],
    srcs: list[str],
    dest: str,
    dest_is_dir: bool,
    from_stage: str | None,
    where: str,
    parent_id: str,
) -> str:
    """Stage the copied files at their destination and store them as one layer."""
    from .errors import BuildError
    from .rmtree import remove_tree

    images = b.images
    stage = scratch.path(images.layers, ".copy")
    os.makedirs(stage)
    try:
        with contextlib.ExitStack() as stack:
            view = stack.enter_context(merged_view(images, parent_id))
            owner = _owner(flags["chown"], view) if flags.get("chown") else None
            mode = int(flags["chmod"], 8) if flags.get("chmod") else None
            if from_stage is not None:
                src_root = stack.enter_context(
                    merged_view(images, b._stage_image(from_stage, where))
                )
                paths = []
                for s in srcs:
                    rel = os.path.normpath(s).lstrip("/")
                    if not os.path.lexists(os.path.join(src_root, rel)):
                        raise BuildError(where, f"{s}: not found in {from_stage}")
                    paths.append(rel)
            else:
                src_root = b.ctx.root
                paths = [p for s in srcs for p in b.ctx.sources(s, where)]

            in_base = os.path.join(view, dest.strip("/"))
            multi = (
                len(paths) > 1
                or dest_is_dir
                or (os.path.isdir(in_base) and not os.path.islink(in_base))
            )
            _ensure_parents(stage, dest.rstrip("/") + "/x" if multi else dest, view)
            for rel in paths:
                src = os.path.join(src_root, rel) if rel != "." else src_root
                keep = None
                if from_stage is None:
                    ignore = b.ctx.ignore

                    def keep(r: str, top: str = rel, ig: Any = ignore) -> bool:
                        return not ig.ignored(os.path.normpath(os.path.join(top, r)))

                is_dir = os.path.isdir(src) and not os.path.islink(src)
                if ins == "ADD" and not is_dir and _is_archive(src):
                    _extract(src, os.path.join(stage, dest.strip("/")), owner)
                    continue
                if is_dir:
                    target = os.path.join(stage, dest.strip("/"))
                elif multi:
                    target = os.path.join(stage, dest.strip("/"), os.path.basename(rel))
                else:
                    target = os.path.join(stage, dest.strip("/"))
                os.makedirs(os.path.dirname(target), exist_ok=True)
                _copy_tree(src, target, owner, mode, keep if is_dir else None)
        return images.add_layer_from_dir(stage)
    except BaseException:
        if os.path.exists(stage):
            remove_tree(stage)
        raise
