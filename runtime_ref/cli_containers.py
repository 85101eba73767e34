"""`rref` commands on containers: create/run/start/exec, stop/kill/rm, ps, logs, inspect, events,
pause, update, stats.

The work modules are imported inside the handlers, so that `rref run` loads only what it uses.
"""

from __future__ import annotations

import argparse
import os

from .cliargs import each, open_images, open_store
from .errors import RrefError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def _signal(name: str) -> int:
    import signal

    s = name.upper()
    if s.isdigit():
        return int(s)
    try:
        return int(signal.Signals[s if s.startswith("SIG") else "SIG" + s])
    except (KeyError, ValueError):
        raise UsageError(f"invalid signal: {name}") from None


def _create_options(a: argparse.Namespace, auto_remove: bool = False) -> Any:
    from .containers import CreateOptions

    if not a.image:
        raise UsageError("requires at least 1 argument: IMAGE [COMMAND] [ARG...]")
    entry = None
    if a.entrypoint is not None:
        import shlex

        entry = shlex.split(a.entrypoint) if a.entrypoint else []
    return CreateOptions(
        image=a.image,
        command=list(a.command),
        entrypoint=entry,
        name=a.name,
        hostname=a.hostname,
        env=_env(a),
        workdir=a.workdir,
        user=a.user,
        read_only=a.read_only,
        network=a.network,
        auto_remove=auto_remove,
        interactive=a.interactive,
        cap_add=a.cap_add,
        cap_drop=a.cap_drop,
        uidmap=a.uidmap,
        gidmap=a.gidmap,
        userns_remap=a.userns_remap,
        volumes=a.volume,
        mounts=a.mount,
        tmpfs=a.tmpfs,
        privileged=a.privileged,
        security_opt=a.security_opt,
        publish=a.publish,
        resources={k: getattr(a, k) for k in _limit_flags()},
        bridge=os.environ.get("RREF_BRIDGE"),
        bridge_subnet=os.environ.get("RREF_BRIDGE_SUBNET"),
        cgroup_parent=a.cgroup_parent,
    )


def _env(a: argparse.Namespace) -> list[str]:
    env = list(a.env or [])
    for path in a.env_file or []:
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError as e:
            raise UsageError(f"cannot read env file {path}: {e.strerror}") from None
        for n, line in enumerate(raw.splitlines(), 1):
            try:
                text = line.decode()
            except UnicodeDecodeError:
                raise UsageError(
                    f"env file {path} contains invalid utf8 bytes at line {n}"
                ) from None
            if "\0" in text:
                raise UsageError(f"env file {path} contains a NUL byte at line {n}")
            text = text.strip()
            if text and not text.startswith("#"):
                env.append(text)
    return env


def _create(a: argparse.Namespace, auto_remove: bool = False) -> str:
    """docker run/create report every failure to create as a runtime error (125)."""
    from . import containers
    from .errors import EXIT_FAILED, EXIT_RUNTIME

    try:
        return containers.create(open_store(a), open_images(a), _create_options(a, auto_remove))
    except RrefError as e:
        if e.code == EXIT_FAILED:
            e.code = EXIT_RUNTIME
        raise


def cmd_create(a: argparse.Namespace) -> int:
    print(_create(a))
    return 0


def cmd_run(a: argparse.Namespace) -> int:
    from . import lifecycle

    store = open_store(a)
    cid = _create(a, auto_remove=a.rm)
    if a.detach:
        try:
            lifecycle.start(store, cid)
        except RrefError:
            if a.rm:
                _remove_quietly(store, cid)
            raise
        print(cid)
        return 0
    return lifecycle.start(store, cid, attach=True, stdin_fd=0 if a.interactive else None)


def _remove_quietly(store: Any, cid: str) -> None:
    import contextlib

    from . import containers

    with contextlib.suppress(RrefError, OSError):
        containers.remove(store, cid, force=True)


def cmd_start(a: argparse.Namespace) -> int:
    from . import lifecycle

    store = open_store(a)
    code = 0
    for ref in a.containers:
        cid = store.resolve(ref)
        if a.attach:
            code = lifecycle.start(store, cid, attach=True, stdin_fd=0 if a.interactive else None)
        else:
            lifecycle.start(store, cid)
            print(ref)
    return code


def cmd_exec(a: argparse.Namespace) -> int:
    from . import lifecycle

    store = open_store(a)
    return lifecycle.exec_in(
        store,
        store.resolve(a.container),
        list(a.command),
        _env(a),
        a.workdir,
        a.user,
        detach=a.detach,
        interactive=a.interactive,
    )


def cmd_stop(a: argparse.Namespace) -> int:
    from . import lifecycle

    if a.time < 0:
        raise UsageError(f"invalid stop timeout: {a.time}")
    sig = _signal(a.signal)
    return each(a, a.containers, lambda s, c: lifecycle.stop(s, c, a.time, sig))


