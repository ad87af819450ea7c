"""`Deadlines`: the ready-time heap alone (lazy deletion, rebuild thresholds), and the
context's heap on either engine through the context's accessors."""

from __future__ import annotations

import math

import pytest

from aioqloop import MainContext, Source
from aioqloop._deadlines import Deadlines


def test_push_reports_new_head_and_pop_due_in_order() -> None:
    dl = Deadlines()
    a, b, c = Source(), Source(), Source()
    assert dl.push(b, 2.0) is True
    assert dl.push(c, 3.0) is False
    assert dl.push(a, 1.0) is True
    assert dl.next_deadline() == 1.0
    assert dl.pop_due(2.5) == [a, b]
    assert not a._in_heap and not b._in_heap and c._in_heap
    assert dl.next_deadline() == 3.0


def test_equal_deadlines_pop_in_push_order() -> None:
    dl = Deadlines()
    srcs = [Source() for _ in range(5)]
    for s in srcs:
        dl.push(s, 1.0)
    assert dl.pop_due(1.0) == srcs


def test_repush_and_drop_leave_stale_entries_that_never_pop() -> None:
    dl = Deadlines()
    a, b = Source(), Source()
    dl.push(a, 1.0)
    dl.push(a, 5.0)  # re-armed later: the 1.0 entry is stale
    dl.push(b, 2.0)
    dl.drop(b)
    assert dl.stale == 2
    assert dl.next_deadline() == 5.0  # prunes the stale heads
    assert dl.stale == 0
    assert dl.pop_due(4.0) == []
    assert dl.pop_due(5.0) == [a]
    assert dl.next_deadline() == math.inf
    assert not dl


def test_drop_of_an_absent_source_is_a_no_op() -> None:
    dl = Deadlines()
    dl.drop(Source())
    assert dl.stale == 0 and len(dl) == 0


def test_rebuild_bounds_the_heap_by_live_entries() -> None:
    dl = Deadlines()
    live = Source()
    dl.push(live, 1e9)
    for _ in range(10_000):
        s = Source()
        dl.push(s, 1e6)
        dl.drop(s)  # e.g. request timeouts removed long before they expire
    assert len(dl) <= 2 * Deadlines.REBUILD_MIN_STALE + 2
    assert dl.next_deadline() == 1e9


def test_head_is_cheap_and_may_be_stale() -> None:
    dl = Deadlines()
    a = Source()
    assert dl.head() == math.inf
    dl.push(a, 1.0)
    dl.drop(a)
    assert dl.head() == 1.0  # stale head: a "maybe due" hint only
    assert dl.pop_due(1.0) == []


# The context's own heap: Deadlines in the pure engine, a C array in the compiled core
# (``_csrc/deadlines.h``).  The same rules through the context's accessors, on either.

def _timer(ctx: MainContext, when: float, log: list[str], name: str) -> Source:
    src = Source()
    src.set_callback(lambda: (log.append(name), False)[1])
    src.attach(ctx)
    src.set_ready_time(when)
    return src


def test_context_heap_fires_equal_ready_times_in_arm_order(ctx: MainContext) -> None:
    log: list[str] = []
    t = ctx._clock() - 1.0
    for name in "abcde":
        _timer(ctx, t, log, name)
    assert ctx._deadline_count() == 5
    assert ctx.iteration(False) is True
    assert log == list("abcde")
    assert ctx._deadline_count() == 0


def test_context_heap_rearm_and_drop_leave_stale_entries_then_prune(ctx: MainContext) -> None:
    log: list[str] = []
    far = ctx._clock() + 3600.0
    a = _timer(ctx, far, log, "a")
    b = _timer(ctx, far + 1, log, "b")
    a.set_ready_time(far + 2)  # a's first entry goes stale
    assert ctx._deadline_count() == 3
    assert ctx._next_deadline() == far + 1  # the stale head was pruned on the way
    assert ctx._deadline_count() == 2
    b.destroy()  # b's entry goes stale, then the head is pruned
    assert ctx._next_deadline() == far + 2
    assert ctx._deadline_count() == 1
    a.set_ready_time(-1)
    assert ctx._next_deadline() == math.inf
    assert ctx._deadline_count() == 0
    assert log == []


def test_context_heap_shift_moves_every_ready_time(ctx: MainContext) -> None:
    far = ctx._clock() + 3600.0
    _timer(ctx, far, [], "a")
    _timer(ctx, far + 5, [], "b")
    ctx._shift_deadlines(10.0)
    assert ctx._next_deadline() == far + 10.0
    with pytest.raises(ValueError, match="finite"):
        ctx._shift_deadlines(math.nan)
    assert ctx._next_deadline() == far + 10.0  # the refused call changed nothing


def test_context_heap_rebuild_bounds_it_by_live_entries(ctx: MainContext) -> None:
    far = ctx._clock() + 3600.0
    srcs = [_timer(ctx, far + i, [], str(i)) for i in range(300)]
    for s in srcs[:250]:
        s.destroy()
    # a rebuild ran once at least 64 entries were stale and more than half the heap
    assert 50 <= ctx._deadline_count() < 300
    assert ctx._next_deadline() == far + 250
    # not a source: refused (the core checks the type, the pure engine finds no field)
    with pytest.raises((TypeError, AttributeError)):
        ctx._drop_ready_time(object())  # type: ignore[arg-type]
    assert ctx._next_deadline() == far + 250
