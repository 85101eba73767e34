"""The docker-style command line, written once: rref, podman and docker speak it.

Why: `run -d --name N FLAGS IMAGE ARGV`, `inspect -f`, `commit`, `diff`, `events`, `load`,
`volume create` mean the same in every docker-like CLI. `DockerCliRuntime` holds that
dialect; a subclass (`ref.RefRuntime`, `engine.PodmanRuntime`, `engine.DockerRuntime`)
declares its binary and capabilities and overrides only where its runtime really differs:
how namespaces are asked for, how a container is removed, where layers and events live.
"""

from __future__ import annotations

import calendar
import json
import time
from pathlib import Path
from typing import Any

from conformance import launcher
from conformance.adapters.base import (
    BASE_IMAGE,
    Container,
    ContainerSpec,
    Event,
    Result,
    Runtime,
    event_action,
    new_image_ref,
    signal_name,
)
from conformance.errors import RuntimeFailure

#: What the docker dialect offers when the runtime behind it has images (rref, podman,
#: docker); a subclass adds or removes what its runtime really has.
DOCKER_CLI = frozenset(
    {
        "detach",
        "exec",
        "pause",
        "stop",
        "logs",
        "engine",
        "commit",
        "diff",
        "upperdir",
        "lowerdirs",
        "import",
        "load",
        "events",
        "volumes",
        "named-volumes",
        "userns-map",
        "network:host",
        "seccomp",
        "seccomp-profile",
        "cgroup-limits",
    }
)


