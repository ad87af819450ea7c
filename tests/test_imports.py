"""The package's imports point one way: no cycle, lazy imports included."""

from __future__ import annotations

import ast
from pathlib import Path

import aioqloop

PKG = Path(aioqloop.__file__).parent


def _module_name(path: Path) -> str:
    """``aioqloop/glib/_compat.py`` -> ``glib._compat`` (package-relative, dotted)."""
    parts = list(path.relative_to(PKG).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Modules of the package imported by ``path``, package-relative and dotted, lazy
    imports included (TYPE_CHECKING blocks excluded).  ``from X import name`` counts
    ``X.name`` when that is a module (``from aioqloop import glib``), else ``X``."""
    tree = ast.parse(path.read_text())
    here = _module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: set[str] = set()

    modules = _modules()

    def add(module: str, names: list[str]) -> None:
        # ``from X import y``: the module X.y if there is one, else a name of X.
        for name in names:
            sub = f"{module}.{name}" if module else name
            found.add(sub if sub in modules else module)

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for orelse in child.orelse:
                    visit(orelse)
                continue
            if isinstance(child, ast.ImportFrom):
                names = [alias.name for alias in child.names]
                if child.level:
                    base = package.split(".") if package else []
                    base = base[:len(base) - (child.level - 1)]
                    add(".".join([*base, *([child.module] if child.module else [])]), names)
                elif child.module == "aioqloop" or (child.module or "").startswith("aioqloop."):
                    add((child.module or "").partition(".")[2], names)
            elif isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name.startswith("aioqloop."):
                        found.add(alias.name.partition(".")[2])
            visit(child)

    visit(tree)
    found.discard("")
    return found


def _modules() -> dict[str, Path]:
    """Every module of the package, dotted and package-relative (the package's own
    ``__init__`` excluded: it is the face that imports everything)."""
    return {_module_name(p): p for p in PKG.rglob("*.py") if p != PKG / "__init__.py"}


def _fine_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports, subpackages' modules included."""
    modules = _modules()
    return {mod: {m for m in _imports(path) if m in modules and m != mod}
            for mod, path in modules.items()}


def _graph() -> dict[str, set[str]]:
    """Top-level module (a subpackage counts as one) -> those it imports."""
    graph: dict[str, set[str]] = {}
    for mod, deps in _fine_graph().items():
        top = mod.split(".")[0]
        graph.setdefault(top, set()).update(d.split(".")[0] for d in deps)
    for top, deps in graph.items():
        deps.discard(top)
    return graph


def test_no_import_cycles() -> None:
    graph = _fine_graph()
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
    # and every spelling: relative, absolute, a module imported by name from a package
    graph = _fine_graph()
    assert {"glib._compat", "glib._iochannel", "constants"} <= graph["glib"]
    assert "glib" in graph["glib.events"]  # from aioqloop import glib as GLib
    assert "glib._core" in graph["glib.events"]  # from . import _core
