"""aioqloop's event loops, and the ways in: `new_event_loop`, `run`, `EventLoopPolicy`.

Stock base (`QSelectorEventLoop`)
---------------------------------
A subclass of ``asyncio.SelectorEventLoop`` whose default `MainContext` lives *inside*
asyncio's iteration, without a copy of ``_run_once``:

1. ``_run_once`` computes its timeout and calls ``self._selector.select(timeout)``.  The
   selector is wrapped (`_SelectorProxy`), so that call first runs the context's
   **prepare** phase (GLib runs prepare before every poll) and shortens the timeout to
   the context's; then the real ``select``.  The poll stays inside
   ``self._selector.select``, so tools that wrap it (looptime) keep working.
2. ``_process_events`` runs the **check** phase right after the poll, then places the
   context's **dispatch** by priority against asyncio's own work, which runs at
   `PRIORITY_DEFAULT`: a more urgent priority dispatches at once, before any asyncio
   callback of this iteration; `PRIORITY_DEFAULT` is appended to the ready queue (FIFO
   with asyncio callbacks); a less urgent (idle) priority dispatches only when asyncio has
   nothing ready and no timer due, so a task that keeps yielding starves idles, as in
   GLib.
3. Task steps of tasks given another priority (`QTask.set_priority`, PyGObject's
   ``GLibTask``) are routed from ``call_soon`` into the context at that priority.

With ``bql=`` the context takes the big lock for its dispatch phase and does not hold it
while the loop polls (QEMU's ``os_host_main_loop_wait``); see `aioqloop.biglock`.

uvloop base (`QUVLoop`)
-----------------------
A ``uvloop.Loop`` subclass (so ``uvloop.run`` accepts it).  libuv gives no hook before
its poll and no view of its ready queue, so the context runs through the public API only
(`aioqloop.bridge.PlainDriver`): one ``call_at`` deadline, one ``add_reader``, and a
``call_soon`` per GLib iteration.  The README's table lists which guarantees differ.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import selectors
import sys
import threading
import warnings
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from .constants import PRIORITY_DEFAULT
from .context import _FREE_THREADED, MainContext

if TYPE_CHECKING:
    from .biglock import BigLock
    from .clock import VirtualClock

__all__ = ("QSelectorEventLoop", "QTask", "new_event_loop", "run")

_T = TypeVar("_T")
_get_ident = threading.get_ident


class QTask(asyncio.Task):  # type: ignore[type-arg]
    """A task whose steps run at a GLib priority (like PyGObject's ``GLibTask``).

    Created by aioqloop loops for every ``create_task``.  The priority is read each time
    a step is scheduled, so a change applies from the next step on.
    """

    _aioq_priority = PRIORITY_DEFAULT

    def set_priority(self, priority: int) -> None:
        """Run this task's coming steps at ``priority`` (GLib numbers; lower is sooner)."""
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise TypeError(f"priority must be an int, not {type(priority).__name__}")
        loop = self.get_loop()
        old = self._aioq_priority
        if old == priority:
            return
        if isinstance(loop, _QLoopMixin):
            if old == PRIORITY_DEFAULT:
                loop._aioq_priorities_in_use(+1)
                self.add_done_callback(_forget_priority)
            elif priority == PRIORITY_DEFAULT:
                loop._aioq_priorities_in_use(-1)
        self._aioq_priority = priority

    def get_priority(self) -> int:
        """The GLib priority its steps run at (`PRIORITY_DEFAULT` unless set)."""
        return self._aioq_priority


def _forget_priority(task: asyncio.Future[Any]) -> None:
    if isinstance(task, QTask) and task._aioq_priority != PRIORITY_DEFAULT:
        task._aioq_priority = PRIORITY_DEFAULT
        loop = task.get_loop()
        if isinstance(loop, _QLoopMixin):
            loop._aioq_priorities_in_use(-1)


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


def _run_handle(handle: asyncio.Handle) -> None:
    if not handle.cancelled():
        handle._run()


def _check_bql(bql: object) -> None:
    # Checked before the base loop is built: raising later left a half-built loop with
    # its selector, self-pipe and context fds open (and an "unclosed loop" warning at GC).
    if bql is not None:
        from .biglock import BigLock

        if not isinstance(bql, BigLock):
            raise TypeError(f"bql must be a BigLock, not {type(bql).__name__}")


if TYPE_CHECKING:
    _MixinBase = asyncio.AbstractEventLoop
else:
    _MixinBase = object


class _QLoopMixin(_MixinBase):
    """What both bases share: the owned context, prioritized tasks, thread ownership."""

    _aioqloop_context: MainContext
    _aioq_prio_tasks: int

    def _aioq_setup(self, ctx: MainContext, bql: BigLock | None) -> None:
        self._aioqloop_context = ctx
        self._aioq_prio_tasks = 0
        if bql is not None:
            ctx._set_bql(bql)

    @property
    def main_context(self) -> MainContext:
        """The loop's own default `MainContext`."""
        return self._aioqloop_context

    def create_task(
        self, coro: Any, *, name: Any = None, context: Any = None
    ) -> asyncio.Task[Any]:
        """Like ``loop.create_task``; the task is a `QTask` (it has ``set_priority``).

        The signature is the base loop's on this Python: the stock base takes
        ``context=`` from 3.11 on (as asyncio does), uvloop takes it on every version.
        """
        loop: Any = self
        if loop.get_task_factory() is not None:
            parent: Any = super().create_task
            # Pass context only when given: 3.10's BaseEventLoop.create_task has no such
            # parameter, and 3.11+ call a factory without it then (the legacy form).
            if context is None:
                return parent(coro, name=name)  # type: ignore[no-any-return]
            return parent(coro, name=name, context=context)  # type: ignore[no-any-return]
        if loop.is_closed():
            raise RuntimeError("Event loop is closed")
        task_cls: Any = QTask
        if context is None:
            task = QTask(coro, loop=loop, name=name)
        elif sys.version_info >= (3, 11):
            task = task_cls(coro, loop=loop, name=name, context=context)
        else:  # uvloop base on 3.10: the task copies the context it is created in
            task = context.run(task_cls, coro, loop=loop, name=name)
        tb = getattr(task, "_source_traceback", None)
        if tb:
            del tb[-1]
        return task

    def _aioq_call_soon_prio(
        self, callback: Callable[..., Any], *args: Any, context: Any = None
    ) -> asyncio.Handle:
        """``call_soon`` while some task has a non-default priority: route its steps."""
        task = getattr(callback, "__self__", None)
        if isinstance(task, QTask) and task._aioq_priority != PRIORITY_DEFAULT:
            loop: Any = self
            if loop.is_closed():
                raise RuntimeError("Event loop is closed")
            handle = asyncio.Handle(callback, args, loop, context)
            self._aioqloop_context._call_at_priority(task._aioq_priority, _run_handle, (handle,))
            return handle
        plain: Any = type(self).call_soon  # the class's, not this instance attribute
        return plain(self, callback, *args, context=context)  # type: ignore[no-any-return]

    def _aioq_priorities_in_use(self, delta: int) -> None:
        # The routing call_soon is installed on the instance only while a task has a
        # non-default priority, so plain asyncio work pays nothing for the feature.
        self._aioq_prio_tasks += delta
        if self._aioq_prio_tasks > 0:
            self.call_soon = self._aioq_call_soon_prio  # type: ignore[method-assign,assignment]
        else:
            self.__dict__.pop("call_soon", None)


class _SelectorProxy:
    """The loop's selector with GLib's prepare before and the context's fds after ``select``.

    Everything but ``select`` is the real selector's bound method (no per-call cost).
    """

    def __init__(self, loop: QSelectorEventLoop, selector: selectors.BaseSelector) -> None:
        self._loop = loop
        self._real = selector
        self._select = selector.select
        self._ctx: MainContext | None = None
        self._clock: VirtualClock | None = None
        self._epfd = -1
        self.register = selector.register
        self.unregister = selector.unregister
        self.modify = selector.modify
        self.get_key = selector.get_key
        self.get_map = selector.get_map
        self.close = selector.close

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        """prepare → the real select → check → place the dispatch (module docstring)."""
        ctx: Any = self._ctx
        # Publish "may sleep" before looking at the queues (QEMU's notify_me).
        if _FREE_THREADED:
            ctx._poll_waiting_set(True)
        else:
            ctx._poll_waiting = True  # the GIL orders it before the reads below
        # Every source, carrier or fd watch is in _sources, and so is a source attached
        # from another thread (its insertion waits in _foreign_ops): an empty context
        # costs plain asyncio work a couple of lookups.
        busy = bool(ctx._sources or ctx._foreign_ops)
        if not busy and self._clock is None:
            events = self._select(timeout)
            ctx._poll_waiting = False
            # The epoll fd can only be ready if someone wrote the eventfd, and writers
            # set _notified first.
            if events and ctx._notified:
                self._take_epfd(ctx, events)
                prio = ctx._check()
                if prio != math.inf:
                    self._loop._aioq_place(ctx, prio, bool(events))
            return events
        if busy:
            wait = ctx._prepare()
            if wait is not None and (timeout is None or wait < timeout):
                timeout = wait
        clock = self._clock
        if clock is not None and timeout != 0:
            events = self._select(0)
            if not events:
                events = clock._idle_select(self._real, timeout)
        else:
            events = self._select(timeout)
        ctx._poll_waiting = False
        if events and self._take_epfd(ctx, events):
            busy = True
        if busy:
            prio = ctx._check()
            if prio != math.inf:
                self._loop._aioq_place(ctx, prio, bool(events))
        return events

    def _take_epfd(self, ctx: Any, events: list[tuple[selectors.SelectorKey, int]]) -> bool:
        """Remove the context's epoll fd from ``events``; poll it if it was there."""
        epfd = self._epfd
        for i, (key, _mask) in enumerate(events):
            if key.fd == epfd:
                del events[i]
                ctx._poll_ready_fds()
                return True
        return False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class QSelectorEventLoop(_QLoopMixin, asyncio.SelectorEventLoop):
    """aioqloop on the stock selector loop (see the module docstring)."""

    def __init__(
        self,
        selector: selectors.BaseSelector | None = None,
        *,
        clock: VirtualClock | None = None,
        bql: BigLock | None = None,
    ) -> None:
        _check_bql(bql)
        super().__init__(selector)
        self._aioq_clock = clock
        if clock is not None:
            clock._bind(self)
            self.time = clock.time  # type: ignore[method-assign]
            self.call_at = self._aioq_call_at_fifo  # type: ignore[method-assign,assignment]
        proxy = _SelectorProxy(self, self._selector)
        self._selector: Any = proxy
        ctx = MainContext(self, _driver="hooked")
        self._aioq_setup(ctx, bql)
        self._aioq_epfd = ctx._epoll.fileno()
        proxy._ctx = ctx
        proxy._clock = clock
        proxy._epfd = self._aioq_epfd
        self._add_reader(self._aioq_epfd, _never_called)  # type: ignore[attr-defined]

    if sys.version_info < (3, 11):  # pragma: no cover - 3.10 only

        def create_task(  # type: ignore[override]
            self, coro: Any, *, name: Any = None
        ) -> asyncio.Task[Any]:
            """Like 3.10's ``loop.create_task`` (no ``context=``); the task is a `QTask`."""
            return _QLoopMixin.create_task(self, coro, name=name)

    # -- the check phase, right after the poll -----------------------------
    def _aioq_call_at_fifo(
        self, when: float, callback: Callable[..., Any], *args: Any, context: Any = None
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

    def _aioq_place(self, ctx: MainContext, prio: float, fd_events: bool) -> None:
        """Run or queue the dispatch of ``prio`` against asyncio's work (PRIORITY_DEFAULT)."""
        if prio < PRIORITY_DEFAULT:
            ctx._dispatch(prio)  # before every asyncio callback of this iteration
            return
        asyncio_busy = fd_events or self._ready or self._timer_due()  # type: ignore[attr-defined]
        if prio == PRIORITY_DEFAULT:
            if asyncio_busy:
                # FIFO with the asyncio work already due in this iteration.
                asyncio.SelectorEventLoop.call_soon(self, ctx._dispatch, prio)
            else:
                ctx._dispatch(prio)
        elif not asyncio_busy:
            ctx._dispatch(prio)  # idle-class: only when asyncio has nothing to run

    def _timer_due(self) -> bool:
        scheduled = self._scheduled  # type: ignore[attr-defined]
        while scheduled and scheduled[0]._cancelled:
            return True  # asyncio prunes it this iteration; look again next time
        return bool(scheduled) and scheduled[0]._when <= self.time() + self._clock_resolution  # type: ignore[attr-defined]

    # -- lifecycle ----------------------------------------------------------
    def run_forever(self) -> None:
        ctx = self._aioqloop_context
        # Restore, not clear: a refused nested run_forever/run_until_complete (the loop
        # already runs) must leave the running loop's thread the owner.
        owner = ctx._owner
        ctx._owner = _get_ident()
        try:
            super().run_forever()
        finally:
            ctx._owner = owner

    def close(self) -> None:
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if not self.is_closed():
            if self._selector is not None:
                self._remove_reader(self._aioq_epfd)  # type: ignore[attr-defined]
            self._aioqloop_context.close()
        super().close()

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} running={self.is_running()} "
            f"closed={self.is_closed()} debug={self.get_debug()}>"
        )


