"""`_PyCore`: the core of a `MainContext`, in Python (``GMainContext``).

The pure-Python engine's reference for the compiled core's ``ContextCore``
(`aioqloop._cengine`): GLib's READY flag (`_mark_ready`), the fast part of prepare and
check, the iteration itself (``g_main_context_iterate``), the ready-time schedule, attach
and the entry to dispatch.  `aioqloop.context` builds `MainContext` on one of the two;
the context's parts (its source set, dispatcher, fd poller, waker) act on the core's
data.  The slow paths the core falls back to (prepare and check hooks, the hand-run poll)
stay methods of `MainContext`.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, cast

from . import _engine
from ._deadlines import Deadlines
from ._fdpoll import FdPoller
from ._index import PriorityIndex
from ._readyq import ReadyQueues
from ._waker import FREE_THREADED, Waker

if TYPE_CHECKING:
    from ._dispatch import Dispatcher
    from ._gate import LockGate
    from ._sourceset import SourceSet
    from .bottomhalf import _BHCarrier
    from .bridge import StandalonePort
    from .context import MainContext
    from .source import Source

__all__ = ("IterationDriver", "_PyCore")

_INF = math.inf
_get_ident = threading.get_ident


class IterationDriver(Protocol):
    """How `MainContext._iterate` waits and where it puts the dispatch."""

    def poll(self, timeout: float | None) -> None: ...
    def place(self, priority: float) -> None: ...


def _rebind_clock(ctx: _PyCore) -> None:
    """The class of the context's loop changed (looptime swaps it): bind the clock to
    the loop's ``time()`` as the new class has it, and remember that class."""
    port = ctx._port
    ctx._clock = port.rebind()
    ctx._clock_class = port.loop_class


def _unready_ancestors(ctx: _PyCore, src: Source) -> None:
    """``src`` stopped being ready (destroyed, or its ready time moved away): an ancestor
    that was ready only through it, and through no other child, is not ready either, as
    GLib's next prepare would find; one in the running dispatch batch stays ready."""
    parent = src._parent
    while (parent is not None and parent._ready and parent._ready_by_child
           and not parent._latched):
        if any(c._ready for c in parent._children if c is not src):
            break
        ctx._unmark_ready(parent)
        if parent._ready_time != -1 and not parent._in_heap:
            # Its own ready time may have passed while it was ready (so it left the
            # deadline heap): GLib derives READY from the ready time at every prepare,
            # so put it back in the heap for the next one to look at.
            ctx._schedule_ready_time(parent)
        parent = parent._parent


def _audit_fds(ctx: _PyCore, now: float) -> None:
    """The NVAL audit of the watched fds, due at loop time ``now``."""
    ctx._fds.audit(now, ctx._mark_ready)


