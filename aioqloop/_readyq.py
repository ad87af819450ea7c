"""The ready queues of a context, in Python: per priority, the ready sources in dispatch order.

GLib dispatches the ready sources of one priority in the order of the context's source
list: attach order, a child just before its parent, a source whose priority changed at
the tail of its new priority.  `Source._order` encodes that order (`aioqloop._sourceset`).
The pure-Python engine's reference for the compiled core's ready queues (intrusive lists
through the sources, in ``_csrc/context.h``): the same operations and the same order
rule, so a dispatch never sorts.  A source is inserted from the tail, where a source
re-armed by its own dispatch belongs, so the common case costs one comparison.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .source import Source

__all__ = ("ReadyQueues",)


def _order_key(src: Source) -> tuple[int, ...]:
    return src._order


class ReadyQueues:
    """Per priority, the ready sources in dispatch order (only non-empty priorities)."""

    __slots__ = ("prios", "queues")

    def __init__(self) -> None:
        #: The priorities that have ready sources, ascending.
        self.prios: list[int] = []
        #: priority -> its ready sources, ordered by ``_order``.
        self.queues: dict[int, list[Source]] = {}

    def __bool__(self) -> bool:
        return bool(self.prios)

    def __len__(self) -> int:
        """The number of priorities with ready sources."""
        return len(self.prios)

    def best(self) -> float:
        """The most urgent priority with ready sources (``inf`` if none)."""
        return self.prios[0] if self.prios else float("inf")

    def get(self, priority: float) -> list[Source] | None:
        """The ready queue of ``priority`` (the live list), or None if it has none."""
        return self.queues.get(priority)  # type: ignore[call-overload, no-any-return]

    def push(self, src: Source, priority: int) -> None:
        """Queue ``src`` (not queued) at its place in the queue of ``priority``."""
        queue = self.queues.get(priority)
        if queue is None:
            queue = self.queues[priority] = []
            insort(self.prios, priority)
        order = src._order
        if not queue or queue[-1]._order < order:
            queue.append(src)  # the common case: at the tail
        else:
            queue.insert(bisect_right(queue, order, key=_order_key), src)

    def remove(self, src: Source) -> None:
        """Take ``src`` out of its queue (that of its priority), if queued."""
        priority = src._priority
        queue = self.queues.get(priority)
        if queue is None:
            return
        i = bisect_left(queue, src._order, key=_order_key)
        if i < len(queue) and queue[i] is src:
            del queue[i]
        else:  # its order changed while queued: look for it by identity
            for i, other in enumerate(queue):
                if other is src:
                    del queue[i]
                    break
            else:
                return
        if not queue:
            del self.queues[priority]
            self.prios.remove(priority)
