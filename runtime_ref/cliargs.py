"""What rref's command modules share: the parser class, state-root openers, per-container loops.

A leaf below cli.py and the command modules (cli_containers, cli_images,
imagecmds), so none of them needs another.
"""

from __future__ import annotations

import argparse
import os
import sys

from .errors import RrefError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, NoReturn


class _Formatter(argparse.HelpFormatter):
    """A fixed width: argparse's own default imports shutil on every parser (start-up cost)."""

    def __init__(self, prog: str) -> None:
        cols = os.environ.get("COLUMNS", "")
        super().__init__(prog, width=(int(cols) if cols.isdigit() else 100) - 2)


class Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        # the front prints "rref: " before every error: name the command only
        where = self.prog.removeprefix("rref").strip()
        raise UsageError(f"{where}: {message}" if where else message)


def open_store(args: argparse.Namespace) -> Any:
    from .state import Store

    return Store(args.root)


def open_images(args: argparse.Namespace) -> Any:
    from .images import ImageStore

    return ImageStore(args.root)


def each(a: argparse.Namespace, refs: list[str], fn: Callable[[Any, str], None]) -> int:
    """docker applies multi-container verbs to each, reports failures, exits 1 if any."""
    st = open_store(a)
    code = 0
    for ref in refs:
        try:
            fn(st, st.resolve(ref))
            print(ref)
        except RrefError as e:
            print(f"rref: {e}", file=sys.stderr)
            code = 1
    return code