def _never_called() -> None:  # pragma: no cover - filtered out by _aioq_select
    raise AssertionError("the context's epoll fd is handled inside select()")


def _uvloop_class() -> type[asyncio.AbstractEventLoop]:
    global _QUVLoop
    if _QUVLoop is not None:
        return _QUVLoop
    import uvloop

    class QUVLoop(_QLoopMixin, uvloop.Loop):  # type: ignore[misc]
        """aioqloop on uvloop: the context runs through public loop API only."""

        def __init__(self, *, bql: BigLock | None = None) -> None:
            super().__init__()  # libuv's loop and fds exist already (__cinit__)
            try:
                _check_bql(bql)
            except TypeError:
                uvloop.Loop.close(self)
                raise
            self._aioq_setup(MainContext(self), bql)

        def run_forever(self) -> None:
            ctx = self._aioqloop_context
            owner = ctx._owner  # restored: see QSelectorEventLoop.run_forever
            ctx._owner = _get_ident()
            try:
                super().run_forever()
            finally:
                ctx._owner = owner

        def close(self) -> None:
            if not self.is_closed() and not self.is_running():
                self._aioqloop_context.close()
            # uvloop's close walks libuv's handles and warns about each unclosed one
            # *before* closing it.  With ResourceWarning as an error (pytest's
            # filterwarnings = error) that raise skips the handle's close, and the
            # uv_run() that follows waits forever on the still-active handle (a
            # listening server left open blocks close() for good).  So collect the
            # warnings while every handle closes, then re-issue them under the
            # caller's filters; one that a filter turns into an error is only shown
            # (uvloop itself swallows it as unraisable), so close() still never raises.
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ResourceWarning)
                super().close()
            for w in caught:
                try:
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno,
                                           source=w.source)
                except Warning:
                    warnings.showwarning(w.message, w.category, w.filename, w.lineno)

    _QUVLoop = QUVLoop
    return QUVLoop


