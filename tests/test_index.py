"""`PriorityIndex`: a context's prepare/check hook lists, grouped by priority.

GLib walks one priority-sorted source list in prepare and check; the index keeps that
order as a sorted list of the priorities in use and, per priority, the sources in the
order they were added.  The compiled core reads ``prios`` to learn whether any hook is
left, so an emptied priority must leave it.
"""

from __future__ import annotations

from aioqloop import PRIORITY_DEFAULT, PRIORITY_HIGH, PRIORITY_LOW, Source
from aioqloop._index import PriorityIndex


def test_priorities_are_kept_most_urgent_first_whatever_the_order_of_adds() -> None:
    index = PriorityIndex()
    assert not index and index.prios == []
    for prio in (PRIORITY_LOW, PRIORITY_HIGH, 5, PRIORITY_DEFAULT, 5):
        index.add(prio, Source())
    assert index
    assert index.prios == [PRIORITY_HIGH, PRIORITY_DEFAULT, 5, PRIORITY_LOW]


def test_sources_of_one_priority_keep_their_insertion_order() -> None:
    index = PriorityIndex()
    a, b, c = Source(), Source(), Source()
    for src in (b, a, c):
        index.add(PRIORITY_DEFAULT, src)
    index.add(PRIORITY_DEFAULT, b)  # added again: no duplicate, no move
    assert index.snapshot(PRIORITY_DEFAULT) == [b, a, c]
    index.remove(PRIORITY_DEFAULT, a)
    index.add(PRIORITY_DEFAULT, a)  # re-added after removal: now last
    assert index.snapshot(PRIORITY_DEFAULT) == [b, c, a]


def test_removing_the_last_source_of_a_priority_drops_the_priority() -> None:
    index = PriorityIndex()
    high, low = Source(), Source()
    index.add(PRIORITY_HIGH, high)
    index.add(PRIORITY_LOW, low)
    index.remove(PRIORITY_HIGH, high)
    assert index.prios == [PRIORITY_LOW] and PRIORITY_HIGH not in index.buckets
    index.remove(PRIORITY_LOW, low)
    assert not index and index.prios == [] and index.buckets == {}


def test_removing_what_is_not_there_changes_nothing() -> None:
    index = PriorityIndex()
    src, other = Source(), Source()
    index.add(PRIORITY_DEFAULT, src)
    index.remove(PRIORITY_DEFAULT, other)  # not in the bucket
    index.remove(PRIORITY_HIGH, src)  # a priority with no bucket
    assert index.prios == [PRIORITY_DEFAULT]
    assert index.snapshot(PRIORITY_DEFAULT) == [src]


def test_snapshot_is_a_copy_hooks_may_change_the_index_under() -> None:
    index = PriorityIndex()
    a, b = Source(), Source()
    index.add(PRIORITY_DEFAULT, a)
    snap = index.snapshot(PRIORITY_DEFAULT)
    index.add(PRIORITY_DEFAULT, b)
    index.remove(PRIORITY_DEFAULT, a)
    assert snap == [a]
    assert index.snapshot(PRIORITY_DEFAULT) == [b]
    assert index.snapshot(PRIORITY_HIGH) == []
