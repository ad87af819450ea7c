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

# The facade is split along GLib's own seams: `_context` (``GMainContext``, ``GMainLoop``,
# the default context, the clocks), `_sources` (``GSource`` and its adapters onto the
# core), `_functions` (the ``*_add`` family), `_compat` (PyGObject's extra names).
# Each imports only the ones listed before it.
from ._compat import (
    IO_FLAG_APPEND as IO_FLAG_APPEND,
)
from ._compat import (
    IO_FLAG_GET_MASK as IO_FLAG_GET_MASK,
)
from ._compat import (
    IO_FLAG_IS_READABLE as IO_FLAG_IS_READABLE,
)
from ._compat import (
    IO_FLAG_IS_SEEKABLE as IO_FLAG_IS_SEEKABLE,
)
from ._compat import (
    IO_FLAG_IS_WRITEABLE as IO_FLAG_IS_WRITEABLE,
)
from ._compat import (
    IO_FLAG_MASK as IO_FLAG_MASK,
)
from ._compat import (
    IO_FLAG_NONBLOCK as IO_FLAG_NONBLOCK,
)
from ._compat import (
    IO_FLAG_SET_MASK as IO_FLAG_SET_MASK,
)
from ._compat import (
    IO_STATUS_AGAIN as IO_STATUS_AGAIN,
)
from ._compat import (
    IO_STATUS_EOF as IO_STATUS_EOF,
)
from ._compat import (
    IO_STATUS_ERROR as IO_STATUS_ERROR,
)
from ._compat import (
    IO_STATUS_NORMAL as IO_STATUS_NORMAL,
)
from ._compat import (
    MAJOR_VERSION,
    MICRO_VERSION,
    MINOR_VERSION,
    Error,
    PollFD,
    PyGIDeprecationWarning,
    PyGIWarning,
    check_version,
    threads_init,
)
from ._compat import (
    glib_version as glib_version,
)
from ._context import (
    IO_ERR,
    IO_HUP,
    IO_IN,
    IO_NVAL,
    IO_OUT,
    IO_PRI,
    MAXINT,
    MAXINT32,
    MAXUINT,
    MAXUINT32,
    MainContext,
    MainLoop,
    get_monotonic_time,
    get_real_time,
    main_context_default,
)
from ._context import (
    _default_core_if_made as _default_core_if_made,
)
from ._context import (
    _make_default as _make_default,
)
from ._context import (
    _rebind as _rebind,
)
from ._context import (
    _wrap_context as _wrap_context,
)
from ._context import (
    logger as logger,
)

# The overrides' argument parsers, which PyGObject's own tests call as GLib._name.
from ._functions import _child_watch_add_get_args as _child_watch_add_get_args
from ._functions import _io_add_watch_get_args as _io_add_watch_get_args
from ._functions import (
    child_watch_add,
    get_current_time,
    idle_add,
    idle_add_once,
    idle_source_new,
    io_add_watch,
    main_current_source,
    main_depth,
    timeout_add,
    timeout_add_once,
    timeout_add_seconds,
    timeout_add_seconds_once,
    timeout_source_new,
    timeout_source_new_seconds,
    unix_fd_add_full,
    unix_signal_add,
    unix_signal_add_full,
)
from ._iochannel import (
    IOChannel,
    IOFlags,
    IOStatus,
    SeekType,
)
from ._sources import (
    Idle,
    Source,
    Timeout,
    source_remove,
)
from ._sources import (
    _coalesced_expiry as _coalesced_expiry,
)
from ._sources import (
    _prepare_result as _prepare_result,
)
from ._sources import (
    _timer_perturb as _timer_perturb,
)

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
