"""The init of an OCI container: rref's init steps, then a wait at the exec fifo.

Why a gate: `create` must leave the container fully set up but not yet running
the user program until `start`. The init holds the state directory's fifo open
read-write (opened by the host, so no path lookup is needed inside); once the
program has been found it reports "created" (it closes the start-report pipe)
and blocks reading the fifo; `start` writes one byte there. Order of the OCI
moments inside: wait for the host's createRuntime hooks, sysctls and
createContainer hooks before pivot_root, startContainer hooks after the gate.
"""

from __future__ import annotations

import os
import resource

from .. import jsonc as json
from .. import netlo, rootfs, syscalls
from ..errors import EXIT_RUNTIME, RrefError
from ..init import exec_process, fail
from ..process import wait_go
from ..spec import namespace_types
from . import console, hooks

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn

    from ..mountsrc import HostSources
    from ..spec import Spec


class Handoff:
    """What the host hands this init: the fifo and the pipe carrying the hooks' state."""

    def __init__(self, fifo_fd: int, state_fd: int, console_fd: int = -1) -> None:
        self.fifo_fd = fifo_fd
        self.state_fd = state_fd
        self.console_fd = console_fd  # connected to --console-socket, or -1
        self.state: dict[str, Any] = {}

    def fds(self) -> tuple[int, ...]:
        return (self.fifo_fd, self.state_fd, *([self.console_fd] * (self.console_fd >= 0)))


def oci_init(
    spec: Spec,
    err_fd: int,
    go_fd: int,
    seccomp_prog: bytes | None,
    sources: HostSources | None,
    handoff: Handoff,
) -> NoReturn:
    proc = spec["process"]
    cwd = proc.get("cwd", "/") or "/"
    os.umask(0o022)
    try:
        set_rlimits(proc.get("rlimits") or [])
        if proc.get("oomScoreAdj") is not None:
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write(str(proc["oomScoreAdj"]))
        rootfs.setup(spec, cwd, sources, lambda root: _before_pivot(spec, go_fd, handoff))
        types = namespace_types(spec)
        if spec.get("hostname") and "uts" in types:
            syscalls.sethostname(spec["hostname"])
        if "network" in types and not any(
            ns.get("path") for ns in spec["linux"]["namespaces"] if ns["type"] == "network"
        ):
            netlo.link_up("lo")
        if handoff.console_fd >= 0:  # before "created": the caller waits for the pty
            console.attach(handoff.console_fd, proc.get("user", {}).get("uid", 0))
    except (OSError, rootfs.RootfsError, RrefError) as e:
        fail(err_fd, EXIT_RUNTIME, f"container init: {e}")
    exec_process(
        spec,
        err_fd,
        cwd,
        proc.get("env", []),
        seccomp_prog=seccomp_prog,
        gate=lambda fd: _gate(spec, fd, handoff),
    )


def set_rlimits(rlimits: list[dict[str, Any]]) -> None:
    for rl in rlimits:
        which = getattr(resource, rl["type"], None)
        if which is None:
            raise RrefError(f"rlimit {rl['type']} is not known on this host")
        try:
            resource.setrlimit(which, (rl["soft"], rl["hard"]))
        except (OSError, ValueError) as e:
            raise RrefError(f"cannot set {rl['type']} to {rl['soft']}/{rl['hard']}: {e}") from None


def _before_pivot(spec: Spec, go_fd: int, handoff: Handoff) -> None:
    """Every mount is made, the host's paths are still visible: the createContainer moment."""
    if not wait_go(go_fd):
        os._exit(EXIT_RUNTIME)  # the host gave up (a createRuntime hook failed) and says why
    raw = b""
    while chunk := os.read(handoff.state_fd, 65536):
        raw += chunk
    os.close(handoff.state_fd)
    handoff.state = json.loads(raw or b"{}")
    linux = spec.get("linux", {})
    for key, value in (linux.get("sysctl") or {}).items():
        # the host's /proc, still mounted: sysctls of namespaces are those of the writer
        with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
            f.write(value)
    if spec.get("domainname"):
        with open("/proc/sys/kernel/domainname", "w") as f:
            f.write(spec["domainname"])
    hooks.run(spec, "createContainer", handoff.state)


def _gate(spec: Spec, err_fd: int, handoff: Handoff) -> int:
    """Report "created", wait for `start`, run the startContainer hooks; errors go to stderr."""
    os.dup2(2, err_fd, inheritable=False)  # the start-report pipe's last writer is gone
    try:
        go = os.read(handoff.fifo_fd, 1)
    except OSError:
        go = b""
    if go != b"0":
        os._exit(EXIT_RUNTIME)
    os.close(handoff.fifo_fd)
    try:
        hooks.run(spec, "startContainer", {**handoff.state, "status": "running"})
    except RrefError as e:
        os.write(2, f"rref-oci: {e}\n".encode())
        os._exit(EXIT_RUNTIME)
    umask = spec["process"].get("user", {}).get("umask")
    if umask is not None:
        os.umask(umask)
    return err_fd
