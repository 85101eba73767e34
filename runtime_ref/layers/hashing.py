"""Hash a layer as it streams past (digests of blobs and diff_ids)."""

from __future__ import annotations

import io

from ._common import (
    _CHUNK,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, BinaryIO

    from ._common import Source


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

    def __init__(self, f: Source) -> None:
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
