"""The seam between a `MainContext` and asyncio: the loop port and the plain driver.

The context never imports asyncio.  What it needs from a loop comes through a **port**:

* `LoopPort` for an asyncio loop: the time (read through the loop at each call, so tools
  that swap the loop's class or clock, such as looptime, are followed), the exception
  handler, the debug slow-callback threshold, "is a task of this loop running here?", and
  the loop's state;
* `StandalonePort` for a context bound to no loop (``time.monotonic``, the logger).

How the context is *driven* is the driver's business.  Drivers call the context through
its documented driver contract (`MainContext._iterate`, `acquire`/`release`, ...) and the
context calls back the `Driver` methods below.  `PlainDriver` drives a context from
public loop API only, on any asyncio loop (the stock ``asyncio.run`` loop, uvloop):

* the context's epoll fd is one ``add_reader``;
* the earliest ready time is one ``call_at`` handle, re-armed only when the head moves
  earlier or the handle fired;
* GLib iterations run in one ``call_soon`` callback, queued when something becomes ready
  (a ready time, an fd, a wake-up, an attach); each runs prepare → check → dispatch
  without waiting, since asyncio did the waiting.  While sources stay ready the callback
  iterates again, up to `BATCH` times (a source made ready meanwhile queues nothing),
  then queues itself behind asyncio's callbacks, so sources interleave with them in
  bounded runs.  On the uvloop base the NVAL audit of watched fds is a timer too.

aioqloop's stock-base loop drives its own context from inside the selector instead (see
`aioqloop._stock`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from . import _engine

if TYPE_CHECKING:
    from .context import MainContext

__all__ = ("Driver", "LoopPort", "PlainDriver", "StandalonePort", "is_uvloop", "make_port")

logger: logging.Logger = logging.getLogger("aioqloop")

#: The most context iterations one loop callback of the plain driver runs while sources
#: stay ready; then the iteration is queued again, behind the loop's own callbacks.
BATCH = 64
_get_ident = threading.get_ident


def is_uvloop(loop: object) -> bool:
    """True for uvloop's loop class and its subclasses."""
    return any(cls.__module__.split(".")[0] == "uvloop" for cls in type(loop).__mro__)


def is_event_loop(obj: object) -> bool:
    """True for an asyncio event loop."""
    return isinstance(obj, asyncio.AbstractEventLoop)


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The loop running in this thread, or None."""
    return asyncio._get_running_loop()


class StandalonePort:
    """The port of a context bound to no asyncio loop."""

    loop: asyncio.AbstractEventLoop | None = None
    #: ``type(loop)`` when `time` was bound: the context calls `rebind` if it changes.
    loop_class: type = type(None)
    time: Callable[[], float] = staticmethod(time.monotonic)

    def rebind(self) -> Callable[[], float]:
        """The loop's class changed: bind `time` again and return it."""
        return self.time
    #: A `VirtualClock` whose idle rule hand-run iterations follow, or None.
    virtual_clock: Any = None

    def report(self, context: dict[str, Any]) -> None:
        """Report a hook's or callback's exception (``context`` as asyncio's handler takes)."""
        logger.error(context["message"], exc_info=context.get("exception"))

    def slow_threshold(self) -> float | None:
        """Seconds above which a dispatch is logged as slow (debug mode), or None."""
        return None

    def in_task(self) -> bool:
        """True while a task of this port's loop runs in the calling thread."""
        return False

    def running_here(self) -> bool:
        """True if the loop runs in the calling thread."""
        return False

    def is_closed(self) -> bool:
        return False

    def is_running(self) -> bool:
        return False

    def drive(self, ctx: MainContext) -> None:
        """Nothing drives a stand-alone context: it is iterated by hand."""


