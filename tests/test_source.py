"""`Source`: defaults, setters, attach/destroy rules, fd tags, children and bad input."""

from __future__ import annotations

import math
import os
import threading
from typing import Any

import pytest
from conftest import recorder

import aioqloop
from aioqloop import (
    PRIORITY_DEFAULT,
    PRIORITY_HIGH,
    IdleSource,
    IOCondition,
    MainContext,
    Source,
)


def test_defaults() -> None:
    src = Source()
    assert src.priority == PRIORITY_DEFAULT
    assert src.name is None
    assert src.id == 0
    assert src.context is None
    assert src.can_recurse is False
    assert src.is_destroyed is False
    assert src.ready_time == -1
    assert src.prepare() == (False, None)
    assert src.check() is False
    assert src.dispatch(lambda a, b: a + b, (1, 2)) is True
    assert src.dispatch(lambda: 0, ()) is False


def test_setters_round_trip(ctx: MainContext) -> None:
    src = Source(priority=7, name="n")
    assert (src.priority, src.name) == (7, "n")
    src.priority = PRIORITY_HIGH
    src.name = "other"
    src.can_recurse = True
    src.set_ready_time(123.5)
    assert (src.priority, src.name, src.can_recurse, src.ready_time) == (
        PRIORITY_HIGH, "other", True, 123.5)
    src.attach(ctx)
    src.priority = 5  # settable while attached
    assert src.priority == 5
    assert "other" in repr(src) and f"id={src.id}" in repr(src)


def test_attach_twice_and_attach_destroyed(ctx: MainContext) -> None:
    other = MainContext(_driver="standalone")
    try:
        src = Source()
        src.attach(ctx)
        with pytest.raises(RuntimeError):
            src.attach(ctx)
        with pytest.raises(RuntimeError):
            src.attach(other)
        dead = Source()
        dead.destroy()
        with pytest.raises(RuntimeError):
            dead.attach(ctx)
        assert dead.id == 0
    finally:
        other.close()


def test_use_after_destroy(ctx: MainContext, pipe: tuple[int, int]) -> None:
    src = Source()
    src.attach(ctx)
    src.destroy()
    with pytest.raises(RuntimeError):
        src.set_callback(lambda: True)
    with pytest.raises(RuntimeError):
        src.set_ready_time(0)
    r, _ = pipe
    with pytest.raises(RuntimeError):
        src.add_unix_fd(r, IOCondition.IN)
    with pytest.raises(RuntimeError):
        src.add_child_source(Source())
    assert src.time() >= 0  # the context is still known


