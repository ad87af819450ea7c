"""`Deadlines`: the ready-time heap alone (lazy deletion, rebuild thresholds)."""

from __future__ import annotations

import math

from aioqloop import Source
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
