"""The stock base (`QSelectorEventLoop`): aioqloop on asyncio's own selector loop.

A subclass of ``asyncio.SelectorEventLoop`` whose default `MainContext` lives *inside*
asyncio's iteration, without a copy of ``_run_once``.  ``_run_once`` computes its timeout
and calls ``self._selector.select(timeout)`` exactly once per iteration, right before it
runs the ready handles; the selector is wrapped (`_SelectorHook`), and that call runs one
`MainContext._iterate` whose poll is the real ``select``:

1. **prepare** (GLib runs it before every poll) shortens the timeout to the context's;
2. the real ``select`` (so tools that wrap it, like looptime, keep working); the big
   lock, if any, is not held (QEMU's ``os_host_main_loop_wait``);
3. **check**, then the dispatch is **placed** by GLib's rules, asyncio's handles counting
   as sources of `PRIORITY_DEFAULT` (PyGObject's gi.events makes every one a GSource):

   * more urgent than `PRIORITY_DEFAULT`: it dispatches at once, and asyncio's ready
     handles, due timers and fd events of this iteration wait for a later iteration (set
     aside before asyncio counts them and put back, in order, by one internal handle;
     handles are taken off the left of asyncio's own queue, never swapped for another,
     so a callback another thread posts meanwhile keeps its place: `take_ready`);
   * `PRIORITY_DEFAULT`: FIFO with asyncio's callbacks, by the order things became
     ready: the context's dispatch is one handle appended to asyncio's ready queue when a
     default-priority source becomes ready (so a bottom half scheduled before a task
     yields has run when the task resumes, as a ``call_soon`` would have);
   * less urgent (idle-class): only when asyncio has nothing ready, no fd event and no
     timer due, so a task that keeps yielding starves idles, as in GLib.

Task steps of tasks given another priority (`QTask.set_priority`) are routed into the
context at that priority (see `aioqloop._tasks`).  An empty context costs plain asyncio
work one method call per iteration.

Fds in the loop's own epoll set.  With a stock ``selectors.EpollSelector`` the context's
fds (and its wake-up fd) are registered straight in the selector's ``select.epoll``
(`aioqloop._selectorfds`): one ``epoll_wait`` per wake-up serves asyncio and the context,
asyncio sees exactly what its selector would report, the context the raw revents.  Any
other selector (one passed to `QSelectorEventLoop`, or one whose ``select`` a tool has
wrapped before the loop was built) keeps the private-epoll path: the context's epoll
set is one reader in the selector, and a wake-up costs a second ``epoll_wait``.

The uvloop base lives in `aioqloop._uvloop`; the ways in (`new_event_loop`, `run`) and
the global default context in `aioqloop.loop`.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import selectors
import sys
from collections import deque
from collections.abc import Callable, Coroutine, Generator
from typing import TYPE_CHECKING, Any, TypeVar

from . import _engine, _registry
from ._fdpoll import MAX_WAIT
from ._selectorfds import SelectorFds, eligible
from ._tasks import EventLoop, QTask
from .bridge import Driver
from .constants import PRIORITY_DEFAULT
from .context import MainContext

if TYPE_CHECKING:
    from .biglock import BigLock
    from .clock import VirtualClock

__all__ = ("QSelectorEventLoop", "check_loop_args", "take_ready")

_T = TypeVar("_T")


class _SeqTimerHandle(asyncio.TimerHandle):
    """A timer ordered by (deadline, creation order): equal deadlines run FIFO.

    asyncio's heap compares deadlines only and heapq is not stable; with a virtual clock
    ties are the norm, and QEMU's virtual clock runs them in insertion order.
    """

    __slots__ = ("_aioq_seq",)
    _aioq_seq: int

    def _key(self) -> tuple[float, int]:
        return (self.when(), self._aioq_seq)

    def __lt__(self, other: object) -> bool:
        if isinstance(other, _SeqTimerHandle):
            return self._key() < other._key()
        return super().__lt__(other)  # type: ignore[operator]

    def __le__(self, other: object) -> bool:
        if isinstance(other, _SeqTimerHandle):
            return self._key() <= other._key()
        return super().__le__(other)  # type: ignore[operator]

    def __gt__(self, other: object) -> bool:
        if isinstance(other, _SeqTimerHandle):
            return self._key() > other._key()
        return super().__gt__(other)  # type: ignore[operator]

    def __ge__(self, other: object) -> bool:
        if isinstance(other, _SeqTimerHandle):
            return self._key() >= other._key()
        return super().__ge__(other)  # type: ignore[operator]


_timer_seq = itertools.count()


def check_loop_args(clock: object, bql: object) -> None:
    """Type checks of `new_event_loop`'s arguments, before any fd is opened."""
    if clock is not None:
        from .clock import VirtualClock

        if not isinstance(clock, VirtualClock):
            raise TypeError(f"clock must be a VirtualClock, not {type(clock).__name__}")
    if bql is not None:
        from .biglock import BigLock

        if not isinstance(bql, BigLock):
            raise TypeError(f"bql must be a BigLock, not {type(bql).__name__}")


