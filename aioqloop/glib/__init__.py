"""PyGObject's ``GLib`` main-loop API on aioqloop: ``from aioqloop import glib as GLib``.

Code written against ``gi.repository.GLib`` (PyGObject 3.42+) runs unchanged: the same
names, signatures and GLib units — intervals in **milliseconds**, times in
**microseconds** of the monotonic clock (`get_monotonic_time` is the loop clock times 10**6),
prepare timeouts in milliseconds with -1 meaning "no timeout".

A thin layer, not a second main loop
------------------------------------
Every object here is a facade over the core: a `Source` owns one `aioqloop.Source`
(``source._src``), a `MainContext` one `aioqloop.MainContext`, a `MainLoop` one
`aioqloop.MainLoop`.  Sources created here and sources created with the asyncio-style
API live in the same context, obey the same priorities and show up in each other's
``find_source_by_id``.  The facade of a core source is remembered on the core source
(``_glib_facade``), so `main_current_source`, `MainContext.find_source_by_id` and
`Source.get_context` always hand back the same Python object.

A `Source` subclass speaks GLib units; a private core source (`_Adapter`) calls its
hooks and converts: ``prepare() -> (ready, timeout_ms)`` becomes seconds (negative =
none), ``check()`` and ``dispatch(callback, args)`` pass through.  The core only calls
the hooks a subclass defines, so an ``Idle`` or ``Timeout`` costs nothing per iteration.

Which context is "the default"
------------------------------
GLib has one process-wide default context, which is why ``GLib.idle_add(fn)`` from a
worker thread reaches the main loop.  Here `MainContext.default` is: the context of the
asyncio loop running in this thread, if any (like a pushed thread-default context);
otherwise the core's global default context, the one the **main thread's** aioqloop
loop runs (``aioqloop.run`` or any aioqloop loop made on the main thread takes it; before
one exists, a loop made on demand holds it, the one `MainLoop.run` drives from plain
synchronous code).  A ``GLibEventLoop`` takes its context from ``main_context`` as
gi.events does (a fresh one by default), never the default one implicitly.

Where this differs from PyGObject, deliberately
-----------------------------------------------
* Removing an unknown id (`source_remove`) returns False and logs GLib's critical
  message ("Source ID … was not found when attempting to remove it") on the
  ``aioqloop.glib`` logger instead of raising a Python warning, so test suites running
  with ``-W error`` are not broken by a benign double removal.
* Misuse that GLib answers with a critical and a dummy value raises instead: attaching
  an attached or destroyed source (`RuntimeError`), an fd that is not open (`OSError`),
  negative intervals or ids (an `OverflowError` that is also a `ValueError`).
* An exception in a ``prepare``/``check`` hook is reported and the source destroyed (as
  for a callback); PyGObject prints it and keeps calling the hook every iteration.
* ``finalize`` runs once the source is destroyed and no dispatch of it runs; PyGObject
  runs it when the Python wrapper is garbage-collected.  A custom source is kept alive
  by its context while attached (PyGObject destroys it when the last Python reference
  goes away).
* ``MainLoop.run`` from a coroutine raises `RuntimeError` (it would block the asyncio
  loop); ``await loop.run_async()`` is the non-blocking form.
"""

from __future__ import annotations

import asyncio
import logging
import math
import sys
import threading
import time
import warnings
import weakref
from collections.abc import Callable
from typing import Any, ClassVar, Final

from aioqloop import unix as _unix
from aioqloop.constants import (
    PRIORITY_DEFAULT,
    PRIORITY_DEFAULT_IDLE,
    PRIORITY_HIGH,
    PRIORITY_HIGH_IDLE,
    PRIORITY_LOW,
    SOURCE_CONTINUE,
    SOURCE_REMOVE,
    IOCondition,
)
from aioqloop.context import MainContext as _CoreContext
from aioqloop.context import current_source as _current_source
from aioqloop.context import get_main_context as _get_main_context
from aioqloop.context import main_depth as _main_depth
from aioqloop.mainloop import MainLoop as _CoreLoop
from aioqloop.source import Source as _CoreSource
from aioqloop.sources import FdSource as _FdSource
from aioqloop.sources import IdleSource as _IdleSource
from aioqloop.sources import TimeoutSource as _TimeoutSource

from . import _core
from ._core import FdTag as _FdRecord
from ._iochannel import IOChannel, IOFlags, IOStatus, SeekType

__all__ = (
    "PRIORITY_HIGH",
    "PRIORITY_DEFAULT",
    "PRIORITY_HIGH_IDLE",
    "PRIORITY_DEFAULT_IDLE",
    "PRIORITY_LOW",
    "SOURCE_CONTINUE",
    "SOURCE_REMOVE",
    "IOCondition",
    "IO_IN",
    "IO_OUT",
    "IO_PRI",
    "IO_ERR",
    "IO_HUP",
    "IO_NVAL",
    "MAXINT",
    "MAXINT32",
    "MAXUINT",
    "MAXUINT32",
    "MainContext",
    "MainLoop",
    "Source",
    "Idle",
    "Timeout",
    "idle_add",
    "idle_add_once",
    "timeout_add",
    "timeout_add_once",
    "timeout_add_seconds",
    "timeout_add_seconds_once",
    "source_remove",
    "unix_fd_add_full",
    "io_add_watch",
    "unix_signal_add",
    "child_watch_add",
    "main_depth",
    "main_current_source",
    "main_context_default",
    "get_monotonic_time",
    "get_real_time",
    "IOChannel",
    "IOFlags",
    "IOStatus",
    "SeekType",
    "PollFD",
    "Error",
    "PyGIDeprecationWarning",
    "PyGIWarning",
    "MAJOR_VERSION",
    "MINOR_VERSION",
    "MICRO_VERSION",
    "check_version",
    "threads_init",
    "get_current_time",
    "idle_source_new",
    "timeout_source_new",
    "timeout_source_new_seconds",
    "unix_signal_add_full",
)

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
        if direct:
            took = ctx.acquire()  # acquired for the call, as GLib's invoke does
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


