"""`rref` commands on images and volumes: images, build, diff/commit/import, rmi, tag, history,
image, system, volume.

The work modules are imported inside the handlers.
"""

from __future__ import annotations

import argparse
import os
import sys

from .cliargs import Parser, open_images, open_store
from .errors import RrefError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


def cmd_images(a: argparse.Namespace) -> int:
    from . import view

    view.images(open_images(a), quiet=a.quiet, all_=a.all, filters=a.filter)
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
        open_store(a),
        open_images(a),
        a.context,
        a.file,
        a.tag,
        args,
        no_cache=a.no_cache,
        quiet=a.quiet,
    )
    if a.quiet:
        print(image_id)
    return 0


def cmd_diff(a: argparse.Namespace) -> int:
    from . import commit

    store = open_store(a)
    for kind, path in commit.diff(store, open_images(a), store.resolve(a.container)):
        print(f"{kind} {path}")
    return 0


def cmd_commit(a: argparse.Namespace) -> int:
    from . import commit

    store = open_store(a)
    print(
        commit.commit(
            store,
            open_images(a),
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
        print(commit.import_tar(open_images(a), sys.stdin.buffer, a.ref, a.message, a.change))
        return 0
    try:
        with open(a.file, "rb") as src:
            print(commit.import_tar(open_images(a), src, a.ref, a.message, a.change))
    except OSError as e:
        raise RrefError(f"cannot read {a.file}: {e.strerror}", 125) from None
    return 0


def cmd_rmi(a: argparse.Namespace) -> int:
    from . import imagemgmt

    store, images, code = open_store(a), open_images(a), 0
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

    images = open_images(a)
    _check_ref(a.target)
    images.tag(images.resolve(a.source).id, a.target)
    return 0


def cmd_history(a: argparse.Namespace) -> int:
    from . import imagemgmt, view

    rows = imagemgmt.history(open_images(a), a.image)
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
        deleted, freed = imagemgmt.prune(open_store(a), open_images(a), a.all)
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

        return view.inspect(open_store(a), open_images(a), a.targets, a.format, "image")
    if a.icmd == "history":
        return cmd_history(a)
    if a.icmd == "tag":
        return cmd_tag(a)
    raise UsageError("image: a subcommand is required (ls, rm, prune, inspect, history, tag)")


def cmd_system(a: argparse.Namespace) -> int:
    from . import imagemgmt

    store, images = open_store(a), open_images(a)
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


def cmd_volume(a: argparse.Namespace) -> int:
    from . import volumes as vol

    store, vs = open_store(a), vol.VolumeStore(a.root)
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


# -- argument set-up --------------------------------------------------------------


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
    isub = sp.add_subparsers(dest="icmd", metavar="SUBCOMMAND", parser_class=Parser)
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
    ssub = sp.add_subparsers(dest="scmd", metavar="SUBCOMMAND", parser_class=Parser)
    ssub.add_parser("df", help="disk usage of images, containers, volumes, build cache")
    p = ssub.add_parser(
        "prune",
        help="remove stopped containers, dangling images, build "
        "cache (-a: unused images too; --volumes)",
    )
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--volumes", action="store_true")


def _opts_volume(sp: argparse.ArgumentParser) -> None:
    vsub = sp.add_subparsers(dest="vcmd", metavar="SUBCOMMAND", parser_class=Parser)
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


# command -> (handler, argument set-up); cli.COMMANDS says which module has it
HANDLERS: dict[
    str, tuple[Callable[[argparse.Namespace], int], Callable[[argparse.ArgumentParser], None]]
] = {
    "images": (cmd_images, _opts_images),
    "build": (cmd_build, _opts_build),
    "diff": (cmd_diff, _opts_diff),
    "commit": (cmd_commit, _opts_commit),
    "import": (cmd_import, _opts_import),
    "rmi": (cmd_rmi, _opts_rmi),
    "tag": (cmd_tag, _opts_tag),
    "history": (cmd_history, _opts_history),
    "image": (cmd_image, _opts_image),
    "system": (cmd_system, _opts_system),
    "volume": (cmd_volume, _opts_volume),
}
