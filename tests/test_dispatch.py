"""`aioqloop._dispatch`: the dispatch phase of a context (GLib's ``g_main_dispatch``).

The ready sources of one priority run in attach order, whatever order they became ready
in; a source destroyed earlier in the batch is skipped and one attached during it waits
for the next iteration; a destroyed source is finalized once its dispatch has returned;
a non-recursive source is blocked while it dispatches, so a nested iteration of its own
callback does not run it again; a nested iteration takes over the rest of the outer
batch.  The compiled core has its own dispatcher: these run on both engines.
"""

from __future__ import annotations

from typing import Any

import pytest
from conftest import recorder

from aioqloop import (
    PRIORITY_DEFAULT,
    PRIORITY_DEFAULT_IDLE,
    PRIORITY_HIGH,
    IdleSource,
    MainContext,
    Source,
    main_depth,
)


def idle(ctx: MainContext, log: list[Any], tag: Any, *, priority: int = PRIORITY_DEFAULT,
         result: bool = True) -> IdleSource:
    src = IdleSource(priority=priority, name=str(tag))
    src.set_callback(recorder(log, tag, result))
    src.attach(ctx)
    return src


# --------------------------------------------------------------------- order
def test_a_batch_runs_in_attach_order_not_in_the_order_it_became_ready(
    ctx: MainContext,
) -> None:
    log: list[str] = []
    sources = {}
    for tag in ("a", "b", "c"):
        src = Source(priority=PRIORITY_HIGH)
        src.set_callback(recorder(log, tag, False))
        src.attach(ctx)
        sources[tag] = src
    for tag in ("c", "a", "b"):  # made ready out of attach order
        sources[tag].set_ready_time(0)
    assert ctx.iteration(False) is True
    assert log == ["a", "b", "c"]


@pytest.mark.parametrize("count", [3, 40, 200])
def test_a_burst_made_ready_out_of_order_dispatches_in_attach_order(
    ctx: MainContext, count: int
) -> None:
    """Sources made ready far from attach order (a burst of timeouts due in deadline
    order): the queue appends them and sorts once when read (the compiled core walks at
    most 32 places back), and one destroyed or re-prioritised meanwhile is neither run
    nor lost."""
    import random

    log: list[int] = []
    sources = []
    for i in range(count):
        src = Source(priority=PRIORITY_HIGH)
        src.set_callback(recorder(log, i, False))
        src.attach(ctx)
        sources.append(src)
    shuffled = list(range(count))
    random.Random(count).shuffle(shuffled)
    for i in shuffled:
        sources[i].set_ready_time(0)
    gone = shuffled[0]  # destroyed while queued, before the queue is read
    sources[gone].destroy()
    moved = shuffled[-1]  # to a less urgent priority: runs in a later iteration
    sources[moved].priority = PRIORITY_DEFAULT
    assert ctx.iteration(False) is True
    expected = [i for i in range(count) if i not in (gone, moved)]
    assert log == expected
    assert ctx.iteration(False) is True
    assert log == [*expected, moved]
    assert ctx.iteration(False) is False


# --------------------------------------------------------- destroy and dispatch


def test_destroyed_earlier_in_iteration_is_skipped(ctx: MainContext) -> None:
    log: list[str] = []
    b: IdleSource

    def a_cb() -> bool:
        log.append("a")
        b.destroy()
        return True

    a = IdleSource(priority=PRIORITY_DEFAULT)
    a.set_callback(a_cb)
    a.attach(ctx)
    b = idle(ctx, log, "b")
    idle(ctx, log, "c")
    ctx.iteration(False)
    assert log == ["a", "c"]


def test_added_during_dispatch_waits_for_next_iteration(ctx: MainContext) -> None:
    log: list[str] = []

    def a_cb() -> bool:
        log.append("a")
        idle(ctx, log, "new", result=False)
        return False

    a = IdleSource(priority=PRIORITY_DEFAULT)
    a.set_callback(a_cb)
    a.attach(ctx)
    idle(ctx, log, "b", result=False)
    ctx.iteration(False)
    assert log == ["a", "b"]
    ctx.iteration(False)
    assert log == ["a", "b", "new"]


def test_self_destroy_and_continue_is_destroyed_once(ctx: MainContext) -> None:
    finalized: list[int] = []

    class Fin(IdleSource):
        def finalize(self) -> None:
            finalized.append(1)

    src = Fin()

    def cb() -> bool:
        src.destroy()
        return True

    src.set_callback(cb)
    src.attach(ctx)
    ctx.iteration(False)
    assert src.is_destroyed
    assert finalized == [1]
    assert ctx.iteration(False) is False


def test_finalize_after_dispatch_finishes(ctx: MainContext) -> None:
    events: list[str] = []

    class Fin(IdleSource):
        def finalize(self) -> None:
            events.append("finalize")

    src = Fin()

    def cb() -> bool:
        src.destroy()
        events.append("after destroy")
        return False

    src.set_callback(cb)
    src.attach(ctx)
    ctx.iteration(False)
    assert events == ["after destroy", "finalize"]


# ------------------------------------------------------------------- recursion


class PrepareReady(Source):
    def prepare(self) -> tuple[bool, float | None]:
        return (True, None)


def _always_ready(kind: str) -> Source:
    if kind == "idle":
        return IdleSource(priority=PRIORITY_DEFAULT)
    if kind == "ready_time":
        src = Source()
        src.set_ready_time(0)
        return src
    return PrepareReady()


@pytest.mark.parametrize("kind", ["idle", "ready_time", "prepare"])
@pytest.mark.parametrize(("can_recurse", "expected"), [(False, 1), (True, 2)])
def test_nested_iteration_and_can_recurse(ctx: MainContext, kind: str, can_recurse: bool,
                                          expected: int) -> None:
    # GLib: a non-recursive source is blocked during its dispatch; a recursive one that is
    # still ready runs again inside a nested iteration of its own callback (1 vs 2 calls).
    count = 0

    def cb() -> bool:
        nonlocal count
        count += 1
        if count == 1:
            ctx.iteration(False)
        return False

    src = _always_ready(kind)
    src.can_recurse = can_recurse
    src.set_callback(cb)
    src.attach(ctx)
    # Keep something else ready so the nested iteration has work either way.
    other = IdleSource(priority=PRIORITY_DEFAULT_IDLE)
    other.set_callback(lambda: True)
    other.attach(ctx)
    ctx.iteration(False)
    assert count == expected


def test_nested_iteration_takes_over_outer_pending(ctx: MainContext) -> None:
    seen: list[tuple[str, int]] = []

    def first() -> bool:
        seen.append(("a", main_depth()))
        ctx.iteration(False)
        seen.append(("a-done", main_depth()))
        return False

    a = IdleSource(priority=PRIORITY_DEFAULT)
    a.set_callback(first)
    a.attach(ctx)
    for tag in ("b", "c"):
        s = IdleSource(priority=PRIORITY_DEFAULT)
        s.set_callback(lambda t=tag: seen.append((t, main_depth())) or False)
        s.attach(ctx)
    ctx.iteration(False)
    # b and c were pending in the outer iteration: they ran inside the nested one.
    assert seen == [("a", 1), ("b", 2), ("c", 2), ("a-done", 1)]
    assert ctx.iteration(False) is False
