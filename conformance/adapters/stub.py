"""`fake`: an adapter that starts no containers, for testing the harness itself.

It has the capabilities it is given and any container operation fails like a broken
runtime would.
"""

from __future__ import annotations

from conformance.adapters.base import Container, ContainerSpec, Result, Runtime
from conformance.errors import RuntimeFailure


class FakeRuntime(Runtime):
    """For the harness's own tests: declared capabilities, failing container operations."""

    kind = "fake"

    def __init__(self, name: str = "fake", caps: frozenset[str] = frozenset()) -> None:
        self.name = name
        self.caps = caps

    def capabilities(self) -> frozenset[str]:
        return self.caps

    def run(self, spec: ContainerSpec, timeout: float = 60) -> Result:
        return Result(1, "", "fake: cannot start containers", ["fake", "run"])

    def start(self, spec: ContainerSpec) -> Container:
        raise RuntimeFailure("fake: cannot start containers")
