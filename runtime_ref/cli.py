"""`rref`: docker's everyday verbs over the reference runtime.

This module is the front: the command table, the parser and `main`. The
commands live in `cli_containers`, `cli_images` and `imagecmds`; only the
module of the command being run is imported (and it imports its work
modules inside the handlers), so that `rref run` loads only what it uses.
Every failure ends as one `rref: ...` line on stderr and a docker-like exit
code (125 for usage and runtime errors).
"""

from __future__ import annotations

import os
import sys

from .cliargs import Parser
from .errors import RrefError, UsageError, exit_now

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import NoReturn

# name -> (module with its handler and argument set-up, one-line help), in --help order.
# `run`/`create` free -h for --hostname.
COMMANDS: dict[str, tuple[str, str]] = {
    "create": ("cli_containers", "create a container"),
    "run": ("cli_containers", "create and start a container"),
    "start": ("cli_containers", "start stopped containers"),
    "exec": ("cli_containers", "run a command in a running container"),
    "stop": ("cli_containers", "stop containers: SIGTERM, then SIGKILL after a timeout"),
    "kill": ("cli_containers", "send a signal to containers"),
    "rm": ("cli_containers", "remove containers"),
    "wait": ("cli_containers", "wait for containers to stop, print exit codes"),
    "logs": ("cli_containers", "print a container's stdout and stderr"),
    "ps": ("cli_containers", "list containers"),
    "inspect": ("cli_containers", "low-level information on containers or images"),
    "images": ("cli_images", "list images"),
    "build": ("cli_images", "build an image from a Dockerfile"),
    "diff": ("cli_images", "changes to a container's filesystem (A/C/D)"),
    "commit": ("cli_images", "create an image from a container's changes"),
    "import": ("cli_images", "create an image from a root filesystem tarball"),
    "rmi": ("cli_images", "remove images"),
    "tag": ("cli_images", "give an image another name"),
    "history": ("cli_images", "show an image's history"),
    "image": ("cli_images", "manage images: ls, rm, prune, inspect, history, tag"),
    "system": ("cli_images", "disk usage (df) and clean-up (prune)"),
    "pause": ("cli_containers", "freeze every process of containers"),
    "unpause": ("cli_containers", "thaw paused containers"),
    "update": ("cli_containers", "change resource limits of containers"),
    "stats": ("cli_containers", "resource usage of running containers"),
    "events": ("cli_containers", "show container events (follows until --until)"),
    "volume": ("cli_images", "manage volumes: create, ls, inspect, rm, prune"),
    "save": ("imagecmds", "save images to an OCI image layout tar"),
    "load": ("imagecmds", "load images from an OCI layout or docker-archive tar"),
    "pull": ("imagecmds", "pull an image from a registry on loopback"),
    "push": ("imagecmds", "push an image to a registry on loopback"),
}
_NO_DASH_H = ("create", "run")


def _command_word(argv: list[str]) -> str | None:
    i = 0
    while i < len(argv):
        if argv[i] == "--root":
            i += 2
        elif argv[i].startswith("--root="):
            i += 1
        else:
            return argv[i]
    return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full parser, or (on the hot path) one with just the command being run."""
    from .state import DEFAULT_ROOT

    p = Parser(prog="rref", description="rref: a small, correct, Docker-like runtime")
    p.add_argument(
        "--root",
        default=os.environ.get("RREF_ROOT", DEFAULT_ROOT),
        help="state root (default %(default)s, or $RREF_ROOT)",
    )
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND", parser_class=Parser)
    for name, (module, help_) in COMMANDS.items():
        if only is not None and name != only:
            continue
        fn, configure = __import__(f"{__package__}.{module}", fromlist=["HANDLERS"]).HANDLERS[name]
        sp = sub.add_parser(name, help=help_, add_help=name not in _NO_DASH_H)
        if name in _NO_DASH_H:
            sp.add_argument("--help", action="help")
        sp.set_defaults(func=fn)
        configure(sp)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["oci"]:  # `rref oci ...` is `rref-oci ...`
        from .oci.cli import main as oci_main

        return oci_main(argv[1:])
    try:
        word = _command_word(argv)
        args = build_parser(word if word in COMMANDS else None).parse_args(argv)
        if not getattr(args, "func", None):
            raise UsageError("rref: a command is required (see rref --help)")
        if os.geteuid() != 0:
            raise RrefError("rref must run as root", 125)
        return args.func(args)
    except RrefError as e:
        print(f"rref: {e}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 141
    except OSError as e:  # a host error nobody translated: still one line, never a traceback
        where = f" ({e.filename})" if e.filename else ""
        print(f"rref: {e.strerror or e}{where}", file=sys.stderr)
        return 125


def entry() -> NoReturn:
    """Console-script entry: skip interpreter teardown, which `rref run` would pay for."""
    exit_now(main())


if __name__ == "__main__":
    entry()
