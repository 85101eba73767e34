"""No import cycles in the project's packages: conformance, runtime_ref, probes, reports.

Why: a cycle makes the import order matter (a module half-initialised when the other one
reads it), hides which module is the front and which the helper, and spreads a change in
one over both. The graph is read from the source (ast), not by importing: every import
statement counts, also one inside a function (deferred, but still a dependency), except
those under ``if TYPE_CHECKING:`` (annotations only). Importing ``a.b.c`` runs the package
fronts ``a`` and ``a.b`` first, so those are edges too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("conformance", "runtime_ref", "probes", "reports")


def _modules() -> dict[str, Path]:
    """Module name -> file, for every .py file of the packages."""
    out: dict[str, Path] = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    name = test.attr if isinstance(test, ast.Attribute) else getattr(test, "id", "")
    return name == "TYPE_CHECKING"


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement, skipping the bodies of `if TYPE_CHECKING:`."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _type_checking_only(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _fronts(name: str, known: dict[str, Path]) -> list[str]:
    """The project packages an import of ``a.b.c`` runs first: ``a`` and ``a.b``."""
    parts = name.split(".")
    return [m for m in (".".join(parts[:i]) for i in range(1, len(parts))) if m in known]


def graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports."""
    known = _modules()
    edges: dict[str, set[str]] = {m: set() for m in known}
    for mod, path in known.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        explicit: set[str] = set()
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                explicit.update(a.name for a in node.names)
                continue
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for a in node.names:  # `from pkg import mod` imports mod; `from pkg import x`, pkg
                explicit.add(f"{base}.{a.name}" if f"{base}.{a.name}" in known else base)
        explicit &= known.keys()
        implicit = {f for name in explicit for f in _fronts(name, known)}
        # the fronts of the module's own packages run before it: not a dependency back,
        # unless it imports from them by name (then it needs them initialised)
        implicit -= set(_fronts(mod, known))
        edges[mod] = (explicit | implicit) - {mod}
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def _path(edges: dict[str, set[str]], comp: list[str]) -> str:
    """One loop through the component, for the message: a -> b -> a."""
    members, start = set(comp), comp[0]
    trail, seen = [start], {start}
    while True:
        nxt = sorted(w for w in edges[trail[-1]] if w in members)
        back = [w for w in nxt if w == start]
        if back and len(trail) > 1:
            return " -> ".join([*trail, start])
        fresh = [w for w in nxt if w not in seen]
        if not fresh:
            return " -> ".join([*trail, nxt[0]]) if nxt else " <-> ".join(comp)
        trail.append(fresh[0])
        seen.add(fresh[0])


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycles(package: str) -> None:
    edges = graph()
    loops = [c for c in cycles(edges) if c[0].split(".")[0] == package]
    assert not loops, f"import cycles in {package}:\n" + "\n".join(
        f"  {_path(edges, c)}  (all of: {', '.join(c)})" for c in loops
    )


def test_the_graph_sees_imports() -> None:
    """The reader finds real edges (relative, deferred, package fronts), and a planted
    cycle is reported: the test above can fail."""
    edges = graph()
    assert "conformance.adapters.base" in edges["conformance.adapters.ref"] | set().union(
        *(edges[m] for m in edges["conformance.adapters.ref"])
    )
    assert "conformance.adapters" in edges["conformance.session"]
    planted = {**edges, "conformance.errors": {*edges["conformance.errors"], "conformance.plugin"}}
    assert any("conformance.errors" in c for c in cycles(planted))
