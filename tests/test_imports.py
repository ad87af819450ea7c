"""The package's imports point one way: no cycle, lazy imports included."""

from __future__ import annotations

import ast
from pathlib import Path

import aioqloop

PKG = Path(aioqloop.__file__).parent


def _imports(path: Path) -> set[str]:
    """Modules of the package imported by ``path`` (TYPE_CHECKING blocks excluded)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for orelse in child.orelse:
                    visit(orelse)
                continue
            if isinstance(child, ast.ImportFrom) and child.level == 1:
                if child.module:
                    found.add(child.module.split(".")[0])
                else:
                    found.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and (child.module or "").startswith("aioqloop."):
                found.add((child.module or "").split(".")[1])
            elif isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name.startswith("aioqloop."):
                        found.add(alias.name.split(".")[1])
            visit(child)

    visit(tree)
    return found


def _graph() -> dict[str, set[str]]:
    mods = {p.stem for p in PKG.glob("*.py") if p.stem != "__init__"}
    mods |= {p.name for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    graph: dict[str, set[str]] = {}
    for mod in mods:
        path = PKG / f"{mod}.py"
        if not path.exists():
            path = PKG / mod / "__init__.py"
        graph[mod] = {m for m in _imports(path) if m in mods and m != mod}
    return graph


def test_no_import_cycles() -> None:
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = [*stack[stack.index(nxt):], nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                dfs(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            dfs(node)


#: The architecture page whose layer table this file holds the package to.
ARCHITECTURE = Path(__file__).resolve().parents[1] / "docs" / "design" / "architecture.md"
#: Layers whose modules may import asyncio: the loop port and the big lock (2), the loops
#: (4) and the faces (5).  The engine proper (0, 1, 3) reaches asyncio only through 2.
ASYNCIO_LAYERS = frozenset({2, 4, 5})


def _layers() -> dict[str, int]:
    """Module -> layer, read from the architecture page's table."""
    layers: dict[str, int] = {}
    for line in ARCHITECTURE.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or not cells[0].isdigit():
            continue
        for name in cells[1].split("`")[1::2]:
            if name.endswith(".c"):
                continue  # the compiled core's source, not an importable module
            assert name not in layers, f"{name} is listed twice in the layer table"
            layers[name] = int(cells[0])
    return layers


def _asyncio_importers() -> set[str]:
    """Modules with an ``import asyncio`` anywhere (lazy ones too; TYPE_CHECKING not)."""
    found = set()
    for mod in _graph():
        path = PKG / f"{mod}.py"
        paths = [path] if path.exists() else sorted((PKG / mod).glob("*.py"))
        for file in paths:
            tree = ast.parse(file.read_text())
            typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                           and "TYPE_CHECKING" in ast.unparse(node.test)
                           for stmt in node.body for n in ast.walk(stmt)}
            for node in ast.walk(tree):
                if id(node) in typing_only:
                    continue
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom)
                         and node.level == 0 else [])
                if any(n == "asyncio" or n.startswith("asyncio.") for n in names):
                    found.add(mod)
    return found


def test_the_layer_table_lists_every_module_once() -> None:
    layers, modules = _layers(), set(_graph())
    assert sorted(modules - layers.keys()) == [], "modules missing from the layer table"
    assert sorted(layers.keys() - modules) == [], "the layer table names no such module"


def test_every_import_points_down_the_layer_table() -> None:
    layers = _layers()
    upward = [f"{mod} (layer {layers[mod]}) imports {dep} (layer {layers[dep]})"
              for mod, deps in sorted(_graph().items()) for dep in sorted(deps)
              if mod in layers and dep in layers and layers[dep] > layers[mod]]
    assert upward == []


def test_only_the_layers_the_table_allows_import_asyncio() -> None:
    layers = _layers()
    importers = _asyncio_importers()
    assert {"bridge", "biglock", "loop"} <= importers  # the walker sees real ones
    wrong = sorted(m for m in importers if layers.get(m) not in ASYNCIO_LAYERS)
    assert wrong == [], "these engine modules import asyncio"


def test_the_walker_sees_lazy_imports() -> None:
    # context imports bottomhalf and sources lazily (inside methods): they count.
    assert {"bottomhalf", "sources", "bridge"} <= _graph()["context"]
