"""Crash-safe on-disk state: atomic JSON writes and one flock per container.

Layout under the state root (default /var/lib/rref):
  containers/<id>/config.json   what the container is (spec, image, names)
  containers/<id>/state.json    what it is doing (status, pid, exit code, times)
  containers/<id>/lock          flock held while a command changes that container
  containers.lock               held while names are checked and claimed
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time

from . import jsonc as json
from . import scratch
from .errors import NotFound, RrefError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

DEFAULT_ROOT = "/var/lib/rref"


def now_iso() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


def write_json(path: str, data: Any, durable: bool = True) -> None:
    """Write-to-temp, rename: readers see the old or the new file, never half.

    `durable` adds an fsync before the rename so a power cut cannot leave an
    empty file; runtime state skips it (it is reconciled against /proc anyway).
    A failed write leaves no temporary behind (a killed one leaves an owned
    scratch name that `scratch.reclaim` removes). On a full disk, a record that
    does not grow is rewritten in place instead: recording that something was
    stopped or removed must never need new space.
    """
    text = json.dumps(data)  # compact: the C encoder, not the indenting Python one
    tmp = scratch.name(path)
    try:
        with open(tmp, "w") as f:
            f.write(text)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if e.errno not in (errno.ENOSPC, errno.EDQUOT) or not _rewrite_in_place(path, text):
            raise


def _rewrite_in_place(path: str, text: str) -> bool:
    """Overwrite an existing file with `text` padded by blanks to its old length.

    JSON allows trailing whitespace, and overwriting allocated bytes needs no
    new blocks. False when the new text is longer than the old file.
    """
    data = text.encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        old = os.fstat(fd).st_size
        if len(data) > old:
            return False
        os.pwrite(fd, data + b" " * (old - len(data)), 0)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def read_json(path: str) -> Any:
    with open(path) as f:
        return json.load(f)


def _open_lock(path: str) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as e:
        if e.errno not in (errno.EROFS, errno.EACCES, errno.ENOSPC, errno.EDQUOT):
            raise
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)  # flock needs no write access


@contextlib.contextmanager
def flock(path: str, shared: bool = False) -> Iterator[None]:
    fd = _open_lock(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class Store:
    """The container half of the state root."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self.cdir = os.path.join(self.root, "containers")

    def ensure(self) -> None:
        os.makedirs(self.cdir, mode=0o700, exist_ok=True)

    def make_traversable(self, cid: str) -> None:
        """A user-namespaced init must reach its files: search (not read) rights on the way."""
        for d in (self.root, self.cdir, self.path(cid)):
            os.chmod(d, os.stat(d).st_mode | 0o011)

    def names_lock(self) -> contextlib.AbstractContextManager[None]:
        self.ensure()
        return flock(os.path.join(self.root, "containers.lock"))

    def path(self, cid: str, *parts: str) -> str:
        return os.path.join(self.cdir, cid, *parts)

    def lock(self, cid: str) -> contextlib.AbstractContextManager[None]:
        return flock(self.path(cid, "lock"))

    @contextlib.contextmanager
    def claim(self, cid: str) -> Iterator[str]:
        """Make the container's directory with its lock already held, for the block.

        The directory is made under a scratch name and renamed into place, so
        nobody ever sees it without a holder of its lock: a record without
        config.json or state.json whose lock is free was left by a killed
        command (`is_orphan`), one whose lock is held is still being made.
        """
        self.ensure()
        stage = scratch.path(self.cdir)
        os.mkdir(stage, 0o700)
        fd = -1
        try:
            fd = os.open(os.path.join(stage, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.rename(stage, self.path(cid))
        except BaseException:
            if fd >= 0:
                os.close(fd)
            from .rmtree import remove_tree

            with contextlib.suppress(OSError):
                remove_tree(stage)
            raise
        try:
            yield self.path(cid)
        finally:
            os.close(fd)

    def is_orphan(self, cid: str) -> bool:
        """An incomplete record (no config or state) that no live command holds."""
        if all(os.path.exists(self.path(cid, f)) for f in ("config.json", "state.json")):
            return False
        try:
            fd = _open_lock(self.path(cid, "lock"))
        except OSError:
            return False  # the directory went away: removed meanwhile
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        finally:
            os.close(fd)
        return os.path.isdir(self.path(cid))

    def bury(self, cid: str) -> str:
        """Rename a record out of sight (atomically); return the scratch path to delete.

        A remover killed after this leaves a scratch tree `system prune`
        reclaims, never a half-deleted record that looks like a container.
        """
        tomb = scratch.path(self.cdir)
        os.rename(self.path(cid), tomb)
        return tomb

    def ids(self) -> list[str]:
        try:
            return sorted(d for d in os.listdir(self.cdir) if len(d) == 64)
        except FileNotFoundError:
            return []

    def new_id(self) -> str:
        while True:
            cid = os.urandom(32).hex()
            if not cid[:12].isdigit() and not os.path.exists(self.path(cid)):
                return cid

    def config(self, cid: str) -> dict[str, Any]:
        return self._load(cid, "config.json")

    def state(self, cid: str) -> dict[str, Any]:
        return self._load(cid, "state.json")

    def _load(self, cid: str, name: str) -> dict[str, Any]:
        path = self.path(cid, name)
        try:
            data = read_json(path)
        except FileNotFoundError:
            raise NotFound(f"No such container: {cid[:12]}") from None
        except (ValueError, OSError) as e:
            raise RrefError(f"corrupted state file {path}: {e}") from None
        if not isinstance(data, dict):
            raise RrefError(f"corrupted state file {path}: not a JSON object")
        return data

    def save_config(self, cid: str, data: dict[str, Any]) -> None:
        write_json(self.path(cid, "config.json"), data)

    def save_state(self, cid: str, data: dict[str, Any]) -> None:
        write_json(self.path(cid, "state.json"), data, durable=False)

    def update_state(self, cid: str, **changes: Any) -> dict[str, Any]:
        """Read-modify-write under the container's lock."""
        with self.lock(cid):
            st = self.state(cid)
            st.update(changes)
            self.save_state(cid, st)
            return st

    def names(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for cid in self.ids():
            with contextlib.suppress(RrefError):
                out[self.config(cid)["Name"].lstrip("/")] = cid
        return out

    def resolve(self, ref: str) -> str:
        """Full id, unique id prefix, or name -> full id (docker's lookup order)."""
        ids = self.ids()
        if ref in ids:
            return ref
        by_name = self.names()
        if ref.lstrip("/") in by_name:
            return by_name[ref.lstrip("/")]
        if len(ref) >= 1 and all(c in "0123456789abcdef" for c in ref):
            matches = [i for i in ids if i.startswith(ref)]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise RrefError(f"multiple containers match prefix {ref}")
        raise NotFound(f"No such container: {ref}")
