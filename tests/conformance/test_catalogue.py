"""The behaviour catalogue: parses, and holds exactly the IDs and levels of BEHAVIOURS.md.

The expected list is embedded here (copied from the project's BEHAVIOURS.md when the
catalogue was written) rather than read from outside the repository at test time. MNT-09
(/sys read-only) was added to the catalogue later, after a review against faulty runtimes.
"""

from __future__ import annotations

import pytest

from conformance import catalogue

# ID -> level, as BEHAVIOURS.md states them (TRACE gives none: MUST, marked level_stated=false).
EXPECTED: dict[str, str] = {
    **{f"PID-0{i}": "MUST" for i in range(1, 7)},
    "PID-07": "SHOULD",
    "PID-08": "SHOULD",
    **{f"MNT-0{i}": "MUST" for i in range(1, 10)},
    **{f"UTS-0{i}": "MUST" for i in range(1, 5)},
    "NET-01": "MUST",
    "NET-02": "MUST",
    "NET-03": "MUST",
    "NET-04": "MUST",
    "NET-05": "SHOULD",
    "NET-06": "MUST",
    **{f"USR-0{i}": "MUST" for i in range(1, 7)},
    "IPC-01": "MUST",
    "IPC-02": "MUST",
    "IPC-03": "SHOULD",
    "CGNS-01": "SHOULD",
    **{f"CG-0{i}": "MUST" for i in range(1, 10)},
    "CG-07": "SHOULD",
    "CG-10": "SHOULD",
    "CG-11": "MAY",
    **{f"OVL-0{i}": "MUST" for i in range(1, 10)},
    "OVL-10": "SHOULD",
    **{f"INIT-0{i}": "MUST" for i in range(1, 4)},
    **{f"VOL-0{i}": "MUST" for i in range(1, 6)},
    **{f"EXEC-0{i}": "MUST" for i in range(1, 4)},
    "SEC-01": "MUST",
    "SEC-02": "MUST",
    "SEC-03": "MUST",
    "SEC-04": "SHOULD",
    "LIFE-01": "MUST",
    "LIFE-02": "MUST",
    "LIFE-03": "MUST",
    "LIFE-04": "MUST",
    "LIFE-05": "SHOULD",
    **{f"TRACE-0{i}": "MUST" for i in range(1, 7)},
}

AREAS = {
    "PID": "PID namespace",
    "MNT": "Mount namespace and root filesystem",
    "UTS": "UTS namespace",
    "NET": "Network namespace",
    "USR": "User namespace",
    "IPC": "IPC namespace",
    "CGNS": "Cgroup namespace",
    "CG": "Cgroups, any version",
    "OVL": "Layered filesystem, whiteouts and copy-on-write",
    "INIT": "Init layer",
    "VOL": "Volumes",
    "EXEC": "exec / setns",
    "SEC": "Security defaults",
    "LIFE": "Lifecycle and engine behaviour",
    "TRACE": "Trace evidence",
}


def test_catalogue_has_every_id_with_its_level():
    cat = catalogue.load()
    assert len(EXPECTED) == 84
    assert {b.id: b.level for b in cat} == EXPECTED


def test_areas_and_fields():
    cat = catalogue.load()
    assert cat.areas == AREAS
    for b in cat:
        assert b.area_title == AREAS[b.area]
        assert b.title and b.observe, b.id
        assert all(link.startswith("https://") for link in b.links), b.id
        assert b.links, f"{b.id} has no reference link"
        assert b.severity == {"MUST": "critical", "SHOULD": "normal", "MAY": "minor"}[b.level]
    assert [b.id for b in cat if not b.level_stated] == [f"TRACE-0{i}" for i in range(1, 7)]


def test_some_titles_match_the_source():
    cat = catalogue.load()
    assert cat["PID-01"].title == "container init is pid 1"
    assert cat["PID-01"].observe == "`echo $$` / getpid()==1 inside"
    assert cat["UTS-04"].title == '/etc/hostname equals `hostname` + "\\n"'
    assert "v1 memory.oom_control/failcnt" in cat["CG-02"].title


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "[areas]\nX = 'x'\n[[behaviour]]\nid='X-01'\nlevel='MUST'\narea='X'\ntitle='t'\n",
            "missing observe",
        ),
        (
            "[areas]\nX = 'x'\n[[behaviour]]\nid='X-01'\nlevel='OUGHT'\narea='X'\ntitle='t'\n"
            "observe='o'\n",
            "level",
        ),
        (
            "[areas]\nX = 'x'\n[[behaviour]]\nid='Y-01'\nlevel='MUST'\narea='X'\ntitle='t'\n"
            "observe='o'\n",
            "does not start with its area",
        ),
        (
            "[areas]\nX = 'x'\n" + "[[behaviour]]\nid='X-01'\nlevel='MUST'\narea='X'\ntitle='t'\n"
            "observe='o'\n" * 2,
            "duplicate",
        ),
    ],
)
def test_malformed_catalogue_fails_loudly(text, message):
    with pytest.raises(catalogue.CatalogueError, match=message):
        catalogue.parse(text)
