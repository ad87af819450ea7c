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


def test_engine_modules_do_not_import_asyncio() -> None:
    engine = ["context", "source", "sources", "bottomhalf", "_deadlines", "_waker",
              "_fdpoll", "_gate", "_index", "_registry", "_checks"]
    for mod in engine:
        tree = ast.parse((PKG / f"{mod}.py").read_text())
        names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                 for alias in node.names}
        names |= {node.module for node in ast.walk(tree)
                  if isinstance(node, ast.ImportFrom) and node.module and node.level == 0}
        assert "asyncio" not in names, f"aioqloop.{mod} imports asyncio"


def test_the_walker_sees_lazy_imports() -> None:
    # context imports bottomhalf and sources lazily (inside methods): they count.
    assert {"bottomhalf", "sources", "bridge"} <= _graph()["context"]
