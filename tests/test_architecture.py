"""The architecture, as imports: device/ and cloud/ never import each other, protocol/ imports neither,
the device's layers import one way only, and no module takes part in an import cycle.

The graph is built by grimp (the import-linter engine) from every import statement, function-level ones
included: an import put inside a function to dodge a cycle is still a cycle.
"""

from __future__ import annotations

from graphlib import CycleError, TopologicalSorter

import grimp
import pytest

PACKAGES = ("device", "cloud", "protocol", "voxfleet")
# Highest first: a layer may import the ones below it, never one above.
DEVICE_LAYERS = ("device.cli", "device.web", "device.sync", "device.voice", "device.stack")
DEVICE_CORE = ("device.files", "device.paths", "device.settings", "device.models", "device.offline",
               "device.skill_catalog", "device.vocabulary", "device.netman")


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(*PACKAGES, exclude_type_checking_imports=True, cache_dir=None)


def _imports(graph: grimp.ImportGraph, importer: str, imported: str) -> list[str]:
    """Each direct import from the package ``importer`` into the package ``imported``, as 'a -> b (line)'."""
    found = graph.find_matching_direct_imports(import_expression=f"{importer}.** -> {imported}.**")
    found += graph.find_matching_direct_imports(import_expression=f"{importer}.** -> {imported}")
    return sorted({f"{i['importer']} -> {i['imported']}" for i in found})


@pytest.mark.parametrize(("importer", "imported"), [("device", "cloud"), ("cloud", "device"),
                                                     ("protocol", "device"), ("protocol", "cloud"),
                                                     ("protocol", "voxfleet"), ("device", "voxfleet"),
                                                     ("cloud", "voxfleet")])
def test_sides_stay_apart(graph, importer, imported):
    assert _imports(graph, importer, imported) == []


def test_device_layers_import_downwards_only(graph):
    illegal = graph.find_illegal_dependencies_for_layers(layers=DEVICE_LAYERS)
    described = sorted(f"{d.importer} -> {d.imported}: {[list(r.middle) for r in d.routes][:3]}"
                       for d in illegal)
    assert described == []


@pytest.mark.parametrize("core", DEVICE_CORE)
def test_device_core_imports_no_layer(graph, core):
    assert core in graph.modules, f"{core} is gone: update DEVICE_CORE"
    upward = [f"{core} -> {m}" for m in graph.find_modules_directly_imported_by(core)
              if m.startswith(tuple(layer + "." for layer in DEVICE_LAYERS)) or m in DEVICE_LAYERS]
    assert upward == []


def test_no_import_cycles(graph):
    """graphlib names one cycle at a time; each is cut out and the search repeated, so every cycle
    is listed in one failure."""
    edges = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    cycles = []
    for _ in range(50):
        try:
            TopologicalSorter(edges).prepare()
            break
        except CycleError as exc:
            cycle = exc.args[1]  # each module in it is imported by the next one
            cycles.append(" -> ".join(reversed(cycle)))
            edges[cycle[1]].discard(cycle[0])
    assert cycles == []