def test_wrong_types() -> None:
    with pytest.raises(TypeError):
        Source(priority="high")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Source(priority=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Source(priority=True)
    with pytest.raises(TypeError):
        Source(name=3)  # type: ignore[arg-type]
    src = Source()
    with pytest.raises(TypeError):
        src.priority = None  # type: ignore[assignment]
    with pytest.raises(TypeError):
        src.name = 5  # type: ignore[assignment]
    with pytest.raises(TypeError):
        src.set_callback(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        src.set_ready_time("now")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        src.set_ready_time(True)
    with pytest.raises(ValueError):
        src.set_ready_time(math.nan)
    with pytest.raises(TypeError):
        src.attach("ctx")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        src.add_child_source("child")  # type: ignore[arg-type]


def test_time_requires_context() -> None:
    with pytest.raises(RuntimeError):
        Source().time()


def test_callback_args_and_return(ctx: MainContext) -> None:
    got: list[tuple[Any, ...]] = []
    src = Source()
    src.set_callback(lambda *a: got.append(a) or True, 1, "two")
    src.set_ready_time(0)
    src.attach(ctx)
    ctx.iteration(False)
    assert got == [(1, "two")]
    src.set_callback(lambda: 0)  # falsy: SOURCE_REMOVE
    ctx.iteration(False)
    assert src.is_destroyed


def test_finalize_runs_once(ctx: MainContext) -> None:
    fin: list[int] = []

    class F(Source):
        def finalize(self) -> None:
            fin.append(1)

    src = F()
    src.attach(ctx)
    src.destroy()
    src.destroy()
    assert fin == [1]
    unattached = F()
    unattached.destroy()
    assert fin == [1, 1]


def test_methods_changed_on_the_class_after_use_are_the_ones_called(ctx: MainContext) -> None:
    # The compiled core looks a class's finalize/destroy/_attached up once and keeps the
    # answer while the class stays the same: a change to the class must be seen.
    fin: list[str] = []

    class F(Source):
        pass

    first = F()
    first.attach(ctx)
    first.destroy()  # the built-in finalize: nothing to call
    F.finalize = lambda self: fin.append("finalize")  # type: ignore[method-assign]
    second = F()
    second.attach(ctx)
    second.destroy()
    assert fin == ["finalize"]
    F.destroy = lambda self: fin.append("destroy")  # type: ignore[method-assign]
    third = F()
    third.set_callback(lambda: False)
    third.attach(ctx)
    third.set_ready_time(0)
    ctx.iteration(False)  # the dispatch returns False: the context calls destroy()
    assert fin == ["finalize", "destroy"]
    assert not third.is_destroyed
    Source.destroy(third)
    assert fin == ["finalize", "destroy", "finalize"]


def test_class_flags_set_in_the_class_body_make_an_idle_ready_at_attach(
        ctx: MainContext) -> None:
    class Ready(Source):
        _idle = True

    assert Ready._core_flags != Source._core_flags
    src = Ready()
    src.attach(ctx)
    assert src._ready


def test_destroy_from_other_thread(ctx: MainContext) -> None:
    log: list[str] = []
    src = IdleSource()
    src.set_callback(recorder(log, "x"))
    src.attach(ctx)
    t = threading.Thread(target=src.destroy)
    t.start()
    t.join()
    assert src.is_destroyed
    assert ctx.iteration(False) is False
    assert log == []


def test_unix_fd_tags(ctx: MainContext, pipe: tuple[int, int]) -> None:
    r, w = pipe
    src = Source()
    tag = src.add_unix_fd(r, IOCondition.IN)
    assert src.query_unix_fd(tag) == IOCondition(0)
    src.modify_unix_fd(tag, IOCondition.IN | IOCondition.PRI)
    with pytest.raises(TypeError):
        src.query_unix_fd("tag")  # type: ignore[arg-type]
    other = Source()
    with pytest.raises(ValueError):
        other.query_unix_fd(tag)
    with pytest.raises(ValueError):
        other.remove_unix_fd(tag)
    with pytest.raises(ValueError):
        src.add_unix_fd(-3, IOCondition.IN)
    with pytest.raises(ValueError):
        src.modify_unix_fd(tag, 1 << 12)
    with pytest.raises(TypeError):
        src.add_unix_fd(r, "IN")  # type: ignore[arg-type]
    seen: list[IOCondition] = []
    src.set_callback(lambda: seen.append(src.query_unix_fd(tag)) or True)
    src.attach(ctx)
    os.write(w, b"x")
    ctx.iteration(False)
    assert seen == [IOCondition.IN]
    src.remove_unix_fd(tag)
    with pytest.raises(ValueError):
        src.remove_unix_fd(tag)
    assert ctx.iteration(False) is False


def test_add_unix_fd_closed_fd(pipe: tuple[int, int]) -> None:
    r, w = pipe
    os.close(r)
    os.close(w)
    with pytest.raises(OSError):
        Source().add_unix_fd(r, IOCondition.IN)


def test_child_source_rules(ctx: MainContext) -> None:
    parent = Source(priority=PRIORITY_HIGH)
    child = Source(priority=99)
    parent.add_child_source(child)
    assert child.priority == PRIORITY_HIGH
    with pytest.raises(RuntimeError):
        parent.add_child_source(child)  # already has a parent
    with pytest.raises(RuntimeError):
        child.add_child_source(parent)  # a cycle
    with pytest.raises(RuntimeError):
        parent.add_child_source(parent)
    with pytest.raises(RuntimeError):
        child.attach(ctx)  # attached through its parent
    dead = Source()
    dead.destroy()
    with pytest.raises(RuntimeError):
        parent.add_child_source(dead)
    attached = Source()
    attached.attach(ctx)
    with pytest.raises(RuntimeError):
        parent.add_child_source(attached)
    parent.attach(ctx)
    assert child.context is ctx
    assert child.id == parent.id + 1  # attached with its parent, as GLib does
    assert ctx.find_source_by_id(child.id) is child
    with pytest.raises(ValueError):
        parent.remove_child_source(Source())
    parent.remove_child_source(child)
    assert child.is_destroyed
    assert not parent.is_destroyed


def test_children_get_ids_as_in_glib(ctx: MainContext) -> None:
    # What GLib 2.74 (python3-gi) answers for the same calls: ids in depth-first order
    # at the parent's attach, the next free id for a child added later, and a destroyed
    # child gone from the id table with its own children.
    parent, child, grandchild = Source(), Source(), Source()
    child.add_child_source(grandchild)
    parent.add_child_source(child)
    assert [parent.attach(ctx), child.id, grandchild.id] == [1, 2, 3]
    child.destroy()
    assert grandchild.is_destroyed
    assert ctx.find_source_by_id(2) is None and ctx.find_source_by_id(3) is None
    later = Source()
    parent.add_child_source(later)
    assert later.id == 4
    assert ctx.find_source_by_id(4) is later
    assert aioqloop.source_remove(4, context=ctx)
    assert later.is_destroyed and not parent.is_destroyed
    assert ctx.find_source_by_id(1) is parent


def test_child_added_after_attach_is_attached(ctx: MainContext) -> None:
    log: list[str] = []
    parent = Source()
    parent.set_callback(recorder(log, "parent"))
    parent.attach(ctx)
    child = Source()
    child.set_callback(recorder(log, "child"))
    parent.add_child_source(child)
    assert child.context is ctx
    child.set_ready_time(0)
    ctx.iteration(False)
    assert log == ["child", "parent"]


def test_child_removed_during_its_parents_dispatch_is_not_kept_blocked() -> None:
    # The child is blocked with its dispatching parent; once removed, the parent's
    # unblock no longer reaches it, and the context kept it in its blocked list forever.
    import gc
    import weakref

    ctx = MainContext(_driver="standalone")
    try:
        class Parent(Source):
            child: Source | None = None

            def dispatch(self, callback: Any, args: tuple[Any, ...]) -> bool:
                assert self.child is not None
                self.remove_child_source(self.child)
                self.child = None
                return True

        parent = Parent()
        parent.set_ready_time(0)
        child = Source()
        parent.child = child
        parent.add_child_source(child)
        parent.attach(ctx)
        assert ctx.iteration(False) is True
        ref = weakref.ref(child)
        del child
        gc.collect()
        assert ref() is None
        assert ctx._blocked == []
    finally:
        ctx.close()
