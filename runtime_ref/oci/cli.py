"""`rref-oci` (also `rref oci`): runc's command line over rref's core.

Global options come before the command, as with runc. Every failure is one
`rref-oci: ...` line on stderr (and, with --log, one entry in the log file in
the --log-format engines read), exit status 1; `run` and `exec` in the
foreground exit as the container's process did (128 + signal when killed).

--systemd-cgroup is accepted for engines that always pass it: it changes how
linux.cgroupsPath is read (`slice:prefix:name`, see `cgpath`), but rref-oci
never asks systemd for a unit; it makes the cgroup directories itself.
--no-new-keyring is accepted and has nothing to do: rref-oci never makes a
session keyring.
"""

from __future__ import annotations

import os
import sys

from .. import jsonc as json
from ..errors import RrefError, exit_now

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable
    from typing import Any, NoReturn

VERSION = "0.1.0"


def _store(a: argparse.Namespace) -> Any:
    from .store import Store

    return Store(a.root)


def cmd_create(a: argparse.Namespace) -> int:
    from . import lifecycle

    _refuse_extra_fds(a)
    lifecycle.create(_store(a), a.id, a.bundle, a.pid_file, a.systemd_cgroup, a.console_socket)
    return 0


def cmd_run(a: argparse.Namespace) -> int:
    from . import lifecycle

    _refuse_extra_fds(a)
    return lifecycle.run(
        _store(a),
        a.id,
        a.bundle,
        a.pid_file,
        a.detach,
        a.keep,
        a.systemd_cgroup,
        a.console_socket,
    )


def _refuse_extra_fds(a: argparse.Namespace) -> None:
    if getattr(a, "preserve_fds", 0):
        raise RrefError("--preserve-fds: passing extra fds is not supported by rref-oci", 1)


def cmd_start(a: argparse.Namespace) -> int:
    from . import lifecycle

    lifecycle.start(_store(a), a.id)
    return 0


def cmd_state(a: argparse.Namespace) -> int:
    from . import lifecycle

    print(json.dumps(lifecycle.state(_store(a), a.id), indent=2))
    return 0


def cmd_kill(a: argparse.Namespace) -> int:
    from . import lifecycle

    lifecycle.kill(_store(a), a.id, lifecycle.parse_signal(a.signal), a.all)
    return 0


def cmd_delete(a: argparse.Namespace) -> int:
    from . import lifecycle

    lifecycle.delete(_store(a), a.id, a.force)
    return 0


def cmd_pause(a: argparse.Namespace) -> int:
    from . import lifecycle

    lifecycle.pause(_store(a), a.id)
    return 0


def cmd_resume(a: argparse.Namespace) -> int:
    from . import lifecycle

    lifecycle.resume(_store(a), a.id)
    return 0


def cmd_exec(a: argparse.Namespace) -> int:
    from .execproc import ExecOptions, exec_in

    if a.process and a.args:
        raise RrefError("exec: give --process FILE or a command, not both", 1)
    o = ExecOptions(
        a.args,
        a.process,
        a.env,
        a.cwd,
        a.user,
        a.detach,
        a.pid_file,
        a.no_new_privs,
        a.tty,
        a.console_socket,
    )
    return exec_in(_store(a), a.id, o)


def cmd_ps(a: argparse.Namespace) -> int:
    from . import lifecycle

    pids = lifecycle.pids(_store(a), a.id)
    if a.format == "json":
        print(json.dumps(pids))
        return 0
    import subprocess

    p = subprocess.run(["ps", *(a.ps_args or ["-ef"])], capture_output=True, text=True)
    if p.returncode != 0:
        raise RrefError(f"ps: {p.stderr.strip() or 'failed'}", 1)
    lines = p.stdout.splitlines()
    if not lines or "PID" not in lines[0].split():
        raise RrefError("ps: its output has no PID column", 1)
    col = lines[0].split().index("PID")
    print(lines[0])
    for line in lines[1:]:
        f = line.split()
        if len(f) > col and f[col].isdigit() and int(f[col]) in pids:
            print(line)
    return 0