class LoopPort(StandalonePort):
    """The port of a context bound to the asyncio loop ``loop``."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop: asyncio.AbstractEventLoop | None = loop
        self.virtual_clock: Any = getattr(loop, "_aioq_clock", None)
        self.rebind()

    def rebind(self) -> Callable[[], float]:
        """Bind `time` to the loop's clock as its class has it now.

        Tools such as looptime swap the loop's class (and so its ``time()``) after the
        loop, and its context, were created; the context calls this once per iteration
        when ``type(loop)`` changed, so its deadlines follow the new clock.
        """
        loop: Any = self.loop
        self.loop_class: type = type(loop)
        self.time: Callable[[], float]
        if is_uvloop(loop) and type(loop).time is _uvloop_time(loop):
            # uvloop's time() is libuv's cached, millisecond-truncated clock: deadlines
            # computed from it fire up to 1 ms early.  Same epoch, fresh reading.
            self.time = time.monotonic
        else:
            self.time = loop.time
        return self.time

    def report(self, context: dict[str, Any]) -> None:
        loop = self.loop
        assert loop is not None
        if loop.is_closed():
            super().report(context)
        else:
            loop.call_exception_handler(context)

    def slow_threshold(self) -> float | None:
        loop = self.loop
        assert loop is not None
        return loop.slow_callback_duration if loop.get_debug() else None

    def in_task(self) -> bool:
        loop = self.loop
        return asyncio._get_running_loop() is loop and asyncio.current_task(loop) is not None

    def running_here(self) -> bool:
        return asyncio._get_running_loop() is self.loop

    def is_closed(self) -> bool:
        loop = self.loop
        assert loop is not None
        return loop.is_closed()

    def is_running(self) -> bool:
        loop = self.loop
        assert loop is not None
        return loop.is_running()

    def drive(self, ctx: MainContext) -> None:
        """Drive ``ctx`` from this loop's callbacks: a `PlainDriver`, which attaches
        itself (a context bound to a loop that is not an aioqloop loop)."""
        loop = self.loop
        assert loop is not None
        PlainDriver(ctx, loop)


def _uvloop_time(loop: object) -> object:
    """uvloop's own ``Loop.time`` (a subclass may override it, e.g. looptime)."""
    for cls in type(loop).__mro__:
        if cls.__module__.split(".")[0] == "uvloop" and "time" in vars(cls):
            return vars(cls)["time"]
    return None


def make_port(loop: object) -> StandalonePort:
    """The port for ``loop`` (an asyncio loop, or None for a stand-alone context)."""
    if loop is None:
        return StandalonePort()
    if not isinstance(loop, asyncio.AbstractEventLoop):
        raise TypeError(f"loop must be an asyncio event loop, not {type(loop).__name__}")
    if loop.is_closed():
        raise RuntimeError("cannot bind a MainContext to a closed event loop")
    return LoopPort(loop)


class Driver:
    """What a context calls on whatever drives it (the default does nothing).

    Every method is called on the context's thread, except where noted.
    """

    #: Called with the priority when a source becomes ready (set READY), or None.
    source_ready: Callable[[int], None] | None = None

    def prepare_needed(self) -> None:
        """A source with prepare/check hooks or fd watches was attached: a driver
        without a pre-poll hook must run an iteration so the hooks are called and the
        NVAL audit of watched fds is armed."""

    def deadline_changed(self, when: float) -> None:
        """The earliest ready time is now ``when`` (loop seconds)."""

    def epoll_changed(self) -> None:
        """The context's epoll set was rebuilt under the same fd number (see
        `aioqloop._fdpoll`): renew the loop's registration of that fd."""

    def iterated_by_hand(self) -> None:
        """`MainContext.iteration` or `pending` ran outside the driver."""

    def detach(self) -> None:
        """The context lets this driver go (it closes, or moves to another loop):
        withdraw everything registered with the loop."""

    def figures(self) -> tuple[int, int, int, int]:
        """For `MainContext.statistics`: iterations run from loop callbacks, how many
        of them dispatched nothing, deadline timers armed, timers fired (zeros for a
        driver that keeps no such figures)."""
        return (0, 0, 0, 0)


#: The driver of a context that nothing drives yet, or any more (stateless: shared).
DETACHED = Driver()


