"""The package's import graph, read statically: which way the imports of ``kcross_metric`` point.

Every ``import`` / ``from ... import`` of a module counts, function-level (lazy) ones included,
those under ``if TYPE_CHECKING:`` too (a cycle hidden from the interpreter is still a circle
between the modules); relative imports are resolved, and ``from X import name`` points at the
module ``X.name`` when there is one, else at ``X`` (``from . import __version__`` in a submodule
points at the package's ``__init__``). The implicit import of a module's parent packages is not
an edge: every submodule would otherwise form a cycle with an ``__init__`` that imports it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "kcross_metric"
CLI = f"{PACKAGE}.cli"

#: The layers of the package, lowest first (docs/architecture.md): a module may import its own
#: layer group and lower layers only. ``core`` and ``baselines`` share a rank and import neither
#: each other nor anything above them.
LAYER_RANK = {
    "errors": 0, "_version": 0, "_moved": 0,
    "_util": 1,
    "weights": 2,
    "data": 3,
    "core": 4, "baselines": 4,
    "registry": 5,
    "train": 6,
    "evaluation": 7,
    "integrations": 8,
    "report": 9,
    "cli": 10,
}


def _module_names() -> dict[str, Path]:
    names = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, known: set[str]) -> set[str]:
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names}
    if node.level:
        # the package a relative import starts from: the module itself if it is a package
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        origin = ".".join(base + ([node.module] if node.module else []))
    else:
        origin = node.module or ""
    return {f"{origin}.{alias.name}" if f"{origin}.{alias.name}" in known else origin for alias in node.names}


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports (anywhere in its body, lazily or not)."""
    modules = _module_names()
    known = set(modules)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        edges: set[str] = set()
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for target in _targets(node, name, path.name == "__init__.py", known):
                # `import kcross_metric.x.y` names an attribute path; keep its longest module prefix
                while target and target not in known:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    edges.add(target)
        graph[name] = edges
    return graph


def _components(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            found.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def cycles(graph: dict[str, set[str]]) -> set[tuple[str, ...]]:
    """Every elementary cycle, as the modules in import order starting from the smallest name."""
    found: set[tuple[str, ...]] = set()

    def walk(start: str, path: list[str], component: set[str]) -> None:
        for nxt in sorted(graph[path[-1]] & component):
            if nxt == start:
                found.add(tuple(path))
            elif nxt > start and nxt not in path:  # each cycle once: from its smallest module
                walk(start, path + [nxt], component)

    # a cycle lies within one strongly connected component, and these are small
    for component in _components(graph):
        for start in component:
            walk(start, [start], component)
    return found


def _cli_importers(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    def in_cli(module: str) -> bool:
        return module == CLI or module.startswith(CLI + ".")

    return {m: {t for t in ts if in_cli(t)} for m, ts in graph.items() if not in_cli(m) and any(map(in_cli, ts))}


def test_graph_reader_resolves_relative_and_lazy_imports() -> None:
    graph = import_graph()
    # module level, relative from a package's submodule
    assert f"{PACKAGE}.cli._common" in graph[f"{PACKAGE}.cli.score"]
    # function level, two levels up (`from .._util.files import atomic_write_text` in _model_card())
    assert f"{PACKAGE}._util.files" in graph[f"{PACKAGE}.cli.train"]
    # `from .registry import ...` in the package's __init__, and its import under TYPE_CHECKING
    assert {f"{PACKAGE}.registry", f"{PACKAGE}.core.metric"} <= graph[PACKAGE]
    # `from ._version import __version__` (function level) points at the module
    assert f"{PACKAGE}._version" in graph[f"{PACKAGE}.weights"]


def test_cycle_finder() -> None:
    graph = {"a": {"b"}, "b": {"a", "c"}, "c": {"a", "d"}, "d": set()}
    assert cycles(graph) == {("a", "b"), ("a", "b", "c")}


def test_no_import_cycles() -> None:
    found = cycles(import_graph())
    assert not found, f"import cycles: {sorted(found)}"


def test_no_import_of_cli_from_outside_cli() -> None:
    importers = _cli_importers(import_graph())
    assert not importers, f"modules outside cli/ importing it: {importers}"


def _layer(module: str) -> str | None:
    """The layer group of a module (``None`` for the package's ``__init__``, which sits on top)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_every_module_has_a_layer() -> None:
    unknown = {m for m in import_graph() if _layer(m) is not None and _layer(m) not in LAYER_RANK}
    assert not unknown, f"modules outside the known layers (add them to LAYER_RANK and docs/architecture.md): {unknown}"


def test_imports_point_down() -> None:
    upward = []
    for module, targets in import_graph().items():
        source = _layer(module)
        if source is None:
            continue
        for target in targets:
            layer = _layer(target)
            if layer is None:
                upward.append(f"{module} -> {target} (the package __init__)")
            elif layer != source and LAYER_RANK[layer] >= LAYER_RANK[source]:
                upward.append(f"{module} -> {target}")
    assert not upward, "imports from a lower layer to a higher one (or across core/baselines):\n" + "\n".join(sorted(upward))


def test_layer_rule_catches_an_upward_import(monkeypatch: pytest.MonkeyPatch) -> None:
    graph = {f"{PACKAGE}.core.metric": {f"{PACKAGE}.baselines.ssim"}, f"{PACKAGE}.data.io": {f"{PACKAGE}.train.data"}}
    monkeypatch.setitem(globals(), "import_graph", lambda: graph)
    with pytest.raises(AssertionError, match="core.metric -> kcross_metric.baselines.ssim"):
        test_imports_point_down()
