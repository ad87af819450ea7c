"""The GLib facade's ``*_add`` functions and the other ``g_main_*`` functions."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from aioqloop import unix as _unix
from aioqloop.constants import (
    PRIORITY_DEFAULT,
    PRIORITY_DEFAULT_IDLE,
    IOCondition,
)
from aioqloop.context import current_source as _current_source
from aioqloop.context import main_depth as _main_depth
from aioqloop.source import Source as _CoreSource
from aioqloop.sources import FdSource as _FdSource
from aioqloop.sources import IdleSource as _IdleSource
from aioqloop.sources import TimeoutSource as _TimeoutSource

from . import _iochannel
from ._compat import PyGIDeprecationWarning
from ._context import _callable, _default_core, _guard, _priority, _uint, get_real_time
from ._core import FdTag as _FdRecord
from ._iochannel import IOChannel
from ._sources import Idle, Source, Timeout, _facade, _SecondsTimeout


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


def _add(make: Callable[[int], _CoreSource], default: int, function: Callable[..., Any],
         user_data: tuple[Any, ...], kwargs: dict[str, Any], *,
         wrap: Callable[[Callable[..., Any]], Callable[..., Any]]) -> int:
    """What the ``*_add`` functions share: check the keywords and the callback, then
    attach ``make(priority)`` to the default context, calling ``wrap(function)``."""
    prio = _check_kwargs(kwargs)
    fn = _callable(function)
    src = make(default if prio is None else prio)
    src.set_callback(wrap(fn), *user_data)
    return src.attach(_default_core())


def idle_add(function: Callable[..., Any], *user_data: Any, **kwargs: Any) -> int:
    """Call ``function(*user_data)`` when idle, while it returns True; return the id.

    Keyword ``priority`` (default `PRIORITY_DEFAULT_IDLE`).  Any thread.
    """
    return _add(lambda prio: _IdleSource(priority=prio), PRIORITY_DEFAULT_IDLE,
                function, user_data, kwargs, wrap=_guard)


def timeout_add(interval: int, function: Callable[..., Any], *user_data: Any, **kwargs: Any) -> int:
    """Call ``function(*user_data)`` every ``interval`` ms while it returns True.

    Keyword ``priority`` (default `PRIORITY_DEFAULT`); returns the source id.
    """
    ms = _uint(interval, "interval")
    return _add(lambda prio: _TimeoutSource(ms / 1000.0, priority=prio), PRIORITY_DEFAULT,
                function, user_data, kwargs, wrap=_guard)


def timeout_add_seconds(
    interval: int, function: Callable[..., Any], *user_data: Any, **kwargs: Any
) -> int:
    """Call ``function(*user_data)`` every ``interval`` seconds while it returns True.

    Like GLib, expiries are coalesced: all seconds timeouts of the session fire on the
    same sub-second phase, so the first call lands within [interval - 0.25 s,
    interval + 0.75 s).
    """
    secs = _uint(interval, "interval")
    return _add(lambda prio: _SecondsTimeout(float(secs), priority=prio), PRIORITY_DEFAULT,
                function, user_data, kwargs, wrap=_guard)


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
    return _add(lambda prio: _IdleSource(priority=prio), PRIORITY_DEFAULT_IDLE,
                function, user_data, kwargs, wrap=_once)


def timeout_add_once(
    interval: int, function: Callable[..., Any], *user_data: Any, **kwargs: Any
) -> int:
    """``g_timeout_add_once`` (GLib 2.74): call ``function(*user_data)`` once, after
    ``interval`` milliseconds; its return value is ignored.  Returns the source id.

    Keyword ``priority`` (default `PRIORITY_DEFAULT`, GLib's only one).
    """
    ms = _uint(interval, "interval")
    return _add(lambda prio: _TimeoutSource(ms / 1000.0, priority=prio), PRIORITY_DEFAULT,
                function, user_data, kwargs, wrap=_once)


def timeout_add_seconds_once(
    interval: int, function: Callable[..., Any], *user_data: Any, **kwargs: Any
) -> int:
    """``g_timeout_add_seconds_once`` (GLib 2.78): call ``function(*user_data)`` once,
    after ``interval`` seconds, coalesced as `timeout_add_seconds` is; its return value
    is ignored.  Returns the source id.  Keyword ``priority`` (default
    `PRIORITY_DEFAULT`, GLib's only one).
    """
    secs = _uint(interval, "interval")
    return _add(lambda prio: _SecondsTimeout(float(secs), priority=prio), PRIORITY_DEFAULT,
                function, user_data, kwargs, wrap=_once)


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


def _channel_add_watch(channel: IOChannel, condition: int, callback: Callable[..., Any],
                       *user_data: Any, priority: int = PRIORITY_DEFAULT) -> int:
    """`IOChannel.add_watch`: ``io_add_watch`` with PyGObject's deprecation warning."""
    warnings.warn("IOChannel.add_watch is deprecated; use GLib.io_add_watch",
                  PyGIDeprecationWarning, stacklevel=3)  # the caller of add_watch
    return io_add_watch(channel, priority, condition, callback, *user_data)


_iochannel._add_watch = _channel_add_watch


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
