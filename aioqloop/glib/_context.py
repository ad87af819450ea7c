"""The GLib facade's context side: `MainContext`, `MainLoop`, the default context.

Also the argument checks and the callback guard every part of the facade shares.  The
source facades live in `._sources`, which registers `_facade` here when it loads (it
imports this module, never the reverse).
"""

from __future__ import annotations

import asyncio
import logging
import math
import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from aioqloop.constants import (
    PRIORITY_DEFAULT,
    IOCondition,
)
from aioqloop.context import MainContext as _CoreContext
from aioqloop.context import get_main_context as _get_main_context
from aioqloop.mainloop import MainLoop as _CoreLoop
from aioqloop.source import Source as _CoreSource
from aioqloop.sources import IdleSource as _IdleSource

from . import _core
from ._compat import PollFD

if TYPE_CHECKING:
    from ._sources import Source

logger: logging.Logger = logging.getLogger("aioqloop.glib")

#: ``GLib.IO_IN`` and friends: PyGObject's aliases of `IOCondition` members.
IO_IN: Final = IOCondition.IN
IO_OUT: Final = IOCondition.OUT
IO_PRI: Final = IOCondition.PRI
IO_ERR: Final = IOCondition.ERR
IO_HUP: Final = IOCondition.HUP
IO_NVAL: Final = IOCondition.NVAL

#: ``G_MAXINT`` / ``G_MAXUINT`` (source ids are unsigned 32-bit).
MAXINT: Final = 2**31 - 1
MAXINT32: Final = 2**31 - 1
MAXUINT: Final = 2**32 - 1
MAXUINT32: Final = 2**32 - 1

_MININT: Final = -(2**31)
_US: Final = 1_000_000


class _RangeError(OverflowError, ValueError):
    """A number outside the C type's range (PyGObject raises `OverflowError`)."""


# ---------------------------------------------------------------------------
# Argument checks (PyGObject's marshalling: numbers, truncated to C integers)
# ---------------------------------------------------------------------------
def _c_int(value: object, what: str, low: int, high: int) -> int:
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise ValueError(f"{what} must be a finite number, not {value!r}")
        value = int(value)  # PyGObject truncates floats passed as C integers
    elif not isinstance(value, int):
        raise TypeError(f"{what}: must be a number, not {type(value).__name__}")
    if not low <= value <= high:
        raise _RangeError(f"{what}: {value} not in range {low} to {high}")
    return int(value)


def _uint(value: object, what: str) -> int:
    return _c_int(value, what, 0, MAXUINT)


def _priority(value: object) -> int:
    return _c_int(value, "priority", _MININT, MAXINT)


def _callable(fn: object) -> Callable[..., Any]:
    if not callable(fn):
        raise TypeError(f"Callback needs to be a function or method not {type(fn).__name__}")
    return fn


# ---------------------------------------------------------------------------
# Default context
# ---------------------------------------------------------------------------
_default_lock = threading.RLock()  # core default creation may re-enter via a policy
_global_default: _CoreContext | None = None


def _usable(ctx: _CoreContext) -> bool:
    loop = ctx.loop
    return not _core.is_closed(ctx) and (loop is None or not loop.is_closed())


def _default_core() -> _CoreContext:
    """The core context GLib's default context maps to: the core default context."""
    global _global_default
    ctx = _CoreContext.default()
    if asyncio._get_running_loop() is None:
        _global_default = ctx
    return ctx


def _core_context(context: object) -> _CoreContext:
    if context is None:
        return _default_core()
    if isinstance(context, MainContext):
        return context._ctx
    if isinstance(context, _CoreContext):
        return context
    raise TypeError(
        f"argument context: Expected GLib.MainContext, but got {type(context).__name__}"
    )


def _report_call(ctx: _CoreContext, exc: BaseException, fn: object) -> None:
    """Report an exception of a directly invoked function, as callback errors are."""
    sys.excepthook(type(exc), exc, exc.__traceback__)


# ---------------------------------------------------------------------------
# MainContext
# ---------------------------------------------------------------------------
_wrappers: weakref.WeakValueDictionary[int, MainContext] = weakref.WeakValueDictionary()
_wrappers_lock = threading.Lock()


def _wrap_context(core: _CoreContext) -> MainContext:
    with _wrappers_lock:
        w = _wrappers.get(id(core))
        if w is None or w._ctx is not core:
            w = object.__new__(MainContext)
            w._ctx = core
            _wrappers[id(core)] = w
        return w


class _ThreadDefaults(threading.local):
    def __init__(self) -> None:
        self.stack: list[MainContext] = []


_thread_defaults = _ThreadDefaults()