class _PyPlain:
    """The per-iteration methods of `PlainDriver` that the compiled core
    (`aioqloop._cengine.PlainCore`) replaces; the pure-Python engine's reference."""

    _ctx: MainContext
    _loop: asyncio.AbstractEventLoop
    _handle: asyncio.Handle | None
    _timer_when: float
    _closed: bool
    _timeout: float | None
    _owned: bool
    _iterations_run: int
    _empty_iterations: int
    _batch: int
    _fd: int | None
    _run_cb: Callable[[], None]
    _prepare_prios: list[int]

    if TYPE_CHECKING:
        def deadline_changed(self, when: float) -> None: ...

    def _kick(self, _priority: int = 0) -> None:
        # Inside a batch the batch itself looks again (has_work): no call_soon per
        # source made ready.
        if self._handle is None and not self._closed and not self._batch:
            try:
                self._handle = self._loop.call_soon(self._run_cb)
            except RuntimeError:
                # A closed loop has nothing to run (the context's entry points refuse
                # new work up front, see MainContext._check_loop_open); what is left
                # here is a notification in the middle of a change, which must finish.
                if not self._soon_refused():
                    raise

    def _soon_refused(self) -> bool:
        """``call_soon`` raised RuntimeError: True if the loop is closed (nothing to
        run, nothing to report)."""
        return self._loop.is_closed()

    def _acquire(self) -> bool:
        """Own the context from the loop's thread (`MainContext.acquire`)."""
        return self._ctx.acquire()

    def _again(self) -> None:
        """Another iteration is needed even if nothing is ready (prepare hooks to call,
        an fd audit to arm, a hand-run iteration to follow)."""
        if self._batch:
            self._batch = 2
        else:
            self._kick()

    def _on_readable(self) -> None:
        # Dispatch right here, as an add_reader callback would, instead of one more loop
        # iteration later (unless an iteration is already queued: keep FIFO order).
        if self._handle is not None or self._batch:
            self._ctx._poll_ready()  # the queued iteration (or this batch) looks next
            return
        # The batch flag is up while the poll records readiness: the iteration runs
        # right below, so no call_soon is queued for it (nor cancelled again).
        self._batch = 1
        try:
            self._ctx._poll_ready()
        except BaseException:
            self._batch = 0
            self._kick()  # what the poll recorded before it failed still gets its turn
            raise
        self._run()

    def poll(self, timeout: float | None) -> None:
        # asyncio did the waiting, and fd readiness came through _on_readable.
        self._timeout = timeout  # the prepare phase's wait: re-armed as a timer after

    def place(self, priority: float) -> None:
        self._ctx._dispatch(priority)

    def _run(self) -> None:
        """GLib iterations without a wait while sources are ready (at most `BATCH` in
        one loop callback); then arrange for the next."""
        self._handle = None
        ctx = self._ctx
        if self._closed:  # closing the context closes its driver first
            return
        if not self._owned:
            # The loop's thread owns the context from its first iteration on (GLib's
            # acquire, held while the loop drives it; released when the driver closes).
            if not self._acquire():
                self._rearm(0.01)  # another thread iterates it by hand: look again soon
                return
            self._owned = True
        more = True
        self._batch = 1
        try:
            for i in range(BATCH):
                if i and self._fd is not None:
                    # GLib polls in every iteration: fd events and wake-ups that came
                    # meanwhile compete with the sources that stayed ready.
                    ctx._poll_ready()
                more = self._iterate_once(ctx)
                if not more or self._closed:
                    break
        finally:
            self._batch = 0
            # After a KeyboardInterrupt/SystemExit the iteration is unfinished (a prepare
            # hook may not have said how long to wait): iterate again when the loop runs
            # again.  A spent batch lets the loop's own callbacks run first.
            if more:
                self._kick()

    def _iterate_once(self, ctx: MainContext) -> bool:
        """One iteration; True if another is due now, else the timer is armed."""
        self._timeout = None
        self._iterations_run += 1
        dispatched = ctx._iterate(self, block=True, dispatch=True)
        if not dispatched:
            self._empty_iterations += 1
        # Re-check after publishing "may sleep" (QEMU's notify_me handshake).
        again = self._batch == 2
        self._batch = 1
        if again or ctx._has_work():
            return True
        timeout = cast("float | None", self._timeout)  # poll() set it meanwhile
        if (timeout == 0.0 and dispatched
                and not ctx._wait_needs_prepare(self._timer_when != math.inf)):
            # Prepare's zero said "something is ready", and the dispatch ran it:
            # re-arming it would fire an empty iteration right away.
            timeout = None
        self._rearm(timeout)
        return False

    def _rearm(self, timeout: float | None) -> None:
        if self._closed:
            return
        ctx = self._ctx
        deadline = ctx._next_deadline()
        if timeout is not None:
            deadline = min(deadline, ctx._time() + timeout)
        if deadline < self._timer_when:
            self.deadline_changed(deadline)


if TYPE_CHECKING or _engine.core is None:
    _PlainBase = _PyPlain
