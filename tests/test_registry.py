"""`aioqloop._registry`: the per-thread dispatch stack and the default-context lookup.

GLib keeps its dispatch stack (``g_main_depth``, ``g_main_current_source``) in
thread-local storage.  Both engines push a source on this module's stack around its
dispatch (the compiled core is handed the same thread-local at import), and pop it
however the dispatch ends.  The module is a leaf: it must import nothing of the package.
"""

from __future__ import annotations

import ast
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import iterate

import aioqloop
from aioqloop import IdleSource, MainContext, Source, _registry


def _idle(ctx: MainContext, callback: Callable[[], bool]) -> Source:
    src = IdleSource()
    src.set_callback(callback)
    src.attach(ctx)
    return src


def test_a_dispatch_runs_with_its_source_on_the_stack(ctx: MainContext) -> None:
    seen: list[tuple[int, Source | None, list[Source]]] = []

    def cb() -> bool:
        seen.append((_registry.main_depth(), _registry.current_source(),
                     list(_registry.dispatch_stack())))
        return False

    src = _idle(ctx, cb)
    assert _registry.main_depth() == 0 and _registry.current_source() is None
    assert iterate(ctx, 1) == 1
    assert seen == [(1, src, [src])]
    assert _registry.main_depth() == 0 and _registry.dispatch_stack() == []


def test_a_nested_dispatch_stacks_on_the_outer_one(ctx: MainContext) -> None:
    seen: list[tuple[str, int, Source | None]] = []

    def inner() -> bool:
        seen.append(("inner", _registry.main_depth(), _registry.current_source()))
        return False

    def outer() -> bool:
        seen.append(("outer", _registry.main_depth(), _registry.current_source()))
        inner_src = _idle(ctx, inner)
        ctx.iteration(False)  # dispatches inner_src inside outer's dispatch
        seen.append(("back", _registry.main_depth(), _registry.current_source()))
        assert inner_src.is_destroyed
        return False

    outer_src = _idle(ctx, outer)
    iterate(ctx, 1)
    assert [(tag, depth) for tag, depth, _ in seen] == [("outer", 1), ("inner", 2), ("back", 1)]
    assert seen[0][2] is outer_src and seen[2][2] is outer_src
    assert seen[1][2] is not outer_src and isinstance(seen[1][2], Source)
    assert _registry.main_depth() == 0


def test_a_callback_that_raises_is_popped_all_the_same(ctx: MainContext) -> None:
    def boom() -> bool:
        raise KeyboardInterrupt  # escapes the iteration (a BaseException)

    _idle(ctx, boom)
    with pytest.raises(KeyboardInterrupt):
        ctx.iteration(False)
    assert _registry.main_depth() == 0 and _registry.current_source() is None


def test_the_stack_is_per_thread(ctx: MainContext) -> None:
    elsewhere: list[tuple[int, Source | None]] = []

    def look() -> None:
        elsewhere.append((_registry.main_depth(), _registry.current_source()))

    def cb() -> bool:
        t = threading.Thread(target=look)
        t.start()
        t.join(5)
        return False

    _idle(ctx, cb)
    iterate(ctx, 1)
    assert elsewhere == [(0, None)]


def test_is_context_knows_only_main_contexts(ctx: MainContext) -> None:
    assert _registry.is_context(ctx)
    assert not _registry.is_context(object())
    assert not _registry.is_context(Source())


def test_default_context_is_the_running_loops_context() -> None:
    async def main() -> tuple[MainContext, MainContext]:
        return _registry.default_context(), aioqloop.get_main_context()

    found, owned = aioqloop.run(main())
    assert found is owned


def test_the_module_imports_nothing_of_the_package() -> None:
    # A leaf every layer imports: a runtime import of the package here would be a cycle.
    tree = ast.parse(Path(_registry.__file__).read_text())
    runtime = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    for node in runtime:
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0 and not (node.module or "").startswith("aioqloop"), \
                ast.unparse(node)
        else:
            assert all(not a.name.startswith("aioqloop") for a in node.names), ast.unparse(node)
    assert any(isinstance(node, ast.If) for node in tree.body)  # the TYPE_CHECKING block
