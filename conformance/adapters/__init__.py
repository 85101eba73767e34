"""Runtime adapters and the `--runtime` vocabulary.

`--runtime` takes a comma list of choices, each `KIND` or `NAME=KIND`:

* ``ref`` -- the reference runtime's CLI (the first `rref` on PATH); ``ref:/path`` -- the rref
  CLI at that path (named after the file unless NAME= is given; several in one session each
  get their own state root); ``ref-oci`` -- rref as an OCI runtime (`rref-oci`, driven by the
  same adapter as runc);
* ``runc``, ``crun``, ``youki`` -- OCI runtimes found on PATH; ``oci:/path`` -- any
  runc-compatible binary (named after the file unless NAME= is given);
* ``podman``, ``docker`` -- engines through their CLI;
  ``engine:ENGINE:RUNTIME`` -- the engine driving another OCI runtime
  (``engine:podman:rref-oci``, ``engine:podman:/opt/bin/rt``: podman --runtime);
  ``podman-rref`` -- podman on rref-oci (the `rref-oci` beside `rref`);
* ``fake`` / ``fake:tok1+tok2`` -- no containers; for testing the harness itself.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

from conformance.adapters.base import Runtime

OCI_NAMES = ("runc", "crun", "youki")
ENGINE_NAMES = ("podman", "docker")
KINDS = (
    "ref",
    "ref:<path>",
    "ref-oci",
    *OCI_NAMES,
    *ENGINE_NAMES,
    "podman-rref",
    "engine:<engine>:<runtime>",
    "oci:<path>",
    "fake",
)


class ChoiceError(ValueError):
    """A --runtime value the suite does not understand."""


@dataclass(frozen=True)
class Choice:
    name: str
    kind: str  # ref, ref-oci, oci, engine, fake
    target: str  # binary name or path; fake: capability list
    oci_runtime: str = ""  # engine only: the OCI runtime it drives (name or path), "" = its own


def parse_choices(text: str) -> list[Choice]:
    """`ref,runc,mine=oci:/opt/rt` -> choices; duplicate names are an error."""
    out: list[Choice] = []
    for raw in (p.strip() for p in text.split(",")):
        if not raw:
            continue
        name, eq, what = raw.partition("=")
        if not eq:
            name, what = "", raw
        if what == "ref":
            choice = Choice(name or "ref", "ref", "rref")
        elif what.startswith("ref:"):
            path = what[4:]
            if not path.startswith("/"):
                raise ChoiceError(f"--runtime {raw!r}: ref: needs an absolute path")
            choice = Choice(name or os.path.basename(path), "ref", path)
        elif what == "ref-oci":
            choice = Choice(name or "ref-oci", "ref-oci", "rref-oci")
        elif what in OCI_NAMES:
            choice = Choice(name or what, "oci", what)
        elif what in ENGINE_NAMES:
            choice = Choice(name or what, "engine", what)
        elif what == "podman-rref":
            choice = Choice(name or what, "engine", "podman", "rref-oci")
        elif what.startswith("engine:"):
            engine_name, _, runtime = what[7:].partition(":")
            if engine_name != "podman" or not runtime:
                # docker picks runtimes in its daemon's configuration, not per command
                raise ChoiceError(f"--runtime {raw!r}: needs engine:podman:RUNTIME")
            if "/" in runtime and not runtime.startswith("/"):
                raise ChoiceError(f"--runtime {raw!r}: the runtime needs an absolute path")
            base = os.path.basename(runtime).removesuffix("-oci")
            choice = Choice(name or f"{engine_name}-{base}", "engine", engine_name, runtime)
        elif what.startswith("oci:"):
            path = what[4:]
            if not path.startswith("/"):
                raise ChoiceError(f"--runtime {raw!r}: oci: needs an absolute path")
            choice = Choice(name or os.path.basename(path), "oci", path)
        elif what == "fake" or what.startswith("fake:"):
            choice = Choice(name or "fake", "fake", what[5:])
        else:
            raise ChoiceError(f"--runtime {raw!r}: unknown runtime (known: {', '.join(KINDS)})")
        if not choice.name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise ChoiceError(f"--runtime {raw!r}: name {choice.name!r} must be alphanumeric")
        if any(c.name == choice.name for c in out):
            raise ChoiceError(f"--runtime: {choice.name!r} given twice")
        out.append(choice)
    if not out:
        raise ChoiceError("--runtime: no runtime given")
    return out


def _rref_oci() -> str:
    """The `rref-oci` beside the `rref` the suite uses, else the one on PATH."""
    from conformance.adapters.ref import find_rref

    rref = find_rref()
    beside = os.path.join(os.path.dirname(rref), "rref-oci") if rref else "rref-oci"
    if os.path.exists(beside):
        return beside
    return shutil.which("rref-oci") or "rref-oci"


def make(choice: Choice) -> Runtime:
    """The adapter for ``choice`` (nothing is probed or started here)."""
    if choice.kind == "ref":
        from conformance.adapters.ref import RefRuntime

        return RefRuntime(choice.name, None if choice.target == "rref" else choice.target)
    if choice.kind == "ref-oci":
        from conformance.adapters.oci import OciRuntime

        return OciRuntime(choice.name, _rref_oci())
    if choice.kind == "oci":
        from conformance.adapters.oci import OciRuntime

        return OciRuntime(choice.name, choice.target)
    if choice.kind == "engine":
        from conformance.adapters.engine import engine

        runtime = choice.oci_runtime
        if runtime == "rref-oci":
            runtime = _rref_oci()
        elif runtime and "/" not in runtime:
            runtime = shutil.which(runtime) or runtime
        return engine(choice.name, choice.target, runtime or None)
    if choice.kind == "fake":
        from conformance.adapters.stub import FakeRuntime

        caps = frozenset(t for t in choice.target.split("+") if t)
        return FakeRuntime(choice.name, caps)
    raise ChoiceError(f"unknown runtime kind {choice.kind!r}")
