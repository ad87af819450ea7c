"""`MainContext`: a GLib-style source set living inside an asyncio loop.

One iteration is GLib's ``prepare → query → poll → check → dispatch`` with GLib's rules
(``glib/gmain.c``): only the most urgent ready priority dispatches in an iteration, in
attach order (children before their parent); sources of a less urgent priority are not
even prepared once something more urgent is ready; a source destroyed earlier in the
iteration is skipped; one attached during dispatch waits for the next iteration; a
non-recursive source is blocked while it dispatches; a nested iteration takes over what
the outer one had left to dispatch; the time is cached per iteration.

Why it stays cheap (GLib walks every source twice per iteration; we do not)
---------------------------------------------------------------------------
* **Ready sets.**  Every source with GLib's READY flag sits in a dict for its priority.
  The iteration's priority is ``min()`` over the priorities that have a ready source (a
  handful of levels), and dispatch sorts only that priority's ready sources.
* **Ready times** (timeouts, idles, ``set_ready_time``) live in one heap of
  ``(when, seq, source)`` with lazy deletion.  Prepare and check pop only the entries
  that are due; the head is the only deadline handed to asyncio, as one re-armed
  ``call_at`` (or as the selector timeout on an aioqloop loop).  An idle is "ready time
  0" and is re-marked ready straight after its dispatch without touching the heap.
* **Fds** are registered in one private epoll set per context, whose own fd is the only
  thing asyncio watches (``add_reader``).  When asyncio says it is readable, one
  ``epoll.poll(0)`` returns exact poll(2) revents (IN/OUT/PRI/ERR/HUP) for just the fds
  that are ready; the work is O(ready fds), never O(watched fds).  Files that epoll
  refuses (regular files, ``/dev/null``) are "always ready", as poll(2) reports them.
  A watched fd that is closed behind our back vanishes from epoll silently; an audit
  with a single ``poll()`` over the watched fds, run at most every
  ``fd_audit_interval`` seconds when the context is about to sleep, reports NVAL.
* **Hooks.**  Only sources whose class overrides ``prepare``/``check`` are called, in
  priority order, and the walk stops past the most urgent ready priority.
* **Cross-thread wake-ups** (`wakeup`, `invoke`, `BottomHalf.schedule`, foreign
  ``attach``/``destroy``/``set_ready_time``) write the context's eventfd only while the
  loop may be sleeping and no write is outstanding: QEMU's ``notify_me``/``notified``
  handshake, done under a small lock so it needs no GIL ordering.

The context does not call asyncio itself: a driver does (`aioqloop.bridge` for any
asyncio loop, `aioqloop.loop` for aioqloop's own loops, which run prepare and check
inside their selector's ``select``).  `iteration` polls the private epoll set directly,
so a context can also be iterated by hand, nested inside a callback, or without a loop.
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import itertools
import logging
import math
import os
import select
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from .constants import PRIORITY_DEFAULT, PRIORITY_DEFAULT_IDLE, IOCondition
from .source import Source, SourceStatistics, _FdRecord
from .statistics import ContextStatistics, SourceStats

if TYPE_CHECKING:
    import asyncio

    from .biglock import BigLock
    from .bottomhalf import BottomHalf, _BHSource

__all__ = ("MainContext", "current_source", "get_main_context", "main_depth")

logger = logging.getLogger("aioqloop")

_INF = math.inf
_ALWAYS_EVENTS = int(IOCondition.ERR | IOCondition.HUP | IOCondition.NVAL)
_EPOLL_MASK = int(IOCondition.IN | IOCondition.OUT | IOCondition.PRI)
_get_ident = threading.get_ident
_perf = time.perf_counter
# Debug mode warns about a dispatch slower than loop.slow_callback_duration (like
# asyncio's "Executing ... took"); below this floor nothing is looked up.
_SLOW_FLOOR = 0.001
_FREE_THREADED = not getattr(sys, "_is_gil_enabled", lambda: True)()


class _ThreadState(threading.local):
    def __init__(self) -> None:
        self.current: list[Source] = []
        self.default_loop: asyncio.AbstractEventLoop | None = None


_tls = _ThreadState()


def main_depth() -> int:
    """Dispatch depth in this thread: 0 at top level, 1 in a callback, 2 when nested.

    Like ``g_main_depth``.
    """
    return len(_tls.current)  # one entry per dispatch level in this thread


def current_source() -> Source | None:
    """The source whose callback is running in this thread, or None (``g_main_current_source``)."""
    stack = _tls.current
    return stack[-1] if stack else None


# Fallback only, for a loop class that takes no attributes.  A weak-key mapping cannot
# be the main store: its value (the context) holds the loop, so the key never dies and
# each loop leaked with its context's epoll fd and eventfd.
_contexts_by_loop: weakref.WeakKeyDictionary[Any, MainContext] = weakref.WeakKeyDictionary()
_BOUND_ATTR = "_aioqloop_bound_context"


def get_main_context(loop: asyncio.AbstractEventLoop | None = None) -> MainContext:
    """The default `MainContext` of ``loop`` (default: the running loop), created on demand.

    Each aioqloop loop owns one; on any other asyncio loop one is bound on first use.
    """
    if loop is None:
        import asyncio

        loop = asyncio.get_running_loop()
    own = getattr(loop, "_aioqloop_context", None)
    if isinstance(own, MainContext):
        return own
    ctx = getattr(loop, _BOUND_ATTR, None) or _contexts_by_loop.get(loop)
    if ctx is None or ctx._closed:
        ctx = MainContext(loop)
        # Kept on the loop itself: loop and context then form a cycle the garbage
        # collector frees (closing the fds) once the loop is dropped.
        try:
            setattr(loop, _BOUND_ATTR, ctx)
        except AttributeError:
            _contexts_by_loop[loop] = ctx
    return ctx


class _QueueSource(Source):
    """Runs queued calls at one priority: `invoke` from threads and prioritized task steps."""

    def __init__(self, priority: int) -> None:
        super().__init__(priority=priority, name=f"call queue at priority {priority}")
        self.queue: deque[tuple[Callable[..., Any], tuple[Any, ...], Any]] = deque()
        self.can_recurse = True

    def dispatch(self, callback: Callable[..., Any] | None, args: tuple[Any, ...]) -> bool:
        queue = self.queue
        ctx = self._context
        assert ctx is not None
        # Only what was queued before this dispatch runs now, like asyncio's _run_once.
        for _ in range(len(queue)):
            fn, fargs, pyctx = queue.popleft()
            try:
                if pyctx is not None:
                    pyctx.run(fn, *fargs)
                else:
                    fn(*fargs)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                ctx._report(exc, self, "queued call", destroy=False, callback=fn)
        if queue:
            ctx._mark_ready(self)
        return True


class MainContext:
    """A set of sources bound to one asyncio loop, like GLib's ``GMainContext``.

    ``MainContext(loop)`` binds a new context to ``loop``; with no argument it binds to
    the running loop, or makes a stand-alone context iterated by hand with `iteration`
    when no loop runs.  `default` gives the loop's own context.  Times are seconds on
    ``loop.time()`` (``time.monotonic()`` for a stand-alone context).
    """

    #: Seconds between two audits of watched fds for ones closed behind the context's back.
    fd_audit_interval = 1.0

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop | None = None,
        *,
        _driver: str = "auto",
    ) -> None:
        if loop is None and _driver == "auto":
            import asyncio

            loop = asyncio._get_running_loop()
        if loop is not None:
            import asyncio

            if not isinstance(loop, asyncio.AbstractEventLoop):
                raise TypeError(f"loop must be an asyncio event loop, not {type(loop).__name__}")
            if loop.is_closed():
                raise RuntimeError("cannot bind a MainContext to a closed event loop")
        self._loop = loop
        self._clock: Callable[[], float] = loop.time if loop is not None else time.monotonic
        if loop is not None and _is_uvloop(loop):
            # uvloop's time() is libuv's cached, millisecond-truncated clock: deadlines
            # computed from it fire up to 1 ms early.  Same epoch, fresh reading.
            self._clock = time.monotonic
        self._closed = False
        self._sources: dict[int, Source] = {}
        self._next_id = 1
        self._seq = itertools.count(1)
        self._heap_counter = itertools.count(1)
        self._ready_by_prio: dict[int, dict[Source, None]] = {}
        self._prepare_by_prio: dict[int, dict[Source, None]] = {}
        self._check_by_prio: dict[int, dict[Source, None]] = {}
        self._prepare_prios: list[int] = []
        self._check_prios: list[int] = []
        self._heap: list[tuple[float, int, Source]] = []
        self._heap_stale = 0  # entries of the heap dropped lazily, not yet popped
        self._blocked: list[Source] = []
        self._blocked_due: list[Source] = []
        self._now = self._clock()
        self._in_iteration = 0
        self._in_hook = False
        self._serial = 0
        self._iterations = 0
        self._poll_time = 0.0
        self._dispatch_time = 0.0
        # fds
        self._epoll = select.epoll()
        self._efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._epoll.register(self._efd, select.EPOLLIN)
        self._fd_records: dict[int, list[_FdRecord]] = {}
        self._fd_mask: dict[int, int] = {}
        self._always_ready: set[int] = set()
        self._unpolled: set[int] = set()
        self._audit_poll: select.poll | None = None
        self._last_audit = 0.0
        # cross-thread
        self._lock = threading.Lock()
        self._foreign_ops: deque[Callable[[], None]] = deque()
        self._poll_waiting = False
        self._notified = False
        self._owner: int | None = None
        self._queues: dict[int, _QueueSource] = {}
        self._bh_source: _BHSource | None = None
        self._bh_queue: deque[BottomHalf] = deque()
        self._bh_pending = 0
        self._bh_count = 0
        self._bql: BigLock | None = None
        self._lock_deferred = False
        self._bql_handed = False
        # driver hooks (see bridge.py / loop.py)
        self._kick: Callable[[], None] | None = None
        self._deadline_changed: Callable[[float], None] | None = None
        self._driver: Any = None
        self._finalizer = weakref.finalize(self, _close_fds, self._epoll, self._efd)
        if loop is not None:
            if loop.is_running() and asyncio._get_running_loop() is loop:
                self._owner = _get_ident()
            if _driver == "auto":
                from .bridge import PlainDriver

                self._driver = PlainDriver(self, loop)

    # ------------------------------------------------------------ public API
    @classmethod
    def default(cls) -> MainContext:
        """The context of the running loop, else of this thread's loop (created on demand).

        Like ``g_main_context_default`` / the thread-default context: each thread that
        runs an aioqloop loop has its own.
        """
        import asyncio

        loop = asyncio._get_running_loop()
        if loop is None:
            loop = _tls.default_loop
            if loop is None or loop.is_closed():
                from .loop import new_event_loop

                loop = new_event_loop()
                _tls.default_loop = loop
                asyncio.set_event_loop(loop)
        return get_main_context(loop)

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The asyncio loop this context is bound to (None for a stand-alone context)."""
        return self._loop

    def find_source_by_id(self, id: int) -> Source | None:
        """The attached, not destroyed source with this id, or None."""
        if isinstance(id, bool) or not isinstance(id, int):
            raise TypeError(f"source id must be an int, not {type(id).__name__}")
        return self._sources.get(id)

    def pending(self) -> bool:
        """True if some source is ready (``g_main_context_pending``); dispatches nothing.

        Ready flags persist, so a following `iteration` dispatches those sources.
        """
        if self._in_hook:
            return False
        self._check_closed()
        self._prepare()
        self._poll(0.0)
        return self._check() != _INF

    def iteration(self, may_block: bool = True) -> bool:
        """Run one GLib iteration; return True if a source was ready and dispatched.

        With ``may_block`` the call waits (in the context's own poll) until a source is
        ready.  It may be nested inside a source callback (``g_main_context_iteration``).
        It is refused (`RuntimeError`) from a coroutine of the context's own loop, which
        it would block; and from another thread while the loop runs.
        """
        if self._in_hook:
            import warnings

            warnings.warn(
                "MainContext.iteration() called recursively from within a source's "
                "check() or prepare()",
                RuntimeWarning,
                stacklevel=2,
            )
            return False
        self._check_closed()
        self._check_can_block("iteration()")
        owner_was = self._owner
        if owner_was is None:
            self._owner = _get_ident()
        waiting_was = self._poll_waiting
        try:
            if self._blocked:
                self._unpoll_blocked()
            self._poll_waiting_set(True)
            timeout = self._prepare()
            if not may_block:
                timeout = 0.0
            self._poll(timeout, waiting_was)
            prio = self._check()
            if prio == _INF:
                return False
            self._dispatch(prio)
            return True
        finally:
            self._poll_waiting_set(waiting_was)
            if owner_was is None and self._in_iteration == 0:
                self._owner = None
            if self._kick is not None:
                self._kick()

    def wakeup(self) -> None:
        """Make a blocking iteration return (any thread), like ``g_main_context_wakeup``.

        The eventfd stays readable until an iteration sees it, so a wakeup that comes
        before the iteration starts is not lost.
        """
        self._notify(force=True)

    def invoke(
        self, callback: Callable[..., Any], *args: Any, priority: int = PRIORITY_DEFAULT
    ) -> None:
        """Call ``callback(*args)`` in the context's thread (``g_main_context_invoke``).

        From the owning thread outside a coroutine it is called at once, again and again
        while it returns True.  Otherwise it becomes an idle source at ``priority`` (any
        thread; the loop is woken), which repeats while the callback returns True.
        """
        if not callable(callback):
            raise TypeError(f"callback must be callable, not {type(callback).__name__}")
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise TypeError(f"priority must be an int, not {type(priority).__name__}")
        if not self._foreign() and not self._in_task():
            while callback(*args):
                pass
            return
        from .sources import IdleSource

        src = IdleSource(priority=priority)
        src.name = f"invoke {getattr(callback, '__qualname__', callback)!s}"
        src.set_callback(callback, *args)
        src.attach(self)

    def schedule_oneshot(self, callback: Callable[..., Any], *args: Any) -> None:
        """Call ``callback(*args)`` once on a coming iteration (any thread).

        Like QEMU's ``aio_bh_schedule_oneshot``: a bottom half freed after it runs.
        """
        from .bottomhalf import BottomHalf

        bh = BottomHalf(callback, *args, context=self)
        bh._oneshot = True
        bh.schedule()

    def statistics(self) -> ContextStatistics:
        """Per-source dispatch counts and times, and loop-level figures (seconds)."""
        rows = []
        for src in list(self._sources.values()):
            st = src._stats or SourceStatistics()
            rows.append(
                SourceStats(
                    id=src._id,
                    name=src._name or type(src).__name__,
                    priority=src._priority,
                    dispatches=st.dispatches,
                    dispatch_time=st.dispatch_time,
                    max_dispatch_time=st.max_dispatch_time,
                    waited=st.waited,
                )
            )
        return ContextStatistics(
            iterations=self._iterations,
            poll_time=self._poll_time,
            dispatch_time=self._dispatch_time,
            sources=tuple(rows),
        )

    def close(self) -> None:
        """Destroy every source and free the context's fds; the context is then unusable."""
        if self._closed:
            return
        for src in list(self._sources.values()):
            src.destroy()
        self._closed = True
        if self._driver is not None:
            self._driver.close()
            self._driver = None
        with self._lock:  # no _notify or BottomHalf.schedule writes the eventfd meanwhile
            self._finalizer()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"sources={len(self._sources)}"
        bound = "stand-alone" if self._loop is None else f"loop={type(self._loop).__name__}"
        return f"<MainContext {bound} {state} at {id(self):#x}>"

    # --------------------------------------------------------- thread checks
    def _foreign(self) -> bool:
        owner = self._owner
        return owner is not None and owner != _get_ident()

    def _in_task(self) -> bool:
        loop = self._loop
        if loop is None:
            return False
        import asyncio

        if asyncio._get_running_loop() is not loop:
            return False
        return asyncio.current_task(loop) is not None

    def _check_can_block(self, what: str) -> None:
        if self._foreign():
            raise RuntimeError(
                f"{what} on a context whose loop runs in another thread; "
                "use invoke() or a BottomHalf to run code there"
            )
        if self._in_task():
            raise RuntimeError(
                f"{what} inside a coroutine would block the event loop; await instead "
                "(e.g. MainLoop.run_async() or asyncio.sleep())"
            )

    def _check_closed(self) -> None:
        if self._closed:
            raise RuntimeError("the MainContext is closed")

    def _time(self) -> float:
        return self._now if (self._in_iteration or self._in_hook) else self._clock()

    # --------------------------------------------------- attach and destroy
    def _attach(self, src: Source) -> int:
        self._check_closed()
        with self._lock:
            sid = self._next_id
            while sid == 0 or sid in self._sources:
                sid = (sid + 1) & 0xFFFFFFFF
            self._next_id = (sid + 1) & 0xFFFFFFFF
            src._id = sid
            src._context = self
            self._sources[sid] = src
        owner = self._owner
        if owner is not None and owner != _get_ident():
            self._run_foreign(lambda: self._insert_tree(src))
        else:
            self._insert_tree(src)
            if owner is None:
                # Unowned: another thread may be just starting a blocking iteration.
                self._notify()
        return sid

    def _attach_child(self, parent: Source, child: Source) -> None:
        child._context = self
        if self._foreign():
            self._run_foreign(lambda: self._insert_child(parent, child))
        else:
            self._insert_child(parent, child)

    def _insert_child(self, parent: Source, child: Source) -> None:
        if parent._destroyed:
            child.destroy()
            return
        child._order = (*parent._order[:-1], 0, next(self._seq), 1)
        self._insert_tree(child)
        if parent._blocked:
            self._block(child)

    def _insert_tree(self, src: Source) -> None:
        if src._destroyed:
            return
        if not src._order:
            src._order = (next(self._seq), 1)
        src._attached(self)
        prio = src._priority
        if src._has_prepare:
            self._index_add(self._prepare_by_prio, self._prepare_prios, prio, src)
        if src._has_check:
            self._index_add(self._check_by_prio, self._check_prios, prio, src)
        if (src._has_prepare or src._has_check) and self._kick is not None:
            self._kick()  # a driver without a pre-poll hook must run its prepare now
        for rec in src._fds:
            self._fd_add(rec)
        if src._ready_time != -1:
            self._schedule_ready_time(src)
        if src._idle:
            self._mark_ready(src)
        for child in src._children:
            child._context = self
            child._order = (*src._order[:-1], 0, next(self._seq), 1)
            self._insert_tree(child)

    @staticmethod
    def _index_add(
        index: dict[int, dict[Source, None]], prios: list[int], prio: int, src: Source
    ) -> None:
        bucket = index.get(prio)
        if bucket is None:
            bucket = index[prio] = {}
            prios.append(prio)
            prios.sort()
        bucket[src] = None

    @staticmethod
    def _index_remove(
        index: dict[int, dict[Source, None]], prios: list[int], prio: int, src: Source
    ) -> None:
        bucket = index.get(prio)
        if bucket is not None and src in bucket:
            del bucket[src]
            if not bucket:
                del index[prio]
                prios.remove(prio)

    def _destroy(self, src: Source) -> None:
        with self._lock:
            if self._sources.get(src._id) is src:
                del self._sources[src._id]
        if self._foreign():
            self._run_foreign(lambda: self._remove(src))
        else:
            self._remove(src)

    def _remove(self, src: Source) -> None:
        for child in list(src._children):
            child.destroy()
        self._unmark_ready(src)
        parent = src._parent
        while parent is not None and parent._ready and parent._ready_by_child:
            if any(c._ready for c in parent._children if c is not src):
                break
            self._unmark_ready(parent)
            parent = parent._parent
        prio = src._priority
        if src._has_prepare:
            self._index_remove(self._prepare_by_prio, self._prepare_prios, prio, src)
        if src._has_check:
            self._index_remove(self._check_by_prio, self._check_prios, prio, src)
        for rec in src._fds:
            self._fd_remove(rec)
        if src._in_heap:
            src._in_heap = False  # lazily dropped from the heap
            self._heap_dropped()
        src._maybe_finalize()

    def _change_priority(self, src: Source, prio: int) -> None:
        if self._foreign():
            raise RuntimeError("change a source's priority from the thread that runs its context")
        old = src._priority
        if old == prio:
            return
        was_ready = src._ready
        self._unmark_ready(src)
        if src._has_prepare:
            self._index_remove(self._prepare_by_prio, self._prepare_prios, old, src)
            self._index_add(self._prepare_by_prio, self._prepare_prios, prio, src)
        if src._has_check:
            self._index_remove(self._check_by_prio, self._check_prios, old, src)
            self._index_add(self._check_by_prio, self._check_prios, prio, src)
        src._priority = prio
        # GLib re-adds the source at the tail of its new priority's list (children still
        # just before their parent; the parent is renumbered first).
        parent = src._parent
        if parent is None:
            src._order = (next(self._seq), 1)
        else:
            src._order = (*parent._order[:-1], 0, next(self._seq), 1)
        if was_ready:
            self._mark_ready(src)

    # ------------------------------------------------------------- readiness
    def _mark_ready(self, src: Source) -> None:
        """Set GLib's READY flag on ``src`` and its ancestors.  Loop thread only."""
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
                bucket = self._ready_by_prio.get(src._priority)
                if bucket is None:
                    bucket = self._ready_by_prio[src._priority] = {}
                bucket[src] = None
                if self._kick is not None:
                    self._kick()
            elif not via_child:
                src._ready_by_child = False  # ready in its own right now
            via_child = True
            src = src._parent  # type: ignore[assignment]

    def _unmark_ready(self, src: Source) -> None:
        src._ready_by_time = src._ready_by_child = False
        if src._ready:
            src._ready = False
            bucket = self._ready_by_prio.get(src._priority)
            if bucket is not None:
                bucket.pop(src, None)
                if not bucket:
                    del self._ready_by_prio[src._priority]

    def _ready_time_changed(self, src: Source) -> None:
        owner = self._owner
        if owner is not None and owner != _get_ident():
            self._run_foreign(lambda: self._schedule_ready_time(src))
        else:
            self._schedule_ready_time(src)
            if owner is None:
                self._notify()  # as in _attach: a blocking iteration may be starting

    def _schedule_ready_time(self, src: Source) -> None:
        if src._destroyed or src._context is not self:
            return
        when = src._ready_time
        if src._ready_by_time and src._ready and not src._dispatching and (
            when == -1 or when > self._clock()
        ):
            # READY came only from the old ready time; GLib would not see it ready now.
            self._unmark_ready(src)
        if src._in_heap:
            src._in_heap = False
            self._heap_dropped()  # its old entry stays in the heap, stale
        if when in (-1, _INF):
            return
        seq = next(self._heap_counter)
        src._heap_seq = seq
        src._in_heap = True
        heap = self._heap
        heapq.heappush(heap, (when, seq, src))
        if heap[0][1] == seq and self._deadline_changed is not None:
            self._deadline_changed(when)

    def _heap_dropped(self) -> None:
        """Count one stale heap entry; rebuild the heap once most entries are stale.

        Lazy deletion alone let the heap grow without bound: a source re-armed far in the
        future on every event (a debounce), or timeouts removed long before they expire
        (request timeouts), each left an entry that is only popped when its time comes.
        Like asyncio's cancelled-timer cleanup, an O(n) rebuild once more than half the
        entries are stale keeps the heap within twice the live ready times, amortized O(1).
        """
        self._heap_stale = stale = self._heap_stale + 1
        heap = self._heap
        if stale > 64 and stale * 2 > len(heap):
            heap[:] = [e for e in heap if e[2]._in_heap and e[2]._heap_seq == e[1]
                       and not e[2]._destroyed]
            heapq.heapify(heap)
            self._heap_stale = 0

    def _pop_due(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now:
            _when, seq, src = heapq.heappop(heap)
            if not src._in_heap or src._heap_seq != seq or src._destroyed:
                if self._heap_stale:
                    self._heap_stale -= 1
                continue
            src._in_heap = False
            if src._blocked:
                self._blocked_due.append(src)
            elif not src._ready:
                self._mark_ready(src)
                src._ready_by_time = src._ready

    def _next_deadline(self) -> float:
        heap = self._heap
        while heap:
            when, seq, src = heap[0]
            if src._in_heap and src._heap_seq == seq and not src._destroyed:
                return when
            heapq.heappop(heap)
            if self._heap_stale:
                self._heap_stale -= 1
        return _INF

    # ---------------------------------------------------------------- phases
    def _run_foreign_ops(self) -> None:
        ops = self._foreign_ops
        while ops:
            try:
                op = ops.popleft()
            except IndexError:
                break
            op()

    def _prepare(self) -> float | None:
        """GLib's prepare (+ query): return the poll timeout in seconds (None = forever).

        Loop thread only.  Sources of a priority less urgent than one already ready are
        not prepared (gmain.c: the walk stops at the first lower-priority source).
        """
        self._serial += 1  # a nested prepare takes over the outer pending dispatches
        if (
            self._ready_by_prio
            and not self._lock_deferred
            and not self._prepare_prios
            and not self._foreign_ops
            and not self._bh_pending
        ):
            return 0.0  # something is ready and no hook needs calling: poll without waiting
        if not (
            self._ready_by_prio
            or self._heap
            or self._prepare_prios
            or self._foreign_ops
            or self._bh_pending
            or self._fd_mask
        ):
            return None  # nothing attached that could need a wait or a dispatch
        if self._foreign_ops:
            self._run_foreign_ops()
        now = self._now = self._clock()
        if self._bh_pending and self._bh_source is not None:
            self._mark_ready(self._bh_source)
        heap = self._heap
        if heap and heap[0][0] <= now:
            self._pop_due(now)
        if self._always_ready:
            self._report_always_ready()
        ready = self._ready_by_prio
        best = min(ready) if ready else _INF
        timeout = _INF
        if self._prepare_prios:
            self._in_hook = True
            try:
                for prio in tuple(self._prepare_prios):  # a hook may re-prioritise
                    if prio > best:
                        break
                    for src in list(self._prepare_by_prio.get(prio, ())):
                        if src._ready or src._blocked or src._destroyed:
                            continue
                        try:
                            result = src.prepare()
                            is_ready, wait = _check_prepare_result(src, result)
                        except (SystemExit, KeyboardInterrupt):
                            raise
                        except BaseException as exc:
                            self._report(exc, src, "prepare")
                            continue
                        if is_ready:
                            self._mark_ready(src)
                            best = min(best, src._priority)
                        elif wait is not None:
                            timeout = min(timeout, wait)
            finally:
                self._in_hook = False
        if ready and not self._lock_deferred:
            return 0.0
        deadline = self._next_deadline()
        if deadline != _INF:
            timeout = min(timeout, max(0.0, deadline - now))
        if self._fd_mask and timeout != 0.0:
            # A watched fd closed behind our back vanishes from epoll without an event:
            # look for NVAL at most every fd_audit_interval, and never sleep past that.
            interval = self.fd_audit_interval
            if now - self._last_audit >= interval:
                self._audit_fds(now)
                if self._ready_by_prio and not self._lock_deferred:
                    return 0.0
            timeout = min(timeout, max(0.0, self._last_audit + interval - now))
        return None if timeout == _INF else timeout

    def _check(self) -> float:
        """GLib's check: refresh the cached time, collect ready sources; return the priority
        to dispatch (``inf`` if none).  Loop thread only."""
        if not (
            self._ready_by_prio
            or self._heap
            or self._check_prios
            or self._foreign_ops
            or self._bh_pending
        ):
            return _INF
        if self._foreign_ops:
            self._run_foreign_ops()
        now = self._now = self._clock()
        if self._bh_pending and self._bh_source is not None:
            self._mark_ready(self._bh_source)
        heap = self._heap
        if heap and heap[0][0] <= now:
            self._pop_due(now)
        ready = self._ready_by_prio
        best = min(ready) if ready else _INF
        if self._check_prios:
            self._in_hook = True
            try:
                for prio in tuple(self._check_prios):  # a hook may re-prioritise
                    if prio > best:
                        break
                    for src in list(self._check_by_prio.get(prio, ())):
                        if src._ready or src._blocked or src._destroyed:
                            continue
                        try:
                            is_ready = src.check()
                        except (SystemExit, KeyboardInterrupt):
                            raise
                        except BaseException as exc:
                            self._report(exc, src, "check")
                            continue
                        if is_ready:
                            self._mark_ready(src)
                            best = min(best, src._priority)
            finally:
                self._in_hook = False
        if self._lock_deferred:
            return _INF
        return min(ready) if ready else _INF

    def _dispatch(self, prio: float) -> None:
        """Dispatch the ready sources of priority ``prio`` in list order.  Loop thread only.

        This is the only place where source callbacks are called.
        """
        ready = self._ready_by_prio
        bucket = ready.get(prio)  # type: ignore[call-overload]
        if not bucket:
            return
        self._iterations += 1
        pending = list(bucket) if len(bucket) == 1 else sorted(bucket, key=_order_key)
        if len(ready) > 1:
            for p, waiting in ready.items():
                if p > prio:
                    for src in waiting:
                        st = src._stats
                        if st is None:
                            st = src._stats = SourceStatistics()
                        st.waited += 1
        bql = self._bql
        if bql is not None and not self._take_bql(bql):
            return
        serial = self._serial
        # One clock read per dispatch: each dispatch's end is the next one's start.
        t = t_start = _perf()
        try:
            for src in pending:
                if self._serial != serial:
                    break  # a nested iteration took over the rest, as in gmain.c
                if not src._ready or src._destroyed:
                    continue
                if bql is not None and bql._has_waiters():
                    # Let a waiting thread in between two dispatches (FIFO hand-off).
                    bql.release()
                    if not self._take_bql(bql):
                        bql = None
                        break
                    t = _perf()
                t = self._dispatch_one(src, t)
        finally:
            self._dispatch_time += t - t_start
            if bql is not None:
                bql.release()

    def _set_bql(self, bql: BigLock | None) -> None:
        """Dispatch with ``bql`` held (QEMU: callbacks run under the BQL).  Loop thread."""
        self._bql = bql
        if bql is None:
            self.__dict__.pop("_check", None)
        else:
            self._check = self._check_with_bql  # type: ignore[method-assign]

    def _check_with_bql(self) -> float:
        prio = MainContext._check(self)
        if self._bql_handed and prio == _INF and self._bql is not None:
            # The lock was handed to us for a dispatch that no longer has anything to
            # run (e.g. the sources were destroyed meanwhile): give it straight back.
            self._bql_handed = False
            self._bql.release()
        return prio

    def _take_bql(self, bql: BigLock) -> bool:
        loop: Any = self._loop
        if bql._acquire_for_dispatch(loop, self._bql_granted):
            self._bql_handed = False
            return True
        self._lock_deferred = True
        return False

    def _bql_granted(self) -> None:
        # Called from whichever thread handed the lock over: the loop thread owns it now,
        # so the loop must look again and either dispatch or release it.
        self._bql_handed = True
        self._lock_deferred = False
        self._notify(force=True)

    def _dispatch_one(self, src: Source, t0: float) -> float:
        """Dispatch ``src``; ``t0`` is when the dispatch started, the result when it ended."""
        # READY is cleared before the callback runs (gmain.c), so it can re-arm itself.
        if src._ready:
            src._ready = False
            src._ready_by_time = src._ready_by_child = False
            bucket = self._ready_by_prio.get(src._priority)
            if bucket is not None:
                bucket.pop(src, None)
                if not bucket:
                    del self._ready_by_prio[src._priority]
        blocked = not src._can_recurse
        premarked = False
        if not blocked and (
            src._idle or (0 <= src._ready_time <= self._now and not src._in_heap)
        ):
            # GLib prepares a recursive source again in a nested iteration, and an idle
            # or a passed ready time makes it ready there.
            self._mark_ready(src)
            premarked = True
        leaf = not (src._children or src._fds)
        if blocked:
            if leaf:  # the common case, inlined: a leaf source blocked for its dispatch
                src._blocked = True
                self._blocked.append(src)
            else:
                self._block(src)
        current = _tls.current
        current.append(src)
        self._in_iteration += 1
        src._dispatching += 1
        keep = False
        try:
            keep = src.dispatch(src._callback, src._args)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._report(exc, src, "dispatch", callback=src._callback)
            keep = False
        finally:
            t1 = _perf()
            elapsed = t1 - t0
            src._dispatching -= 1
            self._in_iteration -= 1
            current.pop()
            if blocked:
                if leaf and not src._ready_while_blocked and not self._blocked_due:
                    src._blocked = False
                    stack = self._blocked
                    if stack and stack[-1] is src:
                        stack.pop()
                    else:
                        self._unblock(src)
                else:
                    self._unblock(src)
            st = src._stats
            if st is None:
                st = src._stats = SourceStatistics()
            st.dispatches += 1
            st.dispatch_time += elapsed
            if elapsed > st.max_dispatch_time:  # noqa: PLR1730 (hot path: no call)
                st.max_dispatch_time = elapsed
            if src._destroyed:
                # Here, not after the try: a source destroyed in its callback must be
                # finalized even if KeyboardInterrupt or SystemExit escapes it.
                src._maybe_finalize()
        loop = self._loop
        if (
            elapsed >= _SLOW_FLOOR
            and loop is not None
            and loop.get_debug()
            and elapsed >= loop.slow_callback_duration
        ):
            logger.warning("Executing %r took %.3f seconds", src, elapsed)
        if src._fds:
            for rec in src._fds:
                rec.revents = 0
        if premarked and src._ready and not src._idle and not 0 <= src._ready_time <= self._now:
            self._unmark_ready(src)  # it re-armed itself for later (e.g. a timeout)
        if src._destroyed:
            pass  # finalized in the finally above
        elif not keep:
            src.destroy()
        elif src._idle:
            self._mark_ready(src)
        elif src._ready_time != -1 and not src._in_heap:
            if src._ready_time <= self._now:
                if not src._ready:
                    self._mark_ready(src)
                    src._ready_by_time = src._ready
            else:
                self._schedule_ready_time(src)
        return t1

    # ------------------------------------------------------------- blocking
    def _block(self, src: Source) -> None:
        src._blocked = True
        if src._ready:
            self._unmark_ready(src)
            src._ready_while_blocked = True
        self._blocked.append(src)
        for child in src._children:
            self._block(child)

    def _unblock(self, src: Source) -> None:
        src._blocked = False
        blocked = self._blocked
        if blocked and blocked[-1] is src:
            blocked.pop()
        else:
            with contextlib.suppress(ValueError):
                blocked.remove(src)
        if src._children:
            for child in src._children:
                self._unblock(child)
        if src._fds and self._unpolled:
            for rec in src._fds:
                if rec.fd in self._unpolled:
                    self._unpolled.discard(rec.fd)
                    self._fd_sync(rec.fd)
        if self._blocked_due and src in self._blocked_due:
            self._blocked_due = [s for s in self._blocked_due if s is not src]
            self._schedule_ready_time(src)
        if src._ready_while_blocked:
            src._ready_while_blocked = False
            self._mark_ready(src)

    def _unpoll_blocked(self) -> None:
        """Before a nested poll: stop polling the fds of blocked sources (GLib unpolls them)."""
        for src in self._blocked:
            for rec in src._fds:
                fd = rec.fd
                if fd not in self._unpolled and fd in self._fd_mask:
                    others = [r for r in self._fd_records.get(fd, ()) if not r.source._blocked]
                    if not others:
                        self._unpolled.add(fd)
                        self._fd_sync(fd)

    # ------------------------------------------------------------------ fds
    def _fd_add(self, rec: _FdRecord) -> None:
        if self._foreign():
            self._run_foreign(lambda: self._fd_add_local(rec))
        else:
            self._fd_add_local(rec)

    def _fd_add_local(self, rec: _FdRecord) -> None:
        if rec.source._destroyed or rec not in rec.source._fds:
            return
        if not rec.source._blocked:
            # An fd unpolled for a nested iteration must be polled again for a new
            # watcher that is not blocked.
            self._unpolled.discard(rec.fd)
        self._fd_records.setdefault(rec.fd, []).append(rec)
        # Re-register even if the mask looks unchanged: an fd number can be closed and
        # reused while an old watch on it lingers, and epoll forgot the old file.
        self._fd_mask.pop(rec.fd, None)
        self._fd_sync(rec.fd)

    def _fd_remove(self, rec: _FdRecord) -> None:
        if self._foreign():
            self._run_foreign(lambda: self._fd_remove_local(rec))
        else:
            self._fd_remove_local(rec)

    def _fd_remove_local(self, rec: _FdRecord) -> None:
        records = self._fd_records.get(rec.fd)
        if records is not None and rec in records:
            records.remove(rec)
            if not records:
                del self._fd_records[rec.fd]
                # A record removed during its blocked source's dispatch is no longer in
                # the source's _fds, so _unblock would not re-poll the fd: forget it
                # here, or a later watch of the same fd number would never be polled.
                self._unpolled.discard(rec.fd)
            self._fd_sync(rec.fd)

    def _fd_changed(self, fd: int) -> None:
        if self._foreign():
            self._run_foreign(lambda: self._fd_sync(fd))
        else:
            self._fd_sync(fd)

    def _fd_sync(self, fd: int) -> None:
        """Make the epoll registration of ``fd`` match the OR of its records' events."""
        records = self._fd_records.get(fd)
        mask = 0
        if records and fd not in self._unpolled:
            for rec in records:
                mask |= int(rec.events) & _EPOLL_MASK
            mask |= select.EPOLLERR | select.EPOLLHUP
        old = self._fd_mask.get(fd)
        if old == mask:
            return
        ep = self._epoll
        if not mask:
            self._fd_mask.pop(fd, None)
            self._always_ready.discard(fd)
            if self._audit_poll is not None:
                with contextlib.suppress(KeyError):
                    self._audit_poll.unregister(fd)
            if old is not None:
                with contextlib.suppress(OSError):
                    ep.unregister(fd)
            return
        if fd in self._always_ready:
            self._fd_mask[fd] = mask
            return
        try:
            if old is None:
                ep.register(fd, mask)
            else:
                ep.modify(fd, mask)
        except FileExistsError:
            ep.modify(fd, mask)
        except FileNotFoundError:
            try:
                ep.register(fd, mask)
            except OSError as exc:
                if old is None or exc.errno != errno.EBADF:
                    raise
                # Closed behind our back: keep the mask so the audit reports NVAL.
        except PermissionError:
            # epoll refuses regular files; poll(2) reports them always ready.
            self._always_ready.add(fd)
        except OSError as exc:
            if old is None or exc.errno != errno.EBADF:
                raise
            # Closed behind our back: keep the mask so the audit reports NVAL.
        self._fd_mask[fd] = mask
        if self._audit_poll is not None:
            self._audit_poll.register(fd, select.POLLIN)

    def _report_always_ready(self) -> None:
        for fd in self._always_ready:
            for rec in self._fd_records.get(fd, ()):
                revents = int(rec.events) & int(IOCondition.IN | IOCondition.OUT)
                if revents and not rec.source._blocked:
                    rec.revents = revents
                    self._mark_ready(rec.source)

    def _poll(self, timeout: float | None, waiting_after: bool | None = None) -> None:
        """Wait in the context's own epoll set (the ``poll`` of a hand-run iteration)."""
        if timeout is None:
            wait = -1.0
        else:
            wait = timeout
            if wait > 0.0 and wait < 0.001:
                wait = 0.001  # epoll counts in ms; never return early and spin
        t0 = _perf()
        clock = getattr(self._loop, "_aioq_clock", None)
        try:
            if clock is not None and wait != 0:
                # A VirtualClock loop: a hand-run or nested iteration moves virtual time
                # as the loop's own poll does, instead of sleeping in real time.
                events = self._epoll.poll(0)
                if not events and not clock._idle_wait(timeout):
                    events = self._epoll.poll(-1)
            else:
                events = self._epoll.poll(wait)
        except InterruptedError:
            events = []
        self._poll_time += _perf() - t0
        if waiting_after is not None:
            self._poll_waiting_set(waiting_after)  # awake again: producers need not write
        self._apply_events(events)

    def _poll_ready_fds(self) -> None:
        """Non-blocking poll of the epoll set, for drivers told it is readable."""
        self._apply_events(self._epoll.poll(0))

    def _apply_events(self, events: list[tuple[int, int]]) -> None:
        """Record poll results: revents of each reported fd, and READY on its sources.

        A record keeps its revents until its source has been dispatched (so
        `Source.query_unix_fd` sees what made it ready), or until the next report.
        """
        if not events:
            return
        efd = self._efd
        records = self._fd_records
        for fd, ev in events:
            if fd == efd:
                self._drain_wakeup()
                continue
            for rec in records.get(fd, ()):
                revents = ev & (int(rec.events) | _ALWAYS_EVENTS)
                rec.revents = revents
                if revents:
                    src = rec.source
                    if not src._blocked:
                        self._mark_ready(src)

    def _audit_fds(self, now: float) -> None:
        """Report NVAL for watched fds that were closed without removing the watch."""
        self._last_audit = now
        poller = self._audit_poll
        if poller is None:
            poller = self._audit_poll = select.poll()
            for fd in self._fd_mask:
                poller.register(fd, select.POLLIN)
        for fd, ev in poller.poll(0):
            if ev & select.POLLNVAL:
                for rec in self._fd_records.get(fd, ()):
                    rec.revents = int(IOCondition.NVAL)
                    self._mark_ready(rec.source)

    # ---------------------------------------------------------- cross-thread
    def _poll_waiting_set(self, value: bool) -> None:
        # Publishing "may sleep" must be ordered before the loop re-reads the queues
        # (QEMU's notify_me + smp_mb).  The GIL orders it on GIL builds; a free-threaded
        # build needs the lock's barrier.
        if _FREE_THREADED:
            with self._lock:
                self._poll_waiting = value
        else:
            self._poll_waiting = value

    def _notify(self, force: bool = False) -> None:
        """Wake the loop if it may be sleeping (any thread): QEMU's ``aio_notify``."""
        with self._lock:
            # A closed context's eventfd number may already belong to another file.
            # Checked, and written, under the lock that close() takes to free the fds.
            if self._closed or self._notified or not (self._poll_waiting or force):
                return
            self._notified = True
            os.eventfd_write(self._efd, 1)

    def _drain_wakeup(self) -> None:
        # Read first, then clear: clearing first would let a producer set `_notified`
        # and write between the two, and our read would swallow that write while the
        # flag stays set, so no producer would ever write again (a lost wake-up).  The
        # other order at worst costs one spurious wake-up.
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self._efd)
        with self._lock:
            self._notified = False

    def _run_foreign(self, op: Callable[[], None]) -> None:
        self._foreign_ops.append(op)
        self._notify()

    def _call_at_priority(
        self, priority: int, fn: Callable[..., Any], args: tuple[Any, ...], pyctx: Any = None
    ) -> None:
        """Queue ``fn(*args)`` to run at ``priority`` (loop thread; used for task steps)."""
        q = self._queues.get(priority)
        if q is None or q._destroyed:
            q = self._queues[priority] = _QueueSource(priority)
            q.attach(self)
        q.queue.append((fn, args, pyctx))
        self._mark_ready(q)

    # -------------------------------------------------------------- errors
    def _report(
        self,
        exc: BaseException,
        src: Source,
        phase: str,
        *,
        destroy: bool = True,
        callback: Any = None,
    ) -> None:
        """Send a hook's exception to the loop's exception handler; destroy the source."""
        message = f"Exception in {phase} of {src!r}"
        context: dict[str, Any] = {"message": message, "exception": exc, "source": src}
        if callback is not None:
            context["callback"] = callback
        if destroy and not src._destroyed:
            src.destroy()
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_exception_handler(context)
        else:
            logger.error(message, exc_info=exc)

    # -------------------------------------------------------------- drivers
    def _has_work(self) -> bool:
        """Is anything ready, or due, without waiting?  Loop thread only."""
        if self._lock_deferred:
            return False
        if self._ready_by_prio or self._bh_pending or self._foreign_ops:
            return True
        if self._always_ready and any(
            int(rec.events) & int(IOCondition.IN | IOCondition.OUT) and not rec.source._blocked
            for fd in self._always_ready
            for rec in self._fd_records.get(fd, ())
        ):
            return True  # a regular file watched for IN/OUT is ready at every poll
        heap = self._heap
        return bool(heap) and heap[0][0] <= self._clock()

    def _sources_iter(self) -> Iterator[Source]:
        return iter(list(self._sources.values()))


def _is_uvloop(loop: object) -> bool:
    return any(cls.__module__.split(".")[0] == "uvloop" for cls in type(loop).__mro__)


def _order_key(src: Source) -> tuple[int, ...]:
    return src._order


def _check_prepare_result(src: Source, result: object) -> tuple[bool, float | None]:
    if not isinstance(result, tuple) or len(result) != 2:
        raise TypeError(
            f"{type(src).__name__}.prepare() must return (ready, timeout_seconds_or_None), "
            f"not {result!r}"
        )
    is_ready, wait = result
    if wait is not None:
        if isinstance(wait, bool) or not isinstance(wait, (int, float)) or math.isnan(wait):
            raise TypeError(f"prepare() timeout must be seconds or None, not {wait!r}")
        wait = max(0.0, float(wait))
    return bool(is_ready), wait


def _close_fds(ep: select.epoll, efd: int) -> None:
    ep.close()
    with contextlib.suppress(OSError):
        os.close(efd)


# Re-exported for the idle default priority of invoke's sources.
_ = PRIORITY_DEFAULT_IDLE
