"""Adapter for the reference runtime: the `rref` CLI with a private --root per session.

Why: rref is the runtime the suite is calibrated on; its flags follow docker's, so this is
the model for the engine adapter too.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from conformance import launcher
from conformance.adapters.base import (
    DEFAULT_NAMESPACES,
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
        "upperdir",
        "volumes",
        "named-volumes",
        "userns-map",
        "network:bridge",
        "network:host",
        "seccomp",
        "cgroup-limits",
    }
)


def find_rref() -> str | None:
    return shutil.which("rref") or shutil.which("rref", path=os.path.dirname(sys.executable))


class RefRuntime(BaseRuntime):
    kind = "ref"

    def __init__(self, name: str = "ref", binary: str | None = None) -> None:
        self.name = name
        self.binary = binary or find_rref()
        self.root: Path | None = None
        self.extra: frozenset[str] = frozenset()

    def available(self) -> str | None:
        if not self.binary or not os.access(self.binary, os.X_OK):
            return f"runtime {self.name} not installed (no rref on PATH)"
        return None

    def capabilities(self) -> frozenset[str]:
        return CAPABILITIES | self.extra

    def prepare(self, ws: Workspace) -> None:
        self.ws = ws
        self.root = ws.path(f"ref-{self.name}")
        # Verbs rref grew later are picked up from its help text (first column of COMMAND).
        verbs = {
            ln.split()[0]
            for ln in self._cli("--help", check=False).stdout.splitlines()
            if ln.startswith("    ") and ln.split()
        }
        self.extra = frozenset(v for v in ("commit", "diff") if v in verbs)

    def close(self) -> None:
        if self.root is None:
            return
        ids = self._cli("ps", "-a", "-q", "--no-trunc", check=False).stdout.split()
        for cid in ids:
            self._cli("rm", "-f", cid, check=False)

    # ------------------------------------------------------------------ helpers

    def _cli(self, *args: str, timeout: float = 60, check: bool = True) -> Result:
        assert self.binary and self.root, "prepare() first"
        argv = [self.binary, "--root", str(self.root), *args]
        p = launcher.launch(argv, timeout=timeout)
        res = Result(p.returncode, p.stdout, p.stderr, argv)
        if check:
            res.check(f"rref {args[0]}")
        return res

    def flags(self, spec: ContainerSpec) -> list[str]:
        """rref run/create flags for ``spec`` (Unsupported for what rref cannot express)."""
        want = spec.effective_namespaces()
        have = set(DEFAULT_NAMESPACES)
        if spec.uid_map or spec.gid_map:
            have.add("user")
        if spec.network == "host":
            have -= {"net", "uts"}
        if want != have and not (spec.network == "host" and want - {"uts"} == have):
            raise Unsupported(
                f"unsupported: namespace selection {sorted(want)} (runtime {self.name})"
            )
        f: list[str] = ["--network", spec.network]
        if spec.hostname:
            f += ["--hostname", spec.hostname]
        for k, v in spec.env.items():
            f += ["-e", f"{k}={v}"]
        for m in spec.uid_map:
            f += ["--uidmap", str(m)]
        for m in spec.gid_map:
            f += ["--gidmap", str(m)]
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
        return "busybox" if spec.image == "busybox" else spec.image

    # ------------------------------------------------------------------ protocol

    def run(self, spec: ContainerSpec, timeout: float = 60) -> Result:
        name = self._new_name()
        try:
            return self._cli(
                "run",
                "--rm",
                "--name",
                name,
                *self.flags(spec),
                self._image(spec),
                *spec.argv,
                timeout=timeout,
                check=False,
            )
        except RuntimeFailure:
            self._cli("rm", "-f", name, check=False)
            raise

    def start(self, spec: ContainerSpec) -> Container:
        name = self._new_name()
        try:
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
        except RuntimeFailure:
            self._cli("rm", "-f", name, check=False)
            raise
        if res.exit_code != 0:
            self._cli("rm", "-f", name, check=False)
            res.check("rref run -d")
        cid = res.stdout.strip().splitlines()[-1]
        self._mark(cid, f"rref-{cid}")
        return Container(id=cid, name=name, runtime=self.name, spec=spec)

    def inspect(self, c: Container, fmt: str) -> str:
        return self._cli("inspect", "-f", fmt, c.id).stdout.strip()

    def exec(self, c: Container, argv: list[str], timeout: float = 60) -> Result:
        return self._cli("exec", c.id, *argv, timeout=timeout, check=False)

    def pid(self, c: Container) -> int:
        pid = int(self.inspect(c, "{{.State.Pid}}") or 0)
        if pid <= 0:
            raise RuntimeFailure(f"rref reports no pid for {c.id[:12]} (not running)")
        return pid

    def wait(self, c: Container, timeout: float = 60) -> int:
        out = self._cli("wait", c.id, timeout=timeout).stdout.split()
        return int(out[-1])

    def stop(self, c: Container, timeout: int = 10) -> None:
        self._cli("stop", "-t", str(timeout), c.id, timeout=timeout + 30)

    def kill(self, c: Container, signal: str = "KILL") -> None:
        self._cli("kill", "-s", signal_name(signal), c.id)

    def remove(self, c: Container) -> None:
        self._cli("rm", "-f", c.id)

    def logs(self, c: Container) -> Result:
        return self._cli("logs", c.id)

    def pause(self, c: Container) -> None:
        self._cli("pause", c.id)

    def unpause(self, c: Container) -> None:
        self._cli("unpause", c.id)

    def commit(self, c: Container) -> str:
        if "commit" not in self.extra:
            raise self._unsupported("commit")
        tag = f"localhost/conform-commit:{new_name().removeprefix('conform-')[:16]}"
        self._cli("commit", c.id, tag, timeout=120)
        return tag

    def diff(self, c: Container) -> list[tuple[str, str]]:
        if "diff" not in self.extra:
            raise self._unsupported("diff")
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
