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

One module per job: `hashing`, `tarwrite` (the tar writer), `diff` (overlay
upper -> changeset), `apply` (changeset -> layer dir), `_common` (the error
and the whiteout/overlay names they share); this front re-exports them.

Tars written here are PAX, deterministic (each directory's entries sorted by
name, every directory before its contents: os.walk order), with numeric
owners, no user/group names and mtimes in whole seconds.
"""

from __future__ import annotations

from ._common import (
    OVL_METACOPY,
    OVL_OPAQUE,
    OVL_PREFIX,
    OVL_REDIRECT,
    WH_META_PREFIX,
    WH_OPAQUE,
    WH_PREFIX,
    LayerError,
)
from .apply import apply_tar
from .diff import changes, write_changeset
from .hashing import HashingReader, HashingWriter
from .tarwrite import _TarSink, tar_digest, write_tree

__all__ = [
    "OVL_METACOPY",
    "OVL_OPAQUE",
    "OVL_PREFIX",
    "OVL_REDIRECT",
    "WH_META_PREFIX",
    "WH_OPAQUE",
    "WH_PREFIX",
    "HashingReader",
    "HashingWriter",
    "LayerError",
    "_TarSink",
    "apply_tar",
    "changes",
    "tar_digest",
    "write_changeset",
    "write_tree",
]