def cmd_kill(a: argparse.Namespace) -> int:
    from . import lifecycle

    sig = _signal(a.signal)
    return each(a, a.containers, lambda s, c: lifecycle.kill(s, c, sig))


def cmd_rm(a: argparse.Namespace) -> int:
    from . import containers

    return each(
        a, a.containers, lambda s, c: containers.remove(s, c, force=a.force, volumes=a.volumes)
    )


def cmd_wait(a: argparse.Namespace) -> int:
    from . import lifecycle

    store = open_store(a)
    for ref in a.containers:
        print(lifecycle.wait(store, store.resolve(ref)))
    return 0


def cmd_logs(a: argparse.Namespace) -> int:
    from . import lifecycle

    store = open_store(a)
    tail = None if a.tail in (None, "all") else _int(a.tail, "--tail")
    lifecycle.logs(store, store.resolve(a.container), a.follow, a.timestamps, tail)
    return 0


def _int(v: str, flag: str) -> int:
    try:
        return int(v)
    except ValueError:
        raise UsageError(f"invalid value for {flag}: {v!r}") from None


def cmd_events(a: argparse.Namespace) -> int:
    import json
    import time

    from . import events

    since = events.parse_time(a.since) if a.since else None
    until = events.parse_time(a.until) if a.until else None
    filters = events.parse_filters(a.filter)
    for ev in events.read(
        a.root, since, until, filters, follow=until is None or until > time.time()
    ):
        if a.format == "json" or a.format == "{{json .}}":
            line = json.dumps(ev)
        elif a.format:
            from .template import render

            line = render(a.format, ev)
        else:
            t = ev["timeNano"]
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t // 1_000_000_000))
            attrs = ", ".join(f"{k}={v}" for k, v in sorted(ev["Actor"]["Attributes"].items()))
            line = (
                f"{stamp}.{t % 1_000_000_000:09d}Z {ev['Type']} {ev['Action']} {ev['id']} ({attrs})"
            )
        print(line, flush=True)
    return 0


def cmd_pause(a: argparse.Namespace) -> int:
    from . import lifecycle

    return each(a, a.containers, lifecycle.pause)


def cmd_unpause(a: argparse.Namespace) -> int:
    from . import lifecycle

    return each(a, a.containers, lifecycle.unpause)


def cmd_update(a: argparse.Namespace) -> int:
    from . import lifecycle

    flags = {k: getattr(a, k) for k in _limit_flags()}
    return each(a, a.containers, lambda s, c: lifecycle.update(s, c, flags))


def cmd_stats(a: argparse.Namespace) -> int:
    import json

    from . import lifecycle

    if not a.no_stream:
        raise UsageError("stats: only --no-stream is supported")
    store = open_store(a)
    rows = []
    for ref in a.containers or store.ids():
        cid = store.resolve(ref)
        try:
            s = lifecycle.stats(store, cid)
        except RrefError:
            if a.containers:
                raise
            continue
        rows.append((cid, store.config(cid)["Name"].lstrip("/"), s))
    if a.format == "json":
        for cid, name, s in rows:
            print(json.dumps({"ID": cid, "Name": name, **s}))
        return 0
    print(f"{'CONTAINER ID':<14}{'NAME':<22}{'CPU SEC':>10}{'MEM USAGE / LIMIT':>26}{'PIDS':>7}")
    for cid, name, s in rows:
        mem, lim = s["memory"].get("usage") or 0, s["memory"].get("limit")
        lim_s = "unlimited" if lim is None else f"{lim / 2**20:.1f}MiB"
        cpu = (s["cpu"].get("usage_ns") or 0) / 1e9
        print(
            f"{cid[:12]:<14}{name[:21]:<22}{cpu:>10.2f}"
            f"{f'{mem / 2**20:.1f}MiB / {lim_s}':>26}{s['pids'].get('current') or 0:>7}"
        )
    return 0


def cmd_ps(a: argparse.Namespace) -> int:
    from . import view

    view.ps(open_store(a), all_=a.all, quiet=a.quiet, no_trunc=a.no_trunc)
    return 0


def cmd_inspect(a: argparse.Namespace) -> int:
    from . import view

    return view.inspect(open_store(a), open_images(a), a.targets, a.format, a.type)


def _limit_flags() -> tuple[str, ...]:
    from .limits import FLAGS

    return FLAGS


# -- argument set-up --------------------------------------------------------------


def _limit_opts(sp: argparse.ArgumentParser) -> None:
    """docker's resource flags, from the resource table; shared by run/create and update."""
    from .resources import cli_flags

    for _, flags, kind in cli_flags():
        if kind == "switch":
            sp.add_argument(*flags, action="store_true", default=None)
        else:
            sp.add_argument(*flags)


