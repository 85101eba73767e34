"""Adapter for docker-like engines driven through their CLI: podman and docker.

Why: engines add what low-level runtimes lack (images, logs, stop, commit/diff), so they
are tested through the same `ContainerSpec` with their own flags. Rules of this host:
rlimits are pinned (CAP_SYS_RESOURCE is missing, so podman cannot raise them) and the
network is `none` unless the host network is asked for -- never the engine's default
10.x bridge. The base image is the suite's busybox tree, imported once per session under
a per-session tag and untagged at the end.
"""

from __future__ import annotations

import calendar
import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from conformance import launcher, rootfs
from conformance.adapters.base import (
    BASE_IMAGE,
    BaseRuntime,
    Container,
    ContainerSpec,
    Event,
    Result,
    event_action,
    new_image_ref,
    signal_name,
    verified_layer,
)
from conformance.errors import RuntimeFailure, Unsupported
from conformance.workspace import Workspace

CAPABILITIES = frozenset(
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
#: Only podman's `save --uncompressed --format oci-dir` is known to give the stored layer
#: tars byte for byte (checked against the diff_ids); docker's save is not tried here.
PODMAN_ONLY = frozenset({"layer-tar"})
ULIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")


class EngineRuntime(BaseRuntime):
    kind = "engine"

    def __init__(self, name: str, binary: str) -> None:
        self.name = name
        self.engine = os.path.basename(binary)  # "podman" or "docker": flag dialect
        self.binary = binary if os.sep in binary else shutil.which(binary)
        self.image: str | None = None
        self.images: list[str] = []
        self.live: set[str] = set()  # names of detached containers not removed yet
        self._available: str | bool | None = False

    def available(self) -> str | None:
        if self._available is not False:
            return self._available  # type: ignore[return-value]
        reason: str | None = None
        if not self.binary or not os.access(self.binary, os.X_OK):
            reason = f"runtime {self.name} not installed ({self.engine} not found)"
        elif self.engine == "docker":
            p = launcher.launch([self.binary, "info", "--format", "{{.ServerVersion}}"], timeout=20)
            if p.returncode != 0:
                reason = (
                    f"runtime {self.name} not installed (no docker engine answers: "
                    f"{p.stderr.strip().splitlines()[-1] if p.stderr.strip() else ''})"
                )
        self._available = reason
        return reason

    def capabilities(self) -> frozenset[str]:
        return CAPABILITIES | (PODMAN_ONLY if self.engine == "podman" else frozenset())

    def _cli(self, *args: str, timeout: float = 60, check: bool = True) -> Result:
        assert self.binary
        argv = [self.binary, *args]
        p = launcher.launch(argv, timeout=timeout)
        res = Result(p.returncode, p.stdout, p.stderr, argv)
        if check:
            res.check(f"{self.engine} {args[0]}")
        return res

    def prepare(self, ws: Workspace) -> None:
        self.ws = ws
        tar = ws.dir / f"{self.name}-rootfs.tar"
        rootfs.write_tar(ws.base_tree(), tar)
        tag = f"localhost/conform-busybox:{ws.base_hash()}-{ws.sid}"
        self._cli("import", str(tar), tag, timeout=120)
        tar.unlink()
        self.image = tag
        self.images.append(tag)

    def _rm(self, ref: str, check: bool = True) -> Result:
        rm = ["rm", "-f", "-t", "0"] if self.engine == "podman" else ["rm", "-f"]
        return self._cli(*rm, ref, check=check)

    def close(self) -> None:
        for name in sorted(self.live):  # a safety net: teardown should have removed them
            self._rm(name, check=False)
        self.live.clear()
        for image in self.images:
            self._cli("rmi", "-f", image, check=False, timeout=60)
        self.images.clear()

    def flags(self, spec: ContainerSpec) -> list[str]:
        """`run` flags for ``spec`` in this engine's dialect."""
        ns = spec.effective_namespaces()
        podman = self.engine == "podman"
        f: list[str] = [*ULIMITS]
        if "mnt" not in ns:
            raise Unsupported(f"unsupported: no mount namespace (runtime {self.name})")
        for kind, flag in (
            ("pid", "--pid"),
            ("ipc", "--ipc"),
            ("uts", "--uts"),
            ("cgroup", "--cgroupns"),
        ):
            if kind in ns:
                if podman or kind in ("ipc", "cgroup"):
                    f.append(f"{flag}=private")
            else:
                f.append(f"{flag}=host")
        if spec.network == "bridge":
            raise Unsupported(
                f"unsupported: network:bridge (runtime {self.name}: the engine's "
                "default bridge is not the project's test subnet)"
            )
        f += ["--network", "host" if spec.network == "host" else "none"]
        if "user" in ns and not (spec.uid_map or spec.gid_map):
            raise Unsupported(f"unsupported: user namespace without id maps ({self.name})")
        for m in spec.uid_map or spec.gid_map:
            f += ["--uidmap", str(m)]
        for m in spec.gid_map or spec.uid_map:
            f += ["--gidmap", str(m)]
        if spec.hostname:
            f += ["--hostname", spec.hostname]
        for k, v in spec.env.items():
            f += ["-e", f"{k}={v}"]
        if spec.memory is not None:
            f += ["--memory", str(spec.memory)]
        if spec.memory_swap is not None:
            f += ["--memory-swap", str(spec.memory_swap)]
        if spec.cpu_quota is not None:
            f += ["--cpu-quota", str(spec.cpu_quota)]
        if spec.cpu_period is not None:
            f += ["--cpu-period", str(spec.cpu_period)]
        if spec.pids_limit is not None:
            f += ["--pids-limit", str(spec.pids_limit)]
        if spec.cpuset_cpus is not None:
            f += ["--cpuset-cpus", spec.cpuset_cpus]
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
        if spec.image == BASE_IMAGE:
            assert self.image, "prepare() first"
            return self.image
        return spec.image

    def run(self, spec: ContainerSpec, timeout: float = 60) -> Result:
        name = self._new_name()
        flags = self.flags(spec)
        try:
            return self._cli(
                "run",
                "--rm",
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

    def start(self, spec: ContainerSpec) -> Container:
        name = self._new_name()
        res = self._cli(
            "run",
            "-d",
            "--name",
            name,
            *self.flags(spec),
            self._image(spec),
            *spec.argv,
            check=False,
        )
        if res.exit_code != 0:
            self._rm(name, check=False)
            res.check(f"{self.engine} run -d")
        cid = res.stdout.strip().splitlines()[-1]
        self.live.add(name)
        self._mark(cid)
        return Container(id=cid, name=name, runtime=self.name, spec=spec)

    def inspect(self, c: Container, fmt: str) -> str:
        return self._cli("inspect", "-f", fmt, c.id).stdout.strip()

    def exec(self, c: Container, argv: list[str], timeout: float = 60) -> Result:
        return self._cli("exec", c.id, *argv, timeout=timeout, check=False)

    def pid(self, c: Container) -> int:
        pid = int(self.inspect(c, "{{.State.Pid}}") or 0)
        if pid <= 0:
            raise RuntimeFailure(f"{self.engine} reports no pid for {c.id[:12]} (not running)")
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

    def lowerdirs(self, c: Container) -> list[Path]:
        """LowerDir without docker's per-container `<id>-init` layer."""
        text = self.inspect(c, "{{.GraphDriver.Data.LowerDir}}")
        return [Path(p) for p in text.split(":") if p and not p.endswith("-init/diff")]

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
            raise RuntimeFailure(f"{self.engine} load named no image: {out.strip()!r}")
        self.images.extend(names)
        return names[-1]

    def layer_tar(self, image: str) -> Path:
        if self.engine != "podman":
            raise self._unsupported("layer-tar")
        assert self.ws is not None
        layers = self._cli("image", "inspect", "-f", "{{json .RootFS.Layers}}", image).stdout
        diff_id = json.loads(layers)[-1]
        out = self.ws.dir / f"{self.name}-save-{uuid.uuid4().hex[:12]}"
        self._cli(
            "save", "--uncompressed", "--format", "oci-dir", "-o", str(out), image, timeout=120
        )
        return verified_layer(out / "blobs" / "sha256" / diff_id[7:], diff_id, self.name)

    def remove_image(self, image: str) -> None:
        self._cli("rmi", "-f", image)
        if image in self.images:
            self.images.remove(image)

    def volume_create(self, name: str) -> None:
        self._cli("volume", "create", name)

    def volume_remove(self, name: str) -> None:
        self._cli("volume", "rm", "-f", name)

    def events(self, since: float, until: float) -> list[Event]:
        if self.engine == "podman":
            # podman 4.3's file event log with --until returns a truncated list once the log
            # holds events out of time order; --stream=false ends at the log's end instead.
            window: tuple[str, ...] = ("--since", f"{int(since)}", "--stream=false")
            window += ("--format", "json")
        else:
            window = ("--since", f"{since:.6f}", "--until", f"{until:.6f}")
            window += ("--format", "{{json .}}")
        out = self._cli("events", *window).stdout
        events = [_event(json.loads(ln)) for ln in out.splitlines() if ln.strip()]
        return sorted(
            (e for e in events if e.container and since <= e.time <= until), key=lambda e: e.time
        )

    def leak_markers(self, c: Container) -> list[str]:
        return [c.name, c.id]


def _event(ev: dict[str, Any]) -> Event:
    """podman's (ID, Status, Time as RFC 3339) or docker's (id, Action, timeNano) shape."""
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