def _iterate_sources(core: _CoreContext, may_block: bool) -> bool:
    if may_block:
        return core.iteration(True)
    return _core.iterate_without_blocking(core)


class _GMainContext:
    """What ``super(GLib.MainContext, ctx)`` reaches: GLib's own ``g_main_context_*``.

    Under PyGObject, ``GLib.MainContext`` is an override of the introspected class; code
    that bypasses the override gets GLib's function itself.  Under gi.events every
    asyncio callback is a GSource, so that raw ``iteration`` also runs asyncio's queued
    callbacks; here it is one GLib iteration and then one round of the asyncio callbacks
    already queued on the context's stock-base loop (not inside a coroutine, and never on
    the uvloop base, whose queue is out of reach).
    """

    __slots__ = ()

    _ctx: _CoreContext

    def iteration(self, may_block: bool = True) -> bool:
        """``g_main_context_iteration``: sources, then asyncio's queued callbacks."""
        core = self._ctx
        queued = _core.asyncio_ready(core)
        dispatched = _iterate_sources(core, bool(may_block) and not queued)
        ran = _core.run_asyncio_ready(core) if queued else False
        return dispatched or ran

    def pending(self) -> bool:
        """``g_main_context_pending``: a source is ready or an asyncio callback queued."""
        return self._ctx.pending() or _core.asyncio_ready(self._ctx)


