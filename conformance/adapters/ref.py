"""Adapter for the reference runtime: the `rref` CLI with a private --root per session.

Why: rref is the runtime the suite is calibrated on; its flags follow docker's (the dialect
is `dockercli.DockerCliRuntime`). What is rref's own: the state root and the session's
bridge (environment), all namespaces or none of the ones it may drop, and its layer store.
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
    Bridge,
    Container,
    ContainerSpec,
    verified_layer,
)
from conformance.adapters.dockercli import DOCKER_CLI, DockerCliRuntime
from conformance.errors import Unsupported
from conformance.workspace import Workspace

#: What rref does: declared, not read from its --help (a verb that is gone fails its tests).
CAPABILITIES = DOCKER_CLI | {"network:bridge", "layer-tar"}
#: rref's own bridge and subnet: never used by the suite (each session brings its own).
RREF_DEFAULT_SUBNET = ipaddress.ip_network("172.31.240.0/24")
SUBNET_POOL = ipaddress.ip_network("172.31.0.0/16")


def find_rref() -> str | None:
    return shutil.which("rref") or shutil.which("rref", path=os.path.dirname(sys.executable))


class RefRuntime(DockerCliRuntime):
    kind = "ref"
    program = "rref"
    CAPABILITIES = CAPABILITIES

    def __init__(self, name: str = "ref", binary: str | None = None) -> None:
        super().__init__()
        self.name = name
        self.binary = binary or find_rref()
        self.root: Path | None = None
        self._bridge: Bridge | None = None
        self.env: dict[str, str] | None = None

    def available(self) -> str | None:
        if not self.binary:
            return f"runtime {self.name} not installed (no rref on PATH)"
        if not os.access(self.binary, os.X_OK):
            return f"runtime {self.name} not installed ({self.binary} is not an executable)"
        return None

    def prepare(self, ws: Workspace) -> None:
        self.ws = ws
        self.root = ws.path(f"ref-{self.name}")
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
            self._rm(cid, check=False)
        if self._bridge and os.path.exists(f"/sys/class/net/{self._bridge.name}"):
            launcher.launch(["ip", "link", "del", self._bridge.name], timeout=20)

    def _argv(self, *args: str) -> list[str]:
        assert self.binary and self.root, "prepare() first"
        return [self.binary, "--root", str(self.root), *args]

    def _env(self) -> dict[str, str] | None:
        return self.env

    def created_namespaces(self, spec: ContainerSpec) -> frozenset[str]:
        """As docker, the host network shares the host's uts namespace too."""
        ns = spec.effective_namespaces()
        return ns - {"uts"} if spec.network == "host" else ns

    def namespace_flags(self, spec: ContainerSpec) -> list[str]:
        """rref makes every namespace but user (added by id maps) and, with the host
        network, net and uts: any other selection is Unsupported."""
        want = spec.effective_namespaces()
        have = set(DEFAULT_NAMESPACES)
        if spec.uid_map or spec.gid_map:
            have.add("user")
        if spec.network == "host":
            have -= {"net", "uts"}
        if want != have and not (spec.network == "host" and want - {"uts"} == have):
            raise Unsupported(f"namespace selection {sorted(want)} (runtime {self.name})")
        f: list[str] = ["--network", spec.network]
        for m in spec.uid_map:
            f += ["--uidmap", str(m)]
        for m in spec.gid_map:
            f += ["--gidmap", str(m)]
        return f

    def _host_names(self, c: Container) -> list[str]:
        names = [c.id, f"rref-{c.id}"]
        if c.spec.network == "bridge":
            names.append(f"rref{c.id[:8]}")  # the host side of its veth
        return names

    def lowerdirs(self, c: Container) -> list[Path]:
        """LowerDir without the container's own init layer (its first entry)."""
        own = self.upperdir(c).parent
        return [Path(p) for p in self._lowerdir_text(c) if Path(p).parent != own]

    def layer_tar(self, image: str) -> Path:
        assert self.root is not None
        raw = self._cli("inspect", "--type", "image", "-f", "{{json .RootFS.Layers}}", image)
        diff_id = json.loads(raw.stdout)[-1]
        tar = self.root / "image" / "layers" / diff_id.removeprefix("sha256:") / "layer.tar"
        return verified_layer(tar, diff_id, self.name)

    def bridge(self) -> Bridge:
        assert self._bridge is not None, "prepare() first"
        return self._bridge


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
