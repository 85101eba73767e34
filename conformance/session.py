"""The state of one pytest session of the suite: chosen runtimes, their prepared adapters,
the host's tokens, the workspace, known deviations and the verdict records.

Why: the plugin's hooks and fixtures share this one object (kept in `config.stash`); it is
created only when the suite is active, so plain pytest runs of the repo pay nothing.
"""

from __future__ import annotations

import contextlib
import socket
import time
from typing import Any

from conformance import adapters, catalogue, deviations, hostinfo, launcher, leftovers
from conformance.adapters.base import Runtime
from conformance.errors import RuntimeFailure, Unsupported
from conformance.verdicts import TestRecord
from conformance.workspace import Workspace


class State:
    def __init__(
        self, runtime_option: str, results: str | None, deviations_dir: str | None
    ) -> None:
        self.choices = adapters.parse_choices(runtime_option)
        self.names = [c.name for c in self.choices]
        self.results = results
        self.deviations_dir = deviations_dir
        self.catalogue = catalogue.load()
        self.started = time.time()
        self.hostname = socket.gethostname()  # the host's, to see a runtime rename it
        self._adapters: dict[str, Runtime] = {}
        self._prepared: dict[str, Exception | None] = {}
        self._workspace: Workspace | None = None
        self._host_tokens: frozenset[str] | None = None
        self._deviations: dict[str, list[deviations.Deviation]] = {}
        self.records: dict[str, TestRecord] = {}
        self.leftovers: list[str] = []
        self.transcript: list[launcher.Record] = []
        #: the probe backend that traced this run's runtime commands ("none": untraced)
        self.probe_backend = "none"

    # ------------------------------------------------------------------ lazily made

    @property
    def workspace(self) -> Workspace:
        if self._workspace is None:
            self._workspace = Workspace()
        return self._workspace

    def host_tokens(self) -> frozenset[str]:
        """Capability tokens of this host, probed once per process."""
        if self._host_tokens is None:
            self._host_tokens = frozenset(hostinfo.capability_tokens(hostinfo.get_host_info()))
        return self._host_tokens

    def adapter(self, name: str) -> Runtime:
        """The adapter for ``name`` (not prepared; nothing is probed)."""
        if name not in self._adapters:
            choice = next(c for c in self.choices if c.name == name)
            self._adapters[name] = adapters.make(choice)
        return self._adapters[name]

    def prepared(self, name: str) -> Runtime:
        """The adapter, prepared once (a failed preparation is re-raised for every test)."""
        rt = self.adapter(name)
        if name not in self._prepared:
            try:
                rt.prepare(self.workspace)
                self._prepared[name] = None
            except Exception as e:  # kept: the same verdict for every test of the runtime
                self._prepared[name] = e
        err = self._prepared[name]
        if isinstance(err, Unsupported):
            raise Unsupported(err.reason)
        if isinstance(err, RuntimeFailure):
            raise RuntimeFailure(f"runtime {name} could not be prepared: {err}") from err
        if err is not None:
            raise RuntimeError(f"preparing runtime {name} failed: {err!r}") from err
        return rt

    def unsupported(self, name: str, required: list[str]) -> Unsupported | None:
        """Why a test of runtime ``name`` that requires ``required`` cannot run here."""
        from conformance import tokens

        rt = self.adapter(name)
        reason = rt.available()
        if reason:
            return Unsupported(reason)
        try:
            self.prepared(name)
        except Unsupported as e:
            return e
        except Exception:
            pass  # a runtime that cannot prepare fails its tests (raised by the fixture)
        missing = tokens.missing(required, self.host_tokens(), rt.capabilities())
        if missing:
            return Unsupported(f"{', '.join(missing)} (runtime {name})")
        return None

    def deviations_for(self, name: str) -> list[deviations.Deviation]:
        if name not in self._deviations:
            self._deviations[name] = deviations.load(
                name, set(self.catalogue.behaviours), self.deviations_dir
            )
        return self._deviations[name]

    # ------------------------------------------------------------------ end of session

    def finish(self) -> list[str]:
        """Leak check, then close adapters and the workspace; returns the leftovers found."""
        found: list[str] = []
        if self._workspace is not None:
            ws = self._workspace
            found = leftovers.settled(ws.markers, sysv_keys=ws.sysv_keys, mqueues=ws.mqueues)
        for name, rt in self._adapters.items():
            if self._prepared.get(name, 1) is None:
                with contextlib.suppress(Exception):
                    rt.close()
        if self._workspace is not None:
            self._workspace.close()
        return found

    def renamed_host(self) -> list[str]:
        """The host's hostname changed since the session began (a runtime that applied a
        container's hostname in the host's uts namespace): reported, not undone."""
        now = socket.gethostname()
        if now == self.hostname:
            return []
        return [
            f"hostname: the host's hostname changed during the session ({self.hostname!r} -> "
            f"{now!r}); a runtime set a container's hostname in the host's uts namespace?"
        ]

    def host_summary(self) -> dict[str, Any]:
        if self._host_tokens is None:
            return {}
        info = hostinfo.get_host_info()
        return {
            "kernel": info.kernel.release,
            "cgroup_mode": info.cgroups.mode,
            "tokens": sorted(self._host_tokens),
        }
