"""Dispatch traces and seeded scheduling order for tests (`DispatchTrace`).

A `DispatchTrace` attached to a loop records what the loop dispatches, one entry per
dispatch: the kind (``source`` for a `Source` of the loop's `MainContext`, ``callback``
for an asyncio callback, a task step included), a name that does not depend on object
addresses or process-global counters (a source's name or class and callback, a task's
coroutine), the GLib priority, and ``loop.time()``.  Two runs of the same test on a
`VirtualClock` with the same seed give the same trace, entry for entry.

With a seed, ready work of one priority runs in an order drawn from ``random.Random(seed)``
instead of first-in first-out:

* the context's ready sources of one priority (GLib's attach order otherwise), through
  the context's dispatch tap (``MainContext._tap``, in both engines);
* on the stock base, asyncio's ready callbacks (task steps, ``call_soon``, the context's
  queued default-priority dispatch): each batch ``_run_once`` runs is shuffled before it
  starts;
* the steps of tasks with a non-default priority (``QTask.set_priority``), which the
  context queues per priority: each batch of one queue is shuffled before it runs (both
  bases), and each call is recorded as ``call``.

Between priorities nothing changes: GLib's strict priority order holds.

The uvloop base has no ready queue Python can reach (uvloop keeps it in C), so there only
the context's sources are traced and reordered; uvloop's own callbacks run FIFO, untraced.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from typing import Any

from . import _engine
from ._stock import take_ready
from .constants import PRIORITY_DEFAULT

__all__ = ("DispatchTrace", "first_difference", "format_entries")

#: One dispatch: (kind, name, priority, loop time in seconds).
Entry = tuple[str, str, int, float]


def _callable_name(fn: Any) -> str:
    task = getattr(fn, "__self__", None)
    if isinstance(task, asyncio.Task):
        coro = task.get_coro()
        return "step " + str(getattr(coro, "__qualname__", type(coro).__name__))
    inner = getattr(fn, "func", None)  # functools.partial
    if inner is not None and inner is not fn:
        return _callable_name(inner)
    return str(getattr(fn, "__qualname__", None) or type(fn).__qualname__)


def _source_name(src: Any) -> str:
    name = getattr(src, "_name", None)
    if name:
        return str(name)
    cb = getattr(src, "_callback", None)
    kind = type(src).__qualname__
    return f"{kind}({_callable_name(cb)})" if cb is not None else kind


class _TracedReady(deque):  # type: ignore[type-arg]
    """asyncio's ready queue (``loop._ready``) that records, and with a seed shuffles,
    each batch ``_run_once`` pops (it pops exactly the handles queued when it starts)."""

    def __init__(self, items: Any, trace: DispatchTrace) -> None:
        super().__init__(items)
        self.trace = trace
        self.left = 0  # handles of the current batch still to pop

    def popleft(self) -> Any:
        trace = self.trace
        rng = trace._rng
        if rng is not None:
            if self.left <= 0 or self.left > len(self):
                self.left = len(self)  # a new batch: everything queued now
                if self.left > 1:
                    batch = [deque.popleft(self) for _ in range(self.left)]
                    rng.shuffle(batch)
                    self.extendleft(reversed(batch))
            self.left -= 1
        handle = deque.popleft(self)
        if trace.recording and not handle._cancelled:
            trace._add("callback", _callable_name(handle._callback), PRIORITY_DEFAULT)
        return handle


def _replace_ready(loop: Any, old: deque[Any], new: deque[Any]) -> None:
    """Make ``new`` the loop's ready queue, with what ``old`` holds in front.

    Other threads only ever append to the queue (``call_soon_threadsafe``), so ``new``
    is put in place first and ``old``'s handles moved to its left after: a callback
    posted meanwhile lands in one queue or the other, and keeps its place behind them.
    """
    loop._ready = new
    deque.extendleft(new, reversed(take_ready(old)))


class DispatchTrace:
    """Records a loop's dispatches; with ``seed``, orders same-priority ready work by it.

    `attach` installs it on a loop (before the loop runs, for an exact replay);
    `entries` is the list of ``(kind, name, priority, time)``; `lines` their text form.
    """

    def __init__(self, seed: int | None = None, *, recording: bool = True) -> None:
        self.seed = seed
        self._rng = random.Random(seed) if seed is not None else None
        #: Whether dispatches are recorded (a seed alone only reorders).
        self.recording = recording
        self.entries: list[Entry] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def attach(self, loop: asyncio.AbstractEventLoop) -> DispatchTrace:
        """Trace (and order) ``loop``'s dispatches from now on; returns self."""
        self._loop = loop
        ctx: Any = getattr(loop, "_aioqloop_context", None)
        if ctx is not None:
            ctx._tap = self
        ready = getattr(loop, "_ready", None)
        if isinstance(ready, _TracedReady):
            ready.trace = self
            ready.left = 0
        elif isinstance(ready, deque):
            _replace_ready(loop, ready, _TracedReady((), self))
        return self

    def detach(self) -> None:
        """Stop tracing: the loop's dispatch goes back to its plain order."""
        loop: Any = self._loop
        if loop is None:
            return
        ctx = getattr(loop, "_aioqloop_context", None)
        if ctx is not None and ctx._tap is self:
            ctx._tap = None
        ready = getattr(loop, "_ready", None)
        if isinstance(ready, _TracedReady) and ready.trace is self:
            _replace_ready(loop, ready, deque())
        self._loop = None

    # -- the context's dispatch tap (MainContext._tap) ---------------------------------
    def dispatched(self, src: Any) -> None:
        """A source of the context is about to be dispatched."""
        if self.recording:
            self._add("source", _source_name(src), int(src._priority))

    def order(self, priority: int, pending: list[Any]) -> list[Any]:
        """The ready sources of ``priority`` (attach order) in the order to dispatch."""
        rng = self._rng
        if rng is not None:
            rng.shuffle(pending)
        return pending

    def calls(self, priority: int, queue: deque[Any]) -> None:
        """A queue source of the context (prioritized task steps) runs its queued
        ``(function, args)`` calls now: order them by the seed and record each."""
        rng = self._rng
        if rng is not None and len(queue) > 1:
            batch = list(queue)
            rng.shuffle(batch)
            queue.clear()
            queue.extend(batch)
        if self.recording:
            for fn, args in queue:
                # A task step is queued as (run handle, (handle,)): name the step.
                inner = args[0] if len(args) == 1 else None
                target = fn
                if isinstance(inner, asyncio.Handle):
                    target = getattr(inner, "_callback", fn)
                self._add("call", _callable_name(target), int(priority))

    def _add(self, kind: str, name: str, priority: int) -> None:
        loop = self._loop
        now = loop.time() if loop is not None else 0.0
        self.entries.append((kind, name, priority, now))

    def lines(self) -> list[str]:
        """The trace as text, one dispatch a line: ``time priority kind name``."""
        return format_entries(self.entries)


def format_entries(entries: list[Entry]) -> list[str]:
    """Text lines of trace entries (``time priority kind name``; time in seconds)."""
    return [f"{t:.6f} {p} {kind} {name}" for kind, name, p, t in entries]


def first_difference(a: list[str], b: list[str]) -> str | None:
    """Where two traces' lines first differ (None if they are the same)."""
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return f"dispatch {i}: {x!r} != {y!r}"
    if len(a) != len(b):
        return f"lengths differ: {len(a)} != {len(b)} dispatches"
    return None


if _engine.core is not None:
    # The compiled core calls the tap without a name lookup (dispatch.h).
    _engine.core.configure(tap_dispatched=DispatchTrace.dispatched,
                           tap_order=DispatchTrace.order)