class _PyHook:
    """The hot methods of `_SelectorHook` that the compiled core
    (`aioqloop._cengine.HookCore`) replaces; the pure-Python engine's reference."""

    _loop: Any
    _ctx: MainContext | None
    _clock: VirtualClock | None
    _select: Callable[[float | None], list[tuple[selectors.SelectorKey, int]]]
    _timeout: float | None
    _events: list[tuple[selectors.SelectorKey, int]]
    _queued: bool
    _dispatch_handle: asyncio.Handle
    _preset: list[tuple[selectors.SelectorKey, int]] | None
    direct: SelectorFds | None
    _polls: Any

    if TYPE_CHECKING:
        def _woken(self, events: list[tuple[selectors.SelectorKey, int]]) -> bool: ...
        def _take_epfd(self, events: list[tuple[selectors.SelectorKey, int]]) -> bool: ...
        def _expose_deadline(self, ctx: Any) -> None: ...
        def _urgent(self, ctx: Any, priority: float) -> None: ...
        def _poll_clock(
            self, timeout: float | None
        ) -> list[tuple[selectors.SelectorKey, int]]: ...

    def source_ready(self, priority: int) -> None:
        """A source became ready: queue the default-priority dispatch, FIFO."""
        if priority == PRIORITY_DEFAULT and not self._queued:
            self._queued = True
            self._loop._ready.append(self._dispatch_handle)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        """prepare → the real select → check → place the dispatch (module docstring)."""
        ctx: Any = self._ctx
        if self._clock is None and ctx._is_empty():
            events = self._select(timeout)  # asyncio bounds its own timeouts (one day)
            if self._woken(events):
                # A wake-up: run what other threads posted, on the events we have.
                self._preset = events
                ctx._iterate(self, block=False, dispatch=True)
            return events
        self._timeout = timeout
        self._events = []
        ctx._iterate(self, block=True, dispatch=True)
        events, self._events = self._events, []
        if "select" in self.__dict__:
            self._expose_deadline(ctx)
        return events

    def poll(self, wait: float | None) -> None:
        """The context's poll: asyncio's own select, for the shorter of both timeouts."""
        ctx: Any = self._ctx
        preset = self._preset
        if preset is not None:
            self._preset = None
            if self.direct is None:
                ctx._poll_ready()  # else applied with the select that found the wake-up
            self._events = preset
            return
        timeout = self._timeout
        if wait is not None and (timeout is None or wait < timeout):
            timeout = wait
            if wait > MAX_WAIT:
                timeout = MAX_WAIT  # a poll takes 32-bit milliseconds
        direct = self.direct
        if self._clock is not None and timeout != 0:
            events = self._poll_clock(timeout)
        else:
            events = self._select(timeout)
        if direct is not None:
            if direct.raw:
                ctx._apply_polled(direct.take_raw())
        elif events and self._take_epfd(events):
            ctx._poll_ready()
        self._events = events

    def place(self, priority: float) -> None:
        ctx: Any = self._ctx
        if priority < PRIORITY_DEFAULT:
            self._urgent(ctx, priority)
        elif priority == PRIORITY_DEFAULT:
            loop = self._loop
            ready = loop._ready
            quiet = not self._events and not (loop._scheduled and loop._timer_due())
            if quiet and not ready:
                ctx._dispatch(priority)  # nothing of asyncio's to keep FIFO with: now
            elif quiet and len(ready) == 1 and ready[0] is self._dispatch_handle:
                # Only our own queued dispatch: run it here, in order.  Take just that
                # handle off the left: another thread may have appended a callback
                # since (call_soon_threadsafe only appends), and it must stay queued.
                deque.popleft(ready)  # deque's own: a traced queue records only asyncio's
                self._queued = False
                ctx._dispatch(priority)
            else:
                self.source_ready(PRIORITY_DEFAULT)
        elif not (self._events or self._loop._ready
                  or (self._loop._scheduled and self._loop._timer_due())):
            ctx._dispatch(priority)  # idle-class: only when asyncio has nothing to run
        else:
            ctx._dispatch_postponed()  # asyncio's work first: no lock held meanwhile


