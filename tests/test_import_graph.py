"""The package's import graph has no cycles among modules (function-level and type-checking
imports count), and only the front doors import the package root. The layers themselves are
import-linter contracts (pyproject.toml, run by ``make test``); a cycle inside one layer and an
``import hwquant`` (which reaches every layer) are what they cannot see."""

from __future__ import annotations

import grimp
import pytest

FRONT = ("hwquant.app", "hwquant.cli", "hwquant.__main__")
"""The modules above every layer (docs/architecture.md): they may use the package's API."""


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    """hwquant's import graph: every import, inside functions and under TYPE_CHECKING too."""
    return grimp.build_graph("hwquant", cache_dir=None)


def cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def imported_by(module: str):
        return iter(sorted(graph.find_modules_directly_imported_by(module)))

    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, imported_by(root))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, imported_by(child)))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_finder_sees_a_cycle():
    graph = grimp.ImportGraph()
    for a, b in (("p.a", "p.b"), ("p.b", "p.c"), ("p.c", "p.a"), ("p.c", "p.d")):
        graph.add_import(importer=a, imported=b)
    assert cycles(graph) == [["p.a", "p.b", "p.c"]]


def test_no_module_is_part_of_an_import_cycle(graph):
    assert cycles(graph) == []


def test_only_the_front_doors_import_the_package_root(graph):
    # `import hwquant` reaches every layer, which the layers contract cannot see
    importers = graph.find_modules_that_directly_import("hwquant")
    assert {m for m in importers if not m.startswith(FRONT)} == set()


def package_graph(graph: grimp.ImportGraph, package: str) -> grimp.ImportGraph:
    """The imports among the direct children of ``package``, each child package taken as a
    whole (an import of ``hwquant.rtl.network.design`` by ``hwquant.hw.sweep`` is an import of
    ``hwquant.rtl`` by ``hwquant.hw`` in the graph of ``hwquant``)."""
    children = graph.find_children(package)
    collapsed = grimp.ImportGraph()
    for child in children:
        collapsed.add_module(child)

    def child_of(module: str) -> str | None:
        if not module.startswith(package + "."):
            return None
        return f"{package}.{module[len(package) + 1 :].split('.')[0]}"

    for module in graph.modules:
        importer = child_of(module)
        if importer is None:
            continue
        for imported in graph.find_modules_directly_imported_by(module):
            target = child_of(imported)
            if target is not None and target != importer:
                collapsed.add_import(importer=importer, imported=target)
    return collapsed


def test_the_package_graph_sees_a_cycle_between_subpackages():
    graph = grimp.ImportGraph()
    for module in ("p", "p.a", "p.b", "p.c"):
        graph.add_module(module)
    for a, b in (("p.a.x", "p.b.y"), ("p.b.z", "p.a"), ("p.c", "p.a.x")):
        graph.add_import(importer=a, imported=b)
    assert cycles(package_graph(graph, "p")) == [["p.a", "p.b"]]


def test_no_package_is_part_of_an_import_cycle(graph):
    # hw <-> rtl (hw.sweep synthesized rtl units, rtl.network folded with hw) and app.report <->
    # app.demo (the `hwquant report` command lived in app.report) were such cycles
    packages = sorted(m for m in graph.modules if graph.find_children(m))
    found = {p: cycles(package_graph(graph, p)) for p in packages}
    assert {p: c for p, c in found.items() if c} == {}
