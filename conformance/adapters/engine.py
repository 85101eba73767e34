"""Adapter for docker-like engines driven through their CLI: podman and docker.

Why: engines add what low-level runtimes lack (images, logs, stop, commit/diff), so they
are tested through the same `ContainerSpec` with their own flags. Rules of this host:
rlimits are pinned (CAP_SYS_RESOURCE is missing, so podman cannot raise them) and the
network is `none` unless the host network is asked for -- never the engine's default
10.x bridge. The base image is the suite's busybox tree, imported once per session under
a per-session tag and untagged at the end.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from conformance import launcher, rootfs
from conformance.adapters.base import (
    BASE_IMAGE,
    BaseRuntime,
    Container,
    ContainerSpec,
    Result,
    new_name,
    signal_name,
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
        "volumes",
        "named-volumes",
        "userns-map",
        "network:host",
        "seccomp",
        "cgroup-limits",
    }
)
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
        return CAPABILITIES

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
        for v in spec.volumes:
            f += ["-v", f"{v.source}:{v.target}" + (":ro" if v.readonly else "")]
        if spec.readonly_rootfs:
            f.append("--read-only")
        if spec.workdir:
            f += ["-w", spec.workdir]
        if spec.user:
            f += ["-u", spec.user]
        for c in spec.cap_add:
            f += ["--cap-add", c]
        for c in spec.cap_drop:
            f += ["--cap-drop", c]
        if spec.privileged:
            f.append("--privileged")
        if spec.no_new_privs:
            f += ["--security-opt", "no-new-privileges"]
        if spec.seccomp == "unconfined":
            f += ["--security-opt", "seccomp=unconfined"]
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
        for image in c.data.pop("images", []):
            self._cli("rmi", "-f", image, check=False)

    def logs(self, c: Container) -> Result:
        return self._cli("logs", c.id)

    def pause(self, c: Container) -> None:
        self._cli("pause", c.id)

    def unpause(self, c: Container) -> None:
        self._cli("unpause", c.id)

    def commit(self, c: Container) -> str:
        tag = f"localhost/conform-commit:{new_name().removeprefix('conform-')[:16]}"
        self._cli("commit", c.id, tag, timeout=120)
        c.data.setdefault("images", []).append(tag)
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

    def leak_markers(self, c: Container) -> list[str]:
        return [c.name, c.id]