if TYPE_CHECKING or _engine.core is None:
    _HookBase = _PyHook
else:
    class _HookBase(_engine.core.HookCore, _PyHook):
        """The compiled core's hook methods first, the Python slow paths behind them."""


# Driver's ``source_ready`` is an optional callable; the hook's is always its method.
class _SelectorHook(_HookBase, Driver):  # type: ignore[misc]
    """The loop's selector with a context iteration around ``select`` (module docstring).

    It is also the context's one driver (`aioqloop.bridge.Driver`): ``poll``/``place``
    for `MainContext._iterate`, ``source_ready`` to queue the default-priority dispatch
    in FIFO order, ``epoll_changed`` and ``detach``.  Everything but ``select`` is the
    real selector's bound method (no per-call cost).  Made whole by the loop and attached
    to ``ctx`` by its constructor; nothing sets its fields from outside.
    """

    def __init__(self, loop: QSelectorEventLoop, selector: selectors.BaseSelector,
                 ctx: MainContext, clock: VirtualClock | None) -> None:
        self._loop: Any = loop
        self._real = selector
        self._select = selector.select
        self._clock: VirtualClock | None = clock
        self._ctx: MainContext | None = ctx
        self._epfd = -1
        self._timeout: float | None = None
        self._events: list[tuple[selectors.SelectorKey, int]] = []
        self._queued = False
        self._dispatch_handle = asyncio.Handle(self._run_dispatch, (), loop, None)
        self._restore_handle = asyncio.Handle(self._restore, (), loop, None)
        # What a nested raw iteration leaves in asyncio's queue for each callback it ran.
        self._spent = asyncio.Handle(_noop, (), loop, None)
        self._spent.cancel()
        self._stash: tuple[list[Any], list[Any], list[Any]] | None = None
        self._preset: list[tuple[selectors.SelectorKey, int]] | None = None
        self._exposed: asyncio.TimerHandle | None = None
        self.register = selector.register
        self.unregister = selector.unregister
        self.modify = selector.modify
        self.get_key = selector.get_key
        self.get_map = selector.get_map
        self.close = selector.close
        #: The shared epoll set, or None on the private-epoll path (module docstring).
        self.direct: SelectorFds | None = None
        self._polls: Any = selector
        self._wake_fd = -1
        ctx._driver_attach(self, may_sleep=False)
        epfd = ctx._driver_fileno()
        assert epfd is not None  # attached without a wake callback: the fds are open
        self._epfd = epfd
        self._share_fds()
        if self.direct is None:
            self._loop._add_reader(epfd, _never_called)  # type: ignore[attr-defined]

    # -- the driver protocol (aioqloop.bridge.Driver) ------------------------------
    def epoll_changed(self) -> None:
        if self.direct is not None:
            self.direct.rebuild()  # the same stale entries may sit in the loop's set
            return
        self._loop._remove_reader(self._epfd)
        self._loop._add_reader(self._epfd, _never_called)

    def detach(self) -> None:
        """The context lets this hook go (it closes, or moves to another loop): take its
        fds out of the loop's set; a dispatch queued earlier finds no context to run."""
        direct = self.direct
        if direct is not None:
            if not self._loop.is_closed():
                direct.withdraw()
            direct.closed = True
        elif not self._loop.is_closed() and self._epfd >= 0:
            self._loop._remove_reader(self._epfd)
        self._epfd = -1
        self._ctx = None

    def _share_fds(self) -> None:
        """Take the context's fds into the selector's own epoll set (if eligible)."""
        real: Any = self._real
        if not eligible(real):
            return
        direct = self.direct = SelectorFds(real)
        self._select = direct.select
        self._polls = direct
        self.register = direct.register
        self.unregister = direct.unregister
        self.modify = direct.modify
        ctx: Any = self._ctx
        self._wake_fd = ctx._driver_share_fds(direct.set)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    # -- gi.events' raw nested iteration (aioqloop.glib) ------------------------
    def _runnable(self, handle: Any) -> bool:
        return not (handle is self._dispatch_handle or handle is self._restore_handle
                    or handle._cancelled)

    def ready_count(self) -> int:
        """How many of asyncio's queued callbacks `run_ready_once` would run now."""
        # By index, not by iterating: another thread may append meanwhile (iterating a
        # deque that grows raises RuntimeError); only the loop thread pops its left.
        ready = self._loop._ready
        runnable = self._runnable
        return sum(1 for i in range(len(ready)) if runnable(ready[i]))

    def run_ready_once(self) -> int:
        """Run the asyncio callbacks queued now, once each, from a nested iteration.

        Each one run is replaced in place by a cancelled handle, so the queue keeps its
        length: the ``_run_once`` this may be nested in pops exactly what it counted
        and skips these.  The context's own queued dispatch stays (the nested
        iteration dispatched its sources already).  Returns how many ran.
        """
        ready = self._loop._ready
        ran = 0
        for i in range(len(ready)):  # only what is queued now; later ones wait
            handle = ready[i]
            if not self._runnable(handle):
                continue
            ready[i] = self._spent
            ran += 1
            handle._run()
        return ran

    # -- select ---------------------------------------------------------------
    def _expose_deadline(self, ctx: Any) -> None:
        """A tool wrapped this ``select`` (looptime does) and decides how far to move time
        from asyncio's own timeout, before the context could shorten it: keep one asyncio
        timer at the context's next deadline so that timeout includes it."""
        when = ctx._next_deadline()
        handle = self._exposed
        if handle is not None and handle.when() != when:
            handle.cancel()
            handle = self._exposed = None
        if handle is None and when != math.inf:
            self._exposed = self._loop.call_at(when, _noop)

    def _poll_clock(self, timeout: float | None) -> list[tuple[selectors.SelectorKey, int]]:
        """The poll with a `VirtualClock`: without waiting, then the clock's idle select
        (virtual time moves instead of sleeping in real time)."""
        events = self._select(0)
        direct = self.direct
        if not events and not (direct is not None and direct.raw):
            assert self._clock is not None
            events = self._clock._idle_select(self._polls, timeout)
        return events

    def _woken(self, events: list[tuple[selectors.SelectorKey, int]]) -> bool:
        """After a select with an empty context: did the wake-up fire (fd events applied)?"""
        direct = self.direct
        if direct is None:
            return bool(events) and self._take_epfd(events)
        if not direct.raw:
            return False
        raw = direct.take_raw()
        wake = self._wake_fd
        for fd, _ev in raw:
            if fd == wake:
                ctx: Any = self._ctx
                ctx._apply_polled(raw)
                return True
        return False  # asyncio's fds only: an empty context has nothing to record

    def _take_epfd(self, events: list[tuple[selectors.SelectorKey, int]]) -> bool:
        epfd = self._epfd
        for i, (key, _mask) in enumerate(events):
            if key.fd == epfd:
                del events[i]
                return True
        return False

    def _run_dispatch(self) -> None:
        self._queued = False
        ctx: Any = self._ctx
        if ctx is not None and not ctx.closed:
            ctx._dispatch(PRIORITY_DEFAULT)

    # -- strict priorities: asyncio's work waits while something urgent runs --------
    # Only the loop thread takes from the left of asyncio's ready queue; other threads
    # only append to it (call_soon_threadsafe).  So the queue is never replaced: what
    # must wait is taken off its left and put back there later, and a callback another
    # thread appends meanwhile can neither be lost nor overtake what was queued before.
    # deque's own methods: a traced queue (aioqloop._trace) records only asyncio's pops.
    def _urgent(self, ctx: Any, priority: float) -> None:
        loop = self._loop
        restore = self._restore_handle
        # A stash not put back yet (a nested iteration ran before the restore did): put
        # it back first, so it is held again, in order, with the rest.
        self._restore()
        held = take_ready(loop._ready, restore)
        scheduled = loop._scheduled  # timers: touched by the loop thread only
        loop._scheduled = []
        try:
            ctx._dispatch(priority)
        except BaseException:
            self._put_back(held, scheduled, [])
            raise
        self._restore()  # one an iteration nested in the dispatch held back
        # What the dispatch queued waits too; fd events as well: the selector is
        # level-triggered and reports them again.
        held.extend(take_ready(loop._ready, restore))
        self._events = []
        self._stash = (held, scheduled, loop._scheduled)
        loop._scheduled = []
        deque.appendleft(loop._ready, restore)

    def _restore(self) -> None:
        stash, self._stash = self._stash, None
        if stash is not None:
            self._put_back(*stash)

    def _put_back(self, held: list[Any], scheduled: list[Any], later: list[Any]) -> None:
        """Return what `_urgent` held back: ``held`` handles in front of the ready queue,
        the timers of ``later`` and of the current list into ``scheduled``."""
        loop = self._loop
        deque.extendleft(loop._ready, reversed(held))
        for timer in later:
            heapq.heappush(scheduled, timer)
        for timer in loop._scheduled:
            heapq.heappush(scheduled, timer)
        loop._scheduled = scheduled


