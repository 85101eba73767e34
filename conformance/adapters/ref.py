"""Adapter for the reference runtime: the `rref` CLI with a private --root per session.

Why: rref is the runtime the suite is calibrated on; its flags follow docker's, so this is
the model for the engine adapter too.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import shutil
import sys
from pathlib import Path

from conformance import launcher
from conformance.adapters.base import (
    DEFAULT_NAMESPACES,
    BaseRuntime,
    Bridge,
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
        "upperdir",
        "volumes",
        "named-volumes",
        "userns-map",
        "network:bridge",
        "network:host",
        "seccomp",
        "seccomp-profile",
        "cgroup-limits",
        "lowerdirs",
    }
)
#: rref verbs -> the capabilities they bring (picked up from `rref --help`).
VERB_CAPABILITIES = {
    "commit": ("commit", "layer-tar"),
    "diff": ("diff",),
    "import": ("import",),
    "load": ("load",),
    "events": ("events",),
}
#: rref's own bridge and subnet: never used by the suite (each session brings its own).
RREF_DEFAULT_SUBNET = ipaddress.ip_network("172.31.240.0/24")
SUBNET_POOL = ipaddress.ip_network("172.31.0.0/16")


def find_rref() -> str | None:
    return shutil.which("rref") or shutil.which("rref", path=os.path.dirname(sys.executable))


class RefRuntime(BaseRuntime):
    kind = "ref"

    def __init__(self, name: str = "ref", binary: str | None = None) -> None:
        self.name = name
        self.binary = binary or find_rref()
        self.root: Path | None = None
        self.extra: frozenset[str] = frozenset()
        self._bridge: Bridge | None = None
        self.env: dict[str, str] | None = None

    def available(self) -> str | None:
        if not self.binary:
            return f"runtime {self.name} not installed (no rref on PATH)"
        if not os.access(self.binary, os.X_OK):
            return f"runtime {self.name} not installed ({self.binary} is not an executable)"
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
        self.extra = frozenset(
            cap for verb, caps in VERB_CAPABILITIES.items() if verb in verbs for cap in caps
        )
        # The session's own bridge (created by rref on first use, deleted in close()): the
        # name must hold "rref" for rref to manage it, and "conform" for this suite.
        self._bridge = Bridge(_free_bridge_name(), str(_free_subnet()))
        self.env = {
            **os.environ,
            "RREF_BRIDGE": self._bridge.name,
            "RREF_BRIDGE_SUBNET": self._bridge.subnet,
        }

    def close(self) -> None:
        if self.root is None:
            return
        ids = self._cli("ps", "-a", "-q", "--no-trunc", check=False).stdout.split()
        for cid in ids:
            self._cli("rm", "-f", cid, check=False)
        if self._bridge and os.path.exists(f"/sys/class/net/{self._bridge.name}"):
            launcher.launch(["ip", "link", "del", self._bridge.name], timeout=20)

    # ------------------------------------------------------------------ helpers

    def _cli(self, *args: str, timeout: float = 60, check: bool = True) -> Result:
        assert self.binary and self.root, "prepare() first"
        argv = [self.binary, "--root", str(self.root), *args]
        p = launcher.launch(argv, timeout=timeout, env=self.env)
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
        if spec.network == "bridge":
            self._mark(f"rref{cid[:8]}")  # the host side of its veth
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

    def _need(self, cap: str) -> None:
        if cap not in self.extra:
            raise self._unsupported(cap)

    def commit(self, c: Container, image: str | None = None) -> str:
        self._need("commit")
        tag = image or new_image_ref("commit")
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

    def lowerdirs(self, c: Container) -> list[Path]:
        """LowerDir without the container's own init layer (its first entry)."""
        own = self.upperdir(c).parent
        text = self.inspect(c, "{{.GraphDriver.Data.LowerDir}}")
        return [Path(p) for p in text.split(":") if p and Path(p).parent != own]

    def import_rootfs(self, tar: Path, image: str | None = None) -> str:
        self._need("import")
        tag = image or new_image_ref("import")
        self._cli("import", str(tar), tag, timeout=120)
        return tag

    def load(self, tar: Path) -> str:
        self._need("load")
        out = self._cli("load", "-i", str(tar), timeout=120).stdout
        names = [ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Loaded")]
        if not names:
            raise RuntimeFailure(f"rref load named no image: {out.strip()!r}")
        return names[-1]

    def layer_tar(self, image: str) -> Path:
        self._need("layer-tar")
        assert self.root is not None
        raw = self._cli("inspect", "--type", "image", "-f", "{{json .RootFS.Layers}}", image)
        diff_id = json.loads(raw.stdout)[-1]
        tar = self.root / "image" / "layers" / diff_id.removeprefix("sha256:") / "layer.tar"
        return verified_layer(tar, diff_id, self.name)

    def remove_image(self, image: str) -> None:
        self._cli("rmi", "-f", image)

    def volume_create(self, name: str) -> None:
        self._cli("volume", "create", name)

    def volume_remove(self, name: str) -> None:
        self._cli("volume", "rm", "-f", name)

    def events(self, since: float, until: float) -> list[Event]:
        self._need("events")
        out = self._cli(
            "events", "--since", f"{since:.6f}", "--until", f"{until:.6f}", "--format", "json"
        ).stdout
        events = []
        for line in out.splitlines():
            if line.strip():
                ev = json.loads(line)
                action = ev.get("Action") or ev.get("status", "")
                events.append(
                    Event(
                        ev.get("timeNano", 0) / 1e9, ev.get("id", ""), event_action(action), action
                    )
                )
        return events

    def bridge(self) -> Bridge:
        assert self._bridge is not None, "prepare() first"
        return self._bridge

    def leak_markers(self, c: Container) -> list[str]:
        return [c.name, c.id]


def _free_bridge_name() -> str:
    """rrefconform<4 hex>: 15 characters (IFNAMSIZ), not in use on the host."""
    for _ in range(100):
        name = f"rrefconform{random.getrandbits(16):04x}"
        if not os.path.exists(f"/sys/class/net/{name}"):
            return name
    raise RuntimeError("no free rrefconform<hex> interface name")


def _host_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Destinations of the host's IPv4 routes (connected subnets of every interface)."""
    nets = []
    with open("/proc/net/route") as f:
        for line in f.read().splitlines()[1:]:
            fields = line.split()
            if len(fields) < 8:
                continue
            dest = ipaddress.IPv4Address(int(fields[1], 16).to_bytes(4, "little"))
            mask = ipaddress.IPv4Address(int(fields[7], 16).to_bytes(4, "little"))
            if int(mask):
                nets.append(ipaddress.ip_network(f"{dest}/{mask}", strict=False))
    return nets


def _free_subnet() -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """A /24 of 172.31.0.0/16 that no host route covers (and not rref's default one)."""
    used = [*_host_networks(), RREF_DEFAULT_SUBNET]
    candidates = [n for n in SUBNET_POOL.subnets(new_prefix=24) if n.network_address.packed[2]]
    random.shuffle(candidates)
    for net in candidates:
        if not any(net.overlaps(u) for u in used):
            return net
    raise RuntimeError("no free /24 in 172.31.0.0/16 for the session's bridge")