# ---------------------------------------------------------------------------
# Sources
# ---------------------------------------------------------------------------
def _remember(core: _CoreSource, facade: Source) -> None:
    # Weakly: a facade holds its core source, never the other way round, so that a
    # destroyed source and what its callback holds (an fd watch's socket) go away by
    # reference counting alone, and a custom source goes away with its last Python
    # reference, as in PyGObject.
    core._glib_facade_ref = weakref.ref(facade)  # type: ignore[attr-defined]


def _facade(core: _CoreSource) -> Source:
    """The `Source` facade of a core source (made on first use, remembered weakly)."""
    ref = core.__dict__.get("_glib_facade_ref")
    f: Source | None = ref() if ref is not None else None
    if f is None:
        cls: type[Source]
        if isinstance(core, _IdleSource):
            cls = Idle
        elif isinstance(core, _TimeoutSource):
            cls = Timeout
        else:
            cls = Source
        f = object.__new__(cls)
        f._src = core
        _remember(core, f)
    return f


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


def _prepare_result(result: object) -> tuple[bool, float | None]:
    """Convert a GLib ``prepare()`` result (ready, timeout_ms) to the core's seconds."""
    if result is False:
        return (False, None)  # PyGObject accepts a bare False
    if not isinstance(result, tuple):
        raise TypeError(
            f"source prepare function must return a tuple or False, not {type(result).__name__}"
        )
    if len(result) != 2:
        raise TypeError("source prepare function return tuple must be exactly 2 elements long")
    ready, timeout_ms = result
    if not isinstance(timeout_ms, (int, float)) or (
        isinstance(timeout_ms, float) and math.isnan(timeout_ms)
    ):
        raise TypeError(f"prepare() timeout must be a number of ms, not {timeout_ms!r}")
    if timeout_ms < 0:
        return (bool(ready), None)
    return (bool(ready), timeout_ms / 1000.0)


class _Adapter(_CoreSource):
    """The core source behind a `Source` subclass: calls its GLib-unit hooks.

    It holds its facade weakly: when the last Python reference to a custom source goes,
    the facade's ``__del__`` destroys it and calls ``finalize``, as PyGObject does.
    """

    def __init__(self, facade: Source) -> None:
        super().__init__()
        self._facade_ref = weakref.ref(facade)

    def dispatch(self, callback: Callable[..., Any] | None, args: tuple[Any, ...]) -> bool:
        f = self._facade_ref()
        if f is None:
            return False
        try:
            # PyGObject hands dispatch (None, None) when no callback was set.
            return _truth(f.dispatch(callback, None if callback is None else args))
        except Exception as exc:
            _excepthook(exc)
            return False

    def _hook_failed(self, exc: Exception) -> None:
        _excepthook(exc)
        self.destroy()

    def __repr__(self) -> str:
        f = self._facade_ref()
        name = type(f).__name__ if f is not None else "Source"
        return super().__repr__().replace("_Adapter", name, 1)


class _Disposing(_CoreSource):
    """Mixed into a core source's class by `Source.set_dispose_function`."""

    def finalize(self) -> None:
        if "_glib_dispose" in self.__dict__:
            _run_dispose(self, _facade(self))
        super().finalize()


def _run_dispose(src: _CoreSource, facade: Source) -> None:
    fn = src.__dict__.pop("_glib_dispose")
    try:
        fn(facade)
    except Exception as exc:
        _excepthook(exc)


_DISPOSING: dict[type, type] = {}


class _AdapterP(_Adapter):
    def prepare(self) -> tuple[bool, float | None]:
        f = self._facade_ref()
        if f is None:
            return (False, None)
        try:
            return _prepare_result(f.prepare())  # type: ignore[attr-defined]
        except Exception as exc:
            self._hook_failed(exc)
            return (False, None)


class _AdapterC(_Adapter):
    def check(self) -> bool:
        f = self._facade_ref()
        if f is None:
            return False
        try:
            return bool(f.check())  # type: ignore[attr-defined]
        except Exception as exc:
            self._hook_failed(exc)
            return False


class _AdapterPC(_AdapterP, _AdapterC):
    pass


_ADAPTERS: Final = {
    (False, False): _Adapter,
    (True, False): _AdapterP,
    (False, True): _AdapterC,
    (True, True): _AdapterPC,
}


class _SecondsTimeout(_TimeoutSource):
    """``g_timeout_source_new_seconds``: whole seconds, coalesced per session (§2.7)."""

    def attach(self, context: _CoreContext | None = None) -> int:
        sid = super().attach(context)
        ctx = self.context
        if ctx is not None:
            self.set_ready_time(_coalesced_expiry(_core.now(ctx), self.interval))
        return sid

    def dispatch(self, callback: Callable[..., Any] | None, args: tuple[Any, ...]) -> bool:
        keep = super().dispatch(callback, args)
        if keep and not self.is_destroyed:
            self.set_ready_time(_coalesced_expiry(self.time(), self.interval))
        return keep


