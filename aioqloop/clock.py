"""`VirtualClock`: deterministic loop time for tests (QEMU's ``QEMU_CLOCK_VIRTUAL``).

A loop made with ``new_event_loop(clock=VirtualClock())`` reads ``loop.time()`` from the
clock, and so does everything scheduled on it: ``asyncio.sleep``, ``asyncio.timeout``,
``call_later``/``call_at``, `TimeoutSource`, ``Source.set_ready_time`` and the GLib
namespace's timeouts.  Time moves only when the loop has nothing to do:

* with ``autojump`` (the default) it jumps straight to the next deadline, the earliest of
  asyncio's timers, the context's ready times and the sources' ``prepare`` waits, like
  trio's ``MockClock(autojump_threshold=0)``;
* without it, only up to the target set by `advance`, one deadline at a time, so each
  timer runs at its own deadline, in deadline order, equal deadlines first-in first-out
  (QEMU's ``qemu_clock_advance_virtual_time``, used by qtest to step a machine).

The loop still polls its fds before every jump, with timeout 0, so sockets, pipes and
other threads keep working while time skips; when no deadline is left (or a manual clock
has reached its target) the loop blocks in a real poll until an fd or a thread wakes it.
"""

from __future__ import annotations

import asyncio
import math
import selectors
import threading
from collections.abc import Callable
from typing import Any

__all__ = ("VirtualClock",)


def _seconds(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number of seconds, not {type(value).__name__}")
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"{what} must be a finite number of seconds, not {value!r}")
    return float(value)


