"""Adapters that start no containers: `ref-oci` (until rref reads OCI bundles) and `fake`.

Why: a runtime that cannot be driven must still appear in the results, as "unsupported"
with a reason, not vanish. `fake` exists to test the harness itself: it has the
capabilities it is given and any container operation fails like a broken runtime would.
"""

from __future__ import annotations

from conformance.adapters.base import Container, ContainerSpec, Result, Runtime
from conformance.errors import RuntimeFailure


class UnavailableRuntime(Runtime):
    """A runtime the suite knows but cannot drive here; every test is unsupported."""

    def __init__(self, name: str, kind: str, reason: str) -> None:
        self.name = name
        self.kind = kind
        self.reason = reason

    def available(self) -> str | None:
        return self.reason


def ref_oci(name: str = "ref-oci") -> UnavailableRuntime:
    return UnavailableRuntime(name, "ref-oci", f"runtime {name}: rref has no OCI bundle mode yet")


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
