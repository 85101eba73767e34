"""Known deviations: per-runtime lists of behaviours a runtime is known not to meet.

Why: a known, explained deviation should not turn the run red again and again, but must stay
visible -- each one becomes a strict xfail with its reason (strict: when the runtime starts
to conform, the stale entry is reported). Files: `deviations/<runtime>.toml` in the package,
or in the directory given by --deviations (searched first).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path


@dataclass(frozen=True)
class Deviation:
    id: str
    reason: str
    link: str = ""
    test: str = ""  # optional: only tests whose function name contains this

    def applies(self, behaviour_ids: list[str], test_name: str) -> bool:
        return self.id in behaviour_ids and (not self.test or self.test in test_name)

    def text(self) -> str:
        return f"known deviation {self.id}: {self.reason}" + (
            f" ({self.link})" if self.link else ""
        )


class DeviationError(ValueError):
    """A deviations file is malformed or names an unknown behaviour."""


def parse(text: str, known_ids: set[str], source: str = "<text>") -> list[Deviation]:
    data = tomllib.loads(text)
    out = []
    for entry in data.get("deviation", []):
        if not entry.get("id") or not entry.get("reason"):
            raise DeviationError(f"{source}: every [[deviation]] needs id and reason")
        if entry["id"] not in known_ids:
            raise DeviationError(f"{source}: unknown behaviour id {entry['id']!r}")
        out.append(
            Deviation(entry["id"], entry["reason"], entry.get("link", ""), entry.get("test", ""))
        )
    return out


def load(runtime: str, known_ids: set[str], extra_dir: str | None = None) -> list[Deviation]:
    """The deviations of ``runtime`` (by its --runtime name)."""
    if extra_dir:
        path = Path(extra_dir) / f"{runtime}.toml"
        if path.is_file():
            return parse(path.read_text(), known_ids, str(path))
    res = resources.files("conformance").joinpath("deviations", f"{runtime}.toml")
    if res.is_file():
        return parse(res.read_text("utf-8"), known_ids, f"deviations/{runtime}.toml")
    return []
