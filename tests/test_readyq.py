"""`aioqloop._readyq`: the pure engine's ready queues (the compiled core's are in C).

Per priority, the ready sources in GLib's dispatch order (`Source._order`); a source is
taken out wherever it is; a burst that arrives out of order is sorted once, when read.
"""

from __future__ import annotations

import random
from typing import Any

from aioqloop import Source
from aioqloop._readyq import ReadyQueues


class Touchy(Source):
    """A source whose comparison and hash raise: the queues must never call them."""

    def __eq__(self, other: object) -> bool:
        raise AssertionError("compared")

    def __hash__(self) -> int:
        raise AssertionError("hashed")


def made(n: int) -> list[Source]:
    out: list[Source] = []
    for i in range(n):
        src = Touchy()
        src._order = (i + 1, 1)
        out.append(src)
    return out


def test_sources_come_out_in_dispatch_order_whatever_order_they_arrive() -> None:
    rq = ReadyQueues()
    srcs = made(200)
    shuffled = srcs[:]
    random.Random(7).shuffle(shuffled)
    for src in shuffled:
        rq.push(src, 0)
    assert rq.ordered(0) == srcs  # list equality compares identity first: no __eq__ call
    assert all(a is b for a, b in zip(rq.ordered(0), srcs))


def test_an_out_of_order_burst_is_sorted_once_when_read() -> None:
    rq = ReadyQueues()
    srcs = made(5)
    for src in reversed(srcs):
        rq.push(src, 0)
    # Nothing moved on arrival: the queue is marked, and kept in arrival order until read.
    assert rq.unsorted == {0}
    assert list(rq.queues[0].values()) == srcs[::-1]
    assert rq.ordered(0) == srcs
    assert rq.unsorted == set()
    assert list(rq.queues[0].values()) == srcs  # sorted in place: the next read is free


def test_the_common_case_appends_at_the_tail_without_marking() -> None:
    rq = ReadyQueues()
    for src in made(3):
        rq.push(src, 0)
    assert rq.unsorted == set()


def test_remove_anywhere_also_from_an_unsorted_queue() -> None:
    rq = ReadyQueues()
    a, b, c = made(3)
    for src in (c, a, b):
        rq.push(src, 0)
    rq.remove(a)
    rq.remove(a)  # not queued: nothing happens
    assert rq.ordered(0) == [b, c]
    rq.remove(c)
    rq.remove(b)
    assert not rq and rq.queues == {} and rq.unsorted == set() and rq.best() == float("inf")


def test_priorities_stay_ascending_and_separate() -> None:
    rq = ReadyQueues()
    a, b, c = made(3)
    a._priority, b._priority, c._priority = 100, -100, 0
    for src in (a, b, c):
        rq.push(src, src._priority)
    assert rq.prios == [-100, 0, 100] and len(rq) == 3 and rq.best() == -100
    rq.remove(b)
    assert rq.prios == [0, 100] and rq.ordered(-100) == []
    seen: list[Any] = [rq.ordered(p) for p in rq.prios]
    assert seen == [[c], [a]]
