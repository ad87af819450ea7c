"""`MainContext`: a GLib-style source set living inside an asyncio loop (``GMainContext``).

One iteration is GLib's ``prepare → query → poll → check → dispatch`` with GLib's rules
(``glib/gmain.c``): only the most urgent ready priority dispatches in an iteration, in
attach order (children before their parent); sources of a less urgent priority are not
even prepared once something more urgent is ready; a source destroyed earlier in the
iteration is skipped; one attached during dispatch waits for the next iteration; a
non-recursive source is blocked while it dispatches; a nested iteration takes over what
the outer one had left to dispatch; the time is cached per iteration.

`_iterate` is that iteration, written once, like ``g_main_context_iterate(block, dispatch)``;
it is parametrised by a driver that knows how to wait and where to put the dispatch.
`iteration` and `pending` use the context's own poll; the plain driver
(`aioqloop.bridge`) polls without waiting inside a loop callback; the stock-base loop
(`aioqloop._stock`) waits in asyncio's selector and places the dispatch against asyncio's
ready queue.

Why it stays cheap (GLib walks every source twice per iteration; we do not): ready sources
sit in a FIFO per priority (`aioqloop._readyq`; intrusive lists in C); ready times in one
heap (`aioqloop._deadlines`); fds in one private epoll set (`aioqloop._fdpoll`); only
sources whose class overrides ``prepare`` or ``check`` are called (`aioqloop._index`).
Other threads reach the context through its `aioqloop._waker`; the big-lock rule is
`aioqloop._gate`.  The context never calls asyncio: its port (`aioqloop.bridge`) does.
The hot methods live in `_PyCore` (`aioqloop._contextcore`); with the compiled core
(`aioqloop._engine`) their C twins (`aioqloop._cengine.ContextCore`) come first.

Driver contract (what a driver may call, and when)
--------------------------------------------------
These are underscore names: they are for the loop layer (`aioqloop._stock`,
`aioqloop._uvloop`, `aioqloop.bridge`, `aioqloop.loop`), not part of the public surface.

One driver drives a context, and it is one object made by the loop layer: the stock
base's selector hook (`aioqloop._stock`), or the plain driver (`aioqloop.bridge`) that the
uvloop base makes, or that the port of a foreign asyncio loop makes for
``MainContext(loop)`` (``port.drive``).  Its constructor takes everything it needs and
calls `_driver_attach`; nobody sets its fields afterwards.  The context never makes one:
until a driver attaches, and after one detaches, it holds `bridge.DETACHED`.  The driver's
side of the contract is `bridge.Driver` (``source_ready``, ``prepare_needed``,
``deadline_changed``, ``epoll_changed``, ``iterated_by_hand``, ``detach``, ``figures``)
plus ``poll``/``place`` for `_iterate`.

* `acquire` / `release` / `is_owner` — GLib's context ownership; any thread (public).
* `_driver_attach(driver, may_sleep)` — once, from the driver's constructor.
* `_driver_fileno()` — the fd that is readable when the context has fd events or a
  wake-up.
* `_driver_share_fds(mirror)` / `_apply_polled(events)` — instead of polling
  `_driver_fileno`, the driver keeps the context's fds (and the wake-up fd) in its own
  epoll set and feeds the raw results back (the stock base, `aioqloop._selectorfds`).
* `_iterate(driver, block, dispatch)` — one iteration; owner thread.  It calls
  ``driver.poll(timeout)`` (wait up to ``timeout`` seconds, then feed fd readiness with
  `_poll_ready`) and ``driver.place(priority)`` (run `_dispatch` now or queue it).
* `_dispatch(priority)`, `_poll_ready()`, `_has_work()`, `_next_deadline()`, `_time()`,
  `_wait_needs_prepare(timer_armed)`, `_call_at_priority(...)`, `_is_empty()` —
  owner thread.
* `_set_bql(lock)`, `_set_home_thread(ident)` — when the loop is built.
* `_close_with_loop()` — the owning loop closes (selector still open).
* `_driver_detach()`, `_rebind(loop)`, `_clear_sources()` — the global default context
  moves between loops (`aioqloop.loop`): the old driver lets it go, it is bound to the
  new loop (owner thread, neither loop running), whose driver then attaches; the loop
  that holds it closes without closing it.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import warnings
import weakref
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import _engine, _registry, bridge
from ._contextcore import _PyCore, _rebind_clock
from ._deadlines import Deadlines
from ._dispatch import Dispatcher
from ._fdpoll import FdPoller, clamp_wait
from ._gate import LockGate
from ._index import PriorityIndex
from ._readyq import ReadyQueues
from ._registry import current_source, main_depth
from ._sourceset import SourceSet
from ._waker import Waker
from .constants import PRIORITY_DEFAULT
from .source import Source
from .statistics import ContextStatistics, SourceStatistics, SourceStats

if TYPE_CHECKING:
    import select

    from .biglock import BigLock
    from .bottomhalf import _BHCarrier

__all__ = ("MainContext", "current_source", "get_main_context", "main_depth")

logger: logging.Logger = logging.getLogger("aioqloop")

_INF = math.inf
_get_ident = threading.get_ident
_perf = time.perf_counter
# Debug mode warns about a dispatch slower than loop.slow_callback_duration (like
# asyncio's "Executing ... took"); below this floor nothing is looked up.
_SLOW_FLOOR = 0.001
_tls = _registry._tls


# A weak-key mapping cannot be the main store: its value (the context) holds the loop,
# so the key would never die.  Only for loop classes that take no attributes.
_contexts_by_loop: weakref.WeakKeyDictionary[Any, MainContext] = weakref.WeakKeyDictionary()
_BOUND_ATTR = "_aioqloop_bound_context"


def get_main_context(loop: Any = None) -> MainContext:
    """The default `MainContext` of ``loop`` (default: the running loop), created on demand.

    Each aioqloop loop owns one; on any other asyncio loop one is bound on first use and
    driven through the loop's public API.
    """
    if loop is None:
        loop = bridge.running_loop()
        if loop is None:
            raise RuntimeError("get_main_context() needs a loop: no event loop is running")
    elif not bridge.is_event_loop(loop):
        raise TypeError(f"loop must be an asyncio event loop, not {type(loop).__name__}")
    own = getattr(loop, "_aioqloop_context", None)
    if isinstance(own, MainContext):
        return own
    ctx = getattr(loop, _BOUND_ATTR, None) or _contexts_by_loop.get(loop)
    if ctx is None or ctx._closed:
        ctx = MainContext(loop)
        # Kept on the loop: loop and context form a cycle the collector frees.
        try:
            setattr(loop, _BOUND_ATTR, ctx)
        except AttributeError:
            _contexts_by_loop[loop] = ctx
    return ctx


class _QueueSource(Source):
    """Runs queued calls at one priority (prioritized task steps)."""

    _survives_escape = True

    def __init__(self, priority: int) -> None:
        super().__init__(priority=priority, name=f"call queue at priority {priority}")
        self.queue: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()
        self._can_recurse = True

    def dispatch(self, callback: Callable[..., Any] | None, args: tuple[Any, ...]) -> bool:
        queue = self.queue
        ctx = self._context
        assert ctx is not None
        if ctx._tap is not None:
            ctx._tap.calls(self._priority, queue)  # test tools: seeded order, trace
        try:
            # Only what was queued before this dispatch runs now, like asyncio's _run_once.
            for _ in range(len(queue)):
                fn, fargs = queue.popleft()
                try:
                    fn(*fargs)
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException as exc:
                    ctx._report(exc, self, "queued call", destroy=False, callback=fn)
        finally:
            if queue:  # also after a KeyboardInterrupt: the rest runs on the next turn
                ctx._mark_ready(self)
        return True


class _HandDriver:
    """The driver of `MainContext.iteration`/`pending`: the context's own poll."""

    __slots__ = ("_ctx",)

    def __init__(self, ctx: MainContext) -> None:
        self._ctx = ctx

    def poll(self, timeout: float | None) -> None:
        self._ctx._hand_poll(timeout)

    def place(self, priority: float) -> None:
        self._ctx._dispatch(priority)


