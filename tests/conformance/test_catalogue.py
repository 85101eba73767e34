"""The behaviour catalogue: parses, and holds exactly the IDs and levels of BEHAVIOURS.md.

The expected list is embedded here (copied from the project's BEHAVIOURS.md when the
catalogue was written) rather than read from outside the repository at test time. MNT-09
(/sys read-only) was added to the catalogue later, after a review against faulty runtimes.
"""

from __future__ import annotations

import pytest

from conformance import catalogue

# ID -> level, as the reference of each behaviour states it (see `basis`/`clause`). Changed from
# the first draft after an audit against the clauses: PID-07/08, CG-10 and SEC-04 raised to
# MUST; USR-04 lowered to MAY, INIT-02 to SHOULD; UTS-05, OVL-11..14 and INIT-04 split out
# of UTS-04, OVL-08/09/10 and INIT-01.
EXPECTED: dict[str, str] = {
    **{f"PID-0{i}": "MUST" for i in range(1, 9)},
    **{f"MNT-0{i}": "MUST" for i in range(1, 10)},
    **{f"UTS-0{i}": "MUST" for i in range(1, 5)},
    "UTS-05": "SHOULD",
    "NET-01": "MUST",
    "NET-02": "MUST",
    "NET-03": "MUST",
    "NET-04": "MUST",
    "NET-05": "SHOULD",
    "NET-06": "MUST",
    **{f"USR-0{i}": "MUST" for i in range(1, 7)},
    "USR-04": "MAY",
    "IPC-01": "MUST",
    "IPC-02": "MUST",
    "IPC-03": "SHOULD",
    "CGNS-01": "SHOULD",
    **{f"CG-{i:02d}": "MUST" for i in range(1, 11)},
    "CG-07": "SHOULD",
    "CG-11": "MAY",
    **{f"OVL-0{i}": "MUST" for i in range(1, 10)},
    "OVL-10": "SHOULD",
    "OVL-11": "SHOULD",
    "OVL-12": "SHOULD",
    "OVL-13": "SHOULD",
    "OVL-14": "MAY",
    "INIT-01": "MUST",
    "INIT-02": "SHOULD",
    "INIT-03": "MUST",
    "INIT-04": "SHOULD",
    **{f"VOL-0{i}": "MUST" for i in range(1, 6)},
    **{f"EXEC-0{i}": "MUST" for i in range(1, 4)},
    **{f"SEC-0{i}": "MUST" for i in range(1, 10)},
    "SEC-10": "MUST",
    "SEC-11": "SHOULD",
    "LIFE-01": "MUST",
    "LIFE-02": "MUST",
    "LIFE-03": "MUST",
    "LIFE-04": "MUST",
    "LIFE-05": "SHOULD",
    **{f"TRACE-0{i}": "MUST" for i in range(1, 7)},
}

#: Behaviours stricter than their references: reported as policy, never as a runtime defect.
POLICY = {"NET-05", "OVL-13", "SEC-11"}

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
    assert {b.id: b.level for b in cat if b.id in EXPECTED} == EXPECTED
    extra = sorted(set(cat.ids()) - set(EXPECTED))
    assert all(b.startswith("SEC-") for b in extra), (
        f"behaviours without an expected level: {extra}"
    )


def test_areas_and_fields():
    cat = catalogue.load()
    assert cat.areas == AREAS
    for b in cat:
        assert b.area_title == AREAS[b.area]
        assert b.title and b.observe, b.id
        assert all(link.startswith("https://") for link in b.links), b.id
        assert b.basis in catalogue.BASES, b.id
        assert b.clause.startswith("https://"), b.id
        anchored = "#" in b.clause or b.basis in ("docker-documented", "policy")
        assert anchored, f"{b.id}: the clause link should point at the clause, not the document"
        assert b.severity == {"MUST": "critical", "SHOULD": "normal", "MAY": "minor"}[b.level]
    assert [b.id for b in cat if b.derived] == [f"TRACE-0{i}" for i in range(1, 7)]
    assert {b.id for b in cat if b.is_policy} == POLICY


def test_some_titles_match_the_source():
    cat = catalogue.load()
    assert cat["PID-01"].title == "container init is pid 1"
    assert cat["PID-01"].observe == "`echo $$` / getpid()==1 inside"
    assert cat["UTS-04"].title == "/etc/hostname holds the container's hostname"
    assert "memory.events oom_kill" in cat["CG-02"].observe


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "[areas]\nX = 'x'\n[[behaviour]]\nid='X-01'\nlevel='MUST'\narea='X'\ntitle='t'\n",
            "missing observe, basis, clause",
        ),
        (
            "[areas]\nX = 'x'\n[[behaviour]]\nid='X-01'\nlevel='MUST'\narea='X'\ntitle='t'\n"
            "observe='o'\nbasis='hearsay'\nclause='https://x/#c'\n",
            "basis",
        ),
        (
            "[areas]\nX = 'x'\n[[behaviour]]\nid='X-01'\nlevel='MUST'\narea='X'\ntitle='t'\n"
            "observe='o'\nbasis='policy'\nclause='https://x/#c'\nderived=true\n",
            "derived",
        ),
        (
            "[areas]\nX = 'x'\n[[behaviour]]\nid='X-01'\nlevel='OUGHT'\narea='X'\ntitle='t'\n"
            "observe='o'\nbasis='kernel'\nclause='https://x/#c'\n",
            "level",
        ),
        (
            "[areas]\nX = 'x'\n[[behaviour]]\nid='Y-01'\nlevel='MUST'\narea='X'\ntitle='t'\n"
            "observe='o'\nbasis='kernel'\nclause='https://x/#c'\n",
            "does not start with its area",
        ),
        (
            "[areas]\nX = 'x'\n" + "[[behaviour]]\nid='X-01'\nlevel='MUST'\narea='X'\ntitle='t'\n"
            "observe='o'\nbasis='kernel'\nclause='https://x/#c'\n" * 2,
            "duplicate",
        ),
    ],
)
def test_malformed_catalogue_fails_loudly(text, message):
    with pytest.raises(catalogue.CatalogueError, match=message):
        catalogue.parse(text)
