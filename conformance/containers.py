"""The container factory behind the `container` fixture: start, track, always remove.

Why: a test may start several containers and may fail half-way; whatever it started must
be removed at teardown, and a test that removes one itself (LIFE-04, CG-08) must not see
it removed twice. Images and named volumes a test makes through the factory (`commit`,
`import_rootfs`, `load`, `named_volume`) are removed too, after the containers that may
use them.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from conformance.adapters.base import Container, ContainerSpec, Runtime
from conformance.errors import RuntimeFailure
from conformance.workspace import Workspace


class Containers:
    def __init__(self, runtime: Runtime, workspace: Workspace) -> None:
        self.runtime = runtime
        self.workspace = workspace
        self.started: list[Container] = []
        self.images: list[str] = []
        self.volumes: list[str] = []

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

    # ------------------------------------------------------------------ images, volumes

    def commit(self, c: Container) -> str:
        """runtime.commit(c); the image is removed at teardown."""
        return self._image(self.runtime.commit(c))

    def import_rootfs(self, tar: Path) -> str:
        return self._image(self.runtime.import_rootfs(tar))

    def load(self, tar: Path) -> str:
        return self._image(self.runtime.load(tar))

    def _image(self, ref: str) -> str:
        self.images.append(ref)
        return ref

    def named_volume(self) -> str:
        """A new named volume `conform-vol-<hex>`, removed at teardown."""
        name = f"conform-vol-{uuid.uuid4().hex[:12]}"
        self.volumes.append(name)
        self.runtime.volume_create(name)
        return name

    def cleanup(self) -> None:
        errors = []
        while self.started:
            c = self.started.pop()
            try:
                self.runtime.remove(c)
            except Exception as e:  # keep removing the others
                errors.append(f"{c.id}: {e}")
        for what, items, rm in (
            ("image", self.images, self.runtime.remove_image),
            ("volume", self.volumes, self.runtime.volume_remove),
        ):
            while items:
                ref = items.pop()
                try:
                    rm(ref)
                except Exception as e:
                    errors.append(f"{what} {ref}: {e}")
        if errors:
            raise RuntimeFailure("could not remove: " + "; ".join(errors))
