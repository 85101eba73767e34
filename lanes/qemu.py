"""Boot a guest under qemu and wait for it, with a deadline on every step.

TCG, not KVM: on these runners KVM is exposed but a nested guest hangs in the BIOS.
The guest has no network device at all (the lane needs none, and the project's rule is
no traffic beyond loopback); the host's root is shared read-only over 9p and the
results directory read-write.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass

from .initramfs import OUT_TAG, REPO_TAG, ROOT_TAG
from .kernel import LaneError

QEMU = "qemu-system-x86_64"


@dataclass(frozen=True)
class Boot:
    vmlinuz: str
    initrd: str
    out: str  # host directory shared read-write (the guest's results)
    repo: str  # the checkout, shared read-only in case the root share hides it
    console: str  # the guest's serial console, written to this host file
    cpus: int = 2
    memory_mb: int = 3072


def command(b: Boot, qemu: str = QEMU) -> list[str]:
    def share(path: str, tag: str, ro: bool) -> list[str]:
        opts = f"local,path={path},mount_tag={tag},security_model=passthrough,multidevs=remap"
        return ["-virtfs", opts + (",readonly=on" if ro else "")]

    return [
        qemu,
        "-accel",
        "tcg,thread=multi",
        "-cpu",
        "max",
        "-smp",
        str(b.cpus),
        "-m",
        str(b.memory_mb),
        "-nographic",
        "-no-reboot",
        "-nic",
        "none",
        "-kernel",
        b.vmlinuz,
        "-initrd",
        b.initrd,
        "-append",
        "console=ttyS0 panic=-1 quiet loglevel=4",
        "-serial",
        f"file:{b.console}",
        "-monitor",
        "none",
        *share("/", ROOT_TAG, True),
        *share(b.out, OUT_TAG, False),
        *share(b.repo, REPO_TAG, True),
    ]


def run(b: Boot, timeout: float, qemu: str = QEMU) -> float:
    """Boot, wait for the guest to power off; return its wall time, or raise LaneError."""
    if shutil.which(qemu) is None:
        raise LaneError(f"{qemu} is not installed (Debian package qemu-system-x86)")
    start = time.monotonic()
    with open(os.devnull, "rb") as null:
        proc = subprocess.Popen(
            command(b, qemu),
            stdin=null,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise LaneError(
                f"the guest did not power off within {timeout:g}s (its console is in {b.console})"
            ) from None
    if proc.returncode != 0:
        last = (out.strip().splitlines() or ["(no message)"])[-1]
        raise LaneError(f"qemu exited with {proc.returncode}: {last}")
    return time.monotonic() - start