# The context's one base: its core, the data every phase reads (``GMainContext``'s
# struct) and the hot methods, compiled or in Python.  Everything else is a part.
if TYPE_CHECKING:
    _Core = _PyCore
else:
    _Core = _PyCore if _engine.core is None else _engine.core.ContextCore


class MainContext(_Core):
    """A set of sources bound to one asyncio loop, like GLib's ``GMainContext``.

    ``MainContext(loop)`` binds a new context to ``loop``; with no argument it binds to
    the running loop, or makes a stand-alone context iterated by hand with `iteration`
    when no loop runs.  `default` gives the default context.  Times are seconds on
    ``loop.time()`` (``time.monotonic()`` for a stand-alone context).

    Built by composition: a core (`aioqloop._contextcore`, or its compiled twin) holds
    the data, and the context owns its parts, each made here: the source set
    (`aioqloop._sourceset`), the dispatcher (`aioqloop._dispatch`), the ready-time heap
    (`aioqloop._deadlines`; in C, the core's own), the fd poller (`aioqloop._fdpoll`) and
    the waker (`aioqloop._waker`).
    """

    if _engine.core is None:
        #: Seconds between two audits of watched fds for ones closed behind the context's
        #: back.  (The compiled core keeps it as a C field of ContextCore, same default.)
        fd_audit_interval: float = 1.0

    def __init__(
        self, loop: Any = None, *, _driver: str = "auto", _port: Any = None
    ) -> None:
        if loop is None and _driver == "auto" and _port is None:
            loop = bridge.running_loop()
        # ``_port``: a stand-in for the loop port (the engine's tests run on a fake one).
        self._port = port = _port if _port is not None else bridge.make_port(loop)
        self._clock: Callable[[], float] = port.time
        self._closed = False
        self._closing = False
        self._owned_by_loop = _driver == "loop"
        self._sources: dict[int, Source] = {}
        self._next_id = 1
        self._seq = 0
        if _engine.core is None:
            # the compiled core keeps its own, in C (ContextCore)
            self._readyq = ReadyQueues()
            self._deadlines = Deadlines()
        self._prepare_hooks = PriorityIndex()
        self._check_hooks = PriorityIndex()
        # What each iteration reads of them: their lists of priorities (never replaced)
        self._prepare_prios = self._prepare_hooks.prios
        self._check_prios = self._check_hooks.prios
        # The loop and the class the clock was bound for: a swapped class rebinds it
        self._clock_loop = port.loop
        self._clock_class = port.loop_class
        self._blocked: list[Source] = []
        self._blocked_due: list[Source] = []
        self._now = self._clock()
        self._in_iteration = 0
        self._in_hook = False
        self._serial = 0
        self._iterations = 0
        self._tap = None  # the dispatch tap of aioqloop._trace (test tools)
        self._poll_time = 0.0
        self._dispatch_time = 0.0
        # Both fds open on first need (_fdpoll/_waker "lazy"): a driver that shares them
        # or polls them opens them when it attaches; the plain driver only when an fd is
        # watched or the context is iterated by hand.
        self._waker = Waker(lazy=True)
        self._fds = FdPoller(opener=self._waker.open)
        self._owner: int | None = None
        self._owner_count = 0
        self._home = _get_ident()  # the thread an unowned context belongs to
        self._queues: dict[int, _QueueSource] = {}
        self._bh: _BHCarrier | None = None
        self._gate: LockGate | None = None
        self._driver: bridge.Driver = bridge.DETACHED
        self._source_ready: Callable[[int], None] | None = None
        self._hand = _HandDriver(self)
        self._set = SourceSet(self)
        self._dispatcher = Dispatcher(self)
        self._finalizer = weakref.finalize(self, _close_fds, self._fds.opened, self._waker.opened)
        if loop is not None and port.running_here():
            self._owner = _get_ident()
            self._owner_count = 1
        if loop is not None and _driver == "auto":
            port.drive(self)  # the loop layer makes the driver, which attaches itself

    # ------------------------------------------------------------ public API
    @classmethod
    def default(cls) -> MainContext:
        """The default context: the running loop's, else the global default context.

        Like ``g_main_context_default``: outside a running loop every thread gets the
        same context, the one the main thread's aioqloop loop runs (a loop made on the
        main thread takes it; before one exists, a loop is made on demand behind it,
        which hands it over to the next one made).  See `aioqloop.loop`.
        """
        return _registry.default_context()

    @property
    def loop(self) -> Any:
        """The asyncio loop this context is bound to (None for a stand-alone context)."""
        return self._port.loop

    @property
    def closed(self) -> bool:
        """True after `close`."""
        return self._closed

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
        if not self.acquire():
            return False
        try:
            return self._iterate(self._hand, block=False, dispatch=False)
        finally:
            self.release()

    def iteration(self, may_block: bool = True) -> bool:
        """Run one GLib iteration; return True if a source was ready and dispatched.

        With ``may_block`` the call waits (in the context's own poll) until a source is
        ready.  It may be nested inside a source callback (``g_main_context_iteration``).
        It is refused (`RuntimeError`) from a coroutine of the context's own loop, which
        it would block, from another thread while the context is owned, and once the
        context's loop is closed.
        """
        if self._in_hook:
            warnings.warn(
                "MainContext.iteration() called recursively from within a source's "
                "check() or prepare()",
                RuntimeWarning,
                stacklevel=2,
            )
            return False
        self._check_closed()
        self._check_can_block("iteration()")
        return self._hand_iteration(bool(may_block))

    def _hand_iteration(self, may_block: bool) -> bool:
        """`iteration` without the coroutine check: `aioqloop.glib` allows a non-blocking
        one inside a task step, as gi.events does (sources only, never asyncio's own)."""
        if self._foreign():
            self._check_can_block("iteration()")  # raises: owned by another thread
        self._check_loop_open()
        if not self.acquire():
            raise RuntimeError("iteration(): another thread owns this MainContext")
        try:
            self._open_fds()  # before "may sleep" is published: wake-ups must reach it
            return self._iterate(self._hand, block=may_block, dispatch=True)
        finally:
            self.release()
            self._driver.iterated_by_hand()

    def wakeup(self) -> None:
        """Make a blocking iteration return (any thread), like ``g_main_context_wakeup``.

        The eventfd stays readable until an iteration sees it, so a wakeup that comes
        before the iteration starts is not lost.
        """
        self._waker.notify(force=True)

    def invoke(
        self, callback: Callable[..., Any], *args: Any, priority: int = PRIORITY_DEFAULT
    ) -> None:
        """Call ``callback(*args)`` in the context's thread (``g_main_context_invoke``).

        Called at once, again while it returns True, when the calling thread owns the
        context (or it is unowned and this is its thread) outside a coroutine.  Otherwise
        it becomes an idle source at ``priority`` (any thread; the loop is woken), which
        repeats while the callback returns True.
        """
        from ._checks import check_callback, check_priority
        from .sources import IdleSource

        check_callback(callback)
        priority = check_priority(priority)
        me = _get_ident()
        owner = self._owner
        local = owner == me or (owner is None and self._home == me)
        if local and not self._port.in_task():
            while callback(*args):
                pass
            return
        src = IdleSource(priority=priority)
        src.name = f"invoke {getattr(callback, '__qualname__', callback)!s}"
        src.set_callback(callback, *args)
        src.attach(self)

    def schedule_oneshot(self, callback: Callable[..., Any], *args: Any) -> None:
        """Call ``callback(*args)`` once on a coming iteration (any thread).

        Like QEMU's ``aio_bh_schedule_oneshot``: a bottom half freed after it runs.
        """
        from .bottomhalf import BottomHalf

        BottomHalf._oneshot_on(self, callback, args)

    def statistics(self) -> ContextStatistics:
        """Per-source dispatch counts and times, and loop-level figures (seconds)."""
        rows = []
        for src in list(self._sources.values()):
            st = src._stats or SourceStatistics()
            rows.append(SourceStats(
                id=src._id, name=src._name or type(src).__name__, priority=src._priority,
                dispatches=st.dispatches, dispatch_time=st.dispatch_time,
                max_dispatch_time=st.max_dispatch_time, waited=st.waited,
            ))
        runs, empty, arms, fires = self._driver.figures()
        return ContextStatistics(
            iterations=self._iterations,
            poll_time=self._poll_time,
            dispatch_time=self._dispatch_time,
            sources=tuple(rows),
            wakeup_writes=self._waker.writes,
            driver_iterations=runs,
            empty_iterations=empty,
            timer_arms=arms,
            timer_fires=fires,
        )

    def close(self) -> None:
        """Destroy every source and free the context's fds; the context is then unusable.

        An aioqloop loop's own context closes with its loop: closing it alone raises
        `RuntimeError` while the loop is open.
        """
        if self._owned_by_loop and not self._port.is_closed():
            raise RuntimeError(
                "this MainContext belongs to its event loop; close the loop instead"
            )
        self._close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"sources={len(self._sources)}"
        loop = self._port.loop
        bound = "stand-alone" if loop is None else f"loop={type(loop).__name__}"
        return f"<MainContext {bound} {state} at {id(self):#x}>"

    # ------------------------------------------------------------- ownership
    def acquire(self) -> bool:
        """Become the owner (``g_main_context_acquire``); recursive; False if another
        thread owns it.  Any thread."""
        me = _get_ident()
        if self._owner == me:
            self._owner_count += 1
            return True
        with self._waker.lock:
            if self._owner is not None:
                return False
            self._owner = self._home = me
            self._owner_count = 1
        return True

    def release(self) -> None:
        """Undo one `acquire` (``g_main_context_release``)."""
        if self._owner != _get_ident():
            raise RuntimeError("release() of a MainContext the calling thread does not own")
        self._owner_count -= 1
        if self._owner_count == 0:
            with self._waker.lock:
                self._owner = None

    def is_owner(self) -> bool:
        """True if the calling thread owns the context (``g_main_context_is_owner``)."""
        return self._owner == _get_ident()

    def _set_home_thread(self, ident: int) -> None:
        """Name the thread an unowned context belongs to (for `invoke`)."""
        self._home = ident

    # ------------------------------------------------------- driver contract
    def _driver_attach(
        self, driver: bridge.Driver, *, may_sleep: bool,
        wake: Callable[[], None] | None = None,
    ) -> None:
        """``driver`` drives this context from now on (once, before it iterates).

        ``may_sleep``: the loop may sleep without telling the context, so other threads
        must always send a wake-up (the plain driver).  ``wake``: how another thread
        wakes the loop while the context has no wake-up fd (called from any thread,
        under the waker's lock; the driver then calls `_poll_ready` on the loop thread);
        without it the fds are opened now.  The driver learns that the epoll set was
        opened, or rebuilt, through ``epoll_changed``.
        """
        self._driver = driver
        self._source_ready = driver.source_ready
        self._waker.poll_waiting = may_sleep
        if wake is None:
            self._fds.ensure_open()
            self._set.fd_generation = self._fds.generation  # the driver asks for the fd next
        else:
            self._waker.fallback = wake

    def _wait_needs_prepare(self, timer_armed: bool) -> bool:
        """After a dispatch ran what made prepare's wait zero, can only a new prepare
        tell how long the driver may wait?  True with prepare hooks (their waits are
        theirs to say), or with watched fds and no timer armed (``timer_armed``) for
        their audit; otherwise the next ready time is the whole answer."""
        return bool(self._prepare_hooks.prios) or (bool(self._fds.masks) and not timer_armed)

    def _driver_fileno(self) -> int | None:
        """The fd that becomes readable on fd events or a wake-up (for ``add_reader``),
        or None while it is not open (a driver attached with ``wake``)."""
        return self._fds.epoll.fileno() if self._fds.epoll is not None else None

    def _open_fds(self) -> None:
        """Open the epoll set and the wake-up fd if they are not yet (owner thread)."""
        if self._fds.epoll is None:
            self._fds.ensure_open()
            self._set.check_fd_generation()

    def _driver_share_fds(self, mirror: Callable[[int, int], None]) -> int:
        """The driver polls the context's fds in its own epoll set (once, owner thread).

        ``mirror(fd, mask)`` is called now for the wake-up fd and every polled fd, and
        on every later change of an fd's merged epoll mask (0 = stop polling it).  The
        driver then passes what its poll reports to `_apply_polled` instead of polling
        `_driver_fileno`; the private set stays complete for `iteration` and `pending`.
        Returns the wake-up fd (readable when another thread posted work).
        """
        import select

        self._open_fds()
        self._fds.mirror = mirror
        mirror(self._waker.fd, select.EPOLLIN)
        for fd, mask in self._fds.mirrored():
            mirror(fd, mask)
        return self._waker.fd

    def _set_bql(self, lock: BigLock | None) -> None:
        """Dispatch with ``lock`` held, dropped while polling (QEMU's BQL rule)."""
        from .biglock import BigLock

        if lock is not None and not isinstance(lock, BigLock):
            raise TypeError(f"bql must be a BigLock, not {type(lock).__name__}")
        if self._gate is not None:
            self._gate.close()
        self._gate = None if lock is None else LockGate(lock, self._port.loop, self._wake)

    def _follow_clock(self) -> None:
        """Re-bind the clock if the loop's class was swapped (looptime does it)."""
        if type(self._clock_loop) is not self._clock_class:
            _rebind_clock(self)

    def _wake(self) -> None:
        self._waker.notify(force=True)

    def _is_empty(self) -> bool:
        """No source attached and nothing posted by other threads (a cheap test)."""
        return not self._sources and not self._waker.ops

    def _call_at_priority(
        self, priority: int, fn: Callable[..., Any], args: tuple[Any, ...]
    ) -> None:
        """Queue ``fn(*args)`` to run at ``priority`` (owner thread; task steps)."""
        q = self._queues.get(priority)
        if q is None or q._destroyed:
            q = self._queues[priority] = _QueueSource(priority)
            q.attach(self)
        q.queue.append((fn, args))
        self._mark_ready(q)

    def _close_with_loop(self) -> None:
        """The owning loop closes: close the context (its selector is still open)."""
        self._close()

    # --------------------------------- moving between loops (the global default context)
    def _driver_detach(self) -> None:
        """The loop that drives this context lets it go without closing it (owner thread,
        the loop not running): everything registered with that loop is withdrawn, the
        sources stay attached, and the context waits for `_rebind` and a new driver.

        Only the global default context moves: GLib's ``g_main_context_default`` is one
        context that whichever main loop runs next iterates (`aioqloop.loop`).
        """
        self._driver.detach()  # withdraws fds, timers and queued iterations; releases
        self._driver = bridge.DETACHED
        self._source_ready = None
        self._tap = None  # a DispatchTrace traces its loop, not the next one
        self._fds.mirror = None
        self._waker.fallback = None
        if self._gate is not None:
            self._gate.close()
            self._gate = None

    def _rebind(self, loop: Any) -> None:
        """Bind the detached context to ``loop`` (not running), then `driver_attach`.

        Ready times were computed on the old loop's clock: when either loop has a
        virtual clock they are moved by the difference of both clocks now, so a timeout
        keeps the time it had left; between two real-clock loops (one monotonic clock)
        nothing moves.
        """
        old = self._port
        old_now = self._clock()
        port = self._port = bridge.make_port(loop)
        self._clock = port.time
        self._clock_loop = port.loop
        self._clock_class = port.loop_class
        now = self._now = self._clock()
        if old.virtual_clock is not None or port.virtual_clock is not None:
            offset = now - old_now
            if offset:
                self._shift_deadlines(offset)
                for src in self._sources.values():
                    when = src._ready_time
                    if when not in (-1, _INF):
                        src._ready_time = when + offset
        self._home = _get_ident()

    def _clear_sources(self) -> None:
        """Destroy every attached source but the bottom halves' carrier, keeping the
        context open (the loop that held the global default context closes: its work
        ends with it, as asyncio's does; bottom halves, like the context, stay usable)."""
        carrier = self._bh
        keep = carrier.source if carrier is not None else None
        for src in list(self._sources.values()):
            if src is not keep:
                src.destroy()

    def _close(self) -> None:
        if self._closed or self._closing:
            return
        self._closing = True  # a finalize() that attaches a new source is refused
        if not self._finalizer.alive:
            # Collected with its loop, and the fds went first: no fd work is left to do.
            self._closed = True
        for src in list(self._sources.values()):
            src.destroy()
        self._closed = True
        self._driver.detach()
        self._driver = bridge.DETACHED
        self._source_ready = None
        if self._gate is not None:
            self._gate.close()
        self._finalizer.detach()
        self._fds.close()
        self._waker.close()  # under its lock: no notify writes the eventfd meanwhile

    # --------------------------------------------------------- thread checks
    def _foreign(self) -> bool:
        owner = self._owner
        return owner is not None and owner != _get_ident()

    def _check_can_block(self, what: str) -> None:
        if self._foreign():
            raise RuntimeError(
                f"{what} on a context whose loop runs in another thread; "
                "use invoke() or a BottomHalf to run code there"
            )
        if self._port.in_task():
            raise RuntimeError(
                f"{what} inside a coroutine would block the event loop; await instead "
                "(e.g. MainLoop.run_async() or asyncio.sleep())"
            )

    def _check_closed(self) -> None:
        if self._closed:
            raise RuntimeError("the MainContext is closed")

    def _check_loop_open(self) -> None:
        """Refuse new work once the context's loop is closed, before anything changes.

        A context bound to a loop it does not belong to (``MainContext(loop)`` on any
        asyncio loop) outlives that loop's close; nothing would ever dispatch what it is
        given afterwards, so attaching, scheduling and re-arming are refused loudly.
        Removing work (destroy, cancel, close) still succeeds.  An aioqloop loop's own
        context closes with its loop (`_check_closed` tells), so it need not ask.
        """
        if not self._owned_by_loop and self._port.is_closed():
            raise RuntimeError("the MainContext's event loop is closed")

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
        self._port.report(context)

    # ------------------------------------------------------------- readiness
    # ---------------------------------------------------------------- phases
    def _prepare_slow(self, deferred: bool) -> float | None:
        """Prepare when something needs a look: collect, hooks, deadlines, fd audit."""
        now = self._collect()
        if self._fds.always:
            self._fds.report_always_ready(self._mark_ready)
        timeout = self._run_prepare_hooks() if self._prepare_hooks.prios else _INF
        if self._best_ready() != _INF and not deferred:
            return 0.0
        deadline = self._next_deadline()
        if deadline != _INF:
            timeout = min(timeout, max(0.0, deadline - now))
        if self._fds.masks and timeout != 0.0:
            # A watched fd closed behind our back vanishes from epoll without an event:
            # look for NVAL at most every fd_audit_interval, and never sleep past that.
            timeout = min(timeout, self._fds.audit_wait(now, self.fd_audit_interval,
                                                        self._mark_ready))
            if self._best_ready() != _INF and not deferred:
                return 0.0
        return None if timeout == _INF else timeout

    def _run_prepare_hooks(self) -> float:
        best = self._best_ready()
        timeout = _INF
        self._in_hook = True
        try:
            for prio in tuple(self._prepare_hooks.prios):  # a hook may re-prioritise
                if prio > best:
                    break
                for src in self._prepare_hooks.snapshot(prio):
                    if src._ready or src._blocked or src._destroyed:
                        continue
                    try:
                        is_ready, wait = _check_prepare_result(src, src.prepare())
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
        return timeout

    def _run_check_hooks(self) -> None:
        best = self._best_ready()
        self._in_hook = True
        try:
            for prio in tuple(self._check_hooks.prios):  # a hook may re-prioritise
                if prio > best:
                    break
                for src in self._check_hooks.snapshot(prio):
                    if src._ready or src._blocked or src._destroyed:
                        continue
                    try:
                        # The truth inside the guard: a __bool__ that raises is the
                        # hook's fault, reported once and destroying the source.
                        if not src.check():
                            continue
                    except (SystemExit, KeyboardInterrupt):
                        raise
                    except BaseException as exc:
                        self._report(exc, src, "check")
                        continue
                    self._mark_ready(src)
                    best = min(best, src._priority)
        finally:
            self._in_hook = False

    def _hand_poll(self, timeout: float | None) -> None:
        """The poll of a hand-run iteration: the private epoll set (and a virtual clock)."""
        fds = self._fds
        if self._blocked:
            fds.unpoll_blocked(self._blocked)
        clock = self._port.virtual_clock
        t0 = _perf()
        if clock is not None and timeout != 0:
            # A VirtualClock loop: a hand-run or nested iteration moves virtual time as
            # the loop's own poll does, instead of sleeping in real time.
            n = fds.poll(0.0, self._mark_ready)
            if n == 0 and not clock._idle_wait(timeout):
                n = fds.poll(None, self._mark_ready)
        else:
            n = fds.poll(clamp_wait(timeout), self._mark_ready)
        self._poll_time += _perf() - t0
        if n < 0:
            self._waker.drain()

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
        if wait == _INF:
            wait = None
    return bool(is_ready), wait


def _close_fds(epolls: list[select.epoll], efds: list[int]) -> None:
    import contextlib
    import os

    for ep in epolls:
        ep.close()
    for efd in efds:
        with contextlib.suppress(OSError):
            os.close(efd)


_registry.register_context_class(MainContext)

if _engine.core is not None:
    # The core's upcalls into prepare's and check's slow paths, called without a name
    # lookup: private methods no context class overrides.
    _engine.core.configure(prepare_slow=MainContext._prepare_slow,
                           run_check_hooks=MainContext._run_check_hooks)
