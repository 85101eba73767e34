"""Errors that end an rref command with a one-line message and a docker-like exit code."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

# docker's conventions: 125 = the runtime itself failed, 126 = the command
# cannot be executed, 127 = the command was not found, 1 = a failed request.
EXIT_RUNTIME = 125
EXIT_CANNOT_EXEC = 126
EXIT_NOT_FOUND = 127
EXIT_FAILED = 1


#: Control characters as their escapes: a message quoting user input (a name, a path, a
#: tar entry) stays the one line a caller reads, whatever that input holds.
_ESCAPED = {c: repr(chr(c))[1:-1] for c in (*range(32), 127)}


class RrefError(Exception):
    """A user-facing failure: printed as `rref: <message>`, exits with `code`."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message.translate(_ESCAPED))
        self.code = code


class UsageError(RrefError):
    """Bad flags or arguments (docker exits 125 for these)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_RUNTIME)


class NotFound(RrefError):
    """A container, image or name that does not exist."""


class CgroupError(RrefError):
    """A cgroup operation failed or a limit was refused; one-line message.

    Defined here, not in `cgroups`, so that the resource table can refuse a
    limit without importing the cgroup package (and the package can read the
    table without an import loop).
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_RUNTIME)


class BuildError(RrefError):
    """A build failure: `Dockerfile:LINE: what` (docker build exits 1)."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}", 1)


def exit_now(code: int) -> NoReturn:
    """Flush and leave without interpreter teardown: start-up and exit are on the hot path of
    every rref command (a broken stdout pipe still exits 141)."""
    import os
    import sys

    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        code = code or 141
    os._exit(code)
