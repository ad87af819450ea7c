"""`PriorityIndex`: sources grouped by priority, each group in insertion order.

GLib keeps a context's sources in one list sorted by priority and walks it front to back
in prepare and check, stopping past the best ready priority.  The context keeps, for each
hook (prepare, check), only the sources whose class overrides it, in one of these: a dict
per priority (insertion-ordered, O(1) removal) and the sorted list of priorities in use.
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .source import Source

__all__ = ("PriorityIndex",)


class PriorityIndex:
    """Priority -> insertion-ordered sources (loop thread only)."""

    __slots__ = ("buckets", "prios")

    def __init__(self) -> None:
        self.buckets: dict[int, dict[Source, None]] = {}
        #: Priorities that have at least one source, most urgent first.
        self.prios: list[int] = []

    def __bool__(self) -> bool:
        return bool(self.prios)

    def add(self, prio: int, src: Source) -> None:
        bucket = self.buckets.get(prio)
        if bucket is None:
            bucket = self.buckets[prio] = {}
            bisect.insort(self.prios, prio)
        bucket[src] = None

    def remove(self, prio: int, src: Source) -> None:
        bucket = self.buckets.get(prio)
        if bucket is not None and src in bucket:
            del bucket[src]
            if not bucket:
                del self.buckets[prio]
                self.prios.remove(prio)

    def snapshot(self, prio: int) -> list[Source]:
        """The sources of ``prio`` now (a copy: hooks may attach, destroy, re-prioritise)."""
        return list(self.buckets.get(prio, ()))
