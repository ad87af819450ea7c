"""Everything `aioqloop.glib` needs from the core beyond its public API, in one place.

The glib layer is a facade over the public core (`aioqloop.MainContext`, `Source`,
`MainLoop`, the sources and ``*_add`` functions).  These few needs have no public form
yet; each is one small function here so that the core can grow a proper method for it
and this module shrinks to nothing:

* `is_closed(ctx)` — whether a context was closed (`MainContext.closed`): a facade
  must not hand out a closed context as the default one.
* `owner(ctx)` — the thread that owns (is iterating) a context (``MainContext._owner``):
  ``invoke_full``'s "call directly if nobody owns the default context" (acquiring and
  releasing use the core's `MainContext.acquire` / `release`).
* `now(ctx)` — a fresh reading of the context's clock (``MainContext._clock``), not the
  iteration's cached time: a seconds timeout's first expiry is computed from it.
* `thread_default_loop()` / `set_thread_default_loop(loop)` — the loop holding the
  core's global default context (``loop._holder()``), so that ``GLibEventLoop`` can
  become GLib's one process-wide default; `default_context_if_made()` — that context.
* `iterate_without_blocking(ctx)` — ``iteration(False)`` without the core's refusal
  inside a coroutine (``MainContext._hand_iteration``): gi.events allows it.
* `asyncio_ready(ctx)` / `run_asyncio_ready(ctx)` — whether the asyncio callbacks queued
  on the context's stock-base loop may run in a nested iteration, and one round of them
  (``QSelectorEventLoop._aioq_run_ready``): gi.events' raw ``g_main_context_iteration``.
* `standalone_context()` — a context bound to no asyncio loop, iterated by hand
  (``MainContext(_driver="standalone")``): GLib's ``g_main_context_new``.
* `poll_fileno(ctx)` — the context's epoll fd (``MainContext._driver_fileno``, opened with
  ``_open_fds`` by the owner): what ``g_main_context_query`` hands out to poll.
* `has_sources(ctx)` — whether anything is attached (``MainContext._sources``): a
  ``GLibEventLoop`` adopts a fresh context only if nothing is lost by doing so.
* `loop_class(base)` — the aioqloop loop class to subclass for ``GLibEventLoop``
  (``loop.QSelectorEventLoop``, ``loop._uvloop_class()``).
* `FdTag` — the type of the tag `Source.add_unix_fd` returns (``source._FdRecord``),
  for type hints only.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aioqloop.context import MainContext
from aioqloop.source import _FdRecord as FdTag

__all__ = (
    "FdTag",
    "asyncio_ready",
    "default_context_if_made",
    "has_sources",
    "iterate_without_blocking",
    "is_closed",
    "loop_class",
    "now",
    "owner",
    "poll_fileno",
    "run_asyncio_ready",
    "set_thread_default_loop",
    "standalone_context",
    "thread_default_loop",
)


def is_closed(ctx: MainContext) -> bool:
    """True once ``ctx`` was closed."""
    return ctx.closed


def owner(ctx: MainContext) -> int | None:
    """The ``threading.get_ident()`` of the thread owning ``ctx``, or None."""
    return ctx._owner


def now(ctx: MainContext) -> float:
    """A fresh reading of ``ctx``'s clock, in seconds (not the iteration's cached time)."""
    ctx._follow_clock()
    return ctx._clock()


def thread_default_loop() -> asyncio.AbstractEventLoop | None:
    """The loop of the core's global default context, if one was made (none is created)."""
    from aioqloop import loop as _loop

    return _loop._holder()


def default_context_if_made() -> MainContext | None:
    """The core's global default context, if one was made and is open (none is made)."""
    from aioqloop import loop as _loop

    return _loop._usable_default()


def set_thread_default_loop(loop: asyncio.AbstractEventLoop | None) -> None:
    """Make ``loop`` the core's global default context's loop."""
    from aioqloop import loop as _loop

    _loop._adopt_default_loop(loop)


def iterate_without_blocking(ctx: MainContext) -> bool:
    """``ctx.iteration(False)``, also allowed inside a coroutine (gi.events does it)."""
    if ctx._in_hook:
        return ctx.iteration(False)  # warns and returns False, as the core does
    if ctx.closed:
        raise RuntimeError("the MainContext is closed")
    return ctx._hand_iteration(False)


def _nested_loop(ctx: MainContext) -> Any:
    """``ctx``'s stock-base loop if a nested iteration here may run its asyncio callbacks:
    the loop runs on this thread and no task is running (running another task's step
    inside a task would make asyncio refuse it and lose the step)."""
    loop = ctx.loop
    if loop is None or asyncio._get_running_loop() is not loop:
        return None
    if not hasattr(loop, "_aioq_run_ready") or asyncio.current_task(loop) is not None:
        return None
    if getattr(loop, "_glib_paused", 0):
        return None  # gi.events' GLibEventLoop.paused(): not iterated inside the block
    return loop


def asyncio_ready(ctx: MainContext) -> bool:
    """True if asyncio callbacks are queued that `run_asyncio_ready` would run now."""
    loop = _nested_loop(ctx)
    return loop is not None and bool(loop._aioq_ready_count())


def run_asyncio_ready(ctx: MainContext) -> bool:
    """Run, once each, the asyncio callbacks queued now on ``ctx``'s loop; True if any."""
    loop = _nested_loop(ctx)
    return loop is not None and bool(loop._aioq_run_ready())


def standalone_context() -> MainContext:
    """A new context bound to no asyncio loop, iterated by hand."""
    return MainContext(_driver="standalone")


def poll_fileno(ctx: MainContext) -> int | None:
    """The one fd that polls for everything ``ctx`` waits on (its epoll set: the wake-up
    fd and every source fd), opened if need be; None if it cannot be opened here."""
    if ctx.closed:
        return None
    if ctx.is_owner():
        ctx._open_fds()
    return ctx._driver_fileno()


def has_sources(ctx: MainContext) -> bool:
    """True if any source is attached to ``ctx`` (or posted by another thread), leaving
    out the bottom halves' carrier while nothing is scheduled on it: it is the
    context's own, not work (it stays when the loop holding the default context closes).
    """
    if ctx._is_empty():
        return False
    carrier = ctx._bh
    if carrier is None or carrier.pending or ctx._waker.ops:
        return True
    return any(src is not carrier.source for src in list(ctx._sources.values()))


def loop_class(base: str) -> type[asyncio.AbstractEventLoop]:
    """The aioqloop loop class of ``base`` ("asyncio" or "uvloop"), to subclass."""
    if base == "asyncio":
        from aioqloop.loop import QSelectorEventLoop

        return QSelectorEventLoop
    if base == "uvloop":
        from aioqloop._uvloop import uvloop_class

        return uvloop_class()
    raise ValueError(f"base must be 'asyncio' or 'uvloop', not {base!r}")