def _container_opts(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--name")
    sp.add_argument("-h", "--hostname")
    sp.add_argument("-e", "--env", action="append")
    sp.add_argument("--env-file", action="append")
    sp.add_argument("-w", "--workdir")
    sp.add_argument("-u", "--user")
    sp.add_argument("--entrypoint")
    sp.add_argument("--read-only", action="store_true")
    sp.add_argument("--network", "--net", default="none")
    sp.add_argument("-i", "--interactive", action="store_true")
    sp.add_argument("--cap-add", action="append", default=[])
    sp.add_argument("--cap-drop", action="append", default=[])
    sp.add_argument("--uidmap", action="append", default=[])
    sp.add_argument("--gidmap", action="append", default=[])
    sp.add_argument("--userns-remap")
    sp.add_argument("-v", "--volume", action="append", default=[])
    sp.add_argument("--mount", action="append", default=[])
    sp.add_argument("--tmpfs", action="append", default=[])
    sp.add_argument("--privileged", action="store_true")
    sp.add_argument("--cgroup-parent")
    sp.add_argument("--security-opt", action="append", default=[])
    sp.add_argument("-p", "--publish", action="append", default=[])
    _limit_opts(sp)
    sp.add_argument("image", nargs="?")
    sp.add_argument("command", nargs=argparse.REMAINDER)


def _opts_create(sp: argparse.ArgumentParser) -> None:
    _container_opts(sp)


def _opts_run(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("-d", "--detach", action="store_true")
    sp.add_argument("--rm", action="store_true")
    _container_opts(sp)


def _opts_start(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("-a", "--attach", action="store_true")
    sp.add_argument("-i", "--interactive", action="store_true")
    sp.add_argument("containers", nargs="+")


def _opts_exec(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("-d", "--detach", action="store_true")
    sp.add_argument("-i", "--interactive", action="store_true")
    sp.add_argument("-e", "--env", action="append")
    sp.add_argument("--env-file", action="append")
    sp.add_argument("-w", "--workdir")
    sp.add_argument("-u", "--user")
    sp.add_argument("container")
    sp.add_argument("command", nargs=argparse.REMAINDER)


def _opts_stop(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("-t", "--time", type=int, default=10)
    sp.add_argument("-s", "--signal", default="SIGTERM")
    sp.add_argument("containers", nargs="+")


def _opts_kill(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("-s", "--signal", default="SIGKILL")
    sp.add_argument("containers", nargs="+")


def _opts_rm(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("-f", "--force", action="store_true")
    sp.add_argument("-v", "--volumes", action="store_true")
    sp.add_argument("containers", nargs="+")


def _opts_containers(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("containers", nargs="+")


def _opts_logs(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("-f", "--follow", action="store_true")
    sp.add_argument("-t", "--timestamps", action="store_true")
    sp.add_argument("-n", "--tail")
    sp.add_argument("container")


def _opts_ps(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("-a", "--all", action="store_true")
    sp.add_argument("-q", "--quiet", action="store_true")
    sp.add_argument("--no-trunc", action="store_true")


def _opts_inspect(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("-f", "--format")
    sp.add_argument("--type", choices=["container", "image"])
    sp.add_argument("targets", nargs="+")


def _opts_events(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--since")
    sp.add_argument("--until")
    sp.add_argument("-f", "--filter", action="append", default=[])
    sp.add_argument("--format")


def _opts_update(sp: argparse.ArgumentParser) -> None:
    _limit_opts(sp)
    sp.add_argument("containers", nargs="+")


def _opts_stats(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--no-stream", action="store_true")
    sp.add_argument("--format")
    sp.add_argument("containers", nargs="*")


# command -> (handler, argument set-up); cli.COMMANDS says which module has it
HANDLERS: dict[
    str, tuple[Callable[[argparse.Namespace], int], Callable[[argparse.ArgumentParser], None]]
] = {
    "create": (cmd_create, _opts_create),
    "run": (cmd_run, _opts_run),
    "start": (cmd_start, _opts_start),
    "exec": (cmd_exec, _opts_exec),
    "stop": (cmd_stop, _opts_stop),
    "kill": (cmd_kill, _opts_kill),
    "rm": (cmd_rm, _opts_rm),
    "wait": (cmd_wait, _opts_containers),
    "logs": (cmd_logs, _opts_logs),
    "ps": (cmd_ps, _opts_ps),
    "inspect": (cmd_inspect, _opts_inspect),
    "pause": (cmd_pause, _opts_containers),
    "unpause": (cmd_unpause, _opts_containers),
    "update": (cmd_update, _opts_update),
    "stats": (cmd_stats, _opts_stats),
    "events": (cmd_events, _opts_events),
}
