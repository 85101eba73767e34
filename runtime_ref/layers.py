"""Layer digests: the diff_id of a layer is the sha256 of its uncompressed tar."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class _HashWriter(io.RawIOBase):
    def __init__(self) -> None:
        self.h = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        self.h.update(b)
        return len(b)


def tar_digest(tree: str) -> str:
    """sha256 of a deterministic tar of `tree` (sorted, numeric owners, zero mtimes)."""
    w = _HashWriter()
    with tarfile.open(fileobj=w, mode="w|", format=tarfile.PAX_FORMAT) as tf:
        for dirpath, dirnames, filenames in os.walk(tree):
            dirnames.sort()
            for name in sorted(dirnames + filenames):
                full = os.path.join(dirpath, name)
                info = tf.gettarinfo(full, os.path.relpath(full, tree))
                info.mtime = 0
                info.uname = info.gname = ""
                if info.isreg():
                    with open(full, "rb") as f:
                        tf.addfile(info, f)
                else:
                    tf.addfile(info)
    return w.h.hexdigest()
