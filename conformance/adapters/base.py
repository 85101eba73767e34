"""What a test asks for (`ContainerSpec`) and what every runtime adapter offers (`Runtime`).

Why: one suite, many runtimes. A test builds a `ContainerSpec` and calls the adapter; each
adapter translates the spec into its runtime's language (rref flags, an OCI bundle, podman
flags). Optional operations raise `Unsupported` unless the adapter declares the matching
capability token (see `conformance.tokens.ADAPTER_TOKENS`).
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

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
    """A bind mount of a host path into the container."""

    source: str
    target: str
    readonly: bool = False


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


@runtime_checkable
class Runtime(Protocol):
    """The adapter protocol. Methods a runtime lacks raise `Unsupported`."""

    name: str
    kind: str

    def available(self) -> str | None:
        """None when usable; else why not (e.g. "runtime crun not installed")."""

    def capabilities(self) -> frozenset[str]: ...

    def prepare(self, ws: Workspace) -> None:
        """Once per session, before the first container (build/import the base image)."""

    def close(self) -> None:
        """Once per session, after the last container: free what prepare() made."""

    def run(self, spec: ContainerSpec, timeout: float = 60) -> Result: ...

    def start(self, spec: ContainerSpec) -> Container: ...

    def exec(self, c: Container, argv: list[str], timeout: float = 60) -> Result: ...

    def pid(self, c: Container) -> int: ...

    def wait(self, c: Container, timeout: float = 60) -> int: ...

    def stop(self, c: Container, timeout: int = 10) -> None: ...

    def kill(self, c: Container, signal: str = "KILL") -> None: ...

    def remove(self, c: Container) -> None: ...

    def logs(self, c: Container) -> Result: ...

    def pause(self, c: Container) -> None: ...

    def unpause(self, c: Container) -> None: ...

    def commit(self, c: Container) -> str: ...

    def diff(self, c: Container) -> list[tuple[str, str]]: ...

    def upperdir(self, c: Container) -> Path: ...

    def leak_markers(self, c: Container) -> list[str]:
        """Strings that name this container's host resources (ids, paths), for leak checks."""


class BaseRuntime:
    """Defaults for the optional parts of the protocol."""

    name = "?"
    kind = "?"
    ws: Workspace | None = None

    def _new_name(self) -> str:
        """A container name, registered with the workspace for the leak check."""
        name = new_name()
        self._mark(name)
        return name

    def _mark(self, *names: str) -> None:
        if self.ws is not None:
            self.ws.mark(*names)

    def available(self) -> str | None:
        return None

    def capabilities(self) -> frozenset[str]:
        return frozenset()

    def prepare(self, ws: Workspace) -> None:
        self.ws = ws

    def close(self) -> None:
        return None

    def _unsupported(self, what: str) -> Unsupported:
        return Unsupported(f"unsupported: {what} (runtime {self.name})")

    def run(self, spec: ContainerSpec, timeout: float = 60) -> Result:
        raise self._unsupported("run")

    def start(self, spec: ContainerSpec) -> Container:
        raise self._unsupported("detach")

    def exec(self, c: Container, argv: list[str], timeout: float = 60) -> Result:
        raise self._unsupported("exec")

    def pid(self, c: Container) -> int:
        raise self._unsupported("detach")

    def wait(self, c: Container, timeout: float = 60) -> int:
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

    def commit(self, c: Container) -> str:
        raise self._unsupported("commit")

    def diff(self, c: Container) -> list[tuple[str, str]]:
        raise self._unsupported("diff")

    def upperdir(self, c: Container) -> Path:
        raise self._unsupported("upperdir")

    def leak_markers(self, c: Container) -> list[str]:
        return [c.name, c.id]


def signal_name(sig: str | int) -> str:
    """`9`, `KILL`, `SIGKILL` -> `KILL` (what runtime CLIs accept)."""
    import signal as _signal

    if isinstance(sig, int) or str(sig).isdigit():
        return _signal.Signals(int(sig)).name.removeprefix("SIG")
    return str(sig).upper().removeprefix("SIG")