_perturb_us: int | None = None


def _timer_perturb() -> int:
    """GLib's per-session phase for seconds timeouts, in µs (``g_str_hash`` of the bus
    address or host name, modulo one second), so all of them wake together."""
    global _perturb_us
    if _perturb_us is None:
        import os

        key = os.environ.get("DBUS_SESSION_BUS_ADDRESS") or os.environ.get("HOSTNAME")
        if key is None:
            _perturb_us = 0
        else:
            h = 5381
            for byte in key.encode():
                signed = byte - 256 if byte > 127 else byte  # g_str_hash reads signed chars
                h = (h * 33 + signed) & 0xFFFFFFFF
            as_int = h - 2**32 if h >= 2**31 else h
            _perturb_us = abs(as_int) % _US
    return _perturb_us


def _coalesced_expiry(now: float, seconds: float) -> float:
    """Expiry (loop seconds) of a seconds timeout started at ``now``, as GLib rounds it.

    A sub-second remainder of at least 250 ms rounds up to the next second of the
    session's phase, a smaller one rounds down.
    """
    perturb = _timer_perturb()
    expiration = int(now * _US) + int(seconds) * _US - perturb
    remainder = expiration % _US
    if remainder >= _US // 4:
        expiration += _US
    expiration -= remainder
    expiration += perturb
    return expiration / _US