class MainContext(_GMainContext):
    """GLib's ``GMainContext``: a set of sources, iterated by a `MainLoop` or by hand.

    ``MainContext()`` is a new independent context bound to no asyncio loop: iterate it
    with `iteration` (or a `MainLoop` over it).  `default` is the context the ``*_add``
    functions use.  When the last reference to a context made with ``MainContext()``
    goes away its sources are destroyed, as GLib does at the last unref.
    """

    __slots__ = ("__weakref__", "_ctx")

    _ctx: _CoreContext

    def __new__(cls) -> MainContext:
        self = object.__new__(cls)
        core = _core.standalone_context()
        self._ctx = core
        with _wrappers_lock:
            _wrappers[id(core)] = self
        weakref.finalize(self, core.close)
        return self

    @classmethod
    def new(cls) -> MainContext:
        """``g_main_context_new``: the same as ``MainContext()``."""
        return cls()

    @staticmethod
    def default() -> MainContext:
        """The default context (``g_main_context_default``); see the module docstring."""
        return _wrap_context(_default_core())

    @staticmethod
    def ref_thread_default() -> MainContext:
        """The thread-default context (`push_thread_default`), else the default one."""
        pushed = MainContext.get_thread_default()
        return pushed if pushed is not None else _wrap_context(_default_core())

    def iteration(self, may_block: bool = True) -> bool:
        """Run one GLib iteration; True if a source was dispatched (may wait if ``may_block``).

        As under gi.events, ``iteration(False)`` also works inside a coroutine: it
        dispatches GLib sources only, never asyncio's own callbacks.
        """
        return _iterate_sources(self._ctx, bool(may_block))

    def pending(self) -> bool:
        """True if a source is ready; dispatches nothing (``g_main_context_pending``)."""
        return self._ctx.pending()

    def find_source_by_id(self, source_id: int) -> Source | None:
        """The attached, not destroyed source with this id, or None (also for id 0)."""
        sid = _uint(source_id, "source_id")
        if sid == 0:
            logger.warning("g_main_context_find_source_by_id: assertion 'source_id > 0' failed")
            return None
        src = self._ctx.find_source_by_id(sid)
        return None if src is None else _facade(src)

    def wakeup(self) -> None:
        """Make a blocking `iteration` return (any thread; ``g_main_context_wakeup``)."""
        self._ctx.wakeup()

    def is_owner(self) -> bool:
        """True if the calling thread is iterating (owns) this context."""
        return self._ctx.is_owner()

    def invoke_full(self, priority: int, function: Callable[..., Any], *user_data: Any) -> None:
        """Call ``function(*user_data)`` in the thread that owns this context.

        ``g_main_context_invoke_full``: if the calling thread owns the context, or the
        context is the default one and nobody owns it, the function is called at once
        (again and again while it returns True); otherwise it becomes an idle source at
        ``priority`` on this context, which the owner dispatches.  Any thread.
        """
        prio = _priority(priority)
        fn = _callable(function)
        ctx = self._ctx
        me = threading.get_ident()
        owner = _core.owner(ctx)
        direct = owner == me
        if not direct and owner is None:
            g = _global_default
            loop = asyncio._get_running_loop()
            running = _get_main_context(loop) if loop is not None else None
            direct = ctx is running or ctx is g
        # Acquired for the call, as GLib's invoke does.  Another thread may have taken
        # the context since its owner was read: then, as GLib, queue an idle instead.
        took = ctx.acquire() if direct else False
        if took or owner == me:
            try:
                while _truth(fn(*user_data)):
                    pass
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                _report_call(ctx, exc, fn)
            finally:
                if took:
                    ctx.release()
            return
        src = _IdleSource(priority=prio)
        src.set_callback(_guard(fn), *user_data)
        src.attach(ctx)

    # ----------------------------------------------- ownership (g_main_context_acquire)
    def acquire(self) -> bool:
        """Become the owner of this context if nobody else is; True on success.

        ``g_main_context_acquire``: recursive within the owning thread; each successful
        call needs one `release`.
        """
        return self._ctx.acquire()

    def release(self) -> None:
        """Undo one `acquire`; the last one gives the context up."""
        ctx = self._ctx
        if not ctx.is_owner():
            logger.warning("g_main_context_release: assertion 'context->owner_count > 0'")
            return
        ctx.release()

    # ------------------------------------- one iteration in steps (g_main_context_prepare...)
    def prepare(self) -> tuple[bool, int]:
        """``g_main_context_prepare``: ``(some source is ready, priority)``.

        The four steps (prepare, query, check, dispatch) map onto the core's single
        `iteration`: prepare and check report `pending`, query asks for no fds and no
        wait when something is ready, and dispatch runs ``iteration(False)``.
        """
        ready = self._ctx.pending()
        return (ready, PRIORITY_DEFAULT if ready else MAXINT)

    def query(self, max_priority: int) -> tuple[int, list[PollFD]]:
        """``g_main_context_query``: ``(timeout_ms, fds)``; see `prepare`.

        ``timeout_ms`` is 0 when something is ready, else -1; ``fds`` is one `PollFD`
        for the context's poll set (readable on any of its fds or on a wake-up), where
        GLib lists its wake-up fd and each source fd.  The caller should own the
        context (`acquire`), as GLib requires; otherwise the set may not be open yet and
        ``fds`` is empty.
        """
        fd = _core.poll_fileno(self._ctx)
        fds = [] if fd is None else [PollFD(fd, IOCondition.IN)]
        return (0 if self._ctx.pending() else -1, fds)

    def check(self, max_priority: int, fds: list[PollFD] | None = None) -> bool:
        """``g_main_context_check``: True if something is ready to dispatch; see `prepare`."""
        return self._ctx.pending()

    def dispatch(self) -> None:
        """``g_main_context_dispatch``: dispatch what is ready; see `prepare`."""
        self._ctx.iteration(False)

    # ------------------------------------------------------------ thread default
    @staticmethod
    def get_thread_default() -> MainContext | None:
        """The context pushed with `push_thread_default` in this thread, or None."""
        stack = _thread_defaults.stack
        return stack[-1] if stack else None

    def push_thread_default(self) -> None:
        """Make this the calling thread's default context (``push_thread_default``)."""
        _thread_defaults.stack.append(self)

    def pop_thread_default(self) -> None:
        """Undo the matching `push_thread_default`."""
        stack = _thread_defaults.stack
        if not stack or stack[-1] is not self:
            logger.warning(
                "g_main_context_pop_thread_default: assertion 'stack->head->data == context'"
            )
            return
        stack.pop()

    def pusher(self) -> _Pusher:
        """``g_main_context_pusher_new`` (GLib 2.64) as a context manager.

        ``with ctx.pusher():`` makes ``ctx`` the calling thread's default context for
        the block (`push_thread_default` on entry, the matching `pop_thread_default` on
        exit), as a ``g_autoptr(GMainContextPusher)`` does for a C scope.
        """
        return _Pusher(self)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, MainContext):
            return self._ctx is other._ctx
        return NotImplemented

    def __hash__(self) -> int:
        return hash(id(self._ctx))

    def __repr__(self) -> str:
        return f"<GLib.MainContext {self._ctx!r}>"


class _Pusher:
    """What `MainContext.pusher` returns: pushes on ``__enter__``, pops on ``__exit__``.

    One use only (a ``GMainContextPusher`` is freed once); entering it again raises
    `RuntimeError` and changes nothing.
    """

    __slots__ = ("_context", "_state")

    def __init__(self, context: MainContext) -> None:
        self._context = context
        self._state = 0  # 0 new, 1 pushed, 2 popped

    def __enter__(self) -> MainContext:
        if self._state != 0:
            raise RuntimeError("a MainContext pusher is used once")
        self._context.push_thread_default()
        self._state = 1
        return self._context

    def __exit__(self, *exc: object) -> None:
        self._state = 2
        self._context.pop_thread_default()

    def __repr__(self) -> str:
        state = ("new", "pushed", "popped")[self._state]
        return f"<GLib.MainContextPusher {state} {self._context!r}>"


