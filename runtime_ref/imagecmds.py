"""`rref save`, `load`, `pull` and `push`: image transport commands (see cli.COMMANDS).

Like cli.py, the work modules are imported inside the command functions, so
that importing this module costs nothing on the `rref run` path.
"""

from __future__ import annotations

import argparse
import sys

from .cliargs import open_images
from .errors import EXIT_RUNTIME, RrefError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


def _say(line: str) -> None:
    print(line, flush=True)


def cmd_save(a: argparse.Namespace) -> int:
    from . import oci_layout

    out = a.output
    if out is None:
        if sys.stdout.isatty():
            raise RrefError(
                "cowardly refusing to save to a terminal. Use the -o flag or redirect", EXIT_RUNTIME
            )
        out = "-"
    oci_layout.save(open_images(a), list(a.images), out)
    return 0


def cmd_load(a: argparse.Namespace) -> int:
    import os

    from . import oci_layout

    path, tmp = a.input, None
    if path is None:
        if sys.stdin.isatty():
            raise RrefError("requested load from stdin, but stdin is empty", EXIT_RUNTIME)
        tmp = _spool_stdin()
        path = tmp
    try:
        loaded = oci_layout.load(open_images(a), path, log=None if a.quiet else _say)
    finally:
        if tmp is not None:
            os.unlink(tmp)
    for name in loaded:
        print(f"Loaded image ID: {name}" if name.startswith("sha256:") else f"Loaded image: {name}")
    return 0


def _spool_stdin() -> str:
    """A tar on a pipe is not seekable: keep it in a temp file while it is read."""
    import os
    import shutil
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix="rref-load-", suffix=".tar")
    try:
        with os.fdopen(fd, "wb") as f:
            shutil.copyfileobj(sys.stdin.buffer, f, 1 << 20)
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def cmd_pull(a: argparse.Namespace) -> int:
    from . import registry

    image_id = registry.pull(open_images(a), a.ref, log=None if a.quiet else _say)
    # like docker, the name pulled; a pull by digest names no tag, so its image id
    print(image_id if "@" in a.ref else _name(a.ref))
    return 0


def cmd_push(a: argparse.Namespace) -> int:
    from . import registry

    digest = registry.push(open_images(a), a.ref, log=None if a.quiet else _say)
    if a.quiet:
        print(digest)
    return 0


def _name(ref: str) -> str:
    from .images import normalize_ref

    return normalize_ref(ref)


def _opts_save(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="write to FILE (atomically) instead of standard output",
    )
    sp.add_argument("images", nargs="+")


def _opts_load(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "-i",
        "--input",
        metavar="FILE",
        help="read from FILE (a tar or an OCI layout directory) instead of stdin",
    )
    sp.add_argument("-q", "--quiet", action="store_true")


def _opts_pull(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("-q", "--quiet", action="store_true")
    sp.add_argument("ref", metavar="NAME[:TAG|@DIGEST]")


def _opts_push(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("-q", "--quiet", action="store_true")
    sp.add_argument("ref", metavar="NAME[:TAG]")


# command -> (handler, argument set-up); cli.COMMANDS says which module has it
HANDLERS: dict[
    str, tuple[Callable[[argparse.Namespace], int], Callable[[argparse.ArgumentParser], None]]
] = {
    "save": (cmd_save, _opts_save),
    "load": (cmd_load, _opts_load),
    "pull": (cmd_pull, _opts_pull),
    "push": (cmd_push, _opts_push),
}
