"""A deliberately faulty rref: the reference runtime with ONE named defect.

Why: the ref adapter drives the `rref` CLI, so defects of a Docker-like runtime (a flag
ignored, a wrong spec, a bad committed layer) must be planted in rref itself. This script
runs rref's own CLI in-process with one defect patched in; rref's monitor and container
init are forked from it (no re-exec), so the patch reaches them too.

    python faulty_rref.py [--log FILE] DEFECT [rref arguments...]

DEFECT is a defect name or ``none``. The suite runs one wrapper script per defect, each as
its own runtime ``NAME=ref:/path/to/wrapper`` (the ref adapter gives each its own state
root), next to a ``none`` wrapper as the control. An unknown name is an error (exit 125),
never a silently correct runtime.

Defects:
* every name of `faulty_runc.DEFECTS`: the same edit of the OCI spec rref builds
  (applied when rref saves a container's config, so inspect, the monitor and the init all
  see the altered spec);
* ``ignore-read-only``: the ``--read-only`` flag is dropped from run/create (argv);
* layer defects (`LAYER_DEFECTS`): a committed layer that is not a proper OCI changeset;
* ``hostname-no-newline``: /etc/hostname is written without its trailing newline;
* ``exec-skips-netns``: exec joins every namespace of the container but the network one;
* ``dumpable-joiners``: the processes rref forks into a container stay dumpable until
  their execve (a container process can open their /proc/PID/exe: the host's Python);
* ``exec-leaks-host-dir``: exec's program inherits an open fd of rref's state root (a host
  directory: `..` from it walks to the host's /);
* two at once (`COMBINED`): ``terse-help-drops-whiteouts`` is a `--help` that lists no
  commands with a commit that drops whiteouts. The adapter declares what rref can do, so a
  help text that hides verbs must not turn the layer tests "unsupported": the bad commit
  is still caught.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from faulty_runc import DEFECTS as SPEC_DEFECTS

ARGV_DEFECTS: dict[str, Callable[[list[str]], list[str]]] = {}
LAYER_DEFECTS: dict[str, Callable[[], None]] = {}
COMBINED: dict[str, tuple[str, ...]] = {}
_log: str | None = None
_combined: str | None = None  # the combined defect being run: notes go under its name


def _note(name: str, what: str) -> None:
    if _log:
        with open(_log, "a") as f:
            f.write(f"{_combined or name} {what}\n")


# ------------------------------------------------------------------------------ argv


def _ignore_read_only(argv: list[str]) -> list[str]:
    """`--read-only` of run/create is silently dropped."""
    cmd = next((i for i, a in enumerate(argv) if a in ("run", "create")), None)
    if cmd is None or "--read-only" not in argv[cmd:]:
        return argv
    i = argv.index("--read-only", cmd)
    _note("ignore-read-only", "dropped --read-only")
    return argv[:i] + argv[i + 1 :]


ARGV_DEFECTS["ignore-read-only"] = _ignore_read_only


def _terse_help(argv: list[str]) -> list[str]:
    """`rref --help` prints a usage line without the list of commands."""
    if argv and argv[-1] in ("-h", "--help") and not any(a in ("run", "create") for a in argv):
        _note("terse-help", "printed a help without commands")
        print("usage: rref [-h] [--root ROOT] COMMAND ...")
        sys.exit(0)
    return argv


ARGV_DEFECTS["terse-help"] = _terse_help


# ------------------------------------------------------------------------------ layers


def _commit_drops_whiteouts() -> None:
    """Deletions are lost on commit: the changeset writer emits no `.wh.<name>` for a
    whiteout of the upper dir (opaque directories still get `.wh..wh..opq`)."""
    from runtime_ref import layers

    def whiteout(self: Any, rel: str, st: os.stat_result) -> None:
        _note("commit-drops-whiteouts", f"left out the whiteout of {rel}")

    layers._TarSink.whiteout = whiteout  # type: ignore[method-assign]


def _overlay_form(data: bytes) -> bytes:
    """An OCI changeset tar rewritten in overlayfs's own form: `.wh.<name>` -> char device
    0/0 `<name>`, `<dir>/.wh..wh..opq` -> xattr trusted.overlay.opaque=y on `<dir>`."""
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as src:
        infos = [(i, src.extractfile(i).read() if i.isreg() else None) for i in src]
    opaque = {
        os.path.dirname(i.name.rstrip("/"))
        for i, _ in infos
        if os.path.basename(i.name) == ".wh..wh..opq"
    }
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:", format=tarfile.PAX_FORMAT) as dst:
        for i, body in infos:
            d, b = os.path.split(i.name.rstrip("/"))
            if b == ".wh..wh..opq":
                continue
            if b.startswith(".wh."):
                i.name, i.type, i.size = os.path.join(d, b[4:]), tarfile.CHRTYPE, 0
                i.devmajor = i.devminor = 0
                body = None
            elif i.isdir() and i.name.rstrip("/") in opaque:
                i.pax_headers = {**i.pax_headers, "SCHILY.xattr.trusted.overlay.opaque": "y"}
            dst.addfile(i, io.BytesIO(body) if body is not None else None)
    return out.getvalue()


def _commit_overlay_whiteouts() -> None:
    """The committed layer's tar (what save/push hand on) is the overlay upper as it is:
    whiteouts stay char devices 0/0 and opaque dirs an xattr. The layer is stored under the
    digest of that tar, so the image config, the store and the tar agree; its extracted
    tree is the correct one, so containers of the image still look right."""
    import hashlib
    import shutil
    import subprocess

    from runtime_ref import commit

    original = commit.add_changeset

    def add_changeset(images: Any, *args: Any, **kw: Any) -> str | None:
        diff_id = original(images, *args, **kw)
        if diff_id is None:
            return None
        with open(images.layer_tar(diff_id), "rb") as f:
            data = _overlay_form(f.read())
        new_id = "sha256:" + hashlib.sha256(data).hexdigest()
        old_dir = os.path.dirname(images.layer_dir(diff_id))
        new_dir = os.path.dirname(images.layer_dir(new_id))
        if not os.path.isdir(new_dir):
            tmp = f"{new_dir}.conform-tmp-{os.getpid()}"
            subprocess.run(["cp", "-a", old_dir, tmp], check=True)
            with open(os.path.join(tmp, "layer.tar"), "wb") as f:
                f.write(data)
            for stale in ("layer.json", "layer.tar.gz"):
                if os.path.exists(os.path.join(tmp, stale)):
                    os.unlink(os.path.join(tmp, stale))
            meta = {"diff_id": new_id, "size": len(data), "content_size": 0}
            with open(os.path.join(tmp, "layer.json"), "w") as f:
                json.dump(meta, f)
            os.rename(tmp, new_dir)
            shutil.rmtree(tmp, ignore_errors=True)
        _note("commit-overlay-whiteouts", f"layer {diff_id[:19]} -> {new_id[:19]}")
        return new_id

    commit.add_changeset = add_changeset


def _hostname_no_newline() -> None:
    """The per-container /etc/hostname holds the name without the newline of hostname(5)."""
    from runtime_ref import containers

    original = containers._write

    def write(path: str, text: str, mode: int = 0o644) -> None:
        if os.path.basename(path) == "hostname" and text.endswith("\n"):
            _note("hostname-no-newline", f"{path} without its newline")
            text = text.rstrip("\n")
        original(path, text, mode)

    containers._write = write  # type: ignore[assignment]


def _exec_skips_netns() -> None:
    """`exec` joins every namespace of the container but its network namespace."""
    from runtime_ref import process

    original = process.join_namespaces_of

    def join(pid: int, types: list[str]) -> Any:
        if "network" in types:
            _note("exec-skips-netns", f"exec into {pid} without its network namespace")
        return original(pid, [t for t in types if t != "network"])

    process.join_namespaces_of = join  # type: ignore[assignment]


def _dumpable_joiners() -> None:
    """The joining processes are never made non-dumpable (the CVE-2019-5736 class)."""
    from runtime_ref import process

    original = process.sc.prctl

    def prctl(option: int, *args: int) -> int:
        if option == process.sc.PR_SET_DUMPABLE and args[:1] == (0,):
            _note("dumpable-joiners", f"pid {os.getpid()} left dumpable")
            return 0
        return original(option, *args)

    process.sc.prctl = prctl  # type: ignore[assignment]


def _exec_leaks_host_dir() -> None:
    """exec keeps an fd of the state root open into its program (the CVE-2024-21626
    class: runc leaked a host cgroup directory the same way)."""
    from runtime_ref import lifecycle, process

    leaked: list[int] = []
    original_exec, original_spawn = lifecycle.exec_in, process.spawn

    def exec_in(store: Any, cid: str, *args: Any, **kw: Any) -> int:
        fd = os.open(store.root, os.O_RDONLY | os.O_DIRECTORY)
        os.set_inheritable(fd, True)
        leaked.append(fd)
        _note("exec-leaks-host-dir", f"exec into {cid[:12]} with fd {fd} of {store.root}")
        return original_exec(store, cid, *args, **kw)

    def spawn(*args: Any, keep_fds: tuple[int, ...] = (), **kw: Any) -> Any:
        return original_spawn(*args, keep_fds=(*keep_fds, *leaked), **kw)

    lifecycle.exec_in = exec_in  # type: ignore[assignment]
    process.spawn = spawn  # type: ignore[assignment]


LAYER_DEFECTS["exec-skips-netns"] = _exec_skips_netns
LAYER_DEFECTS["dumpable-joiners"] = _dumpable_joiners
LAYER_DEFECTS["exec-leaks-host-dir"] = _exec_leaks_host_dir
LAYER_DEFECTS["hostname-no-newline"] = _hostname_no_newline
LAYER_DEFECTS["commit-drops-whiteouts"] = _commit_drops_whiteouts
LAYER_DEFECTS["commit-overlay-whiteouts"] = _commit_overlay_whiteouts
COMBINED["terse-help-drops-whiteouts"] = ("terse-help", "commit-drops-whiteouts")


# ------------------------------------------------------------------------------ spec


def _patch_spec(name: str) -> None:
    from runtime_ref.state import Store

    original = Store.save_config

    def save_config(self: Any, cid: str, data: dict[str, Any]) -> None:
        spec = data.get("Spec")
        if isinstance(spec, dict) and not data.get("_conform_defect"):
            what = SPEC_DEFECTS[name](spec)
            data["_conform_defect"] = f"{name}: {what or 'unchanged'}"
            _note(name, f"{cid[:12]} {what or 'unchanged'}")
        original(self, cid, data)

    Store.save_config = save_config  # type: ignore[method-assign]


# ------------------------------------------------------------------------------ the wrapper


def known() -> list[str]:
    return sorted({*SPEC_DEFECTS, *ARGV_DEFECTS, *LAYER_DEFECTS, *COMBINED, "none"})


def main(argv: list[str]) -> int:
    global _log, _combined
    if argv[:1] == ["--log"]:
        _log, argv = argv[1], argv[2:]
    if not argv:
        print(f"faulty_rref: want a defect first: {', '.join(known())}", file=sys.stderr)
        return 125
    name = argv[0]
    if name not in known():
        print(f"faulty_rref: unknown defect {name!r} (known: {known()})", file=sys.stderr)
        return 125
    rest = argv[1:]
    if name in COMBINED:
        _combined = name
    for part in COMBINED.get(name, (name,)):
        if part in ARGV_DEFECTS:
            rest = ARGV_DEFECTS[part](rest)
        elif part in SPEC_DEFECTS:
            _patch_spec(part)
        elif part in LAYER_DEFECTS:
            LAYER_DEFECTS[part]()
    from runtime_ref import cli

    sys.argv = ["rref", *rest]
    cli.entry()
    return 0  # not reached: entry() exits


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
