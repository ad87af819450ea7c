"""Built-in sources: timeouts, idles and fd watches, and the GLib-style ``*_add`` functions.

None of them has a ``prepare`` or ``check`` hook: a timeout is a ready time in the
context's heap, an idle is always ready, an fd watch is an fd record in the context's
epoll set.  That is why thousands of them cost nothing per iteration until they fire.
Intervals are seconds (floats); GLib's millisecond forms are in `aioqloop.glib`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import _engine, _registry, _waker
from ._checks import FileLike as _FileLike
from ._checks import check_callback as _check_callback
from ._checks import check_interval as _check_interval
from ._checks import check_name as _check_name
from ._checks import check_priority as _check_priority
from ._checks import fd_of as _fd_of
from .constants import PRIORITY_DEFAULT, PRIORITY_DEFAULT_IDLE, IOCondition
from .source import _CONDITIONS, Source

if TYPE_CHECKING:
    from .context import MainContext

_INF = float("inf")
# The compiled core's TimeoutSource.__init__ and timeout_add (set below), or None.
_core_timeout_init: Callable[[Source, Any, Any, Any], bool] | None = None
_core_timeout_add: Callable[..., int] | None = None

__all__ = (
    "FdSource",
    "IdleSource",
    "TimeoutSource",
    "fd_add",
    "idle_add",
    "source_remove",
    "timeout_add",
)


class TimeoutSource(Source):
    """Ready every ``interval`` seconds, like ``g_timeout_source_new``.

    The first expiry is ``interval`` after attach; when the callback returns True it
    rearms at the iteration's time plus ``interval`` (no catch-up after a late firing,
    and time spent in the callback does not shift it).
    """

    def __init__(
        self, interval: float, *, priority: int = PRIORITY_DEFAULT, name: str | None = None
    ) -> None:
        init = _core_timeout_init
        if init is not None and init(self, interval, priority, name):
            return  # the compiled core did the work below, without a Python frame
        if type(interval) is float and 0.0 <= interval < _INF:
            self._interval = interval  # the common case, checked inline
        else:
            self._interval = _check_interval(interval)
        super().__init__(priority=priority, name=name)

    @property
    def interval(self) -> float:
        """The interval in seconds."""
        return self._interval

    def _attached(self, context: MainContext) -> None:
        if self._ready_time == -1:
            self._ready_time = context._clock() + self._interval

    def dispatch(self, callback: Callable[..., Any] | None, args: tuple[Any, ...]) -> bool:
        keep = super().dispatch(callback, args)
        if keep and not self._destroyed:
            self.set_ready_time(self.time() + self._interval)
        return keep

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f" interval={self._interval}>"


class IdleSource(Source):
    """Ready whenever nothing more urgent is, like ``g_idle_source_new``.

    Default priority `PRIORITY_DEFAULT_IDLE`.  While one is attached the loop does not
    sleep.
    """

    _idle = True

    def __init__(
        self, *, priority: int = PRIORITY_DEFAULT_IDLE, name: str | None = None
    ) -> None:
        super().__init__(priority=priority, name=name)


class FdSource(Source):
    """Watch one fd for ``condition``, like ``g_unix_fd_source_new``.

    The callback gets ``(fd_or_fileobj, revents, *args)`` where ``revents`` is an
    `IOCondition` exactly as poll(2) reports it: ERR, HUP and NVAL are reported even when
    not asked for (HUP when the peer closes).  Level-triggered: it fires again while the
    condition holds.
    """

    def __init__(
        self,
        fd_or_fileobj: int | _FileLike,
        condition: IOCondition | int,
        *,
        priority: int = PRIORITY_DEFAULT,
        name: str | None = None,
    ) -> None:
        super().__init__(priority=priority, name=name)
        self._fd = _fd_of(fd_or_fileobj)
        self._fileobj = fd_or_fileobj
        self._tag = self.add_unix_fd(fd_or_fileobj, condition)

    @property
    def fd(self) -> int:
        """The watched fd number."""
        return self._fd

    def dispatch(self, callback: Callable[..., Any] | None, args: tuple[Any, ...]) -> bool:
        if callback is None:
            return super().dispatch(None, args)
        return bool(callback(self._fileobj, _CONDITIONS[self._tag.revents & 0x3F], *args))

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f" fd={self._fd}>"


if _engine.core is not None:
    # Built-in dispatches the core runs itself (same rules, no Python frame).
    _engine.core.configure(timeout_dispatch=TimeoutSource.dispatch,
                           fd_dispatch=FdSource.dispatch,
                           timeout_attached=TimeoutSource._attached)
    # timeout_add and TimeoutSource() in C: what the Python code below does, the checks
    # that raise called back only for the values they refuse or convert.
    _engine.core.configure_timers(timeout_class=TimeoutSource, source_class=Source,
                                  default_context=_registry.default_context,
                                  check_interval=_check_interval,
                                  check_priority=_check_priority, check_name=_check_name,
                                  check_callback=_check_callback,
                                  waker_notify=_waker.Waker.notify)
    _core_timeout_init = _engine.core.timeout_init
    _core_timeout_add = _engine.core.timeout_add


def _attach(src: Source, callback: Callable[..., Any], args: tuple[Any, ...],
            context: MainContext | None) -> int:
    """Set the callback and attach; a source that fails to attach is destroyed, so it
    releases what it holds (a signal disposition, a pidfd) at once."""
    try:
        _check_callback(callback)
        # What set_callback and attach check, known here for a source just made.
        src._callback = callback
        src._args = args
        if context is None:
            context = _registry.default_context()
        elif not _registry.is_context(context):
            raise TypeError(f"context must be a MainContext, not {type(context).__name__}")
        return context._attach(src)
    except BaseException:
        src.destroy()
        raise


def timeout_add(
    interval: float,
    callback: Callable[..., Any],
    *args: Any,
    priority: int = PRIORITY_DEFAULT,
    context: MainContext | None = None,
) -> int:
    """Call ``callback(*args)`` every ``interval`` seconds while it returns True; return the id."""
    if _core_timeout_add is not None:
        return _core_timeout_add(interval, callback, args, priority, context)
    return _attach(TimeoutSource(interval, priority=priority), callback, args, context)


def idle_add(
    callback: Callable[..., Any],
    *args: Any,
    priority: int = PRIORITY_DEFAULT_IDLE,
    context: MainContext | None = None,
) -> int:
    """Call ``callback(*args)`` whenever nothing more urgent is ready, while it returns True."""
    return _attach(IdleSource(priority=priority), callback, args, context)


def fd_add(
    fd: int | _FileLike,
    condition: IOCondition | int,
    callback: Callable[..., Any],
    *args: Any,
    priority: int = PRIORITY_DEFAULT,
    context: MainContext | None = None,
) -> int:
    """Call ``callback(fd, revents, *args)`` while ``condition`` holds on ``fd``; return the id."""
    _check_callback(callback)
    return _attach(FdSource(fd, condition, priority=priority), callback, args, context)


def source_remove(id: int, context: MainContext | None = None) -> bool:
    """Destroy the source with this id; True if there was one (``g_source_remove``).

    Ids are per context, as in GLib: without ``context`` this is `MainContext.default`
    (the running loop's context, else the global default context) — the same context
    the ``*_add`` functions attach to.
    """
    if isinstance(id, bool) or not isinstance(id, int):
        raise TypeError(f"source id must be an int, not {type(id).__name__}")
    if context is not None and not _registry.is_context(context):
        raise TypeError(f"context must be a MainContext, not {type(context).__name__}")
    ctx = context if context is not None else _registry.default_context()
    src = ctx.find_source_by_id(id)
    if src is None:
        return False
    src.destroy()
    return True

