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
