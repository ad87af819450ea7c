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
otherwise the default context of the **main thread** (its aioqloop loop, created on
demand, the one `MainLoop.run` drives from plain synchronous code).

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
import threading
import time
import warnings
import weakref
from collections.abc import Callable
from typing import Any, ClassVar, Final

from . import context as _context_mod
from .constants import (
    PRIORITY_DEFAULT,
    PRIORITY_DEFAULT_IDLE,
    PRIORITY_HIGH,
    PRIORITY_HIGH_IDLE,
    PRIORITY_LOW,
    SOURCE_CONTINUE,
    SOURCE_REMOVE,
    IOCondition,
)
from .context import MainContext as _CoreContext
from .context import get_main_context as _get_main_context
from .mainloop import MainLoop as _CoreLoop
from .source import Source as _CoreSource
from .source import _FdRecord
from .sources import FdSource as _FdSource
from .sources import IdleSource as _IdleSource
from .sources import TimeoutSource as _TimeoutSource

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
    "timeout_add",
    "timeout_add_seconds",
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
)

logger = logging.getLogger("aioqloop.glib")

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
_default_lock = threading.Lock()
_global_default: _CoreContext | None = None


def _usable(ctx: _CoreContext) -> bool:
    loop = ctx.loop
    return not ctx._closed and (loop is None or not loop.is_closed())


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
    """Report an exception of a directly invoked function, as dispatch errors are."""
    message = f"Exception in invoked function {fn!r}"
    loop = ctx.loop
    if loop is not None and not loop.is_closed():
        loop.call_exception_handler({"message": message, "exception": exc, "callback": fn})
    else:
        logging.getLogger("aioqloop").error(message, exc_info=exc)


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


class MainContext:
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
        core = _CoreContext(_driver="standalone")
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
        """The context of this thread's running loop, else the default context."""
        return _wrap_context(_default_core())

    def iteration(self, may_block: bool = True) -> bool:
        """Run one GLib iteration; True if a source was dispatched (may wait if ``may_block``)."""
        return self._ctx.iteration(bool(may_block))

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
        return self._ctx._owner == threading.get_ident()

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
        owner = ctx._owner
        direct = owner == me
        if not direct and owner is None:
            g = _global_default
            loop = asyncio._get_running_loop()
            running = _get_main_context(loop) if loop is not None else None
            direct = ctx is running or ctx is g
        if direct:
            took = ctx._owner is None
            if took:
                ctx._owner = me  # acquired for the call, as GLib's invoke does
            try:
                while fn(*user_data):
                    pass
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                _report_call(ctx, exc, fn)
            finally:
                if took:
                    ctx._owner = None
            return
        src = _IdleSource(priority=prio)
        src.set_callback(fn, *user_data)
        src.attach(ctx)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, MainContext):
            return self._ctx is other._ctx
        return NotImplemented

    def __hash__(self) -> int:
        return hash(id(self._ctx))

    def __repr__(self) -> str:
        return f"<GLib.MainContext {self._ctx!r}>"


def main_context_default() -> MainContext:
    """``g_main_context_default``: the same as `MainContext.default`."""
    return MainContext.default()


# ---------------------------------------------------------------------------
# Sources
# ---------------------------------------------------------------------------
def _facade(core: _CoreSource) -> Source:
    """The `Source` facade of a core source (made on first use, then remembered)."""
    f: Source | None = core.__dict__.get("_glib_facade")
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
        core._glib_facade = f  # type: ignore[attr-defined]
    return f


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
    """The core source behind a `Source` subclass: calls its GLib-unit hooks."""

    _glib_facade: Source

    def __init__(self, facade: Source) -> None:
        super().__init__()
        self._glib_facade = facade

    def dispatch(self, callback: Callable[..., Any] | None, args: tuple[Any, ...]) -> bool:
        # PyGObject hands dispatch (None, None) when no callback was set.
        return bool(self._glib_facade.dispatch(callback, None if callback is None else args))

    def finalize(self) -> None:
        self._glib_facade.finalize()

    def __repr__(self) -> str:
        return super().__repr__().replace("_Adapter", type(self._glib_facade).__name__, 1)


class _AdapterP(_Adapter):
    def prepare(self) -> tuple[bool, float | None]:
        return _prepare_result(self._glib_facade.prepare())  # type: ignore[attr-defined]


