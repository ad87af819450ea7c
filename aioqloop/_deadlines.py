"""`Deadlines`: the ready-time heap of a context (timeouts, ``set_ready_time``).

GLib walks every source in prepare to find the earliest ready time; here ready times live in
one binary heap of ``(when, seq, source)`` so an iteration only touches what is due, like
trio's ``Deadlines`` or asyncio's timer heap.  Removal is lazy: a source that is re-armed or
destroyed only flips its intrusive ``_in_heap`` flag (its old entry goes stale), and the heap
is rebuilt once stale entries outnumber live ones (amortised O(1), bounded memory).

The heap keeps two fields on each source, ``_in_heap`` and ``_heap_seq``; nothing else here
knows what a source is.  The pure engine's reference: the compiled core keeps the same heap
as a C array in its context (``_csrc/deadlines.h``), with the same entries, order, liveness
rule and rebuild thresholds; code outside the context reaches either one only through the
context's ``_next_deadline``, ``_drop_ready_time``, ``_shift_deadlines`` and
``_deadline_count``.
"""

from __future__ import annotations

import heapq
import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .source import Source

__all__ = ("Deadlines",)

_INF = math.inf


class Deadlines:
    """A heap of source ready times with lazy deletion (loop thread only)."""

    #: Rebuild only once at least this many entries are stale ...
    REBUILD_MIN_STALE = 64
    #: ... and stale entries are more than this share of the heap.
    REBUILD_STALE_SHARE = 0.5

    __slots__ = ("_seq", "_stale", "entries")

    def __init__(self) -> None:
        #: The heap itself (read only by this class and the pure engine's context core).
        self.entries: list[tuple[float, int, Source]] = []
        self._seq = 0
        self._stale = 0

    def __len__(self) -> int:
        """Entries in the heap, stale ones included."""
        return len(self.entries)

    def __bool__(self) -> bool:
        return bool(self.entries)

    @property
    def stale(self) -> int:
        """Entries dropped lazily and not yet popped or rebuilt away."""
        return self._stale

    def head(self) -> float:
        """The earliest entry's time, possibly stale (``inf`` if empty): a cheap "maybe due"."""
        heap = self.entries
        return heap[0][0] if heap else _INF

    def push(self, src: Source, when: float) -> bool:
        """Enter ``src`` at ``when`` (dropping an older entry); True if it is the new head."""
        if src._in_heap:
            self.drop(src)
        self._seq = seq = self._seq + 1
        src._heap_seq = seq
        src._in_heap = True
        heap = self.entries
        heapq.heappush(heap, (when, seq, src))
        return heap[0][1] == seq

    def drop(self, src: Source) -> None:
        """Forget ``src``'s entry (it stays in the heap, stale, until popped or rebuilt)."""
        if not src._in_heap:
            return
        src._in_heap = False
        self._stale = stale = self._stale + 1
        heap = self.entries
        if stale >= self.REBUILD_MIN_STALE and stale > len(heap) * self.REBUILD_STALE_SHARE:
            self.rebuild()

    def rebuild(self) -> None:
        """Drop every stale entry now (O(n))."""
        self.entries = [e for e in self.entries if _live(e)]
        heapq.heapify(self.entries)
        self._stale = 0

    def shift(self, offset: float) -> None:
        """Move every entry by ``offset`` seconds (the context moved to a loop whose
        clock reads differently); the heap order does not change."""
        self.entries = [(when + offset, seq, src) for when, seq, src in self.entries]

    def next_deadline(self) -> float:
        """The earliest live ready time (``inf`` if none); prunes stale heads."""
        heap = self.entries
        while heap:
            entry = heap[0]
            if _live(entry):
                return entry[0]
            heapq.heappop(heap)
            self._stale -= 1
        return _INF

    def pop_due(self, now: float) -> list[Source]:
        """Remove and return the sources due at ``now`` (``when <= now``), earliest first."""
        heap = self.entries
        due: list[Source] = []
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            if not _live(entry):
                self._stale -= 1
                continue
            src = entry[2]
            src._in_heap = False
            due.append(src)
        return due


def _live(entry: tuple[float, int, Source]) -> bool:
    src = entry[2]
    return src._in_heap and src._heap_seq == entry[1]