class _PyCore:
    """The core the compiled one (`aioqloop._cengine.ContextCore`) replaces.

    The pure-Python engine's reference: readiness, the fast part of prepare, check,
    the iteration itself and the entry to dispatch.  `MainContext` is built on this
    class or on the compiled one, never on both.
    """

    _readyq: ReadyQueues
    _deadlines: Deadlines
    _waker: Waker
    _bh: _BHCarrier | None
    _prepare_hooks: PriorityIndex
    _check_hooks: PriorityIndex
    #: The hook indexes' ``prios`` lists (held from construction: never replaced).
    _prepare_prios: list[int]
    _check_prios: list[int]
    _clock: Callable[[], float]
    #: The loop (None if stand-alone) and the class of it that `_clock` was bound for.
    _clock_loop: object
    _clock_class: type
    fd_audit_interval: float
    _in_hook: bool
    _source_ready: Callable[[int], None] | None
    _closed: bool
    _closing: bool
    _next_id: int
    _sources: dict[int, Source]
    _owner: int | None
    _blocked: list[Source]
    _blocked_due: list[Source]
    _now: float
    _in_iteration: int
    _serial: int
    _gate: LockGate | None
    _port: StandalonePort
    _fds: FdPoller
    _iterations: int
    _dispatch_time: float
    #: None, or the dispatch tap (`aioqloop._trace`): ``dispatched(src)`` before each
    #: dispatch, ``order(priority, pending)`` -> the ready list of one priority, reordered.
    _tap: Any
    #: The context's parts that act on this data (made by `MainContext.__init__`).
    _set: SourceSet
    _dispatcher: Dispatcher

    if TYPE_CHECKING:
        def _run_check_hooks(self) -> None: ...
        def _prepare_slow(self, deferred: bool) -> float | None: ...
        def _check_loop_open(self) -> None: ...

    def _iterate(self, driver: IterationDriver, *, block: bool, dispatch: bool) -> bool:
        """One iteration (``g_main_context_iterate``); True if a source was ready.

        Owner thread.  ``block``: let ``driver.poll`` wait for the prepare phase's
        timeout; otherwise poll with timeout 0.  ``dispatch``: hand the ready priority to
        ``driver.place``; otherwise only report readiness (`pending`).
        """
        waker = self._waker
        was_waiting = waker.poll_waiting
        if type(self._clock_loop) is not self._clock_class:
            _rebind_clock(self)  # the loop's class was swapped (e.g. looptime)
        # "May sleep" is published before the last look at the queues (the GIL orders
        # a plain store; a free-threaded build needs the lock's barrier).
        if FREE_THREADED:
            waker.set_waiting(True)
        else:
            waker.poll_waiting = True
        try:
            timeout = self._prepare()
            driver.poll(timeout if block else 0.0)
        finally:
            if FREE_THREADED:
                waker.set_waiting(was_waiting)
            else:
                waker.poll_waiting = was_waiting  # awake again: producers need not write
        prio = self._check()
        if prio == _INF:
            return False
        if dispatch:
            driver.place(prio)
        return True

    def _mark_ready(self, src: Source) -> None:
        """Set GLib's READY flag on ``src`` and its ancestors.  Owner thread only."""
        via_child = False
        while src is not None:
            if src._destroyed:
                return
            if src._blocked:
                src._ready_while_blocked = True
                return
            if not src._ready:
                src._ready = True
                # An ancestor ready only through a child stops being ready if that child
                # goes before the next check (GLib re-derives it every iteration).
                src._ready_by_child = via_child
                prio = src._priority
                self._readyq.push(src, prio)
                notify = self._source_ready
                if notify is not None:
                    notify(prio)
            elif not via_child:
                src._ready_by_child = False  # ready in its own right now
            via_child = True
            src = src._parent  # type: ignore[assignment]

    def _unmark_ready(self, src: Source) -> None:
        src._ready_by_time = src._ready_by_child = False
        if src._ready:
            src._ready = False
            self._readyq.remove(src)

    def _ready_sources(self, priority: float) -> list[Source]:
        """The ready sources of ``priority`` in dispatch order (a new list)."""
        return self._readyq.ordered(priority)

    def _best_ready(self) -> float:
        """The most urgent priority with ready sources (``inf`` if none)."""
        return self._readyq.best()

    def _ready_priorities(self) -> list[int]:
        """The priorities that have ready sources, ascending (a new list)."""
        return list(self._readyq.prios)

    def _prepare(self) -> float | None:
        """GLib's prepare (+ query): the poll timeout in seconds (None = forever)."""
        self._serial += 1  # a nested prepare takes over the outer pending dispatches
        gate = self._gate
        deferred = gate is not None and gate.deferred
        bh = self._bh
        queued = self._waker.ops or (bh is not None and bh.pending)
        if self._readyq and not deferred and not self._prepare_prios and not queued:
            return 0.0  # something is ready and no hook needs calling
        if not (self._readyq or self._deadlines.entries or self._prepare_prios or queued
                or self._fds.masks):
            return None  # nothing attached that could need a wait or a dispatch
        return self._prepare_slow(deferred)

    def _check(self) -> float:
        """GLib's check: the priority to dispatch (``inf`` if none).  Owner thread."""
        bh = self._bh
        if (self._deadlines.entries or self._check_prios or self._waker.ops
                or (bh is not None and bh.pending)):
            self._collect()
            if self._check_prios:
                self._run_check_hooks()
        elif self._readyq:
            self._now = self._clock()  # only ready sources: just the cached time
        gate = self._gate
        ready = self._readyq
        if gate is not None:
            if gate.deferred:
                return _INF
            if not ready:
                gate.give_back()  # handed over for a dispatch that has nothing to run
        return ready.best()

    def _apply_polled(self, events: list[tuple[int, int]]) -> None:
        """Record raw epoll results ``(fd, revents)`` polled by a driver that shares the
        context's fds (`_driver_share_fds`); fds the context does not watch are ignored,
        a wake-up is drained.  Owner thread, during the driver's poll."""
        if self._fds.apply(events, self._mark_ready) < 0:
            self._waker.drain()

    def _poll_ready(self) -> None:
        """Record what the private epoll set reports now, without waiting (owner thread);
        consumes a wake-up, also one sent through the driver's ``wake``."""
        ep = self._fds.epoll
        if ep is None or self._fds.apply(ep.poll(0), self._mark_ready) < 0:
            self._waker.drain()

    def _has_work(self) -> bool:
        """Is anything ready or due without waiting?  Owner thread."""
        gate = self._gate
        if gate is not None and gate.deferred:
            return False
        bh = self._bh
        if self._readyq or (bh is not None and bh.pending) or self._waker.ops:
            return True
        if self._fds.always and self._fds.always_ready_pending():
            return True
        entries = self._deadlines.entries
        return bool(entries) and entries[0][0] <= self._clock()

    def _next_deadline(self) -> float:
        """The earliest ready time in loop seconds (``inf`` if none)."""
        return self._deadlines.next_deadline()

    def _drop_ready_time(self, src: Source) -> None:
        """Forget ``src``'s entry in the ready-time heap (it goes stale).  Owner thread."""
        self._deadlines.drop(src)

    def _shift_deadlines(self, offset: float) -> None:
        """Move every ready time by ``offset`` seconds (a new loop clock).  Owner thread."""
        if not math.isfinite(offset):
            raise ValueError("the offset must be finite")
        self._deadlines.shift(offset)

    def _deadline_count(self) -> int:
        """Entries in the ready-time heap, stale ones included."""
        return len(self._deadlines)

    def _time(self) -> float:
        """The context's time in seconds: cached during an iteration, else the loop's now."""
        return self._now if (self._in_iteration or self._in_hook) else self._clock()

    def _schedule_ready_time(self, src: Source) -> None:
        if src._destroyed or src._context is not self:
            return
        when = src._ready_time
        if src._ready_by_time and src._ready and not src._latched and (
            when == -1 or when > self._clock()
        ):
            # READY came from the old ready time; GLib re-derives READY at the next
            # prepare: still ready through a ready child (every ancestor of a ready source
            # is), else not ready at all.
            if any(child._ready for child in src._children):
                src._ready_by_time, src._ready_by_child = False, True
            else:
                self._unmark_ready(src)
                _unready_ancestors(self, src)
        if when in (-1, _INF):
            self._deadlines.drop(src)
        elif self._deadlines.push(src, when):
            self._driver.deadline_changed(when)

    def _insert(self, src: Source) -> None:
        """Insert an attached source (owner thread); the core's fast path, else this."""
        self._set.insert_tree(src)

    def _remove_source(self, src: Source) -> None:
        """Take a destroyed source out (owner thread); the core's fast path, else this."""
        self._set.remove(src)

    def _dispatch(self, priority: float) -> None:
        """Dispatch the ready sources of ``priority`` (`Dispatcher.dispatch`)."""
        self._dispatcher.dispatch(priority)

    def _dispatch_postponed(self) -> None:
        """The check's ready sources are not dispatched now (`Dispatcher.dispatch_postponed`)."""
        self._dispatcher.dispatch_postponed()

    def _collect(self) -> float:
        """Start of prepare and check: foreign ops, the cached time, BHs, due ready times."""
        waker = self._waker
        if waker.ops:
            waker.run_ops()
        now = self._now = self._clock()
        bh = self._bh
        if bh is not None and bh.pending:
            self._mark_ready(bh.source)
        if self._deadlines.head() <= now:
            for src in self._deadlines.pop_due(now):
                if src._blocked:
                    self._blocked_due.append(src)
                elif not src._ready:
                    self._mark_ready(src)
                    src._ready_by_time = src._ready
                elif src._ready_by_child:
                    # due itself: ready in its own right now, not only through a child
                    src._ready_by_time, src._ready_by_child = True, False
        return now

    def _attach(self, src: Source) -> int:
        with self._waker.lock:
            if self._closed or self._closing:
                raise RuntimeError("the MainContext is closed")
            self._check_loop_open()
            src._id = sid = self._set.new_id()
            src._context = cast("MainContext", self)
            self._sources[sid] = src
        # _local_or_post, inlined without a closure: attach is hot (100k timers).
        owner = self._owner
        if owner is not None and owner != _get_ident():
            self._set.post_insert(src)
        else:
            self._insert(src)
            if owner is None:
                self._waker.notify()  # unowned: a thread may be starting to block
        return sid


if _engine.core is not None:
    # The core's upcalls of the iteration, called without a name lookup.
    _engine.core.configure(rebind_clock=_rebind_clock, audit_fds=_audit_fds,
                           always_ready=FdPoller.always_ready_pending)
