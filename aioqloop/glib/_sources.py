"""The GLib facade's sources: `Source`, `Idle`, `Timeout` and their core adapters."""

from __future__ import annotations

import math
import warnings
import weakref
from collections.abc import Callable
from typing import Any, ClassVar, Final

from aioqloop.constants import (
    PRIORITY_DEFAULT,
    IOCondition,
)
from aioqloop.context import MainContext as _CoreContext
from aioqloop.source import Source as _CoreSource
from aioqloop.sources import IdleSource as _IdleSource
from aioqloop.sources import TimeoutSource as _TimeoutSource

from . import _context, _core
from ._compat import PollFD, PyGIDeprecationWarning
from ._context import (
    _US,
    MainContext,
    _c_int,
    _callable,
    _core_context,
    _default_core,
    _excepthook,
    _guard,
    _priority,
    _truth,
    _uint,
    _wrap_context,
    get_real_time,
    logger,
)
from ._core import FdTag as _FdRecord


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


_context._facade = _facade
