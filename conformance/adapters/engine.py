"""Adapters for docker-like engines driven through their CLI: podman and docker.

Why: engines add what low-level runtimes lack (images, logs, stop, commit/diff), so they
are tested through the same `ContainerSpec` in the docker dialect (`dockercli`). Rules of
this host: rlimits are pinned (CAP_SYS_RESOURCE is missing, so podman cannot raise them)
and the network is `none` unless the host network is asked for -- never the engine's
default 10.x bridge. The base image is the suite's busybox tree, imported once per
session under a per-session tag and untagged at the end.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

from conformance import launcher, rootfs
from conformance.adapters.base import Container, ContainerSpec, Result, verified_layer
from conformance.adapters.dockercli import DOCKER_CLI, DockerCliRuntime
from conformance.errors import Unsupported
from conformance.workspace import Workspace

ULIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")


class EngineRuntime(DockerCliRuntime):
    """What podman and docker share beyond the dialect: the imported base image, pinned
    rlimits, namespace flags, no bridge of theirs, and images removed at the end."""

    kind = "engine"
    #: namespaces whose private form must be asked for (the others are private by default)
    PRIVATE_BY_FLAG: frozenset[str] = frozenset({"ipc", "cgroup"})

    def __init__(self, name: str, binary: str, oci_runtime: str | None = None) -> None:
        super().__init__()
        self.name = name
        self.oci_runtime = oci_runtime  # podman --runtime: another OCI runtime under it
        self._locate(binary)

    def _argv(self, *args: str) -> list[str]:
        argv = super()._argv(*args)
        if self.oci_runtime:
            argv[1:1] = ["--runtime", self.oci_runtime]
        return argv

    def available(self) -> str | None:
        reason = super().available()
        if reason is None and self.oci_runtime and not os.access(self.oci_runtime, os.X_OK):
            return f"runtime {self.name} not installed ({self.oci_runtime} not found)"
        return reason

    def prepare(self, ws: Workspace) -> None:
        self.ws = ws
        tar = ws.dir / f"{self.name}-rootfs.tar"
        rootfs.write_tar(ws.base_tree(), tar)
        tag = f"localhost/conform-busybox:{ws.base_hash()}-{ws.sid}"
        self._cli("import", str(tar), tag, timeout=120)
        tar.unlink()
        self.image = tag
        self.images.append(tag)

    def close(self) -> None:
        for name in sorted(self.live):  # a safety net: teardown should have removed them
            self._rm(name, check=False)
        self.live.clear()
        for image in self.images:
            self._cli("rmi", "-f", image, check=False, timeout=60)
        self.images.clear()

    def namespace_flags(self, spec: ContainerSpec) -> list[str]:
        ns = spec.effective_namespaces()
        f: list[str] = [*ULIMITS]
        if "mnt" not in ns:
            raise Unsupported(f"no mount namespace (runtime {self.name})")
        for kind, flag in (
            ("pid", "--pid"),
            ("ipc", "--ipc"),
            ("uts", "--uts"),
            ("cgroup", "--cgroupns"),
        ):
            if kind in ns:
                if kind in self.PRIVATE_BY_FLAG:
                    f.append(f"{flag}=private")
            else:
                f.append(f"{flag}=host")
        if spec.network == "bridge":
            raise Unsupported(
                f"network:bridge (runtime {self.name}: the engine's "
                "default bridge is not the project's test subnet)"
            )
        f += ["--network", "host" if spec.network == "host" else "none"]
        if "user" in ns and not (spec.uid_map or spec.gid_map):
            raise Unsupported(f"user namespace without id maps ({self.name})")
        for m in spec.uid_map or spec.gid_map:
            f += ["--uidmap", str(m)]
        for m in spec.gid_map or spec.uid_map:
            f += ["--gidmap", str(m)]
        return f

    def lowerdirs(self, c: Container) -> list[Path]:
        """LowerDir without docker's per-container `<id>-init` layer."""
        return [Path(p) for p in self._lowerdir_text(c) if not p.endswith("-init/diff")]


class PodmanRuntime(EngineRuntime):
    """podman 4: every namespace flag is explicit, `rm -t 0`, its own event log, and
    `save --format oci-dir` gives the stored layer tars."""

    program = "podman"
    #: Only podman's `save --uncompressed --format oci-dir` is known to give the stored
    #: layer tars byte for byte (checked against the diff_ids).
    CAPABILITIES = DOCKER_CLI | {"layer-tar"}
    PRIVATE_BY_FLAG = frozenset({"pid", "ipc", "uts", "cgroup"})

    def _rm(self, ref: str, check: bool = True) -> Result:
        return self._cli("rm", "-f", "-t", "0", ref, check=check)

    def layer_tar(self, image: str) -> Path:
        assert self.ws is not None
        layers = self._cli("image", "inspect", "-f", "{{json .RootFS.Layers}}", image).stdout
        diff_id = json.loads(layers)[-1]
        out = self.ws.dir / f"{self.name}-save-{uuid.uuid4().hex[:12]}"
        self._cli(
            "save", "--uncompressed", "--format", "oci-dir", "-o", str(out), image, timeout=120
        )
        return verified_layer(out / "blobs" / "sha256" / diff_id[7:], diff_id, self.name)

    def _events_window(self, since: float, until: float) -> tuple[str, ...]:
        # podman 4.3's file event log with --until returns a truncated list once the log
        # holds events out of time order; --stream=false ends at the log's end instead.
        return ("--since", f"{int(since)}", "--stream=false", "--format", "json")


class DockerRuntime(EngineRuntime):
    """docker: usable only when an engine answers (the CLI alone is a client)."""

    program = "docker"

    def __init__(self, name: str, binary: str, oci_runtime: str | None = None) -> None:
        super().__init__(name, binary, oci_runtime)
        self._available: str | bool | None = False  # False: not asked yet

    def available(self) -> str | None:
        if self._available is not False:
            return self._available  # type: ignore[return-value]
        reason = super().available()
        if reason is None:
            assert self.binary
            p = launcher.launch([self.binary, "info", "--format", "{{.ServerVersion}}"], timeout=20)
            if p.returncode != 0:
                reason = (
                    f"runtime {self.name} not installed (no docker engine answers: "
                    f"{p.stderr.strip().splitlines()[-1] if p.stderr.strip() else ''})"
                )
        self._available = reason
        return reason


def engine(name: str, binary: str, oci_runtime: str | None = None) -> EngineRuntime:
    """The adapter of the engine ``binary`` names (podman or docker), optionally on the
    OCI runtime ``oci_runtime`` (a path) instead of the engine's default one."""
    kind = PodmanRuntime if os.path.basename(binary) == "podman" else DockerRuntime
    return kind(name, binary, oci_runtime)