_QUVLoop: type[asyncio.AbstractEventLoop] | None = None


def new_event_loop(
    *,
    base: str = "asyncio",
    clock: VirtualClock | None = None,
    bql: BigLock | None = None,
) -> asyncio.AbstractEventLoop:
    """Create an aioqloop event loop; usable as ``loop_factory``.

    ``base`` is ``"asyncio"`` (the stock selector loop, full priority support) or
    ``"uvloop"``.  ``clock`` is a `VirtualClock` (stock base only: libuv's timers run on
    its own real clock).  ``bql`` is a `BigLock` held while sources dispatch and released
    while the loop waits.
    """
    if base == "asyncio":
        return QSelectorEventLoop(clock=clock, bql=bql)
    if base == "uvloop":
        if clock is not None:
            raise ValueError(
                "a VirtualClock needs base='asyncio': uvloop's timers run on libuv's own "
                "real clock, so virtual time cannot be honoured there"
            )
        cls = _uvloop_class()
        return cls(bql=bql)  # type: ignore[call-arg]
    raise ValueError(f"base must be 'asyncio' or 'uvloop', not {base!r}")


def run(
    coro: Coroutine[Any, Any, _T],
    *,
    base: str = "asyncio",
    debug: bool | None = None,
    **loop_kwargs: Any,
) -> _T:
    """Run ``coro`` on a new aioqloop loop and close it, like ``asyncio.run``.

    ``loop_kwargs`` go to `new_event_loop` (``clock=``, ``bql=``).
    """
    if not asyncio.iscoroutine(coro):
        raise TypeError(f"a coroutine was expected, got {coro!r}")

    def factory() -> asyncio.AbstractEventLoop:
        return new_event_loop(base=base, **loop_kwargs)

    if sys.version_info >= (3, 11):
        runner_cls: Any = asyncio.Runner
    else:  # pragma: no cover - exercised on 3.10 only
        from backports.asyncio.runner import (  # type: ignore[import-not-found]
            Runner as runner_cls,
        )
    with runner_cls(debug=debug, loop_factory=factory) as runner:
        return runner.run(coro)  # type: ignore[no-any-return]