else:
    class _PlainBase(_engine.core.PlainCore, _PyPlain):
        """The compiled core's driver methods first, the Python slow paths behind them."""


class PlainDriver(_PlainBase, Driver):
    """Drive ``ctx`` from ``loop`` callbacks (see the module docstring)."""

    def __init__(self, ctx: MainContext, loop: asyncio.AbstractEventLoop) -> None:
        self._ctx = ctx
        self._loop = loop
        self._handle: asyncio.Handle | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = math.inf
        self._closed = False
        # libuv rounds timers to milliseconds from a cached clock: aim just past it.
        self._slack = 0.001 if is_uvloop(loop) else 0.0
        self._timeout: float | None = None
        self._owned = False
        # Figures for MainContext.statistics(): iterations run from loop callbacks (and
        # how many dispatched nothing), deadline timers armed and fired.
        self._iterations_run = 0
        self._empty_iterations = 0
        self._timer_arms = 0
        self._timer_fires = 0
        #: 0 outside `_run`; 1 inside its batch of iterations; 2: one more was asked for.
        self._batch = 0
        self.source_ready: Callable[[int], None] | None = self._kick
        #: The bound `_run` that iterations are queued with (one, made here).
        self._run_cb = self._run
        #: The priorities of the context's prepare hooks: one list for the context's
        #: life, changed in place (`MainContext._wait_needs_prepare` reads it too).
        self._prepare_prios = ctx._prepare_hooks.prios
        # No fd of the context's until it needs one (a watched fd, a hand-run iteration):
        # other threads wake the loop through its own call_soon_threadsafe meanwhile.
        self._fd: int | None = None
        ctx._driver_attach(self, may_sleep=True, wake=self._wake_threadsafe)
        self._kick()

    def figures(self) -> tuple[int, int, int, int]:
        return (self._iterations_run, self._empty_iterations, self._timer_arms,
                self._timer_fires)

    def _wake_threadsafe(self) -> None:
        # Any thread, under the context's waker lock.
        with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to wake
            self._loop.call_soon_threadsafe(self._on_readable)

    def prepare_needed(self) -> None:
        self._again()

    def epoll_changed(self) -> None:
        if not self._closed and not self._loop.is_closed():
            if self._fd is not None:
                self._loop.remove_reader(self._fd)
            self._fd = self._ctx._driver_fileno()
            if self._fd is not None:
                self._loop.add_reader(self._fd, self._on_readable)

    def iterated_by_hand(self) -> None:
        self._again()

    def detach(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._handle is not None:
            self._handle.cancel()
        if self._timer is not None:
            self._timer.cancel()
        if not self._loop.is_closed() and self._fd is not None:
            self._loop.remove_reader(self._fd)
        if self._owned and self._ctx.is_owner():
            self._owned = False
            self._ctx.release()

    def deadline_changed(self, when: float) -> None:
        if when < self._timer_when and not self._closed:
            if self._loop.is_closed():
                return  # nothing to wake (see _kick)
            if self._timer is not None:
                self._timer.cancel()
            self._timer_when = when
            self._timer_arms += 1
            # A timer that fires a little early only costs a re-arm: the iteration
            # re-checks the heap against the context's clock, so nothing runs early.
            self._timer = self._loop.call_at(when + self._slack, self._on_timer)

    def _on_timer(self) -> None:
        self._timer_fires += 1
        self._timer = None
        self._timer_when = math.inf
        self._run()


if _engine.core is not None:
    # The core skips a deadline notification these methods would ignore (the base's does
    # nothing; the plain driver's returns while a timer is armed as early), and reads the
    # stock loop's clock (BaseEventLoop.time is time.monotonic()) itself while neither
    # was replaced.
    # The plain driver's upcalls (PlainCore, aioqloop/_csrc/plain.h), each called with the
    # driver first; no subclass overrides them.
    _engine.core.configure(plain_deadline_changed=PlainDriver.deadline_changed,
                           plain_acquire=PlainDriver._acquire,
                           plain_soon_refused=PlainDriver._soon_refused)
    _engine.core.configure_timers(noop_deadline=Driver.deadline_changed,
                                  plain_deadline=PlainDriver.deadline_changed,
                                  loop_time=asyncio.BaseEventLoop.time, time_module=time,
                                  monotonic=time.monotonic)