def cmd_list(a: argparse.Namespace) -> int:
    from .store import NoContainer, oci_state

    store = _store(a)
    states = []
    for cid in store.ids():
        try:
            states.append(oci_state(store, store.load(cid)))
        except (NoContainer, RrefError):
            continue
    if a.format == "json":
        print(json.dumps(states))
        return 0
    if a.quiet:
        for s in states:
            print(s["id"])
        return 0
    rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
    rows += [
        (s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"], "root") for s in states
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    for r in rows:
        print("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0


def cmd_spec(a: argparse.Namespace) -> int:
    from .defaults import default_config

    path = os.path.join(a.bundle or ".", "config.json")
    if os.path.exists(path):
        raise RrefError(f"{path} already exists; remove it first", 1)
    with open(path, "w") as f:
        json.dump(default_config(), f, indent=2)
        f.write("\n")
    return 0


def cmd_features(a: argparse.Namespace) -> int:
    from .defaults import features

    print(json.dumps(features(), indent=2))
    return 0


def cmd_update(a: argparse.Namespace) -> int:
    from . import lifecycle
    from .config import ConfigError, _resources, read_object

    res = read_object(a.resources, "--resources")
    try:
        _resources(res)
    except ConfigError as e:
        raise RrefError(str(e).replace("config.json: linux.resources", "--resources"), 1) from None
    lifecycle.update(_store(a), a.id, res)
    return 0


def _id(p: argparse.ArgumentParser) -> None:
    p.add_argument("id", metavar="ID")


def _setup_create(p: argparse.ArgumentParser, run: bool = False) -> None:
    p.add_argument("-b", "--bundle", default=".", help="the bundle directory (default: .)")
    p.add_argument("--pid-file", help="write the init's pid here")
    p.add_argument("--console-socket", help="unix socket to send the pty master to")
    p.add_argument("--no-pivot", action="store_true", help="accepted; pivot_root is always used")
    p.add_argument("--no-new-keyring", action="store_true", help="accepted; no keyring is made")
    p.add_argument("--preserve-fds", type=int, default=0, help="(only 0 is supported)")
    if run:
        p.add_argument("-d", "--detach", action="store_true", help="return once started")
        p.add_argument("--keep", action="store_true", help="keep the stopped container")
    _id(p)


def _setup_exec(p: argparse.ArgumentParser) -> None:
    p.add_argument("-p", "--process", help="a process.json to run instead of ARGS")
    p.add_argument("-d", "--detach", action="store_true")
    p.add_argument("--pid-file")
    p.add_argument("-t", "--tty", action="store_true", help="a pty (needs --console-socket)")
    p.add_argument("--console-socket", help="unix socket to send the pty master to")
    p.add_argument("-e", "--env", action="append", default=[], help="KEY=VALUE")
    p.add_argument("--cwd")
    p.add_argument("-u", "--user", help="uid[:gid]")
    p.add_argument("--no-new-privs", action="store_true")
    _id(p)
    p.add_argument("args", nargs="...")  # argparse.REMAINDER


def _setup_kill(p: argparse.ArgumentParser) -> None:
    p.add_argument("-a", "--all", action="store_true", help="signal every process")
    _id(p)
    p.add_argument("signal", nargs="?", default="TERM")


def _setup_delete(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--force", action="store_true", help="kill a running container first")
    _id(p)


def _setup_ps(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--format", choices=("table", "json"), default="table")
    _id(p)
    p.add_argument("ps_args", nargs="...")  # argparse.REMAINDER


def _setup_list(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--format", choices=("table", "json"), default="table")
    p.add_argument("-q", "--quiet", action="store_true")


def _setup_spec(p: argparse.ArgumentParser) -> None:
    p.add_argument("-b", "--bundle", help="write config.json here (default: .)")
    p.add_argument("--rootless", action="store_true", help="(refused)")


def _setup_update(p: argparse.ArgumentParser) -> None:
    p.add_argument("-r", "--resources", required=True, help="linux.resources JSON (- = stdin)")
    _id(p)


def _nothing(p: argparse.ArgumentParser) -> None:
    pass


COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int], Any, str]] = {
    "create": (cmd_create, _setup_create, "create a container from a bundle"),
    "start": (cmd_start, _id, "run the user program of a created container"),
    "run": (cmd_run, lambda p: _setup_create(p, run=True), "create and start a container"),
    "state": (cmd_state, _id, "print the container's OCI state"),
    "kill": (cmd_kill, _setup_kill, "send a signal (default TERM) to the init"),
    "delete": (cmd_delete, _setup_delete, "remove a stopped container"),
    "exec": (cmd_exec, _setup_exec, "run another process in the container"),
    "ps": (cmd_ps, _setup_ps, "list the container's processes"),
    "list": (cmd_list, _setup_list, "list containers"),
    "pause": (cmd_pause, _id, "freeze every process of the container"),
    "resume": (cmd_resume, _id, "thaw a paused container"),
    "update": (cmd_update, _setup_update, "change the container's resource limits"),
    "spec": (cmd_spec, _setup_spec, "write a default config.json"),
    "features": (cmd_features, _nothing, "what this runtime supports, as JSON"),
}


def build_parser() -> argparse.ArgumentParser:
    from ..cliargs import Parser
    from .store import DEFAULT_ROOT

    p = Parser(prog="rref-oci", description="rref as an OCI runtime (runc's command line)")
    p.add_argument("--root", default=DEFAULT_ROOT, help="state root (default %(default)s)")
    p.add_argument("--log", help="append errors (and --debug lines) to this file")
    p.add_argument("--log-format", choices=("text", "json"), default="text")
    p.add_argument(
        "--systemd-cgroup", action="store_true", help="read cgroupsPath as slice:prefix:name"
    )
    p.add_argument("--debug", action="store_true", help="log each command")
    p.add_argument("--rootless", default="false", help="(only false is supported)")
    p.add_argument("-v", "--version", action="store_true", help="print the version")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND", parser_class=Parser)
    for name, (fn, configure, help_) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_)
        sp.set_defaults(func=fn)
        configure(sp)
    return p


# The verbs an engine calls for every container, read without argparse (importing it and
# building the parser cost more than a whole `state`). Anything else, and anything
# unusual in these (abbreviations, `--`, a value that looks like an option, a help
# request), goes to argparse, which gives the same namespace or the error.
_GLOBAL_VALUES = {"--root": "root", "--log": "log", "--log-format": "log_format"}
_GLOBAL_VALUES["--rootless"] = "rootless"
_GLOBAL_FLAGS = {"--systemd-cgroup": "systemd_cgroup", "--debug": "debug"}
_CREATE_VALUES = {
    "-b": "bundle",
    "--bundle": "bundle",
    "--pid-file": "pid_file",
    "--console-socket": "console_socket",
    "--preserve-fds": "preserve_fds",
}
_CREATE_FLAGS = {"--no-pivot": "no_pivot", "--no-new-keyring": "no_new_keyring"}
_RUN_FLAGS = {**_CREATE_FLAGS, "-d": "detach", "--detach": "detach", "--keep": "keep"}
# command -> (options with a value, flags, how many positionals at least / at most)
_FAST: dict[str, tuple[dict[str, str], dict[str, str], int, int]] = {
    "create": (_CREATE_VALUES, _CREATE_FLAGS, 1, 1),
    "run": (_CREATE_VALUES, _RUN_FLAGS, 1, 1),
    "start": ({}, {}, 1, 1),
    "state": ({}, {}, 1, 1),
    "pause": ({}, {}, 1, 1),
    "resume": ({}, {}, 1, 1),
    "kill": ({}, {"-a": "all", "--all": "all"}, 1, 2),
    "delete": ({}, {"-f": "force", "--force": "force"}, 1, 1),
}


def _option(argv: list[str], i: int, values: dict[str, str], flags: dict[str, str]) -> Any:
    """(attribute, value, next index) of the option at argv[i], or None if unusual."""
    opt, eq, value = argv[i].partition("=")
    if opt in flags and not eq:
        return flags[opt], True, i + 1
    if opt not in values:
        return None
    if not eq:
        if i + 1 == len(argv) or argv[i + 1].startswith("-"):
            return None
        value, i = argv[i + 1], i + 1
    return values[opt], value, i + 1


def fast_parse(argv: list[str]) -> Any:
    """argparse's namespace for the common forms of the hot verbs, else None."""
    from .store import DEFAULT_ROOT

    ns: dict[str, Any] = {"root": DEFAULT_ROOT, "log": None, "log_format": "text"}
    ns.update(systemd_cgroup=False, debug=False, rootless="false", version=False)
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        got = _option(argv, i, _GLOBAL_VALUES, _GLOBAL_FLAGS)
        if got is None:
            return None
        ns[got[0]], i = got[1], got[2]
    if i == len(argv) or argv[i] not in _FAST or ns["log_format"] not in ("text", "json"):
        return None
    cmd = argv[i]
    values, flags, least, most = _FAST[cmd]
    ns.update({attr: None for attr in values.values()}, cmd=cmd, func=COMMANDS[cmd][0])
    ns.update({attr: False for attr in flags.values()})
    if values:
        ns.update(bundle=".", preserve_fds=0)
    positionals: list[str] = []
    i += 1
    while i < len(argv):
        if argv[i].startswith("-") and argv[i] != "-":
            got = _option(argv, i, values, flags)
            if got is None:
                return None
            ns[got[0]], i = got[1], got[2]
        else:
            positionals.append(argv[i])
            i += 1
    if not least <= len(positionals) <= most:
        return None
    if not str(ns.get("preserve_fds", 0)).isdigit():
        return None
    if values:
        ns["preserve_fds"] = int(ns["preserve_fds"])
    ns["id"] = positionals[0]
    if cmd == "kill":
        ns["signal"] = positionals[1] if len(positionals) > 1 else "TERM"
    return _Args(ns)


class _Args:
    """What argparse.Namespace is to the handlers: the options as attributes."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)

    def __eq__(self, other: object) -> bool:
        return vars(self) == vars(other)

    __hash__ = None  # type: ignore[assignment]


def _log(a: argparse.Namespace | None, level: str, message: str) -> None:
    if a is None or not a.log:
        return
    from ..state import now_iso

    if a.log_format == "json":
        line = json.dumps({"level": level, "msg": message, "time": now_iso()})
    else:
        line = f"time={json.dumps(now_iso())} level={level} msg={json.dumps(message)}"
    try:
        with open(a.log, "a") as f:
            f.write(line + "\n")
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    a: argparse.Namespace | None = None
    try:
        a = fast_parse(argv) or build_parser().parse_args(argv)
        if a.version:
            from .store import OCI_VERSION

            print(f"rref-oci version {VERSION}\nspec: {OCI_VERSION}")
            return 0
        if not getattr(a, "func", None):
            raise RrefError("a command is required (see rref-oci --help)", 1)
        if a.rootless not in ("false", "auto") and a.rootless:
            raise RrefError("--rootless: rootless containers are not supported", 1)
        if a.debug:
            _log(a, "debug", "rref-oci " + " ".join(argv))
        if os.geteuid() != 0:
            raise RrefError("rref-oci must run as root", 1)
        return int(a.func(a))
    except RrefError as e:
        message = str(e).removeprefix("rref-oci: ")
        print(f"rref-oci: {message}", file=sys.stderr)
        _log(a, "error", message)
        return 1 if e.code in (0, 125) else e.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 141
    except OSError as e:
        where = f" ({e.filename})" if e.filename else ""
        message = f"{e.strerror or e}{where}"
        print(f"rref-oci: {message}", file=sys.stderr)
        _log(a, "error", message)
        return 1


def entry() -> NoReturn:
    """Console-script entry: skip interpreter teardown (start-up and exit are on the hot path)."""
    exit_now(main())
