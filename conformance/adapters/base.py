"""What a test asks for (`ContainerSpec`) and what every runtime adapter offers (`Runtime`).

Why: one suite, many runtimes. A test builds a `ContainerSpec` and calls the adapter; each
adapter translates the spec into its runtime's language (rref flags, an OCI bundle, podman
flags). Optional operations raise `Unsupported` unless the adapter declares the matching
capability token (see `conformance.tokens.ADAPTER_TOKENS`). `Runtime` is the one protocol:
every adapter subclasses it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from conformance.errors import RuntimeFailure, Unsupported
from conformance.workspace import Workspace

#: Namespaces by their /proc/<pid>/ns name. A container gets all but user by default;
#: user is added when id maps are given.
ALL_NAMESPACES = ("pid", "mnt", "uts", "ipc", "net", "user", "cgroup")
DEFAULT_NAMESPACES = frozenset(ALL_NAMESPACES) - {"user"}

#: The suite's base image: a busybox tree (each adapter maps it to its own image store).
BASE_IMAGE = "busybox"


@dataclass(frozen=True)
class IdMap:
    """One uid/gid mapping range (container id -> host id, size)."""

    container: int
    host: int
    size: int

    def __str__(self) -> str:
        return f"{self.container}:{self.host}:{self.size}"


@dataclass(frozen=True)
class Volume:
    """A volume: a bind mount of a host path (``source`` absolute), or a named volume of
    the engine (``source`` is its name; needs the `named-volumes` capability)."""

    source: str
    target: str
    readonly: bool = False

    @property
    def named(self) -> bool:
        return not self.source.startswith("/")


@dataclass(frozen=True)
class Event:
    """One container event, in the suite's vocabulary (see `event_action`)."""

    time: float  # unix seconds
    container: str  # the container's full id
    action: str  # create, start, exec, exec_die, kill, die, stop, commit, destroy, ...
    raw: str  # the runtime's own name for it


@dataclass(frozen=True)
class Bridge:
    """The bridge network the adapter uses for network="bridge": its own name and subnet."""

    name: str
    subnet: str  # CIDR, e.g. 172.31.77.0/24


#: Runtime event names -> the suite's (docker's names, podman's synonyms).
_ACTIONS = {
    "exec_create": "exec",
    "exec_start": "exec",
    "exec_died": "exec_die",
    "died": "die",
    "remove": "destroy",
}


def event_action(raw: str) -> str:
    """`exec_start: sh -c x` -> `exec`; podman's `died`/`remove` -> `die`/`destroy`."""
    name = raw.split(":", 1)[0].strip().lower()
    return _ACTIONS.get(name, name)


