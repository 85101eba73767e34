"""The behaviour catalogue (`behaviours.toml`): what the suite verifies, by stable ID.

Why: tests name behaviour IDs, reports group by area and level, and coverage is checked
against the full list; all of them read this one typed view of the TOML file.
"""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources

LEVELS = ("MUST", "SHOULD", "MAY")

#: What a level can rest on. "policy": stricter than any reference (reported as policy,
#: never as a runtime defect); "derived": trace evidence for another behaviour.
BASES = (
    "runtime-spec",
    "image-spec",
    "kernel",
    "man-page",
    "docker-documented",
    "policy",
    "derived",
)

#: Allure severity of each level.
SEVERITY = {"MUST": "critical", "SHOULD": "normal", "MAY": "minor"}


@dataclass(frozen=True)
class Behaviour:
    id: str
    level: str
    area: str
    area_title: str
    title: str
    observe: str
    basis: str = "policy"
    clause: str = ""
    links: tuple[str, ...] = ()
    derived: bool = False

    @property
    def severity(self) -> str:
        return SEVERITY[self.level]

    @property
    def is_policy(self) -> bool:
        """Stricter than its reference: a miss is a policy deviation, not a runtime defect."""
        return self.basis == "policy"


class CatalogueError(ValueError):
    """The catalogue file is malformed."""


@dataclass(frozen=True)
class Catalogue:
    areas: dict[str, str]
    behaviours: dict[str, Behaviour]  # in file order

    def __contains__(self, bid: object) -> bool:
        return bid in self.behaviours

    def __getitem__(self, bid: str) -> Behaviour:
        return self.behaviours[bid]

    def __iter__(self) -> Iterator[Behaviour]:
        return iter(self.behaviours.values())

    def __len__(self) -> int:
        return len(self.behaviours)

    def ids(self, level: str | None = None) -> list[str]:
        return [b.id for b in self if level is None or b.level == level]


def parse(text: str) -> Catalogue:
    """A Catalogue from TOML text; every field is checked so a typo fails loudly."""
    data = tomllib.loads(text)
    areas = data.get("areas")
    if not isinstance(areas, dict) or not areas:
        raise CatalogueError("missing [areas] table")
    out: dict[str, Behaviour] = {}
    for entry in data.get("behaviour", []):
        bid = entry.get("id", "?")
        required = ("id", "level", "area", "title", "observe", "basis", "clause")
        missing = [k for k in required if not entry.get(k)]
        if missing:
            raise CatalogueError(f"{bid}: missing {', '.join(missing)}")
        if entry["level"] not in LEVELS:
            raise CatalogueError(f"{bid}: level {entry['level']!r} is not one of {LEVELS}")
        if entry["basis"] not in BASES:
            raise CatalogueError(f"{bid}: basis {entry['basis']!r} is not one of {BASES}")
        if not str(entry["clause"]).startswith("https://"):
            raise CatalogueError(f"{bid}: clause must be a https:// link to the clause")
        if entry.get("derived", False) != (entry["basis"] == "derived"):
            raise CatalogueError(f"{bid}: derived = true goes with basis 'derived' and only there")
        if entry["area"] not in areas:
            raise CatalogueError(f"{bid}: unknown area {entry['area']!r}")
        if not bid.startswith(entry["area"] + "-"):
            raise CatalogueError(f"{bid}: id does not start with its area {entry['area']}")
        if bid in out:
            raise CatalogueError(f"{bid}: duplicate id")
        out[bid] = Behaviour(
            id=bid,
            level=entry["level"],
            area=entry["area"],
            area_title=areas[entry["area"]],
            title=entry["title"],
            observe=entry["observe"],
            basis=entry["basis"],
            clause=entry["clause"],
            links=tuple(entry.get("links", ())),
            derived=bool(entry.get("derived", False)),
        )
    if not out:
        raise CatalogueError("no [[behaviour]] entries")
    return Catalogue(areas=dict(areas), behaviours=out)


@functools.cache
def load() -> Catalogue:
    """The packaged catalogue, parsed once per process."""
    text = resources.files("conformance").joinpath("behaviours.toml").read_text("utf-8")
    return parse(text)
