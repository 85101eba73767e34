"""Adapter for runc-compatible runtimes (runc, crun, youki, any `oci:/path`).

Why: low-level runtimes take an OCI bundle. The suite makes one per container: an overlay
of its own busybox tree (so containers never share writes, and `upperdir` is known) and a
config.json from `ocispec`. A detached container is a `<rt> run --keep` process held by the
harness, which plays the part of a shim (conmon, containerd-shim): runc keeps no exit status
for detached containers (`run -d`, `create`+`start`), so holding the foreground process --
`--pid-file` gives the init's pid -- is what reports exit codes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from conformance import evidence, hostops, launcher
from conformance.adapters import ocispec
from conformance.adapters.base import (
    BASE_IMAGE,
    Container,
    ContainerSpec,
    IdMap,
    Result,
    Runtime,
    signal_name,
)
from conformance.errors import RuntimeFailure, RuntimeTimeout, Unsupported
from conformance.workspace import Workspace

CAPABILITIES = frozenset(
    {
        "detach",
        "exec",
        "pause",
        "bundle",
        "upperdir",
        "lowerdirs",
        "volumes",
        "userns-map",
        "network:host",
        "cgroup-limits",
        "seccomp-profile",
    }
)
START_TIMEOUT = 30.0


def _to_host(cid: int, maps: list[IdMap]) -> int:
    for m in maps:
        if m.container <= cid < m.container + m.size:
            return m.host + cid - m.container
    return 65534


class OciRuntime(Runtime):
    kind = "oci"
    CAPABILITIES = CAPABILITIES

    def __init__(self, name: str, binary: str) -> None:
        self.name = name
        self._locate(binary)
        self.workdir: Path | None = None
        self.base: Path | None = None
        self.keep = False

    def prepare(self, ws: Workspace) -> None:
        self.ws = ws
        self.workdir = ws.path(f"oci-{self.name}")
        (self.workdir / "state").mkdir(exist_ok=True)
        (self.workdir / "bundles").mkdir(exist_ok=True)
        self.base = ws.base_tree()
        # `run --keep` (a runc extension) leaves an exited container in state "stopped", as
        # a detached one would be; runtimes without it delete the container when it exits.
        assert self.binary
        help_text = launcher.launch([self.binary, "run", "--help"], timeout=20)
        self.keep = "--keep" in help_text.stdout + help_text.stderr

    @property
    def state_root(self) -> Path:
        assert self.workdir is not None, "prepare() first"
        return self.workdir / "state"

    def close(self) -> None:
        if self.workdir is None:
            return
        for bundle in (self.workdir / "bundles").glob("*"):
            self._destroy(bundle.name, bundle, None)

    # ------------------------------------------------------------------ bundle

    def _cli(self, *args: str, timeout: float = 60) -> Result:
        assert self.binary
        argv = [self.binary, "--root", str(self.state_root), *args]
        p = launcher.launch(argv, timeout=timeout)
        return Result(p.returncode, p.stdout, p.stderr, argv)

    def _bundle(self, spec: ContainerSpec, cid: str) -> Path:
        if spec.image != BASE_IMAGE:
            raise Unsupported(f"image {spec.image!r} (OCI bundles use the suite's busybox rootfs)")
        assert self.workdir is not None and self.base is not None, "prepare() first"
        bundle = self.workdir / "bundles" / cid
        for d in ("upper", "work", "rootfs"):
            (bundle / d).mkdir(parents=True)
        os.chmod(bundle, 0o755)
        hostops.mount_overlay(
            str(self.base), str(bundle / "upper"), str(bundle / "work"), str(bundle / "rootfs")
        )
        try:
            # What an engine does before calling the runtime: mount points exist, and with a
            # user namespace the rootfs top belongs to the container's root.
            for v in spec.volumes:
                (bundle / "rootfs" / v.target.lstrip("/")).mkdir(parents=True, exist_ok=True)
            if spec.uid_map:
                os.chown(
                    bundle / "rootfs",
                    _to_host(0, spec.uid_map),
                    _to_host(0, spec.gid_map or spec.uid_map),
                )
            config = ocispec.build_config(spec, bundle / "rootfs", cgroups_path=cid)
            (bundle / "config.json").write_text(json.dumps(config, indent=1))
            evidence.note("oci-config", f"{cid}/config.json", json.dumps(config, indent=1))
        except BaseException:
            hostops.umount(str(bundle / "rootfs"))
            shutil.rmtree(bundle, ignore_errors=True)
            raise
        return bundle

    def _destroy(self, cid: str, bundle: Path, proc: subprocess.Popen[bytes] | None) -> None:
        """Delete the container, end the held process, unmount and remove the bundle."""
        res = self._cli("delete", "-f", cid, timeout=30)
        if proc is not None:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                launcher.kill_group(proc)
        rootfs = bundle / "rootfs"
        if hostops.is_mountpoint(str(rootfs)):
            hostops.umount(str(rootfs))
        shutil.rmtree(bundle, ignore_errors=True)
        if res.exit_code != 0 and (self.state_root / cid).exists():
            raise RuntimeFailure(f"{self.name} delete -f {cid} failed ({res.describe()})")

    # ------------------------------------------------------------------ protocol

    def run(self, spec: ContainerSpec, timeout: float = 60) -> Result:
        cid = self._new_name()
        bundle = self._bundle(spec, cid)
        try:
            return self._cli("run", "-b", str(bundle), cid, timeout=timeout)
        finally:
            self._destroy(cid, bundle, None)

    def start(self, spec: ContainerSpec) -> Container:
        cid = self._new_name()
        bundle = self._bundle(spec, cid)
        pidfile = bundle / "pid"
        out = open(bundle / "stdout.log", "wb")  # noqa: SIM115 - handed to the child
        err = open(bundle / "stderr.log", "wb")  # noqa: SIM115
        try:
            assert self.binary
            proc = launcher.launch_popen(
                [
                    self.binary,
                    "--root",
                    str(self.state_root),
                    "run",
                    *(["--keep"] if self.keep else []),
                    "--pid-file",
                    str(pidfile),
                    "-b",
                    str(bundle),
                    cid,
                ],
                stdout=out,
                stderr=err,
            )
        finally:
            out.close()
            err.close()
        c = Container(
            id=cid, name=cid, runtime=self.name, spec=spec, data={"bundle": bundle, "proc": proc}
        )
        deadline = time.monotonic() + START_TIMEOUT
        while not (pidfile.exists() and pidfile.read_text().strip()):
            if proc.poll() is not None and not pidfile.exists():
                text = (bundle / "stderr.log").read_text(errors="replace").strip()
                self._destroy(cid, bundle, proc)
                raise RuntimeFailure(
                    f"{self.name} run exited {proc.returncode} before the "
                    f"container started: {text[-2000:]}"
                )
            if time.monotonic() > deadline:
                self._destroy(cid, bundle, proc)
                raise RuntimeTimeout(f"{self.name} run: no container pid after {START_TIMEOUT:g}s")
            time.sleep(0.005)
        return c

    def exec(self, c: Container, argv: list[str], timeout: float = 60) -> Result:
        return self._cli("exec", c.id, *argv, timeout=timeout)

    def pid(self, c: Container) -> int:
        return int((c.data["bundle"] / "pid").read_text().strip())

    def wait(self, c: Container, timeout: float = 60) -> int:
        proc: subprocess.Popen[bytes] = c.data["proc"]
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeTimeout(
                f"{self.name} container {c.id} still running after {timeout:g}s"
            ) from None

    def kill(self, c: Container, signal: str = "KILL") -> None:
        self._cli("kill", c.id, signal_name(signal)).check(f"{self.name} kill")

    def remove(self, c: Container) -> None:
        self._destroy(c.id, c.data["bundle"], c.data.get("proc"))

    def logs(self, c: Container) -> Result:
        """The container's stdio as passed through by the runtime (files the harness gave)."""
        b: Path = c.data["bundle"]
        return Result(
            0,
            (b / "stdout.log").read_text(errors="replace"),
            (b / "stderr.log").read_text(errors="replace"),
        )

    def pause(self, c: Container) -> None:
        self._cli("pause", c.id).check(f"{self.name} pause")

    def unpause(self, c: Container) -> None:
        self._cli("resume", c.id).check(f"{self.name} resume")

    def upperdir(self, c: Container) -> Path:
        return c.data["bundle"] / "upper"

    def lowerdirs(self, c: Container) -> list[Path]:
        """The suite's own busybox tree: every bundle's overlay lower."""
        assert self.base is not None, "prepare() first"
        return [self.base]

    def leak_markers(self, c: Container) -> list[str]:
        return [c.id, str(c.data["bundle"])]