_policy_cls: type | None = None


def _event_loop_policy_class() -> type:
    """Build `aioqloop.EventLoopPolicy` on first use (policies are deprecated from 3.14)."""
    global _policy_cls
    if sys.version_info >= (3, 16):  # pragma: no cover
        raise AttributeError(
            "asyncio has no event loop policies from Python 3.16 on; use aioqloop.run() "
            "or asyncio.run(..., loop_factory=aioqloop.new_event_loop)"
        )
    if sys.version_info >= (3, 14):  # pragma: no cover
        warnings.warn(
            "aioqloop.EventLoopPolicy is deprecated as asyncio's policies are; use "
            "aioqloop.run() or asyncio.Runner(loop_factory=aioqloop.new_event_loop)",
            DeprecationWarning,
            stacklevel=3,
        )
    if _policy_cls is not None:
        return _policy_cls
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        base_policy: Any = asyncio.DefaultEventLoopPolicy

    class EventLoopPolicy(base_policy):  # type: ignore[misc]
        """An asyncio policy whose loops are aioqloop loops (``base`` as in new_event_loop)."""

        def __init__(self, base: str = "asyncio") -> None:
            if base not in ("asyncio", "uvloop"):
                raise ValueError(f"base must be 'asyncio' or 'uvloop', not {base!r}")
            super().__init__()
            self._aioq_base = base

        def new_event_loop(self) -> asyncio.AbstractEventLoop:
            return new_event_loop(base=self._aioq_base)

    _policy_cls = EventLoopPolicy
    return EventLoopPolicy
