"""The ready queues of a context, in Python: per priority, the ready sources in dispatch order.

GLib dispatches the ready sources of one priority in the order of the context's source
list: attach order, a child just before its parent, a source whose priority changed at
the tail of its new priority.  `Source._order` encodes that order (`aioqloop._sourceset`).
The pure-Python engine's reference for the compiled core's ready queues (intrusive lists
through the sources, in ``_csrc/context.h``): the same operations and the same order
rule.  A queue is an insertion-ordered dict keyed by the source's ``id`` (never by the
source: a user's ``__eq__`` or ``__hash__`` is not called), so taking a source out costs
the same wherever it is.  A source that becomes ready at the tail of the order, where a
source re-armed by its own dispatch belongs, is appended; any other arrival is appended
too and the queue is sorted once, when it is next read in order (the C core does the
same past a short walk from the tail), so a burst of many sources made ready out of
order, such as timeouts due together, costs a sort rather than one move per source.
"""

from __future__ import annotations

from bisect import insort
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .source import Source

__all__ = ("ReadyQueues",)


def _order_key(src: Source) -> tuple[int, ...]:
    return src._order


class ReadyQueues:
    """Per priority, the ready sources in dispatch order (only non-empty priorities)."""

    __slots__ = ("prios", "queues", "unsorted")

    def __init__(self) -> None:
        #: The priorities that have ready sources, ascending.
        self.prios: list[int] = []
        #: priority -> its ready sources by ``id``, in ``_order`` unless listed unsorted.
        self.queues: dict[int, dict[int, Source]] = {}
        #: The priorities whose queue had an arrival out of order since it was last read.
        self.unsorted: set[int] = set()

    def __bool__(self) -> bool:
        return bool(self.prios)

    def __len__(self) -> int:
        """The number of priorities with ready sources."""
        return len(self.prios)

    def best(self) -> float:
        """The most urgent priority with ready sources (``inf`` if none)."""
        return self.prios[0] if self.prios else float("inf")

    def ordered(self, priority: float) -> list[Source]:
        """The ready sources of ``priority`` in dispatch order (a new list; empty if none)."""
        queue = self.queues.get(priority)  # type: ignore[call-overload]
        if queue is None:
            return []
        if priority in self.unsorted:
            self.unsorted.discard(priority)
            pending = sorted(queue.values(), key=_order_key)  # stable: ties keep arrival
            queue.clear()
            for src in pending:
                queue[id(src)] = src
            return pending
        return list(queue.values())

    def push(self, src: Source, priority: int) -> None:
        """Queue ``src`` (not queued) in the queue of ``priority``."""
        queue = self.queues.get(priority)
        if queue is None:
            queue = self.queues[priority] = {}
            insort(self.prios, priority)
        elif priority not in self.unsorted and not (
            next(reversed(queue.values()))._order < src._order
        ):
            self.unsorted.add(priority)  # out of order: sorted when next read
        queue[id(src)] = src

    def remove(self, src: Source) -> None:
        """Take ``src`` out of its queue (that of its priority), if queued."""
        priority = src._priority
        queue = self.queues.get(priority)
        if queue is None or queue.pop(id(src), None) is None:
            return
        if not queue:
            del self.queues[priority]
            self.unsorted.discard(priority)
            self.prios.remove(priority)
