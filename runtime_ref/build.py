"""`rref build`: a Dockerfile turned into layers, with a cache and .dockerignore.

The Dockerfile is parsed by dockerfile-parse (instructions, line numbers,
continuations); the semantics are rref's: RUN executes in a real rref
container and its changes are committed as a layer; COPY/ADD build a layer
straight from the context; metadata instructions change only the config.
Each step's result is cached under the key sha256(parent image, instruction
after substitution, content of the files it reads).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shlex
import stat
import sys

from . import commit as cm
from . import faults, scratch
from .errors import BuildError, RrefError
from .images import ImageStore, normalize_ref
from .state import Store, flock

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

METADATA = (
    "ENV",
    "ARG",
    "LABEL",
    "USER",
    "EXPOSE",
    "CMD",
    "ENTRYPOINT",
    "WORKDIR",
    "VOLUME",
    "STOPSIGNAL",
    "MAINTAINER",
)
SUPPORTED = ("FROM", "RUN", "COPY", "ADD", *METADATA)


def _glob(pattern: str) -> re.Pattern[str]:
    """Go's filepath.Match: `*` and `?` never cross a `/`."""
    rx = re.escape(pattern).replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
    return re.compile(f"^{rx}$")


class DockerIgnore:
    """.dockerignore: Go filepath.Match patterns, `**`, and `!` exceptions, last match wins."""

    def __init__(self, lines: list[str]) -> None:
        self.rules: list[tuple[bool, re.Pattern[str]]] = []
        for raw in lines:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            neg = line.startswith("!")
            pat = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
            rx = re.escape(pat).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*")
            rx = rx.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
            self.rules.append((neg, re.compile(f"^{rx}(/.*)?$")))

    def ignored(self, rel: str) -> bool:
        out = False
        for neg, rx in self.rules:
            if rx.match(rel):
                out = not neg
        return out


class Context:
    """The build context directory, seen through .dockerignore."""

    def __init__(self, root: str) -> None:
        self.root = os.path.realpath(root)
        try:
            with open(os.path.join(self.root, ".dockerignore")) as f:
                self.ignore = DockerIgnore(f.read().splitlines())
        except FileNotFoundError:
            self.ignore = DockerIgnore([])

    def sources(self, pattern: str, where: str) -> list[str]:
        """Context-relative paths matching a COPY/ADD source (wildcards allowed)."""
        rel = os.path.normpath(pattern).lstrip("/")
        if rel == ".." or rel.startswith("../"):
            raise BuildError(where, f"forbidden path outside the build context: {pattern}")
        if rel == ".":
            return ["."]
        if any(c in rel for c in "*?["):
            found = []
            for dirpath, dirnames, filenames in os.walk(self.root):
                for name in dirnames + filenames:
                    r = os.path.relpath(os.path.join(dirpath, name), self.root)
                    if _glob(rel).match(r) and not self.ignore.ignored(r):
                        found.append(r)
            if not found:
                raise BuildError(where, f"no source files were specified by {pattern!r}")
            return sorted(found)
        full = os.path.join(self.root, rel)
        if not os.path.lexists(full) or self.ignore.ignored(rel):
            raise BuildError(where, f"{pattern}: no such file or directory in the build context")
        real = os.path.realpath(full)
        if real != self.root and not real.startswith(self.root + "/"):
            raise BuildError(where, f"forbidden path outside the build context: {pattern}")
        return [rel]

    def walk(self, rel: str) -> list[str]:
        """`rel` and, for a directory, everything under it that is not ignored."""
        out = [rel]
        full = os.path.join(self.root, rel)
        if os.path.isdir(full) and not os.path.islink(full):
            for dirpath, dirnames, filenames in os.walk(full):
                dirnames.sort()
                for name in sorted(dirnames + filenames):
                    r = os.path.relpath(os.path.join(dirpath, name), self.root)
                    if not self.ignore.ignored(r):
                        out.append(r)
        return out

    def digest(self, rels: list[str]) -> str:
        h = hashlib.sha256()
        for top in rels:
            for r in self.walk(top):
                st = os.lstat(os.path.join(self.root, r))
                h.update(f"{r}\0{st.st_mode}\0{st.st_uid}\0{st.st_gid}\0".encode())
                if stat.S_ISREG(st.st_mode):
                    with open(os.path.join(self.root, r), "rb") as f:
                        while chunk := f.read(1 << 20):
                            h.update(chunk)
                elif stat.S_ISLNK(st.st_mode):
                    h.update(os.readlink(os.path.join(self.root, r)).encode())
        return h.hexdigest()