class DockerCliRuntime(Runtime):
    """An adapter driving a docker-like CLI; ``program`` names it in messages."""

    program = "docker"
    CAPABILITIES = DOCKER_CLI

    def __init__(self) -> None:
        self.image: str | None = None  # the session's base image, when it is not BASE_IMAGE
        self.images: list[str] = []  # images the session made, for close() to remove
        self.live: set[str] = set()  # names of detached containers not removed yet

    # ------------------------------------------------------------------ the command line

    def _argv(self, *args: str) -> list[str]:
        """The full command line (a subclass adds global options such as --root)."""
        assert self.binary, "no binary: check available() first"
        return [self.binary, *args]

    def _env(self) -> dict[str, str] | None:
        return None

    def _cli(self, *args: str, timeout: float = 60, check: bool = True) -> Result:
        argv = self._argv(*args)
        p = launcher.launch(argv, timeout=timeout, env=self._env())
        res = Result(p.returncode, p.stdout, p.stderr, argv)
        if check:
            res.check(f"{self.program} {args[0]}")
        return res

    def _rm(self, ref: str, check: bool = True) -> Result:
        return self._cli("rm", "-f", ref, check=check)

    # ------------------------------------------------------------------ flags

    def namespace_flags(self, spec: ContainerSpec) -> list[str]:
        """Flags for the namespaces, network and id maps of ``spec`` (Unsupported for what
        this CLI cannot express): where the docker-like CLIs differ."""
        raise NotImplementedError

    def flags(self, spec: ContainerSpec) -> list[str]:
        """`run` flags for ``spec`` in this CLI's dialect."""
        f = self.namespace_flags(spec)
        if spec.hostname:
            f += ["--hostname", spec.hostname]
        for k, v in spec.env.items():
            f += ["-e", f"{k}={v}"]
        for flag, value in (
            ("--memory", spec.memory),
            ("--memory-swap", spec.memory_swap),
            ("--cpu-quota", spec.cpu_quota),
            ("--cpu-period", spec.cpu_period),
            ("--pids-limit", spec.pids_limit),
            ("--cpuset-cpus", spec.cpuset_cpus),
        ):
            if value is not None:
                f += [flag, str(value)]
        for vol in spec.volumes:
            f += ["-v", f"{vol.source}:{vol.target}" + (":ro" if vol.readonly else "")]
        if spec.readonly_rootfs:
            f.append("--read-only")
        if spec.workdir:
            f += ["-w", spec.workdir]
        if spec.user:
            f += ["-u", spec.user]
        for cap in spec.cap_add:
            f += ["--cap-add", cap]
        for cap in spec.cap_drop:
            f += ["--cap-drop", cap]
        if spec.privileged:
            f.append("--privileged")
        if spec.no_new_privs:
            f += ["--security-opt", "no-new-privileges"]
        if spec.seccomp == "unconfined":
            f += ["--security-opt", "seccomp=unconfined"]
        if spec.seccomp_profile:
            f += ["--security-opt", f"seccomp={spec.seccomp_profile}"]
        if spec.blkio_weight is not None:
            f += ["--blkio-weight", str(spec.blkio_weight)]
        return f

    def _image(self, spec: ContainerSpec) -> str:
        if spec.image == BASE_IMAGE and self.image is not None:
            return self.image
        return spec.image

    # ------------------------------------------------------------------ containers

    def _run(self, mode: str, spec: ContainerSpec, timeout: float) -> tuple[str, Result]:
        """`run MODE --name N FLAGS IMAGE ARGV`; a container left by a timeout is removed."""
        name = self._new_name()
        flags = self.flags(spec)
        try:
            res = self._cli(
                "run",
                mode,
                "--name",
                name,
                *flags,
                self._image(spec),
                *spec.argv,
                timeout=timeout,
                check=False,
            )
        except RuntimeFailure:  # timed out: the container may still exist
            self._rm(name, check=False)
            raise
        return name, res

    def run(self, spec: ContainerSpec, timeout: float = 60) -> Result:
        return self._run("--rm", spec, timeout)[1]

    def start(self, spec: ContainerSpec) -> Container:
        name, res = self._run("-d", spec, 60)
        if res.exit_code != 0:
            self._rm(name, check=False)
            res.check(f"{self.program} run -d")
        cid = res.stdout.strip().splitlines()[-1]
        self.live.add(name)
        c = Container(id=cid, name=name, runtime=self.name, spec=spec)
        self._mark(*self._host_names(c))
        return c

    def _host_names(self, c: Container) -> list[str]:
        """Names of the host resources a started container owns, for the leak check."""
        return [c.id]

    def inspect(self, c: Container, fmt: str) -> str:
        return self._cli("inspect", "-f", fmt, c.id).stdout.strip()

    def exec(self, c: Container, argv: list[str], timeout: float = 60) -> Result:
        return self._cli("exec", c.id, *argv, timeout=timeout, check=False)

    def pid(self, c: Container) -> int:
        pid = int(self.inspect(c, "{{.State.Pid}}") or 0)
        if pid <= 0:
            raise RuntimeFailure(f"{self.program} reports no pid for {c.id[:12]} (not running)")
        return pid

    def wait(self, c: Container, timeout: float = 60) -> int:
        return int(self._cli("wait", c.id, timeout=timeout).stdout.split()[-1])

    def stop(self, c: Container, timeout: int = 10) -> None:
        self._cli("stop", "-t", str(timeout), c.id, timeout=timeout + 30)

    def kill(self, c: Container, signal: str = "KILL") -> None:
        self._cli("kill", "-s", signal_name(signal), c.id)

    def remove(self, c: Container) -> None:
        self._rm(c.id)
        self.live.discard(c.name)

    def logs(self, c: Container) -> Result:
        return self._cli("logs", c.id)

    def pause(self, c: Container) -> None:
        self._cli("pause", c.id)

    def unpause(self, c: Container) -> None:
        self._cli("unpause", c.id)

    # ------------------------------------------------------------------ layers and images

    def commit(self, c: Container, image: str | None = None) -> str:
        tag = image or new_image_ref("commit")
        self.images.append(tag)  # close() removes what a test did not
        self._cli("commit", c.id, tag, timeout=120)
        return tag

    def diff(self, c: Container) -> list[tuple[str, str]]:
        out = []
        for line in self._cli("diff", c.id).stdout.splitlines():
            kind, _, path = line.partition(" ")
            if path:
                out.append((kind, path))
        return out

    def upperdir(self, c: Container) -> Path:
        return Path(self.inspect(c, "{{.GraphDriver.Data.UpperDir}}"))

    def _lowerdir_text(self, c: Container) -> list[str]:
        """GraphDriver LowerDir, split (the subclass drops the per-container init layer)."""
        return [p for p in self.inspect(c, "{{.GraphDriver.Data.LowerDir}}").split(":") if p]

    def import_rootfs(self, tar: Path, image: str | None = None) -> str:
        tag = image or new_image_ref("import")
        self.images.append(tag)
        self._cli("import", str(tar), tag, timeout=120)
        return tag

    def load(self, tar: Path) -> str:
        out = self._cli("load", "-i", str(tar), timeout=120).stdout
        names = [
            n.strip()
            for ln in out.splitlines()
            if ln.startswith("Loaded image")
            for n in ln.split(":", 1)[1].split(",")
        ]
        if not names:
            raise RuntimeFailure(f"{self.program} load named no image: {out.strip()!r}")
        self.images.extend(names)
        return names[-1]

    def remove_image(self, image: str) -> None:
        self._cli("rmi", "-f", image)
        if image in self.images:
            self.images.remove(image)

    # ------------------------------------------------------------------ engine services

    def volume_create(self, name: str) -> None:
        self._cli("volume", "create", name)

    def volume_remove(self, name: str) -> None:
        self._cli("volume", "rm", "-f", name)

    def _events_window(self, since: float, until: float) -> tuple[str, ...]:
        """`events` arguments for the window (docker's; podman's differ)."""
        return ("--since", f"{since:.6f}", "--until", f"{until:.6f}", "--format", "{{json .}}")

    def events(self, since: float, until: float) -> list[Event]:
        out = self._cli("events", *self._events_window(since, until)).stdout
        events = [parse_event(json.loads(ln)) for ln in out.splitlines() if ln.strip()]
        return sorted(
            (e for e in events if e.container and since <= e.time <= until), key=lambda e: e.time
        )


def parse_event(ev: dict[str, Any]) -> Event:
    """docker's and rref's (id, Action, timeNano) or podman's (ID, Status, Time as RFC 3339)
    shape of one event; not a container event -> an Event without a container."""
    if ev.get("Type", "container") != "container":
        return Event(0.0, "", "", "")
    raw = ev.get("Action") or ev.get("Status") or ev.get("status") or ""
    cid = ev.get("id") or ev.get("ID") or ""
    if "timeNano" in ev:
        t = ev["timeNano"] / 1e9
    else:
        t = _rfc3339(ev.get("Time") or ev.get("time") or "")
    return Event(t, cid, event_action(raw), raw)


def _rfc3339(text: str) -> float:
    """`2026-01-02T03:04:05.123456789Z` (or with an offset) -> unix seconds."""
    if not text:
        return 0.0
    main, frac, zone = text, "", "Z"
    if text.endswith("Z"):
        main = text[:-1]
    elif len(text) > 6 and text[-6] in "+-" and text[-3] == ":":
        main, zone = text[:-6], text[-6:]
    if "." in main:
        main, frac = main.split(".", 1)
    t = calendar.timegm(time.strptime(main, "%Y-%m-%dT%H:%M:%S")) + float(f"0.{frac or 0}")
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        t -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return t