@dataclass
class ContainerSpec:
    """Everything a test can ask of a container, independent of the runtime."""

    argv: list[str] = field(default_factory=lambda: ["true"])
    image: str = BASE_IMAGE
    hostname: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    namespaces: frozenset[str] = DEFAULT_NAMESPACES
    uid_map: list[IdMap] = field(default_factory=list)
    gid_map: list[IdMap] = field(default_factory=list)
    memory: int | None = None  # bytes
    memory_swap: int | None = None  # bytes, memory + swap (docker's --memory-swap)
    cpu_quota: int | None = None  # microseconds per period
    cpu_period: int | None = None  # microseconds
    pids_limit: int | None = None
    cpuset_cpus: str | None = None
    volumes: list[Volume] = field(default_factory=list)
    readonly_rootfs: bool = False
    network: Literal["none", "bridge", "host"] = "none"
    workdir: str | None = None
    user: str | None = None  # "uid[:gid]"
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    privileged: bool = False
    no_new_privs: bool = False
    seccomp: Literal["default", "unconfined"] = "default"
    seccomp_profile: str | None = None  # path of a JSON profile (docker's format, OCI's subset)
    blkio_weight: int | None = None  # 10..1000

    def effective_namespaces(self) -> frozenset[str]:
        """The namespaces to create: user joins when maps are given; host network drops net."""
        ns = set(self.namespaces)
        if self.uid_map or self.gid_map:
            ns.add("user")
        if self.network == "host":
            ns.discard("net")
        return frozenset(ns)

    def has_limits(self) -> bool:
        return any(
            v is not None
            for v in (
                self.memory,
                self.memory_swap,
                self.cpu_quota,
                self.cpu_period,
                self.pids_limit,
                self.cpuset_cpus,
                self.blkio_weight,
            )
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form, for transcripts and reports."""
        data = dataclasses.asdict(self)
        data["namespaces"] = sorted(self.namespaces)
        return data


@dataclass
class Result:
    """What a foreground command (run, exec, logs) produced."""

    exit_code: int
    stdout: str
    stderr: str
    argv: list[str] = field(default_factory=list)

    def describe(self) -> str:
        err = self.stderr.strip()
        return f"exit {self.exit_code}" + (f", stderr: {err[-2000:]}" if err else "")

    def check(self, what: str = "command") -> Result:
        """Self when the exit code is 0; else a RuntimeFailure carrying the runtime's text."""
        if self.exit_code != 0:
            raise RuntimeFailure(
                f"{what} failed ({self.describe()}; argv: {' '.join(self.argv)[:300]})"
            )
        return self


@dataclass
class Container:
    """A container started by an adapter; ``data`` is the adapter's own bookkeeping."""

    id: str
    name: str
    runtime: str
    spec: ContainerSpec
    data: dict[str, Any] = field(default_factory=dict)


def new_name() -> str:
    """A unique host-resource name for one container: conform-<uuid>."""
    return f"conform-{uuid.uuid4().hex}"


def new_image_ref(what: str = "commit") -> str:
    """A unique image reference for an image a test makes: localhost/conform-<what>:<hex>."""
    return f"localhost/conform-{what}:{uuid.uuid4().hex[:16]}"


class Runtime:
    """The adapter protocol, and its defaults: an operation the runtime lacks raises
    `Unsupported` naming the capability token it would need.

    What an adapter can do it declares in ``CAPABILITIES`` (tokens of
    `conformance.tokens.ADAPTER_TOKENS`), by its kind and version, never by asking the
    runtime under test: a declared operation that does not work is a failure of the
    runtime, not a gap of the adapter.
    """

    name: str = "?"
    kind: str = "?"
    CAPABILITIES: frozenset[str] = frozenset()
    ws: Workspace | None = None
    binary: str | None = None  # the runtime's executable, when found
    binary_arg: str = ""  # how it was given: a name on PATH or a path

    def created_namespaces(self, spec: ContainerSpec) -> frozenset[str]:
        """The namespaces (by /proc/<pid>/ns name) the runtime is asked to create for
        ``spec``; what a syscall trace of its run must show, and nothing more."""
        return spec.effective_namespaces()

    def _locate(self, binary: str) -> None:
        self.binary_arg = binary
        self.binary = binary if os.sep in binary else shutil.which(binary)

    def _new_name(self) -> str:
        """A container name, registered with the workspace for the leak check."""
        name = new_name()
        self._mark(name)
        return name

    def _mark(self, *names: str) -> None:
        if self.ws is not None:
            self.ws.mark(*names)

    def _unsupported(self, token: str) -> Unsupported:
        return Unsupported(f"{token} (runtime {self.name})")

    # ------------------------------------------------------------------ session

    def available(self) -> str | None:
        """None when usable; else why not (e.g. "runtime crun not installed")."""
        if self.binary_arg and (not self.binary or not os.access(self.binary, os.X_OK)):
            return f"runtime {self.name} not installed ({self.binary_arg} not found)"
        return None

    def capabilities(self) -> frozenset[str]:
        return self.CAPABILITIES

    def prepare(self, ws: Workspace) -> None:
        """Once per session, before the first container (build/import the base image)."""
        self.ws = ws

    def close(self) -> None:
        """Once per session, after the last container: free what prepare() made."""
        return None

    # ------------------------------------------------------------------ containers

    def run(self, spec: ContainerSpec, timeout: float = 60) -> Result:
        """Run a container in the foreground to its end."""
        raise self._unsupported("run")

    def start(self, spec: ContainerSpec) -> Container:
        """Start a detached container."""
        raise self._unsupported("detach")

    def exec(self, c: Container, argv: list[str], timeout: float = 60) -> Result:
        raise self._unsupported("exec")

    def pid(self, c: Container) -> int:
        """The host pid of the container's init."""
        raise self._unsupported("detach")

    def wait(self, c: Container, timeout: float = 60) -> int:
        """The container's exit code, once it ended."""
        raise self._unsupported("detach")

    def stop(self, c: Container, timeout: int = 10) -> None:
        raise self._unsupported("stop")

    def kill(self, c: Container, signal: str = "KILL") -> None:
        raise self._unsupported("detach")

    def remove(self, c: Container) -> None:
        raise self._unsupported("detach")

    def logs(self, c: Container) -> Result:
        raise self._unsupported("logs")

    def pause(self, c: Container) -> None:
        raise self._unsupported("pause")

    def unpause(self, c: Container) -> None:
        raise self._unsupported("pause")

    def leak_markers(self, c: Container) -> list[str]:
        """Strings that name this container's host resources (ids, paths), for leak checks."""
        return [c.name, c.id]

    # ------------------------------------------------------------------ layers and images

    def commit(self, c: Container, image: str | None = None) -> str:
        """An image of the container's changes (tagged ``image`` or a conform-* tag)."""
        raise self._unsupported("commit")

    def diff(self, c: Container) -> list[tuple[str, str]]:
        """The container's changes as (kind, path): kind A (added), C (changed), D."""
        raise self._unsupported("diff")

    def upperdir(self, c: Container) -> Path:
        raise self._unsupported("upperdir")

    def lowerdirs(self, c: Container) -> list[Path]:
        """Host paths of the image layers of the container's overlay, top first."""
        raise self._unsupported("lowerdirs")

    def import_rootfs(self, tar: Path, image: str | None = None) -> str:
        """An image made from a root filesystem tar; its reference."""
        raise self._unsupported("import")

    def load(self, tar: Path) -> str:
        """Load the (one) image of an OCI image layout tar; its reference."""
        raise self._unsupported("load")

    def layer_tar(self, image: str) -> Path:
        """The image's top layer as an uncompressed OCI changeset tar (sha256 = diff_id)."""
        raise self._unsupported("layer-tar")

    def remove_image(self, image: str) -> None:
        raise self._unsupported("images")

    # ------------------------------------------------------------------ engine services

    def volume_create(self, name: str) -> None:
        raise self._unsupported("named-volumes")

    def volume_remove(self, name: str) -> None:
        raise self._unsupported("named-volumes")

    def events(self, since: float, until: float) -> list[Event]:
        """Container events between two unix times, oldest first."""
        raise self._unsupported("events")

    def bridge(self) -> Bridge:
        """The bridge and subnet containers with network="bridge" get."""
        raise self._unsupported("network:bridge")


def verified_layer(tar: Path, diff_id: str, runtime: str) -> Path:
    """``tar`` when its sha256 is ``diff_id``; else the runtime stores a layer that is not
    the one its image config names (RuntimeFailure)."""
    h = hashlib.sha256()
    try:
        with open(tar, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    except OSError as e:
        raise RuntimeFailure(f"{runtime}: layer {diff_id} has no tar ({e})") from None
    if f"sha256:{h.hexdigest()}" != diff_id:
        raise RuntimeFailure(
            f"{runtime}: the tar of layer {diff_id} hashes to sha256:{h.hexdigest()}"
        )
    return tar


def signal_name(sig: str | int) -> str:
    """`9`, `KILL`, `SIGKILL` -> `KILL` (what runtime CLIs accept)."""
    import signal as _signal

    if isinstance(sig, int) or str(sig).isdigit():
        return _signal.Signals(int(sig)).name.removeprefix("SIG")
    return str(sig).upper().removeprefix("SIG")