_VAR = re.compile(
    r"\\\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:[-+])([^}]*))?\}"
    r"|\$([A-Za-z_][A-Za-z0-9_]*)"
)


def substitute(text: str, env: dict[str, str]) -> str:
    """$VAR, ${VAR}, ${VAR:-default}, ${VAR:+alt}; `\\$` stays a literal `$`."""

    def repl(m: re.Match[str]) -> str:
        if m.group(0) == "\\$":
            return "$"
        val = env.get(m.group(1) or m.group(4), "")
        op, arg = m.group(2), m.group(3) or ""
        if op == ":-":
            return val or arg
        if op == ":+":
            return arg if val else ""
        return val

    return _VAR.sub(repl, text)


def _json_or_shell(value: str, where: str) -> tuple[list[str], bool]:
    v = value.strip()
    if v.startswith("["):
        try:
            parsed = json.loads(v)
        except ValueError:
            return [v], False  # docker treats invalid JSON as shell form
        if isinstance(parsed, list) and all(isinstance(x, str) for x in parsed):
            return parsed, True
        raise BuildError(where, f"invalid exec form {v!r}: want a JSON array of strings")
    return [v], False


def _kv_pairs(value: str, where: str, what: str) -> list[tuple[str, str]]:
    words = shlex.split(value, posix=True)
    if not words:
        raise BuildError(where, f"{what} requires at least one argument")
    if len(words) >= 2 and "=" not in words[0]:
        return [(words[0], value.split(None, 1)[1].strip())]  # legacy `ENV KEY value`
    out = []
    for w in words:
        k, eq, v = w.partition("=")
        if not eq or not k:
            raise BuildError(where, f"{what} wants KEY=VALUE, got {w!r}")
        out.append((k, v))
    return out