class VirtualClock:
    """Loop time in seconds that starts at ``start`` and moves only when the loop is idle.

    ``autojump=True`` jumps to the next deadline whenever nothing is ready; with False,
    time moves only through `advance` / `advance_async`.  ``autojump_threshold`` (real
    seconds, default 0) makes an idle loop first wait that long for real events (fds,
    threads of its own) before it jumps, like trio's ``autojump_threshold``.  While a
    ``loop.run_in_executor`` call (``asyncio.to_thread``, ``BigLock.run_in_thread``) has
    not returned, the loop does not jump at all: it waits in real time for the thread.
    One clock drives one loop at a time (stock base only: ``base="uvloop"`` refuses it).
    """

    def __init__(
        self, start: float = 0.0, *, autojump: bool = True, autojump_threshold: float = 0.0
    ) -> None:
        self._now = _seconds(start, "start")
        self._target = self._now
        self._advance_lock = threading.Lock()  # `advance` from several threads at once
        self.autojump: bool = bool(autojump)
        threshold = _seconds(autojump_threshold, "autojump_threshold")
        if threshold < 0:
            raise ValueError(f"autojump_threshold can't be negative: {autojump_threshold!r}")
        self.autojump_threshold = threshold
        self._loop: asyncio.AbstractEventLoop | None = None
        self._base_resolution = 1e-9
        self._threads_busy = 0  # run_in_executor calls whose result has not come back
        #: Called (loop thread) when the loop is provably stuck (`_stuck_select`); None:
        #: an idle loop without deadlines just waits, as a real one would.
        self._on_stuck: Callable[[], None] | None = None
        #: Real seconds a stuck loop still waits for other threads before `_on_stuck`.
        self._stuck_grace = 1.0

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop this clock drives (None until a loop is created with it)."""
        return self._loop

    def time(self) -> float:
        """The current virtual time in seconds (what ``loop.time()`` returns)."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Let time move ``seconds`` further (manual stepping; any thread).

        Running loop: the target moves now and the loop then steps deadline by deadline
        whenever it is idle, so each timer fires at its own deadline; time lands on the
        target once nothing is due before it.  From a coroutine, ``await``
        `advance_async` to also wait for those timers.  Loop not running: time is set to
        the target at once (timers that became due run when the loop next iterates).
        """
        step = _seconds(seconds, "seconds")
        if step < 0:
            raise ValueError(f"time can't go backwards: {seconds!r}")
        loop = self._loop
        with self._advance_lock:  # a read-modify-write: no step of another thread lost
            self._target = max(self._target, self._now) + step
            idle = loop is None or loop.is_closed() or not loop.is_running()
            if idle:
                self._set(self._target)  # nothing runs timers: just move
        if loop is not None and not idle and asyncio._get_running_loop() is not loop:
            loop.call_soon_threadsafe(_noop)  # wake it from its poll so it can step
        # In the loop thread the loop is awake; it steps once the current callback returns.

    async def advance_async(self, seconds: float) -> None:
        """``advance(seconds)``, then return once time has reached the target and every
        timer and source due up to it has run (call from a coroutine on this loop)."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            raise RuntimeError("advance_async() must be awaited on the loop this clock drives")
        self.advance(seconds)
        waiter: asyncio.Future[None] = loop.create_future()
        # A timer at the target itself: stepping stops at it after the earlier deadlines
        # (and, FIFO, after timers already set for that same instant).
        handle = loop.call_at(self._target, _resolve, waiter)
        try:
            await waiter
        finally:
            handle.cancel()
        # One more turn so the callbacks those timers scheduled (task wake-ups) run too.
        await asyncio.sleep(0)

    # -- hooks called by QSelectorEventLoop ------------------------------------
    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._loop is not None and self._loop is not loop and not self._loop.is_closed():
            raise RuntimeError("a VirtualClock drives one loop at a time")
        self._loop = loop
        self._base_resolution = float(getattr(loop, "_clock_resolution", 1e-9))
        self._set(self._now)
        self._threads_busy = 0
        self._count_executor_calls(loop)

    def _count_executor_calls(self, loop: asyncio.AbstractEventLoop) -> None:
        """Count the loop's executor calls still out (``run_in_executor``, and so
        ``asyncio.to_thread`` and ``BigLock.run_in_thread``).

        While one is out, an idle loop does not jump: the thread may still post a result
        that schedules earlier work (trio's and looptime's rule).  Installed on this loop
        instance only.
        """
        run_in_executor = loop.run_in_executor  # the class's bound method

        def counted(executor: Any, func: Any, *args: Any) -> asyncio.Future[Any]:
            future = run_in_executor(executor, func, *args)
            self._threads_busy += 1
            future.add_done_callback(self._thread_returned)
            return future

        counted.__doc__ = run_in_executor.__doc__
        loop.run_in_executor = counted  # type: ignore[method-assign,assignment]

        # Joining the default executor's threads is thread work too: asyncio.Runner.close
        # waits for it under an asyncio timeout (300 s from 3.12 on), which must not
        # expire by a jump while the threads are still finishing.
        shutdown = loop.shutdown_default_executor

        async def counted_shutdown(*args: Any, **kwargs: Any) -> None:
            self._threads_busy += 1
            try:
                await shutdown(*args, **kwargs)
            finally:
                self._threads_busy -= 1

        loop.shutdown_default_executor = counted_shutdown  # type: ignore[method-assign]

    def _thread_returned(self, _future: asyncio.Future[Any]) -> None:
        self._threads_busy -= 1

    def _set(self, now: float) -> None:
        self._now = now
        loop: Any = self._loop
        if loop is not None:
            # asyncio runs a timer when ``when < time() + _clock_resolution``.  Far from 0
            # a nanosecond is below one ulp, so a timer due exactly now would never run
            # (time does not move by itself here): keep the resolution at least one ulp.
            loop._clock_resolution = max(self._base_resolution, math.ulp(now))

    def _next_deadline(self) -> float:
        """The earliest deadline of asyncio's timers and the context's ready times."""
        loop: Any = self._loop
        best = math.inf
        scheduled = getattr(loop, "_scheduled", None)
        if scheduled:
            best = scheduled[0]._when  # heap head; asyncio pruned cancelled heads already
        ctx = getattr(loop, "_aioqloop_context", None)
        if ctx is not None:
            best = min(best, ctx._next_deadline())
        return float(best)

    def _idle_select(
        self, real: selectors.BaseSelector, timeout: float | None
    ) -> list[tuple[selectors.SelectorKey, int]]:
        """The loop's poll when a zero-timeout poll found nothing and nothing is ready.

        ``timeout`` is the loop's wait in virtual seconds (None = no deadline).  Moves
        time to the next deadline (bounded by the target for a manual clock) and returns
        no events, so the loop runs what became due; blocks in a real poll only when
        time cannot move.
        """
        if self._threads_busy:
            # An executor thread is still working: no jump past what it may schedule.
            # Its result arrives through call_soon_threadsafe, which wakes this poll.
            return real.select(None)
        if self.autojump_threshold > 0 and self.autojump:
            events = real.select(self.autojump_threshold)
            if events:
                return events
        if self._idle_wait(timeout):
            return []
        # Time cannot move (no deadline, or a manual clock at its target): wait for real
        # events; advance() from another thread and fds wake this poll.
        if self._on_stuck is not None:
            return self._stuck_select(real)
        return real.select(None)

    def _stuck_select(
        self, real: selectors.BaseSelector
    ) -> list[tuple[selectors.SelectorKey, int]]:
        """The idle poll when time cannot move and `_on_stuck` is set.

        Without a watched fd of its own (a socket, a pipe, an fd source), only another
        thread can still wake the loop (``call_soon_threadsafe``, a bottom half, `advance`):
        wait `_stuck_grace` real seconds for one, then call `_on_stuck` and return no
        events so the loop runs what the hook scheduled (it cancels the stuck tasks).
        """
        from ._hang import foreign_fds

        if foreign_fds(self._loop):
            return real.select(None)  # an fd may still wake it: not provably stuck
        events = real.select(self._stuck_grace)
        if events or getattr(real, "raw", None) or self._threads_busy:
            return events
        hook = self._on_stuck
        if hook is not None:
            try:
                hook()
            except Exception as exc:  # reported once, the loop goes on
                self._on_stuck = None
                loop = self._loop
                if loop is not None:
                    loop.call_exception_handler({
                        "message": f"VirtualClock stuck hook {hook!r} failed",
                        "exception": exc})
        return []

    def _idle_wait(self, timeout: float | None) -> bool:
        """Nothing is ready: move time, and say whether it moved.

        ``timeout`` is the wait in virtual seconds (None = no deadline).  Time moves to
        the next deadline (bounded by the target for a manual clock); the caller then
        polls without waiting.  False means time cannot move and the caller waits for
        real events.  Used by the loop's poll and by hand-run or nested iterations.
        """
        now = self._now
        limit = math.inf if self.autojump else self._target
        if timeout is not None:
            wait_end = now + timeout
            deadline = self._next_deadline()
            # Land exactly on the timer's own deadline (now + (when - now) may be off by
            # one ulp); a shorter wait (a source's prepare timeout) wins otherwise.
            step = deadline if now < deadline <= wait_end + 1e-9 else wait_end
            step = min(step, limit)
            if step > now:
                self._set(step)
                return True
        if limit != math.inf and limit > now:
            self._set(limit)  # manual: nothing due before the target; land on it
            return True
        return False

    def __repr__(self) -> str:
        mode = "autojump" if self.autojump else "manual"
        return f"<VirtualClock time={self._now:.6f} {mode} at {id(self):#x}>"


def _noop() -> None:
    pass


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