class Source:
    """GLib's ``GSource``: subclass it and define ``prepare``/``check``/``dispatch``.

    * ``prepare(self) -> (ready, timeout_ms)``: before the poll; ``timeout_ms`` is the
      longest wait in milliseconds, -1 for none (a bare ``False`` is also accepted).
    * ``check(self) -> bool``: after the poll, True if ready.
    * ``dispatch(self, callback, args) -> bool``: True keeps the source; ``callback`` and
      ``args`` come from `set_callback` (``args`` is the tuple of user data; both are None
      when no callback was set).  The default calls ``callback(*args)``.
    * ``finalize(self)``: once, after the source is destroyed.

    Undefined hooks are not called.  The constructor takes no arguments, but a subclass
    may define its own ``__init__`` (calling ``super().__init__()`` is optional).
    """

    _src: _CoreSource
    _adapter_cache: ClassVar[dict[type, type[_Adapter]]] = {}

    def __new__(cls, *args: Any, **kwargs: Any) -> Source:
        self = object.__new__(cls)
        self._src = self._make_core(args, kwargs)
        _remember(self._src, self)
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # The core source was made in __new__, so that subclasses which never call
        # Source.__init__ still work, as with PyGObject.
        pass

    def _make_core(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> _CoreSource:
        cls = type(self)
        adapter = Source._adapter_cache.get(cls)
        if adapter is None:
            key = (callable(getattr(cls, "prepare", None)), callable(getattr(cls, "check", None)))
            adapter = Source._adapter_cache[cls] = _ADAPTERS[key]
        return adapter(self)

    # -------------------------------------------------------------- hooks
    def dispatch(self, callback: Callable[..., Any] | None, args: tuple[Any, ...] | None) -> bool:
        """Default dispatch: ``callback(*args)`` and its truth; False with no callback."""
        if callback is None:
            return False
        return bool(callback(*(args or ())))

    def finalize(self) -> None:
        """Called once, when the last Python reference to a custom source goes away."""

    def __del__(self) -> None:
        # PyGObject: a custom source dies with its Python wrapper, destroyed (detached
        # from its context, not dispatched again) and finalized there and then.
        src = self.__dict__.get("_src")
        if src is None:
            return
        if "_glib_dispose" in src.__dict__ and (isinstance(src, _Adapter) or src.context is None):
            # The wrapper's end is GLib's last unref here: a custom source's, or one
            # that no context holds.  The dispose function sees this very wrapper.
            _run_dispose(src, self)
        if isinstance(src, _Adapter):
            try:
                src.destroy()
            except Exception:  # a context closed under us: nothing left to detach
                pass
            self.finalize()

    # ------------------------------------------------------------- methods
    def attach(self, context: MainContext | None = None) -> int:
        """Attach to ``context`` (None = the default context); return the id (> 0)."""
        return self._src.attach(_core_context(context))

    def destroy(self) -> None:
        """Remove the source from its context (idempotent; ``g_source_destroy``)."""
        self._src.destroy()

    def is_destroyed(self) -> bool:
        """True once destroyed or once its callback returned ``SOURCE_REMOVE``."""
        return self._src.is_destroyed

    def get_context(self) -> MainContext | None:
        """The context it was attached to (still after destroy), or None."""
        ctx = self._src.context
        if ctx is None or _core.is_closed(ctx):
            return None
        return _wrap_context(ctx)

    def get_id(self) -> int:
        """The id in its context, or 0 if not attached."""
        return self._src.id

    def set_callback(self, fn: Callable[..., Any] | None, *user_data: Any) -> None:
        """Set the callback; it is called as ``fn(*user_data)``.

        Current PyGObject's varargs form (3.42 and older took exactly one ``user_data``,
        defaulting to None; pass it explicitly to be portable across versions).
        """
        if fn is not None:
            _callable(fn)
            if not isinstance(self._src, _Adapter):
                # A custom source's dispatch gets the callback as given; built-in
                # sources call it directly, so its verdict and errors are read as
                # PyGObject reads them.
                fn = _guard(fn)
        self._src.set_callback(fn, *user_data)

    @staticmethod
    def remove(tag: int) -> bool:
        """``g_source_remove``: destroy the source with id ``tag`` in the default context."""
        return source_remove(tag)

    def get_current_time(self) -> float:
        """Deprecated: wall-clock time in seconds (use `get_time` or `get_real_time`)."""
        warnings.warn(
            "GLib.Source.get_current_time is deprecated, "
            "use GLib.Source.get_time() or GLib.get_real_time() instead",
            PyGIDeprecationWarning,
            stacklevel=2,
        )
        return get_real_time() * 1e-6

    def add_poll(self, fd: PollFD) -> None:
        """``g_source_add_poll``: poll ``fd.fd`` for ``fd.events``; ``fd.revents`` then
        holds what the last poll saw.

        Unlike GLib, where only ``check`` decides, an event on the fd makes the source
        ready by itself (as `add_unix_fd` does).  An fd that is not open is accepted and
        never polled; its ``revents`` reads ``IO_NVAL``.
        """
        if not isinstance(fd, PollFD):
            raise TypeError(f"argument fd: Expected GLib.PollFD, but got {type(fd).__name__}")
        if fd._source is not None:
            raise RuntimeError("this PollFD is already added to a source")
        try:
            fd._tag = self._src.add_unix_fd(fd.fd, fd.events)
        except OSError:
            fd._tag = None
        fd._source = self._src

    def remove_poll(self, fd: PollFD) -> None:
        """``g_source_remove_poll``: stop polling ``fd``."""
        if not isinstance(fd, PollFD):
            raise TypeError(f"argument fd: Expected GLib.PollFD, but got {type(fd).__name__}")
        if fd._source is not self._src:
            raise ValueError("this PollFD was not added to this source")
        if fd._tag is not None:
            self._src.remove_unix_fd(fd._tag)
        fd._source = fd._tag = None

    def get_priority(self) -> int:
        """The priority (lower is more urgent)."""
        return self._src.priority

    def set_priority(self, priority: int) -> None:
        """Change the priority (children follow their parent)."""
        self._src.priority = _priority(priority)

    @property
    def priority(self) -> int:
        """The priority, as `get_priority` / `set_priority`."""
        return self._src.priority

    @priority.setter
    def priority(self, value: int) -> None:
        self.set_priority(value)

    def get_can_recurse(self) -> bool:
        """If False (the default) the source is blocked while it dispatches."""
        return self._src.can_recurse

    def set_can_recurse(self, can_recurse: bool) -> None:
        """Allow (True) or forbid a nested iteration to dispatch this source again."""
        self._src.can_recurse = bool(can_recurse)

    @property
    def can_recurse(self) -> bool:
        """As `get_can_recurse` / `set_can_recurse`."""
        return self._src.can_recurse

    @can_recurse.setter
    def can_recurse(self, value: bool) -> None:
        self.set_can_recurse(value)

    def get_name(self) -> str | None:
        """The name given with `set_name`, or None."""
        return self._src.name

    def set_name(self, name: str | None) -> None:
        """Name the source (shown in reprs and statistics)."""
        self._src.name = name

    def set_static_name(self, name: str) -> None:
        """``g_source_set_static_name`` (GLib 2.70): `set_name` without GLib's copy of
        the string, which a Python string never needs; the same as `set_name` here."""
        self.set_name(name)

    def set_dispose_function(self, dispose: Callable[[Source], Any]) -> None:
        """``g_source_set_dispose_function`` (GLib 2.64): call ``dispose(source)`` once,
        when GLib would drop the source's last reference, before any ``finalize``.

        Here that is when the source is destroyed and no dispatch of it runs (for a
        custom source, ahead of the `finalize` that comes with its wrapper's end); a
        source never attached nor destroyed gets it when its wrapper goes away.  Like
        GLib, a source takes one dispose function: setting a second raises
        `RuntimeError`.  An exception in ``dispose`` goes to ``sys.excepthook``.
        """
        fn = _callable(dispose)
        src = self._src
        if "_glib_dispose" in src.__dict__:
            raise RuntimeError("this source already has a dispose function")
        if src._finalized:
            raise RuntimeError("this source is already finalized")
        base = type(src)
        cls = _DISPOSING.get(base)
        if cls is None:
            cls = _DISPOSING[base] = type(base.__name__, (_Disposing, base), {})
        src._glib_dispose = fn  # type: ignore[attr-defined]
        # The core calls a source's finalize hook once it is destroyed and no dispatch
        # of it runs, GLib's last unref: a subclass of the same layout adds the call.
        src.__class__ = cls

    def set_ready_time(self, ready_time: int) -> None:
        """Make the source ready at ``ready_time`` µs of the monotonic clock.

        -1 means never, 0 or a past time means now; dispatch does not reset it.
        Callable from any thread.
        """
        us = _c_int(ready_time, "ready_time", -(2**63), 2**63 - 1)
        if self._src.is_destroyed:
            return
        self._src.set_ready_time(-1 if us == -1 else us / _US)

    def get_ready_time(self) -> int:
        """The ready time in µs of the monotonic clock, or -1 for none."""
        rt = self._src.ready_time
        if rt == -1:
            return -1
        if math.isinf(rt):
            # -inf: "ready since forever" (a past time); +inf: never.
            return 0 if rt < 0 else -1
        return round(rt * _US)

    def get_time(self) -> int:
        """The context's cached time for this iteration, in µs (``g_source_get_time``)."""
        return round(self._src.time() * _US)

    def add_unix_fd(self, fd: int, events: IOCondition | int) -> _FdRecord:
        """Watch ``fd`` for ``events``; return the tag for `query_unix_fd` and friends."""
        return self._src.add_unix_fd(fd, events)

    def modify_unix_fd(self, tag: _FdRecord, new_events: IOCondition | int) -> None:
        """Change the events watched for ``tag``."""
        self._src.modify_unix_fd(tag, new_events)

    def remove_unix_fd(self, tag: _FdRecord) -> None:
        """Stop watching the fd of ``tag``."""
        self._src.remove_unix_fd(tag)

    def query_unix_fd(self, tag: _FdRecord) -> IOCondition:
        """The events seen on ``tag``'s fd at the last poll."""
        return self._src.query_unix_fd(tag)

    def add_child_source(self, child_source: Source) -> None:
        """Add a child: it takes this priority, dispatches first and readies its parent."""
        if not isinstance(child_source, Source):
            raise TypeError(
                f"child_source must be a GLib.Source, not {type(child_source).__name__}"
            )
        self._src.add_child_source(child_source._src)

    def remove_child_source(self, child_source: Source) -> None:
        """Detach and destroy a child added with `add_child_source`."""
        if not isinstance(child_source, Source):
            raise TypeError(
                f"child_source must be a GLib.Source, not {type(child_source).__name__}"
            )
        self._src.remove_child_source(child_source._src)

    def __repr__(self) -> str:
        return f"<GLib.{type(self).__name__} {self._src!r}>"


class Idle(Source):
    """``g_idle_source_new``: ready whenever nothing more urgent is.

    ``Idle(priority)``: as in PyGObject, a priority equal to `PRIORITY_DEFAULT` leaves
    the idle default, `PRIORITY_DEFAULT_IDLE`.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> Idle:
        return super().__new__(cls)  # type: ignore[return-value]

    def __init__(self, priority: int = PRIORITY_DEFAULT) -> None:
        if priority != PRIORITY_DEFAULT:
            self.set_priority(priority)

    def _make_core(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> _CoreSource:
        return _IdleSource()


class Timeout(Source):
    """``g_timeout_source_new``: ready every ``interval`` milliseconds.

    ``Timeout(interval=0, priority=PRIORITY_DEFAULT)``.
    """

    def __new__(cls, interval: int = 0, *args: Any, **kwargs: Any) -> Timeout:
        self = object.__new__(cls)
        self._src = _TimeoutSource(_uint(interval, "interval") / 1000.0)
        _remember(self._src, self)
        return self

    def __init__(self, interval: int = 0, priority: int = PRIORITY_DEFAULT) -> None:
        if priority != PRIORITY_DEFAULT:
            self.set_priority(priority)


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
# Functions
# ---------------------------------------------------------------------------
def _check_kwargs(kwargs: dict[str, Any]) -> int | None:
    if not kwargs:
        return None
    unknown = set(kwargs) - {"priority"}
    if unknown:
        raise TypeError(f"unexpected keyword argument(s): {', '.join(sorted(unknown))}")
    return _priority(kwargs["priority"])


def idle_add(function: Callable[..., Any], *user_data: Any, **kwargs: Any) -> int:
    """Call ``function(*user_data)`` when idle, while it returns True; return the id.

    Keyword ``priority`` (default `PRIORITY_DEFAULT_IDLE`).  Any thread.
    """
    prio = _check_kwargs(kwargs)
    fn = _callable(function)
    src = _IdleSource(priority=PRIORITY_DEFAULT_IDLE if prio is None else prio)
    src.set_callback(_guard(fn), *user_data)
    return src.attach(_default_core())


def timeout_add(interval: int, function: Callable[..., Any], *user_data: Any, **kwargs: Any) -> int:
    """Call ``function(*user_data)`` every ``interval`` ms while it returns True.

    Keyword ``priority`` (default `PRIORITY_DEFAULT`); returns the source id.
    """
    ms = _uint(interval, "interval")
    prio = _check_kwargs(kwargs)
    fn = _callable(function)
    src = _TimeoutSource(ms / 1000.0, priority=PRIORITY_DEFAULT if prio is None else prio)
    src.set_callback(_guard(fn), *user_data)
    return src.attach(_default_core())


def timeout_add_seconds(
    interval: int, function: Callable[..., Any], *user_data: Any, **kwargs: Any
) -> int:
    """Call ``function(*user_data)`` every ``interval`` seconds while it returns True.

    Like GLib, expiries are coalesced: all seconds timeouts of the session fire on the
    same sub-second phase, so the first call lands within [interval - 0.25 s,
    interval + 0.75 s).
    """
    secs = _uint(interval, "interval")
    prio = _check_kwargs(kwargs)
    fn = _callable(function)
    src = _SecondsTimeout(float(secs), priority=PRIORITY_DEFAULT if prio is None else prio)
    src.set_callback(_guard(fn), *user_data)
    return src.attach(_default_core())


def _once(fn: Callable[..., Any]) -> Callable[..., bool]:
    """``fn`` as a ``GSourceOnceFunc``: called once, its result ignored, the source gone."""
    guarded = _guard(fn)

    def call(*args: Any) -> bool:
        guarded(*args)
        return False

    call.__wrapped__ = fn  # type: ignore[attr-defined]
    call.__qualname__ = getattr(fn, "__qualname__", repr(fn))
    return call


def idle_add_once(function: Callable[..., Any], *user_data: Any, **kwargs: Any) -> int:
    """``g_idle_add_once`` (GLib 2.74): call ``function(*user_data)`` once when idle.

    Its return value is ignored and the source is removed after the call; returns the
    source id.  Keyword ``priority`` (default `PRIORITY_DEFAULT_IDLE`, GLib's only one).
    """
    prio = _check_kwargs(kwargs)
    fn = _callable(function)
    src = _IdleSource(priority=PRIORITY_DEFAULT_IDLE if prio is None else prio)
    src.set_callback(_once(fn), *user_data)
    return src.attach(_default_core())


def timeout_add_once(
    interval: int, function: Callable[..., Any], *user_data: Any, **kwargs: Any
) -> int:
    """``g_timeout_add_once`` (GLib 2.74): call ``function(*user_data)`` once, after
    ``interval`` milliseconds; its return value is ignored.  Returns the source id.

    Keyword ``priority`` (default `PRIORITY_DEFAULT`, GLib's only one).
    """
    ms = _uint(interval, "interval")
    prio = _check_kwargs(kwargs)
    fn = _callable(function)
    src = _TimeoutSource(ms / 1000.0, priority=PRIORITY_DEFAULT if prio is None else prio)
    src.set_callback(_once(fn), *user_data)
    return src.attach(_default_core())


def timeout_add_seconds_once(
    interval: int, function: Callable[..., Any], *user_data: Any, **kwargs: Any
) -> int:
    """``g_timeout_add_seconds_once`` (GLib 2.78): call ``function(*user_data)`` once,
    after ``interval`` seconds, coalesced as `timeout_add_seconds` is; its return value
    is ignored.  Returns the source id.  Keyword ``priority`` (default
    `PRIORITY_DEFAULT`, GLib's only one).
    """
    secs = _uint(interval, "interval")
    prio = _check_kwargs(kwargs)
    fn = _callable(function)
    src = _SecondsTimeout(float(secs), priority=PRIORITY_DEFAULT if prio is None else prio)
    src.set_callback(_once(fn), *user_data)
    return src.attach(_default_core())


def source_remove(tag: int) -> bool:
    """Destroy the source with id ``tag`` in the default context.

    Returns True if it existed.  For an unknown id it returns False and logs GLib's
    critical message on the ``aioqloop.glib`` logger (GLib prints it to stderr).
    """
    sid = _uint(tag, "tag")
    if sid == 0:
        logger.warning("g_source_remove: assertion 'tag > 0' failed")
        return False
    src = _default_core().find_source_by_id(sid)
    if src is None:
        logger.warning("Source ID %d was not found when attempting to remove it", sid)
        return False
    src.destroy()
    return True


def unix_fd_add_full(
    priority: int,
    fd: int,
    condition: IOCondition | int,
    function: Callable[..., Any],
    *user_data: Any,
) -> int:
    """Call ``function(fd, revents, *user_data)`` while ``condition`` holds on ``fd``.

    ``g_unix_fd_add_full`` on the default context; level-triggered; returns the id.
    """
    prio = _priority(priority)
    fn = _callable(function)
    src = _FdSource(fd, condition, priority=prio)
    src.set_callback(_guard(fn), *user_data)
    return src.attach(_default_core())


def _io_add_watch_get_args(
    channel: Any, priority_: Any, condition: Any, *cb_and_user_data: Any, **kwargs: Any
) -> tuple[Any, int, Any, Callable[..., Any], tuple[Any, ...]]:
    """PyGObject's reading of `io_add_watch`'s arguments:
    ``(channel, priority, condition, callback, user_data)``.

    Accepted, as in PyGObject 3.50: ``(channel, priority, condition, callback, *data)``;
    the old ``(channel, condition, callback, *data)`` with an optional ``priority=``
    keyword (each warns with `PyGIDeprecationWarning`).  ``channel`` may be an
    `IOChannel`, an fd or an object with ``fileno()``; the callback gets it back as given.
    """
    if not isinstance(priority_, int) or isinstance(priority_, IOCondition):
        warnings.warn(
            "Calling io_add_watch without priority as second argument is deprecated",
            PyGIDeprecationWarning,
            stacklevel=1,  # attributed to this module, as PyGObject's are to its override
        )
        user_data = cb_and_user_data
        callback = condition
        condition = priority_
        if not callable(callback):
            raise TypeError("third argument must be callable")
        if "priority" in kwargs:
            warnings.warn(
                "Calling io_add_watch with priority keyword argument is deprecated, "
                "put it as second positional argument",
                PyGIDeprecationWarning,
                stacklevel=1,
            )
            priority_ = kwargs["priority"]
        else:
            priority_ = PRIORITY_DEFAULT
    else:
        if len(cb_and_user_data) < 1 or not callable(cb_and_user_data[0]):
            raise TypeError("expecting callback as fourth argument")
        callback = cb_and_user_data[0]
        user_data = cb_and_user_data[1:]
    return channel, priority_, condition, callback, tuple(user_data)


class _IOWatch(_CoreSource):
    """``g_io_add_watch``'s source: one fd, the callback sees only what was asked for.

    GLib's IO watch is ready when ``(poll revents | channel buffer condition) &
    condition`` is non-empty and passes the callback exactly that.  Here the fd's poll
    events ready the source; a dispatch that finds none of the asked-for conditions does
    not call the callback, and one that finds only HUP or NVAL also stops polling the fd
    (that state is final, and a level-triggered HUP would otherwise be reported every
    iteration, starving lower priorities, where GLib's watch merely never fires).
    """

    def __init__(
        self, channel: Any, condition: int, priority: int, ch: IOChannel | None
    ) -> None:
        super().__init__(priority=priority)
        self._condition = IOCondition(int(condition))
        self._iochannel = ch
        self._tag: _FdRecord | None = self.add_unix_fd(
            ch.unix_get_fd() if ch is not None else channel, self._condition
        )
        self._channel = channel

    def prepare(self) -> tuple[bool, float | None]:
        ch = self._iochannel
        if ch is not None and ch.get_buffer_condition() & self._condition:
            return (True, 0.0)
        return (False, None)

    def dispatch(self, callback: Callable[..., Any] | None, args: tuple[Any, ...]) -> bool:
        tag = self._tag
        revents = int(self.query_unix_fd(tag)) if tag is not None else 0
        if self._iochannel is not None:
            revents |= int(self._iochannel.get_buffer_condition())
        got = revents & self._condition
        if not got:
            if tag is not None and revents & (IOCondition.HUP | IOCondition.NVAL):
                self.remove_unix_fd(tag)
                self._tag = None
            return True
        if callback is None:
            return False
        return bool(callback(self._channel, IOCondition(got), *args))

    def finalize(self) -> None:
        # Let go of the channel (a socket, a file) as soon as the watch is gone.
        self._channel = self._iochannel = None


def io_add_watch(*args: Any, **kwargs: Any) -> int:
    """``io_add_watch(channel, priority, condition, callback, *user_data)`` -> source id.

    ``callback(channel, condition, *user_data)`` is called while one of ``condition``
    holds on the channel (an `IOChannel`, an fd or a file-like object, handed back as
    given), with exactly the conditions that hold among those asked for.  The older
    calling conventions PyGObject accepts still work and warn (see
    `_io_add_watch_get_args`).
    """
    channel, priority, condition, func, user_data = _io_add_watch_get_args(*args, **kwargs)
    prio = _priority(priority)
    ch = channel if isinstance(channel, IOChannel) else None
    src = _IOWatch(channel, condition, prio, ch)
    src.set_callback(_guard(func), *user_data)
    return src.attach(_default_core())


def unix_signal_add(
    priority: int, signum: int, handler: Callable[..., Any], *user_data: Any
) -> int:
    """Call ``handler(*user_data)`` on the loop when signal ``signum`` arrives.

    ``g_unix_signal_add_full`` on the default context: every source for a signal fires;
    return True to keep watching.  Returns the source id.
    """
    prio = _priority(priority)
    fn = _guard(_callable(handler))
    return _unix.signal_add(signum, fn, *user_data, priority=prio, context=_default_core())


#: ``g_unix_signal_add_full``: PyGObject exposes both names for the same function.
unix_signal_add_full = unix_signal_add


def _child_watch_add_get_args(
    priority_or_pid: Any, pid_or_callback: Any, *args: Any, **kwargs: Any
) -> tuple[int, Any, Callable[..., Any], tuple[Any, ...]]:
    """PyGObject's reading of `child_watch_add`'s arguments: ``(priority, pid, function,
    data)``; the old ``(pid, function, data=None, priority=...)`` form warns."""
    user_data: tuple[Any, ...]
    if callable(pid_or_callback):
        warnings.warn(
            "Calling child_watch_add without priority as first argument is deprecated",
            PyGIDeprecationWarning,
            stacklevel=1,  # attributed to this module, as PyGObject's are to its override
        )
        pid = priority_or_pid
        callback = pid_or_callback
        if len(args) == 0:
            user_data = (kwargs["data"],) if "data" in kwargs else ()
            priority = kwargs.get("priority", PRIORITY_DEFAULT)
        elif len(args) == 1:
            user_data = args
            priority = kwargs.get("priority", PRIORITY_DEFAULT)
        elif len(args) == 2:
            user_data = (args[0],)
            priority = args[1]
        else:
            raise TypeError("expected at most 4 positional arguments")
    else:
        priority = priority_or_pid
        pid = pid_or_callback
        if "function" in kwargs:
            callback = kwargs["function"]
            user_data = args
        elif len(args) > 0 and callable(args[0]):
            callback = args[0]
            user_data = args[1:]
        else:
            raise TypeError("expected callback as third argument")
        if "data" in kwargs:
            if user_data:
                raise TypeError('got multiple values for "data" argument')
            user_data = (kwargs["data"],)
    return priority, pid, callback, user_data


def child_watch_add(*args: Any, **kwargs: Any) -> int:
    """``child_watch_add(priority, pid, function, *data)``: ``function(pid, status, *data)``
    once child ``pid`` exits (``status`` as from ``os.waitpid``).

    The old form ``child_watch_add(pid, function, data=None, priority=...)`` still works
    and warns, as in PyGObject (see `_child_watch_add_get_args`).
    """
    priority, pid, callback, user_data = _child_watch_add_get_args(*args, **kwargs)
    prio = _priority(priority)
    if isinstance(pid, bool) or not isinstance(pid, int):
        raise TypeError(f"pid must be an int, not {type(pid).__name__}")
    fn = _guard(_callable(callback))
    return _unix.child_watch_add(pid, fn, *user_data, priority=prio, context=_default_core())


def main_depth() -> int:
    """Dispatch depth in this thread: 0 at top level, 1 in a callback, 2 when nested."""
    return _main_depth()


def main_current_source() -> Source | None:
    """The source whose callback runs in this thread, or None."""
    src = _current_source()
    return None if src is None else _facade(src)


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


class PyGIWarning(RuntimeWarning):
    """PyGObject's ``gi.PyGIWarning``."""


class PyGIDeprecationWarning(DeprecationWarning):
    """PyGObject's ``gi.PyGIDeprecationWarning``: a deprecated calling convention was used."""


class PollFD:
    """``GPollFD``: an fd, the events to poll it for, and what the last poll saw.

    For `Source.add_poll`; ``revents`` reads the source's last poll result.
    """

    __slots__ = ("_source", "_tag", "events", "fd")

    def __init__(self, fd: int, events: IOCondition | int) -> None:
        self.fd: int = int(fd)
        self.events: IOCondition = IOCondition(int(events))
        self._source: _CoreSource | None = None
        self._tag: _FdRecord | None = None

    @property
    def revents(self) -> IOCondition:
        """The events seen at the last poll (``IO_NVAL`` for an fd that was not open)."""
        if self._source is None:
            return IOCondition(0)
        if self._tag is None:
            return IOCondition.NVAL
        return self._source.query_unix_fd(self._tag)

    def __repr__(self) -> str:
        return f"<GLib.PollFD fd={self.fd} events={self.events!r}>"


class Error(RuntimeError):
    """``GLib.Error`` (``GError``): ``message``, ``domain`` (a quark string) and ``code``."""

    def __init__(self, message: str = "unknown error", domain: str | int = "pygi-error",
                 code: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.domain = domain
        self.code = code

    def matches(self, domain: str | int, code: int) -> bool:
        """True if this error has ``domain`` and ``code`` (``g_error_matches``)."""
        return self.domain == domain and self.code == code

    def __str__(self) -> str:
        return f"{self.domain}: {self.message} ({self.code})"


#: The GLib release whose main-loop behaviour `aioqloop.glib` follows.
MAJOR_VERSION: Final = 2
MINOR_VERSION: Final = 74
MICRO_VERSION: Final = 0
glib_version: Final = (MAJOR_VERSION, MINOR_VERSION, MICRO_VERSION)


def check_version(required_major: int, required_minor: int, required_micro: int) -> str | None:
    """``glib_check_version``: None if this GLib level is compatible, else a message."""
    have = (MAJOR_VERSION, MINOR_VERSION, MICRO_VERSION)
    want = (int(required_major), int(required_minor), int(required_micro))
    if want[0] > have[0]:
        return "GLib version too old (major mismatch)"
    if want[0] < have[0]:
        return "GLib version too new (major mismatch)"
    if want[1:] > have[1:]:
        return "GLib version too old (micro mismatch)"
    return None


def threads_init() -> None:
    """Deprecated no-op: threads are always enabled."""
    warnings.warn(
        "Since version 3.11, calling threads_init is no longer needed. "
        "See: https://wiki.gnome.org/PyGObject/Threading",
        PyGIDeprecationWarning,
        stacklevel=2,
    )


def get_current_time() -> float:
    """Deprecated: wall-clock time in seconds since the epoch (use `get_real_time`)."""
    warnings.warn(
        "GLib.get_current_time is deprecated, use GLib.get_real_time() instead",
        PyGIDeprecationWarning,
        stacklevel=2,
    )
    return get_real_time() * 1e-6


def idle_source_new() -> Idle:
    """``g_idle_source_new``: an unattached `Idle`."""
    return Idle()


def timeout_source_new(interval: int) -> Timeout:
    """``g_timeout_source_new``: an unattached `Timeout` of ``interval`` ms."""
    return Timeout(interval)


def timeout_source_new_seconds(interval: int) -> Source:
    """``g_timeout_source_new_seconds``: an unattached timeout of ``interval`` whole
    seconds, coalesced like `timeout_add_seconds`."""
    secs = _uint(interval, "interval")
    return _facade(_SecondsTimeout(float(secs)))


#: Old constant names of `IOFlags`, `IOStatus` (PyGObject keeps them, deprecated).
IO_FLAG_APPEND: Final = IOFlags.APPEND
IO_FLAG_NONBLOCK: Final = IOFlags.NONBLOCK
IO_FLAG_IS_READABLE: Final = IOFlags.IS_READABLE
IO_FLAG_IS_WRITEABLE: Final = IOFlags.IS_WRITABLE
IO_FLAG_IS_SEEKABLE: Final = IOFlags.IS_SEEKABLE
IO_FLAG_MASK: Final = IOFlags.MASK
IO_FLAG_GET_MASK: Final = IOFlags.GET_MASK
IO_FLAG_SET_MASK: Final = IOFlags.SET_MASK
IO_STATUS_ERROR: Final = IOStatus.ERROR
IO_STATUS_NORMAL: Final = IOStatus.NORMAL
IO_STATUS_EOF: Final = IOStatus.EOF
IO_STATUS_AGAIN: Final = IOStatus.AGAIN


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
