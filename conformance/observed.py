"""A detached container that records the inspector's view of itself and stays up.

Why: inside/outside checks need both views of the same process at the same time: the
init runs the inspector (saving JSON inside its rootfs), then execs a long sleep; the
harness reads the JSON through /proc/<pid>/root and compares it with host-side facts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from conformance import facts
from conformance.adapters.base import Container, ContainerSpec, Runtime
from conformance.errors import RuntimeFailure, RuntimeTimeout
from conformance.inspector import SAVED_PATH, Inside, inspector_argv, parse

SLEEP = "exec sleep 1000"


@dataclass
class Observed:
    container: Container
    pid: int  # host pid of the container's init
    inside: Inside


def observe(
    runtime: Runtime,
    start: Callable[[ContainerSpec], Container],
    spec: ContainerSpec,
    timeout: float = 20.0,
) -> Observed:
    """Start ``spec`` with the inspector as its init; wait until its view is saved."""
    spec.argv = inspector_argv(save=True, then=SLEEP)
    c = start(spec)
    pid = runtime.pid(c)

    def saved() -> Any:
        if not facts.alive(pid):
            raise RuntimeFailure(
                f"container init {pid} exited before the inspector finished: {_logs(runtime, c)}"
            )
        return facts.read_in_root(pid, SAVED_PATH)

    # a runtime whose container never writes the view has failed (not a broken harness)
    text = facts.wait_for(
        saved, timeout=timeout, what="the inspector's saved view", failure=RuntimeTimeout
    )
    return Observed(c, pid, parse(str(text)))


def _logs(runtime: Runtime, c: Container) -> str:
    try:
        return runtime.logs(c).describe()
    except Exception as e:
        return f"(no logs: {e})"