def main_context_default() -> MainContext:
    """``g_main_context_default``: the same as `MainContext.default`."""
    return MainContext.default()


def _no_facade(core: _CoreSource) -> Source:
    raise RuntimeError("aioqloop.glib._sources is not loaded")


# The `Source` facade of a core source: `._sources` sets it when it loads (it imports this
# module, so this one cannot import it back).
_facade: Callable[[_CoreSource], Source] = _no_facade


def _excepthook(exc: BaseException) -> None:
    """Report a callback's exception as PyGObject does: through ``sys.excepthook``."""
    sys.excepthook(type(exc), exc, exc.__traceback__)


def _truth(result: object) -> bool:
    """A callback's verdict, as PyGObject reads it: a tuple by its first element."""
    if isinstance(result, tuple):
        return bool(result[0]) if result else False
    return bool(result)


def _guard(fn: Callable[..., Any]) -> Callable[..., bool]:
    """``fn`` as a GLib callback: its truth per `_truth`; an exception goes to
    ``sys.excepthook`` and removes the source (KeyboardInterrupt and SystemExit leave
    the loop, as everywhere in aioqloop)."""

    def call(*args: Any) -> bool:
        try:
            return _truth(fn(*args))
        except Exception as exc:
            _excepthook(exc)
            return False

    call.__wrapped__ = fn  # type: ignore[attr-defined]
    call.__qualname__ = getattr(fn, "__qualname__", repr(fn))
    return call


# ---------------------------------------------------------------------------
# MainLoop
# ---------------------------------------------------------------------------
class MainLoop:
    """GLib's ``GMainLoop``: `run` iterates its context until `quit`.

    ``run()`` works from plain synchronous code (it drives the default context's asyncio
    loop), nested from a source callback (``main_depth()`` is then 2 in callbacks), and
    on an independent `MainContext` (iterated by hand).  A `quit` before `run` is lost.
    """

    __slots__ = ("_context", "_loop")

    def __init__(self, context: MainContext | None = None, is_running: bool = False) -> None:
        core = _core_context(context)
        self._context = _wrap_context(core)
        self._loop = _CoreLoop(core, bool(is_running))

    @classmethod
    def new(cls, context: MainContext | None, is_running: bool) -> MainLoop:
        """``g_main_loop_new``."""
        return cls(context, is_running)

    def run(self) -> None:
        """Iterate until `quit` (see the class docstring)."""
        self._loop.run()

    async def run_async(self) -> None:
        """From a coroutine: wait, without blocking the asyncio loop, until `quit`."""
        await self._loop.run_async()

    def quit(self) -> None:
        """Make `run` return (any thread)."""
        self._loop.quit()

    def is_running(self) -> bool:
        """True between `run` and `quit`."""
        return self._loop.is_running()

    def get_context(self) -> MainContext:
        """The context this loop iterates."""
        return self._context

    def __repr__(self) -> str:
        return f"<GLib.MainLoop running={self.is_running()} {self._context!r}>"


# ---------------------------------------------------------------------------
# For gi.events (events.py): rebinding a facade to a loop's own context
# ---------------------------------------------------------------------------
def _default_core_if_made() -> _CoreContext | None:
    """The core context GLib's default maps to, if one was made (none is created)."""
    return _core.default_context_if_made()


def _rebind(facade: MainContext, core: _CoreContext) -> None:
    """Make ``facade`` speak for ``core`` from now on."""
    with _wrappers_lock:
        _wrappers.pop(id(facade._ctx), None)
        facade._ctx = core
        _wrappers[id(core)] = facade


def _make_default(loop: asyncio.AbstractEventLoop, core: _CoreContext) -> None:
    """Make ``loop`` (whose context is ``core``) the process default (main thread)."""
    global _global_default
    with _default_lock:
        _core.set_thread_default_loop(loop)
        _global_default = core


def get_monotonic_time() -> int:
    """Monotonic time in µs: the loop clock (``loop.time()``) times 10**6.

    The running loop's clock, else this thread's default loop's, else
    ``time.monotonic()`` — the clock `Source.get_time` and ready times use.
    """
    loop = asyncio._get_running_loop()
    if loop is None:
        g = _global_default
        loop = g.loop if g is not None and not g.closed else None
    if loop is not None and not loop.is_closed():
        return int(loop.time() * _US)
    return time.monotonic_ns() // 1000


def get_real_time() -> int:
    """Wall-clock time in µs since the epoch (``g_get_real_time``)."""
    return time.time_ns() // 1000
