"""The guest's kernel: Debian's generic amd64 image, unpacked without installing it.

Why Debian's package: it is reachable from every runner (the package registry is),
its config has cgroup2, 9p and overlayfs as modules, and a fixed version keeps the
lane's results comparable from night to night. Only the kernel image and the modules
the guest needs (with the dependencies their modinfo names) are unpacked.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from dataclasses import dataclass

#: where downloaded packages and unpacked kernels are kept between runs
CACHE = "/var/cache/conform-lane"

#: modules the guest loads (dependencies are resolved from their modinfo)
WANTED = ("virtio_pci", "9pnet_virtio", "9p", "overlay", "veth", "bridge")
#: where in the package's module tree they and their dependencies live
SUBTREES = (
    "kernel/drivers/virtio",
    "kernel/net/9p",
    "kernel/fs/9p",
    "kernel/fs/netfs",
    "kernel/fs/fscache",
    "kernel/fs/overlayfs",
    "kernel/drivers/net/veth.ko",
    "kernel/net/bridge",
    "kernel/net/802",
    "kernel/net/llc",
)


class LaneError(Exception):
    """A lane could not be prepared or run; the message says which step and why."""


@dataclass(frozen=True)
class Kernel:
    version: str  # the package's kernel release, e.g. 6.1.0-57-amd64
    vmlinuz: str
    modules: tuple[str, ...]  # .ko paths, in load order (dependencies first)


def _run(argv: list[str], what: str, timeout: float = 300, cwd: str | None = None) -> str:
    try:
        out = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, check=False, cwd=cwd
        )
    except FileNotFoundError:
        raise LaneError(f"{what}: {argv[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise LaneError(f"{what}: {argv[0]} did not finish within {timeout:g}s") from None
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise LaneError(f"{what}: {' '.join(argv[:2])} failed: {last}")
    return out.stdout


def package_name() -> str:
    """The versioned package linux-image-amd64 points at (linux-image-6.1.0-57-amd64)."""
    out = _run(["apt-cache", "depends", "linux-image-amd64"], "finding the guest kernel")
    for line in out.splitlines():
        dep = line.strip().removeprefix("Depends:").strip()
        if line.strip().startswith("Depends:") and dep.startswith("linux-image-"):
            return dep
    raise LaneError("finding the guest kernel: linux-image-amd64 depends on no linux-image-*")


def download(package: str, cache: str = CACHE) -> str:
    """The package's .deb in `cache`, fetched with apt-get download when absent."""
    os.makedirs(cache, exist_ok=True)
    found = sorted(glob.glob(os.path.join(cache, f"{package}_*.deb")))
    if found:
        return found[-1]
    # apt-get download writes into its working directory
    _run(["apt-get", "download", "-q", package], f"downloading {package}", 600, cwd=cache)
    return _only(glob.glob(os.path.join(cache, f"{package}_*.deb")), f"downloading {package}")


def _only(paths: list[str], what: str) -> str:
    if not paths:
        raise LaneError(f"{what}: no file was produced")
    return sorted(paths)[-1]


def modinfo_depends(ko: bytes) -> list[str]:
    """The `depends=` list of a module's .modinfo section (no modules.dep: the package has none)."""
    at = ko.find(b"\0depends=")
    if at < 0:
        return []
    value = ko[at + len(b"\0depends=") : ko.index(b"\0", at + 1)].decode()
    return [d.replace("-", "_") for d in value.split(",") if d]


def resolve(deps: dict[str, list[str]], wanted: tuple[str, ...] = WANTED) -> list[str]:
    """Module names for `wanted`, each after the modules it depends on."""
    order: list[str] = []

    def visit(mod: str, chain: tuple[str, ...]) -> None:
        if mod in order:
            return
        if mod in chain:
            raise LaneError(f"module dependencies loop through {mod}")
        if mod not in deps:
            need = f" (needed by {chain[-1]})" if chain else ""
            raise LaneError(f"the guest kernel's unpacked modules have no {mod}{need}")
        for d in deps[mod]:
            visit(d, (*chain, mod))
        order.append(mod)

    for name in wanted:
        visit(name, ())
    return order


def _modname(path: str) -> str:
    base = os.path.basename(path)
    for ext in (".ko.xz", ".ko.zst", ".ko.gz", ".ko"):
        if base.endswith(ext):
            return base[: -len(ext)].replace("-", "_")
    return base


def unpack(deb: str, cache: str = CACHE) -> Kernel:
    """vmlinuz and the wanted modules from `deb`, unpacked once under `cache`."""
    release = _release(deb)
    root = os.path.join(cache, f"kernel-{release}")
    done = os.path.join(root, ".complete")
    if not os.path.exists(done):
        shutil.rmtree(root, ignore_errors=True)
        os.makedirs(root)
        moddir = f"./lib/modules/{release}"
        _extract(deb, root, ["./boot/vmlinuz-*", *(f"{moddir}/{t}" for t in SUBTREES)])
        paths = {
            _modname(p): os.path.relpath(p, os.path.join(root, moddir))
            for p in glob.glob(os.path.join(root, moddir, "**", "*.ko*"), recursive=True)
        }
        deps = {}
        for name, rel in paths.items():
            with open(os.path.join(root, moddir, rel), "rb") as f:
                deps[name] = modinfo_depends(f.read())
        with open(os.path.join(root, "load-order"), "w") as f:
            f.write("\n".join(paths[m] for m in resolve(deps)) + "\n")
        with open(done, "w"):
            pass
    with open(os.path.join(root, "load-order")) as f:
        order = f.read().split()
    vmlinuz = _only(glob.glob(os.path.join(root, "boot", "vmlinuz-*")), f"unpacking {deb}")
    mods = tuple(os.path.join(root, "lib", "modules", release, m) for m in order)
    return Kernel(release, vmlinuz, mods)


def _release(deb: str) -> str:
    # linux-image-6.1.0-57-amd64_6.1.192-3_amd64.deb -> 6.1.0-57-amd64
    name = os.path.basename(deb).split("_", 1)[0]
    if not name.startswith("linux-image-"):
        raise LaneError(f"{deb} is not a linux-image package")
    return name.removeprefix("linux-image-")


def _extract(deb: str, dest: str, members: list[str]) -> None:
    """Members of the package's data tar (shell patterns) into `dest`, without dpkg -i."""
    fsys = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", deb], stdout=subprocess.PIPE)
    try:
        tar = subprocess.run(
            ["tar", "-x", "-C", dest, "--wildcards", *members],
            stdin=fsys.stdout,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    finally:
        if fsys.stdout is not None:
            fsys.stdout.close()
        fsys.wait(timeout=60)
    if tar.returncode != 0 or fsys.returncode != 0:
        last = (tar.stderr.strip().splitlines() or ["dpkg-deb failed"])[-1]
        raise LaneError(f"unpacking {os.path.basename(deb)}: {last}")


def prepare(cache: str = CACHE) -> Kernel:
    """Download (once) and unpack (once) the guest kernel."""
    return unpack(download(package_name(), cache), cache)
