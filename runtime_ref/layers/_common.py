"""What the layer modules share: the error, the whiteout and overlay names, open flags."""

from __future__ import annotations

import os

from ..errors import EXIT_RUNTIME, RrefError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import io
    from typing import BinaryIO, Protocol, TypeAlias

    # where tars are written: a file, or a hashing wrapper around one
    Sink: TypeAlias = BinaryIO | io.RawIOBase

    class Source(Protocol):
        """Where layer tars are read from: a file, a decompressor, a hashing or tee wrapper."""

        def read(self, n: int = -1, /) -> bytes: ...


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