class _AdapterC(_Adapter):
    def check(self) -> bool:
        return bool(self._glib_facade.check())  # type: ignore[attr-defined]


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

    def _attached(self, context: _CoreContext) -> None:
        if self._ready_time == -1:
            self._ready_time = _coalesced_expiry(context._clock(), self._interval)

    def dispatch(self, callback: Callable[..., Any] | None, args: tuple[Any, ...]) -> bool:
        keep = _CoreSource.dispatch(self, callback, args)
        if keep and not self._destroyed:
            self.set_ready_time(_coalesced_expiry(self.time(), self._interval))
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
        self._src._glib_facade = self  # type: ignore[attr-defined]
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
        """Called once after the source is destroyed and no dispatch of it runs."""

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
        if ctx is None or ctx._closed:
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
        self._src.set_callback(fn, *user_data)

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
            return 2**63 - 1
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
        self._src._glib_facade = self  # type: ignore[attr-defined]
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
    src.set_callback(fn, *user_data)
    return src.attach(_default_core())


def timeout_add(interval: int, function: Callable[..., Any], *user_data: Any, **kwargs: Any) -> int:
    """Call ``function(*user_data)`` every ``interval`` ms while it returns True.

    Keyword ``priority`` (default `PRIORITY_DEFAULT`); returns the source id.
    """
    ms = _uint(interval, "interval")
    prio = _check_kwargs(kwargs)
    fn = _callable(function)
    src = _TimeoutSource(ms / 1000.0, priority=PRIORITY_DEFAULT if prio is None else prio)
    src.set_callback(fn, *user_data)
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
    src.set_callback(fn, *user_data)
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
    src.set_callback(fn, *user_data)
    return src.attach(_default_core())


def io_add_watch(channel: Any, priority: Any, condition: Any, *args: Any) -> int:
    """``io_add_watch(fd_or_file, priority, condition, callback, *user_data)``.

    Only the fd / file-object forms are supported (no ``GIOChannel``): the callback gets
    ``(channel, revents, *user_data)``.  The old form without a priority still works
    and warns, as in PyGObject.
    """
    if isinstance(priority, IOCondition) or not isinstance(priority, int):
        warnings.warn(
            "Calling io_add_watch without priority as second argument is deprecated",
            DeprecationWarning,
            stacklevel=2,
        )
        callback: Any = condition
        condition, priority, user_data = priority, PRIORITY_DEFAULT, args
    else:
        if not args:
            raise TypeError("expecting callback as fourth argument")
        callback, user_data = args[0], args[1:]
    fn = _callable(callback)
    src = _FdSource(channel, condition, priority=_priority(priority))
    src.set_callback(fn, *user_data)
    return src.attach(_default_core())


def unix_signal_add(
    priority: int, signum: int, handler: Callable[..., Any], *user_data: Any
) -> int:
    """Call ``handler(*user_data)`` on the loop when signal ``signum`` arrives.

    ``g_unix_signal_add_full`` on the default context: every source for a signal fires;
    return True to keep watching.  Returns the source id.
    """
    from . import unix

    prio = _priority(priority)
    fn = _callable(handler)
    return unix.signal_add(signum, fn, *user_data, priority=prio, context=_default_core())


def child_watch_add(*args: Any, **kwargs: Any) -> int:
    """``child_watch_add(priority, pid, function, *data)``: ``function(pid, status, *data)``
    once child ``pid`` exits (``status`` as from ``os.waitpid``).

    The old form ``child_watch_add(pid, function, data=None, priority=...)`` still works
    and warns, as in PyGObject 3.42.
    """
    from . import unix

    if len(args) < 2:
        raise TypeError("child_watch_add() expects (priority, pid, function, *data)")
    first, second, rest = args[0], args[1], args[2:]
    user_data: tuple[Any, ...] = ()
    if callable(second):
        warnings.warn(
            "Calling child_watch_add without priority as first argument is deprecated",
            DeprecationWarning,
            stacklevel=2,
        )
        pid, callback = first, second
        if len(rest) == 0:
            priority = kwargs.get("priority", PRIORITY_DEFAULT)
        elif len(rest) == 1:
            user_data = rest
            priority = kwargs.get("priority", PRIORITY_DEFAULT)
        elif len(rest) == 2:
            user_data, priority = (rest[0],), rest[1]
        else:
            raise TypeError("expected at most 4 positional arguments")
    else:
        priority, pid = first, second
        if "function" in kwargs:
            callback, user_data = kwargs["function"], rest
        elif rest and callable(rest[0]):
            callback, user_data = rest[0], rest[1:]
        else:
            raise TypeError("expected callback as third argument")
    if "data" in kwargs:
        if user_data:
            raise TypeError('got multiple values for "data" argument')
        user_data = (kwargs["data"],)
    prio = _priority(priority)
    if isinstance(pid, bool) or not isinstance(pid, int):
        raise TypeError(f"pid must be an int, not {type(pid).__name__}")
    return unix.child_watch_add(pid, callback, *user_data, priority=prio, context=_default_core())


def main_depth() -> int:
    """Dispatch depth in this thread: 0 at top level, 1 in a callback, 2 when nested."""
    return _context_mod.main_depth()


def main_current_source() -> Source | None:
    """The source whose callback runs in this thread, or None."""
    src = _context_mod.current_source()
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
