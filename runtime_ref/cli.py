"""`rref`: docker's everyday verbs over the reference runtime.

Imports stay inside the command functions so that `rref run` loads only
what it uses. Every failure ends as one `rref: ...` line on stderr and a
docker-like exit code (125 for usage and runtime errors).
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


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def _store(args: argparse.Namespace) -> Any:
    from .state import Store

    return Store(args.root)


def _images(args: argparse.Namespace) -> Any:
    from .images import ImageStore

    return ImageStore(args.root)


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
            with open(path) as f:
                env += [ln.strip() for ln in f if ln.strip() and not ln.startswith("#")]
        except OSError as e:
            raise UsageError(f"cannot read env file {path}: {e.strerror}") from None
    return env


def _create(a: argparse.Namespace, auto_remove: bool = False) -> str:
    """docker run/create report every failure to create as a runtime error (125)."""
    from . import containers
    from .errors import EXIT_FAILED, EXIT_RUNTIME

    try:
        return containers.create(_store(a), _images(a), _create_options(a, auto_remove))
    except RrefError as e:
        if e.code == EXIT_FAILED:
            e.code = EXIT_RUNTIME
        raise


def cmd_create(a: argparse.Namespace) -> int:
    print(_create(a))
    return 0


def cmd_run(a: argparse.Namespace) -> int:
    from . import lifecycle

    store = _store(a)
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

    store = _store(a)
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

    store = _store(a)
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


def _each(a: argparse.Namespace, refs: list[str], fn: Callable[[Any, str], None]) -> int:
    """docker applies multi-container verbs to each, reports failures, exits 1 if any."""
    store = _store(a)
    code = 0
    for ref in refs:
        try:
            fn(store, store.resolve(ref))
            print(ref)
        except RrefError as e:
            print(f"rref: {e}", file=sys.stderr)
            code = 1
    return code


def cmd_stop(a: argparse.Namespace) -> int:
    from . import lifecycle

    if a.time < 0:
        raise UsageError(f"invalid stop timeout: {a.time}")
    sig = _signal(a.signal)
    return _each(a, a.containers, lambda s, c: lifecycle.stop(s, c, a.time, sig))


def cmd_kill(a: argparse.Namespace) -> int:
    from . import lifecycle

    sig = _signal(a.signal)
    return _each(a, a.containers, lambda s, c: lifecycle.kill(s, c, sig))


def cmd_rm(a: argparse.Namespace) -> int:
    from . import containers

    return _each(
        a, a.containers, lambda s, c: containers.remove(s, c, force=a.force, volumes=a.volumes)
    )


def cmd_wait(a: argparse.Namespace) -> int:
    from . import lifecycle

    store = _store(a)
    for ref in a.containers:
        print(lifecycle.wait(store, store.resolve(ref)))
    return 0


def cmd_logs(a: argparse.Namespace) -> int:
    from . import lifecycle

    store = _store(a)
    tail = None if a.tail in (None, "all") else _int(a.tail, "--tail")
    lifecycle.logs(store, store.resolve(a.container), a.follow, a.timestamps, tail)
    return 0


def _int(v: str, flag: str) -> int:
    try:
        return int(v)
    except ValueError:
        raise UsageError(f"invalid value for {flag}: {v!r}") from None


def cmd_volume(a: argparse.Namespace) -> int:
    from . import volumes as vol

    store, vs = _store(a), vol.VolumeStore(a.root)
    if a.vcmd == "create":
        labels = dict(lbl.partition("=")[::2] for lbl in a.label)
        print(vs.create(a.name, labels)["Name"])
    elif a.vcmd == "ls":
        names = vs.names()
        if a.quiet:
            print("\n".join(names)) if names else None
        else:
            print("DRIVER    VOLUME NAME")
            for n in names:
                print(f"local     {n}")
    elif a.vcmd == "inspect":
        import json

        code, out = 0, []
        for n in a.names:
            try:
                out.append(vs.get(n))
            except RrefError as e:
                print(f"rref: {e}", file=sys.stderr)
                code = 1
        if a.format:
            from .template import render

            for v in out:
                print(render(a.format, v))
        else:
            print(json.dumps(out, indent=4))
        return code
    elif a.vcmd == "rm":
        code = 0
        for n in a.names:
            try:
                vs.remove(n, vol.in_use(store, n))
                print(n)
            except RrefError as e:
                print(f"rref: {e}", file=sys.stderr)
                code = 1
        return code
    elif a.vcmd == "prune":
        for n in vs.names():
            if not a.all and not vs.get(n).get("Anonymous"):
                continue
            if not vol.in_use(store, n):
                vs.remove(n, [])
                print(f"Deleted Volume: {n}")
    else:
        raise UsageError("volume: a subcommand is required (create, ls, inspect, rm, prune)")
    return 0


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

    return _each(a, a.containers, lifecycle.pause)


def cmd_unpause(a: argparse.Namespace) -> int:
    from . import lifecycle

    return _each(a, a.containers, lifecycle.unpause)


def cmd_update(a: argparse.Namespace) -> int:
    from . import lifecycle

    flags = {k: getattr(a, k) for k in _limit_flags()}
    return _each(a, a.containers, lambda s, c: lifecycle.update(s, c, flags))


def cmd_stats(a: argparse.Namespace) -> int:
    import json

    from . import lifecycle

    if not a.no_stream:
        raise UsageError("stats: only --no-stream is supported")
    store = _store(a)
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

    view.ps(_store(a), all_=a.all, quiet=a.quiet, no_trunc=a.no_trunc)
    return 0


def cmd_inspect(a: argparse.Namespace) -> int:
    from . import view

    return view.inspect(_store(a), _images(a), a.targets, a.format, a.type)


def cmd_images(a: argparse.Namespace) -> int:
    from . import view

    view.images(_images(a), quiet=a.quiet, all_=a.all, filters=a.filter)
    return 0


def cmd_build(a: argparse.Namespace) -> int:
    from . import build

    args = {}
    for item in a.build_arg:
        k, eq, v = item.partition("=")
        if not eq:
            v = os.environ.get(k, "")
        args[k] = v
    image_id = build.build(
        _store(a), _images(a), a.context, a.file, a.tag, args, no_cache=a.no_cache, quiet=a.quiet
    )
    if a.quiet:
        print(image_id)
    return 0


def cmd_diff(a: argparse.Namespace) -> int:
    from . import commit

    store = _store(a)
    for kind, path in commit.diff(store, _images(a), store.resolve(a.container)):
        print(f"{kind} {path}")
    return 0


def cmd_commit(a: argparse.Namespace) -> int:
    from . import commit

    store = _store(a)
    print(
        commit.commit(
            store,
            _images(a),
            store.resolve(a.container),
            a.ref,
            a.message,
            a.author,
            a.change,
            pause=a.pause != "false",
        )
    )
    return 0


def cmd_import(a: argparse.Namespace) -> int:
    from . import commit

    if a.file == "-":
        print(commit.import_tar(_images(a), sys.stdin.buffer, a.ref, a.message, a.change))
        return 0
    try:
        with open(a.file, "rb") as src:
            print(commit.import_tar(_images(a), src, a.ref, a.message, a.change))
    except OSError as e:
        raise RrefError(f"cannot read {a.file}: {e.strerror}", 125) from None
    return 0


def cmd_rmi(a: argparse.Namespace) -> int:
    from . import imagemgmt

    store, images, code = _store(a), _images(a), 0
    for ref in a.images:
        try:
            for line in imagemgmt.rmi(store, images, ref, a.force):
                print(line)
        except RrefError as e:
            print(f"rref: {e}", file=sys.stderr)
            code = 1
    return code


def cmd_tag(a: argparse.Namespace) -> int:
    from .commit import _check_ref

    images = _images(a)
    _check_ref(a.target)
    images.tag(images.resolve(a.source).id, a.target)
    return 0


def cmd_history(a: argparse.Namespace) -> int:
    from . import imagemgmt, view

    rows = imagemgmt.history(_images(a), a.image)
    if a.quiet:
        for r in rows:
            print(r["Id"] if a.no_trunc or r["Id"] == "<missing>" else r["Id"][7:19])
        return 0
    print(f"{'IMAGE':<15}{'CREATED':<20}{'CREATED BY':<48}{'SIZE':<10}COMMENT")
    for r in rows:
        by = r["CreatedBy"] if a.no_trunc else r["CreatedBy"][:45]
        iid = r["Id"] if r["Id"] == "<missing>" else r["Id"][7:19]
        print(
            f"{iid:<15}{view.human_ago(r['Created']) + ' ago':<20}{by:<48}"
            f"{imagemgmt.human(r['Size']):<10}{r['Comment']}"
        )
    return 0


def cmd_image(a: argparse.Namespace) -> int:
    from . import imagemgmt

    if a.icmd == "prune":
        deleted, freed = imagemgmt.prune(_store(a), _images(a), a.all)
        print("Deleted Images:" if deleted else "", end="\n" if deleted else "")
        for d in deleted:
            print(f"deleted: {d}")
        print(f"Total reclaimed space: {imagemgmt.human(freed)}")
        return 0
    if a.icmd == "ls":
        return cmd_images(a)
    if a.icmd == "rm":
        return cmd_rmi(a)
    if a.icmd == "inspect":
        from . import view

        return view.inspect(_store(a), _images(a), a.targets, a.format, "image")
    if a.icmd == "history":
        return cmd_history(a)
    if a.icmd == "tag":
        return cmd_tag(a)
    raise UsageError("image: a subcommand is required (ls, rm, prune, inspect, history, tag)")


def cmd_system(a: argparse.Namespace) -> int:
    from . import imagemgmt

    store, images = _store(a), _images(a)
    if a.scmd == "df":
        rows = imagemgmt.system_df(store, images, a.root)
        print(f"{'TYPE':<16}{'TOTAL':<8}{'ACTIVE':<8}{'SIZE':<12}RECLAIMABLE")
        for r in rows:
            pct = f" ({100 * r['Reclaimable'] // r['Size']}%)" if r["Size"] else ""
            print(
                f"{r['Type']:<16}{r['Total']:<8}{r['Active']:<8}"
                f"{imagemgmt.human(r['Size']):<12}{imagemgmt.human(r['Reclaimable'])}{pct}"
            )
        return 0
    if a.scmd == "prune":
        for line in imagemgmt.system_prune(store, images, a.root, a.all, a.volumes):
            print(line)
        return 0
    raise UsageError("system: a subcommand is required (df, prune)")


def _limit_flags() -> tuple[str, ...]:
    from .limits import FLAGS

    return FLAGS


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


def _opts_volume(sp: argparse.ArgumentParser) -> None:
    vsub = sp.add_subparsers(dest="vcmd", metavar="SUBCOMMAND", parser_class=_Parser)
    c = vsub.add_parser("create", help="create a volume")
    c.add_argument("name", nargs="?")
    c.add_argument("--label", action="append", default=[])
    ls = vsub.add_parser("ls", help="list volumes")
    ls.add_argument("-q", "--quiet", action="store_true")
    i = vsub.add_parser("inspect", help="show volumes")
    i.add_argument("-f", "--format")
    i.add_argument("names", nargs="+")
    r = vsub.add_parser("rm", help="remove volumes (refused while a container uses one)")
    r.add_argument("-f", "--force", action="store_true")
    r.add_argument("names", nargs="+")
    p = vsub.add_parser("prune", help="remove unused anonymous volumes (-a: all unused)")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-f", "--force", action="store_true")


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


def _opts_images(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("-q", "--quiet", action="store_true")
    sp.add_argument("-a", "--all", action="store_true")
    sp.add_argument("-f", "--filter", action="append", default=[])


def _opts_build(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("-t", "--tag", action="append", default=[])
    sp.add_argument("-f", "--file")
    sp.add_argument("--build-arg", action="append", default=[])
    sp.add_argument("--no-cache", action="store_true")
    sp.add_argument("-q", "--quiet", action="store_true")
    sp.add_argument("context")


def _opts_diff(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("container")


def _opts_commit(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("-m", "--message", default="")
    sp.add_argument("-a", "--author", default="")
    sp.add_argument("-c", "--change", action="append", default=[])
    sp.add_argument("-p", "--pause", default="true", choices=["true", "false"])
    sp.add_argument("container")
    sp.add_argument("ref", nargs="?")


def _opts_import(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("-m", "--message", default="")
    sp.add_argument("-c", "--change", action="append", default=[])
    sp.add_argument("file")
    sp.add_argument("ref", nargs="?")


def _opts_rmi(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("-f", "--force", action="store_true")
    sp.add_argument("images", nargs="+")


def _opts_tag(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("source")
    sp.add_argument("target")


def _opts_history(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("-q", "--quiet", action="store_true")
    sp.add_argument("--no-trunc", action="store_true")
    sp.add_argument("image")


def _opts_image(sp: argparse.ArgumentParser) -> None:
    isub = sp.add_subparsers(dest="icmd", metavar="SUBCOMMAND", parser_class=_Parser)
    p = isub.add_parser("prune", help="remove dangling images (-a: every unused image)")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-f", "--force", action="store_true")
    _opts_images(isub.add_parser("ls", help="list images"))
    _opts_rmi(isub.add_parser("rm", help="remove images"))
    i = isub.add_parser("inspect", help="show images")
    i.add_argument("-f", "--format")
    i.add_argument("targets", nargs="+")
    _opts_history(isub.add_parser("history", help="show an image's history"))
    _opts_tag(isub.add_parser("tag", help="name an image"))


def _opts_system(sp: argparse.ArgumentParser) -> None:
    ssub = sp.add_subparsers(dest="scmd", metavar="SUBCOMMAND", parser_class=_Parser)
    ssub.add_parser("df", help="disk usage of images, containers, volumes, build cache")
    p = ssub.add_parser(
        "prune",
        help="remove stopped containers, dangling images, build "
        "cache (-a: unused images too; --volumes)",
    )
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--volumes", action="store_true")


# name -> (handler, one-line help, argument set-up). `run`/`create` free -h for --hostname.
COMMANDS: dict[
    str, tuple[Callable[[argparse.Namespace], int], str, Callable[[argparse.ArgumentParser], None]]
] = {
    "create": (cmd_create, "create a container", _opts_create),
    "run": (cmd_run, "create and start a container", _opts_run),
    "start": (cmd_start, "start stopped containers", _opts_start),
    "exec": (cmd_exec, "run a command in a running container", _opts_exec),
    "stop": (cmd_stop, "stop containers: SIGTERM, then SIGKILL after a timeout", _opts_stop),
    "kill": (cmd_kill, "send a signal to containers", _opts_kill),
    "rm": (cmd_rm, "remove containers", _opts_rm),
    "wait": (cmd_wait, "wait for containers to stop, print exit codes", _opts_containers),
    "logs": (cmd_logs, "print a container's stdout and stderr", _opts_logs),
    "ps": (cmd_ps, "list containers", _opts_ps),
    "inspect": (cmd_inspect, "low-level information on containers or images", _opts_inspect),
    "images": (cmd_images, "list images", _opts_images),
    "build": (cmd_build, "build an image from a Dockerfile", _opts_build),
    "diff": (cmd_diff, "changes to a container's filesystem (A/C/D)", _opts_diff),
    "commit": (cmd_commit, "create an image from a container's changes", _opts_commit),
    "import": (cmd_import, "create an image from a root filesystem tarball", _opts_import),
    "rmi": (cmd_rmi, "remove images", _opts_rmi),
    "tag": (cmd_tag, "give an image another name", _opts_tag),
    "history": (cmd_history, "show an image's history", _opts_history),
    "image": (cmd_image, "manage images: ls, rm, prune, inspect, history, tag", _opts_image),
    "system": (cmd_system, "disk usage (df) and clean-up (prune)", _opts_system),
    "pause": (cmd_pause, "freeze every process of containers", _opts_containers),
    "unpause": (cmd_unpause, "thaw paused containers", _opts_containers),
    "update": (cmd_update, "change resource limits of containers", _opts_update),
    "stats": (cmd_stats, "resource usage of running containers", _opts_stats),
    "events": (cmd_events, "show container events (follows until --until)", _opts_events),
    "volume": (cmd_volume, "manage volumes: create, ls, inspect, rm, prune", _opts_volume),
}


def _image_transport_commands() -> None:
    """save/load/pull/push live in imagecmds (cheap to import: argparse, sys, errors)."""
    from .imagecmds import COMMANDS as TRANSPORT

    COMMANDS.update(TRANSPORT)


_image_transport_commands()
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

    p = _Parser(prog="rref", description="rref: a small, correct, Docker-like runtime")
    p.add_argument(
        "--root",
        default=os.environ.get("RREF_ROOT", DEFAULT_ROOT),
        help="state root (default %(default)s, or $RREF_ROOT)",
    )
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND", parser_class=_Parser)
    for name, (fn, help_, configure) in COMMANDS.items():
        if only is not None and name != only:
            continue
        sp = sub.add_parser(name, help=help_, add_help=name not in _NO_DASH_H)
        if name in _NO_DASH_H:
            sp.add_argument("--help", action="help")
        sp.set_defaults(func=fn)
        configure(sp)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
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
    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        code = code or 141
    os._exit(code)


if __name__ == "__main__":
    entry()
