"""The container factory behind the `container` fixture: start, track, always remove.

Why: a test may start several containers and may fail half-way; whatever it started must
be removed at teardown, and a test that removes one itself (LIFE-04, CG-08) must not see
it removed twice.
"""

from __future__ import annotations

from typing import Any

from conformance.adapters.base import Container, ContainerSpec, Runtime
from conformance.errors import RuntimeFailure
from conformance.workspace import Workspace


class Containers:
    def __init__(self, runtime: Runtime, workspace: Workspace) -> None:
        self.runtime = runtime
        self.workspace = workspace
        self.started: list[Container] = []

    def __call__(self, spec: ContainerSpec | None = None, **kw: Any) -> Container:
        """Start ``spec`` (or ContainerSpec(**kw)) detached."""
        c = self.runtime.start(spec if spec is not None else ContainerSpec(**kw))
        self.started.append(c)
        self.workspace.mark(*self.runtime.leak_markers(c))
        return c

    def remove(self, c: Container) -> None:
        """Remove now (the test checks what removal leaves behind)."""
        if c in self.started:
            self.started.remove(c)
        self.runtime.remove(c)

    def cleanup(self) -> None:
        errors = []
        while self.started:
            c = self.started.pop()
            try:
                self.runtime.remove(c)
            except Exception as e:  # keep removing the others
                errors.append(f"{c.id}: {e}")
        if errors:
            raise RuntimeFailure("could not remove container(s): " + "; ".join(errors))