class Builder:
    def __init__(
        self,
        store: Store,
        images: ImageStore,
        context: str,
        dockerfile: str | None,
        build_args: dict[str, str],
        no_cache: bool = False,
        quiet: bool = False,
        out: Any = None,
    ) -> None:
        self.store, self.images = store, images
        self.ctx = Context(context)
        self.path = dockerfile or os.path.join(self.ctx.root, "Dockerfile")
        self.name = os.path.basename(self.path)
        self.build_args = build_args
        self.no_cache, self.quiet = no_cache, quiet
        self.out = out or sys.stdout
        self.cache_file = os.path.join(images.root, "buildcache.json")
        self.stages: dict[str, str] = {}

    def say(self, text: str) -> None:
        if not self.quiet:
            print(text, file=self.out, flush=True)

    # -- cache -----------------------------------------------------------------
    def _cache(self) -> dict[str, str]:
        try:
            with open(self.cache_file) as f:
                data = json.load(f)
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def cached(self, key: str) -> str | None:
        if self.no_cache:
            return None
        image_id = self._cache().get(key)
        if image_id and image_id in self.images.image_ids():
            return image_id
        return None

    def remember(self, key: str, image_id: str) -> None:
        self.images.ensure()
        with flock(self.cache_file + ".lock"):
            data = self._cache()
            data[key] = image_id
            tmp = scratch.name(self.cache_file)
            with open(tmp, "w") as f:
                json.dump(data, f)
            os.replace(tmp, self.cache_file)

    # -- steps -----------------------------------------------------------------
    def run(self) -> str:
        from dockerfile_parse import DockerfileParser

        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise RrefError(f"cannot read {self.path}: {e.strerror}", 1) from None
        for n, line in enumerate(data.split(b"\n"), 1):
            try:
                line.decode()
            except UnicodeDecodeError:
                raise BuildError(f"{self.name}:{n}", "invalid utf8 bytes") from None
        steps = DockerfileParser(fileobj=io.BytesIO(data)).structure
        steps = [s for s in steps if s["instruction"] not in ("COMMENT",)]
        if not steps or steps[0]["instruction"] not in ("FROM", "ARG"):
            raise BuildError(f"{self.name}:1", "the first instruction must be FROM")
        image_id: str | None = None
        config: dict[str, Any] = {}
        args: dict[str, str] = {}
        global_args: dict[str, str] = {}
        total = len(steps)
        for n, step in enumerate(steps, 1):
            ins, value = step["instruction"], step["value"]
            where = f"{self.name}:{step['startline'] + 1}"
            self.say(f"Step {n}/{total} : {ins} {value}")
            if ins not in SUPPORTED:
                raise BuildError(where, f"unknown instruction: {ins}")
            scope = {**{k: v for k, v in _env(config).items()}, **args}
            if ins == "FROM":
                image_id, config, args = self._from(value, where, {**global_args, **args})
                self.say(f" ---> {image_id[7:19]}")
                continue
            if image_id is None:
                if ins != "ARG":
                    raise BuildError(where, "the first instruction must be FROM")
                for k, v in self._args(value, where):
                    global_args[k] = self.build_args.get(k, substitute(v, global_args))
                continue
            if ins == "ARG":
                for k, v in self._args(value, where):
                    args[k] = self.build_args.get(k, substitute(v, scope))
                continue
            image_id, config = self.step(ins, value, where, image_id, config, scope, args)
            self.say(f" ---> {image_id[7:19]}")
        assert image_id is not None
        return image_id

    def _args(self, value: str, where: str) -> list[tuple[str, str]]:
        out = []
        if not value.strip():
            raise BuildError(where, "ARG requires at least one argument")
        for w in shlex.split(value):
            k, eq, v = w.partition("=")
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k):
                raise BuildError(where, f"invalid ARG name {k!r}")
            out.append((k, v if eq else ""))
        return out

    def _from(
        self, value: str, where: str, args: dict[str, str]
    ) -> tuple[str, dict[str, Any], dict[str, str]]:
        words = substitute(value, args).split()
        if len(words) not in (1, 3) or (len(words) == 3 and words[1].upper() != "AS"):
            raise BuildError(where, f"FROM wants IMAGE [AS NAME], got {value!r}")
        ref = words[0]
        if ref == "scratch":
            image_id = self.images.add_image(
                cm.new_image_config({}, None, {}, "FROM scratch", empty_layer=True)
            )
        elif ref in self.stages:
            image_id = self.stages[ref]
        else:
            try:
                image_id = self.images.resolve(ref).id
            except RrefError as e:
                raise BuildError(where, str(e)) from None
        if len(words) == 3:
            self.stages[words[2]] = image_id  # updated as the stage grows, see step()
            self._stage_name = words[2]
        else:
            self._stage_name = ""
        config = dict(self.images.get(image_id).config.get("config") or {})
        return image_id, config, {}

    def step(
        self,
        ins: str,
        value: str,
        where: str,
        parent: str,
        config: dict[str, Any],
        scope: dict[str, str],
        args: dict[str, str],
    ) -> tuple[str, dict[str, Any]]:
        text = value if ins in ("RUN", "CMD", "ENTRYPOINT") else substitute(value, scope)
        extra = ""
        if ins in ("COPY", "ADD"):
            flags, srcs, dest, from_stage = self._copy_args(text, where)
            if from_stage is None:
                extra = self.ctx.digest([s for p in srcs for s in self.ctx.sources(p, where)])
            else:
                extra = f"from:{self._stage_image(from_stage, where)}"
        key = hashlib.sha256(
            json.dumps(
                [parent, ins, text, extra, sorted(args.items()) if ins == "RUN" else []]
            ).encode()
        ).hexdigest()
        if ins in METADATA:  # checked before the cache: a cached step must be a valid one
            new_config = self._metadata(ins, text, where, config)
        hit = self.cached(key)
        if hit:
            self.say(" ---> Using cache")
            new_config = dict(self.images.get(hit).config.get("config") or {})
            self._grow_stage(hit)
            return hit, new_config
        base = self.images.get(parent).config
        if ins in METADATA:
            image_id = self.images.add_image(
                cm.new_image_config(base, None, new_config, f"{ins} {text}", empty_layer=True)
            )
        elif ins == "RUN":
            image_id, new_config = self._run(text, where, parent, base, config, args)
        else:
            image_id, new_config = self._copy(
                ins, flags, srcs, dest, from_stage, where, parent, base, config
            )
        self.remember(key, image_id)
        self._grow_stage(image_id)
        return image_id, new_config

    def _grow_stage(self, image_id: str) -> None:
        if getattr(self, "_stage_name", ""):
            self.stages[self._stage_name] = image_id

    def _stage_image(self, name: str, where: str) -> str:
        if name in self.stages:
            return self.stages[name]
        try:
            return self.images.resolve(name).id
        except RrefError:
            raise BuildError(where, f"COPY --from: no stage or image named {name!r}") from None

    def _metadata(self, ins: str, text: str, where: str, config: dict[str, Any]) -> dict[str, Any]:
        c = dict(config)
        if ins == "ENV":
            env = dict(_env(c))
            for k, v in _kv_pairs(text, where, "ENV"):
                env[k] = substitute(v, env)
            c["Env"] = [f"{k}={v}" for k, v in env.items()]
        elif ins == "LABEL":
            labels = dict(c.get("Labels") or {})
            labels.update(_kv_pairs(text, where, "LABEL"))
            c["Labels"] = labels
        elif ins == "MAINTAINER":
            labels = dict(c.get("Labels") or {})
            labels["maintainer"] = text
            c["Labels"] = labels
        elif ins in ("CMD", "ENTRYPOINT"):
            argv, is_exec = _json_or_shell(text, where)
            c["Cmd" if ins == "CMD" else "Entrypoint"] = (
                argv if is_exec else ["/bin/sh", "-c", argv[0]]
            )
        elif ins == "WORKDIR":
            wd = text.strip()
            c["WorkingDir"] = os.path.normpath(
                wd if wd.startswith("/") else os.path.join(c.get("WorkingDir") or "/", wd)
            )
        elif ins == "USER":
            c["User"] = text.strip()
        elif ins == "EXPOSE":
            ports = dict(c.get("ExposedPorts") or {})
            for p in text.split():
                m = re.fullmatch(r"(\d+)(?:-(\d+))?(/(tcp|udp|sctp))?", p)
                if not m or not all(0 < int(n) < 65536 for n in m.groups()[:2] if n):
                    raise BuildError(where, f"invalid EXPOSE port {p!r}")
                ports[p if "/" in p else f"{p}/tcp"] = {}
            c["ExposedPorts"] = ports
        elif ins == "VOLUME":
            vols = dict(c.get("Volumes") or {})
            argv, is_exec = _json_or_shell(text, where)
            for v in argv if is_exec else text.split():
                vols[v] = {}
            c["Volumes"] = vols
        elif ins == "STOPSIGNAL":
            c["StopSignal"] = text.strip()
        return c

    def _run(
        self,
        text: str,
        where: str,
        parent: str,
        base: dict[str, Any],
        config: dict[str, Any],
        args: dict[str, str],
    ) -> tuple[str, dict[str, Any]]:
        from . import containers, lifecycle

        argv, is_exec = _json_or_shell(text, where)
        cmd = argv if is_exec else ["/bin/sh", "-c", argv[0]]
        env = [f"{k}={v}" for k, v in args.items()]
        o = containers.CreateOptions(
            parent,
            command=cmd,
            entrypoint=[],
            env=env,
            workdir=config.get("WorkingDir") or None,
            user=config.get("User") or None,
            network="none",
        )
        try:
            cid = containers.create(self.store, self.images, o)
        except RrefError as e:  # the image's config (USER, WORKDIR) does not fit: a build step
            raise BuildError(where, str(e)) from None
        faults.point("build.container")
        try:
            code = lifecycle.start(self.store, cid, attach=True)
            if code != 0:
                shown = cmd if is_exec else f"/bin/sh -c {argv[0]}"
                raise BuildError(where, f"The command '{shown}' returned a non-zero code: {code}")
            cfg, upper, lowers = cm._layer_context(self.store, self.images, cid)
            diff_id = cm.add_changeset(self.images, upper, lowers, cm.excluded_paths(cfg))
            faults.point("build.layer")
        finally:
            containers.remove(self.store, cid, force=True)
        image_id = self.images.add_image(
            cm.new_image_config(base, diff_id, config, " ".join(cmd), empty_layer=diff_id is None)
        )
        return image_id, config

    def _copy_args(
        self, text: str, where: str
    ) -> tuple[dict[str, str], list[str], str, str | None]:
        argv, is_exec = _json_or_shell(text, where)
        words = argv if is_exec else shlex.split(text)
        flags: dict[str, str] = {}
        while words and words[0].startswith("--"):
            k, _, v = words.pop(0)[2:].partition("=")
            if k not in ("chown", "chmod", "from"):
                raise BuildError(where, f"unknown flag --{k}")
            flags[k] = v
        if len(words) < 2:
            raise BuildError(where, "COPY/ADD want at least one source and a destination")
        if any(re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", w) for w in words[:-1]):
            raise BuildError(
                where, "sources from URLs are not supported: rref builds from local files only"
            )
        return flags, words[:-1], words[-1], flags.get("from")

    def _copy(
        self,
        ins: str,
        flags: dict[str, str],
        srcs: list[str],
        dest: str,
        from_stage: str | None,
        where: str,
        parent: str,
        base: dict[str, Any],
        config: dict[str, Any],
    ) -> tuple[str, dict[str, Any]]:
        from .buildcopy import build_copy_layer

        wd = config.get("WorkingDir") or "/"
        dest_abs = os.path.normpath(dest if dest.startswith("/") else os.path.join(wd, dest))
        as_dir = dest.endswith("/") or os.path.basename(dest) in (".", "..")
        diff_id = build_copy_layer(
            self, ins, flags, srcs, dest_abs, as_dir, from_stage, where, parent
        )
        image_id = self.images.add_image(
            cm.new_image_config(base, diff_id, config, f"{ins} {' '.join(srcs)} {dest}")
        )
        return image_id, config


def _env(config: dict[str, Any]) -> dict[str, str]:
    return {e.partition("=")[0]: e.partition("=")[2] for e in config.get("Env") or []}


def build(
    store: Store,
    images: ImageStore,
    context: str,
    dockerfile: str | None,
    tags: list[str],
    build_args: dict[str, str],
    no_cache: bool = False,
    quiet: bool = False,
) -> str:
    for t in tags:
        cm._check_ref(t)
    if not os.path.isdir(context):
        raise RrefError(f"unable to prepare context: path {context!r} not found", 1)
    b = Builder(store, images, context, dockerfile, build_args, no_cache, quiet)
    image_id = b.run()
    b.say(f"Successfully built {image_id[7:19]}")
    for t in tags:
        images.tag(image_id, t)
        b.say(f"Successfully tagged {normalize_ref(t)}")
    return image_id