def take_ready(ready: deque[Any], skip: object = None) -> list[Any]:
    """Take every handle queued now off the left of asyncio's ready queue ``ready``,
    leaving out ``skip``.

    Safe while other threads post: they only append (``call_soon_threadsafe``), and
    only the loop thread takes from the left.  deque's own ``popleft``: a traced queue
    (`aioqloop._trace`) records only the pops of asyncio's ``_run_once``.
    """
    popleft = deque.popleft
    taken = [popleft(ready) for _ in range(len(ready))]
    return [handle for handle in taken if handle is not skip]


class QSelectorEventLoop(EventLoop, asyncio.SelectorEventLoop):
    """aioqloop on the stock selector loop (see the module docstring)."""

    def __new__(cls, *args: Any, clock: Any = None, bql: Any = None, **kwargs: Any) -> Any:
        # Checked before an instance exists: a half-built loop would complain when
        # collected (asyncio's __del__ reads state __init__ never set).
        check_loop_args(clock, bql)
        return super().__new__(cls)

    def __init__(
        self,
        selector: selectors.BaseSelector | None = None,
        *,
        clock: VirtualClock | None = None,
        bql: BigLock | None = None,
    ) -> None:
        check_loop_args(clock, bql)
        super().__init__(selector)
        self._aioq_clock = clock
        if clock is not None:
            clock._bind(self)
            # Instance attributes over the class's methods (through __dict__, so that
            # checkers see one type for time and call_at).
            self.__dict__["time"] = clock.time
            self.__dict__["call_at"] = self._aioq_call_at_fifo
        self._aioq_real_selector = self._selector
        self._aioq_bql = bql
        _registry.default_hooks.bind_new_loop(
            self, lambda: MainContext(self, _driver="loop"), self._aioq_bind)

    def _aioq_bind(self, ctx: MainContext) -> None:
        """Drive ``ctx`` from this loop's selector (a new context, or the global default
        context moving here: `aioqloop.loop.claim_default`)."""
        self._selector: Any = _SelectorHook(self, self._aioq_real_selector, ctx,
                                            self._aioq_clock)
        self._aioqloop_context = ctx
        ctx._set_bql(self._aioq_bql)

    def _aioq_swap(self, ctx: MainContext | None) -> MainContext:
        """Let the context go (`MainContext._driver_detach`) and drive ``ctx`` instead
        (detached; None: a new one); returns the context let go (not running)."""
        old = self._aioqloop_context
        old._driver_detach()  # the hook's detach: a dispatch it queued finds no context
        if ctx is None:
            ctx = MainContext(self, _driver="loop")
        else:
            ctx._rebind(self)
        self._aioq_bind(ctx)
        return old

    if sys.version_info < (3, 11):  # pragma: no cover - 3.10 only

        def create_task(  # type: ignore[override]
            self,
            coro: Coroutine[Any, Any, _T] | Generator[Any, None, _T],
            *,
            name: str | None = None,
        ) -> QTask[_T]:
            """Like 3.10's ``loop.create_task`` (no ``context=``); the task is a `QTask`."""
            return EventLoop.create_task(self, coro, name=name)

    def _aioq_ready_count(self) -> int:
        return self._selector.ready_count()  # type: ignore[no-any-return]

    def _aioq_run_ready(self) -> int:
        return self._selector.run_ready_once()  # type: ignore[no-any-return]

    def _aioq_call_at_fifo(
        self, when: float, callback: Any, *args: Any, context: Any = None
    ) -> asyncio.TimerHandle:
        """``call_at`` with FIFO ties (installed with a virtual clock, where ties are common)."""
        loop: Any = self
        loop._check_closed()
        if loop._debug:
            loop._check_thread()
            loop._check_callback(callback, "call_at")
        timer = _SeqTimerHandle(when, callback, args, self, context)
        timer._aioq_seq = next(_timer_seq)
        tb = timer._source_traceback  # type: ignore[attr-defined]
        if tb:
            del tb[-1]
        heapq.heappush(loop._scheduled, timer)
        timer._scheduled = True  # type: ignore[attr-defined]
        return timer

    def _timer_due(self) -> bool:
        scheduled = self._scheduled  # type: ignore[attr-defined]
        if scheduled and scheduled[0]._cancelled:
            return True  # asyncio prunes it this iteration; look again next time
        return bool(scheduled) and scheduled[0]._when <= self.time() + self._clock_resolution  # type: ignore[attr-defined]

    def close(self) -> None:
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if not self.is_closed():
            _registry.default_hooks.release(self, self._aioqloop_context)
        super().close()

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} running={self.is_running()} "
            f"closed={self.is_closed()} debug={self.get_debug()}>"
        )


def _noop() -> None:
    pass


if _engine.core is not None:
    # The core's upcalls into the hook (HookCore, aioqloop/_csrc/hook.h), each called with
    # its object first; no subclass overrides them.  The loop's ready queue is a deque (a
    # subclass with a trace): deque's own append and popleft serve it.
    _engine.core.configure(
        max_wait=MAX_WAIT,
        hook_woken=_SelectorHook._woken,
        hook_take_epfd=_SelectorHook._take_epfd,
        hook_poll_clock=_SelectorHook._poll_clock,
        hook_expose_deadline=_SelectorHook._expose_deadline,
        hook_urgent=_SelectorHook._urgent,
        hook_timer_due=QSelectorEventLoop._timer_due,
        deque_append=deque.append,
        deque_popleft=deque.popleft,
    )


def _never_called() -> None:  # pragma: no cover - filtered out by the hook
    raise AssertionError("the context's epoll fd is handled inside select()")

