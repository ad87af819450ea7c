"""The ways into aioqloop: `new_event_loop`, `run`, and the global default context.

`new_event_loop` builds a loop on either base: the stock base (`QSelectorEventLoop`,
asyncio's selector loop with the context inside its iteration) lives in
`aioqloop._stock`, the uvloop base in `aioqloop._uvloop`, and `aioqloop.EventLoopPolicy`
in `aioqloop._policy`.  This module also keeps the global default context (GLib's
``g_main_context_default``): the one `MainContext` that moves to the loop the main thread
runs (see the section below), registered with `aioqloop._registry` for both bases.
"""

from __future__ import annotations

import asyncio
import atexit
import sys
import threading
import warnings
import weakref
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from . import _registry
from ._stock import QSelectorEventLoop, check_loop_args
from ._tasks import EventLoop, QTask
from .context import MainContext, get_main_context

if TYPE_CHECKING:
    from .biglock import BigLock
    from .clock import VirtualClock

__all__ = ("QSelectorEventLoop", "QTask", "new_event_loop", "run")

_T = TypeVar("_T")


# -- the global default context (registered in aioqloop._registry) ---------------------
# GLib's g_main_context_default() is one context, the one the main thread's main loop
# runs, whoever adds to it and from wherever.  Here it is one MainContext that moves to
# the loop the main thread runs:
#
# * an aioqloop loop made on the main thread (new_event_loop, run, a Runner's
#   loop_factory, the policy; either base) takes it, with whatever is attached, unless a
#   loop made that way and not closed yet holds it (a second loop gets a context of its
#   own); a loop made in another thread never takes it;
# * outside a running loop, MainContext.default() needs a loop behind the context (for
#   MainLoop.run from plain code): if none holds it, one is made on demand; that loop
#   does not count as the user's and hands the context over to the next loop made
#   (keeping a context of its own meanwhile), and takes it back once it is free again;
# * when the loop holding it closes, its sources are destroyed (its work ends with it,
#   as asyncio's callbacks do; the bottom halves' carrier stays, unscheduled, so a
#   BottomHalf outlives the loop as the context does) and the context is free again;
# * work that no loop ever runs is reported at interpreter exit (_report_unrun).
_default_lock = threading.RLock()  # a loop made on demand below claims under it too
# The context and the loop holding it, each the object itself, or a weak reference
# while a loop of the user's holds it: a loop dropped without close() is collected
# with its context as any other loop is (the next default() then makes a new one).
_default_ctx: Any = None
_default_loop: Any = None
#: The holder was made on demand by _default_context (it hands the context over).
_default_on_demand = False
#: ... and set as the main thread's current event loop then.
_default_adopted = False
#: A loop ran the context since it was made or last left by a loop (see _report_unrun).
_default_ran = False
_exit_report_armed = False
_making = threading.local()  # .on_demand: the loop being built is the on-demand one


def _deref(ref: Any) -> Any:
    return ref() if isinstance(ref, weakref.ref) else ref


def _usable_default() -> MainContext | None:
    """The global default context, if made and open."""
    ctx: MainContext | None = _deref(_default_ctx)
    return ctx if ctx is not None and not ctx.closed else None


def _holder() -> asyncio.AbstractEventLoop | None:
    """The open loop holding the global default context, or None (free)."""
    loop: asyncio.AbstractEventLoop | None = _deref(_default_loop)
    return loop if loop is not None and not loop.is_closed() else None


def _set_default(ctx: MainContext | None, loop: Any, *, user: bool) -> None:
    global _default_ctx, _default_loop, _default_on_demand
    weak = user and loop is not None
    _default_ctx = weakref.ref(ctx) if weak and ctx is not None else ctx
    _default_loop = weakref.ref(loop) if weak else loop
    _default_on_demand = loop is not None and not user


def claim_default(loop: asyncio.AbstractEventLoop) -> MainContext | None:
    """Called by an aioqloop loop being built: the global default context if this loop
    takes it (main thread, not held by an open loop of the user's), rebound to ``loop``;
    None if the loop makes a context of its own.  The loop then calls `became_default`
    with its own new context when no default context exists yet, or `bound_default`
    once its driver is attached to the context it took.

    The context taken stays acquired by this thread until `bound_default`: another
    thread attaching meanwhile posts its work, which the loop's first iteration runs,
    instead of inserting it while the context changes loops."""
    global _default_adopted
    if getattr(_making, "on_demand", False):  # made by _default_context, any thread
        ctx: MainContext | None = _making.ctx  # a free default context, or None
        if ctx is not None:
            _making.held = ctx.acquire()  # unless a thread iterates it by hand just now
            ctx._rebind(loop)
        return ctx
    if threading.current_thread() is not threading.main_thread():
        return None
    if not getattr(loop, "_aioq_takes_default", True):
        return None
    with _default_lock:
        ctx = _usable_default()
        if ctx is None:
            return None
        holder = _holder()
        if holder is not None and (not _default_on_demand or holder.is_running()):
            return None  # the user's open loop holds it: this one gets its own
        swap: Any = getattr(holder, "_aioq_swap", None)
        if (holder is not None and swap is None) or not ctx.acquire():
            return None  # iterated by hand in another thread: leave it there
        try:
            if holder is not None:
                swap(None)  # the on-demand loop goes on with a context of its own
                _spare.loop = holder
            ctx._rebind(loop)
        except BaseException:
            ctx.release()
            raise
        _making.held = True
        _set_default(ctx, loop, user=True)
        _default_adopted = False
        return ctx


def bound_default(ctx: MainContext) -> None:
    """The loop that took ``ctx`` (`claim_default`) has attached its driver: let go of
    the ownership taken meanwhile."""
    if getattr(_making, "held", False):
        _making.held = False
        ctx.release()


def became_default(loop: asyncio.AbstractEventLoop, ctx: MainContext) -> None:
    """``loop`` (being built, ``ctx`` its new context) found no global default context:
    on the main thread its context becomes it, as GLib's does for the main loop."""
    global _default_adopted, _default_ran
    if threading.current_thread() is not threading.main_thread():
        return
    if not getattr(loop, "_aioq_takes_default", True) or getattr(_making, "on_demand", False):
        return
    with _default_lock:
        if _usable_default() is not None:
            return
        _set_default(ctx, loop, user=True)
        _default_adopted = _default_ran = False
        _arm_exit_report()


def release_default(loop: asyncio.AbstractEventLoop, ctx: MainContext) -> None:
    """``loop`` closes: close ``ctx`` with it, unless it is the global default context,
    which stays open (its sources destroyed) for the next loop to take."""
    global _default_adopted, _default_ran
    with _default_lock:
        if ctx is not _usable_default():
            ctx._close_with_loop()
            return
        if _deref(_default_loop) is not loop:
            return  # it left this loop already (closed before, now collected)
        _set_default(ctx, None, user=False)
        _default_adopted = _default_ran = False
    from .bottomhalf import _BHSource

    ctx._clear_sources()
    _BHSource.drop_scheduled(ctx)
    ctx._driver_detach()


def note_run(ctx: MainContext) -> None:
    """A loop starts running ``ctx`` (the report at exit is for work no loop ran)."""
    global _default_ran
    if ctx is _deref(_default_ctx):
        _default_ran = True


def _default_context() -> MainContext:
    """The running loop's context, else the global default context (GLib's
    ``g_main_context_default``), with a loop made on demand behind it if none holds it
    (made by any thread; on the main thread it becomes the current event loop)."""
    global _default_adopted, _default_ran
    loop = asyncio._get_running_loop()
    if loop is not None:
        return get_main_context(loop)
    main = threading.current_thread() is threading.main_thread()
    adopt = False
    with _default_lock:
        ctx = _usable_default()
        g = _holder()
        if ctx is not None and g is None:
            g = _reuse_spare(ctx)
            if g is not None:
                _set_default(ctx, g, user=False)
                _default_adopted = False
        if ctx is None or g is None:
            _making.on_demand = True
            _making.ctx = ctx  # a free default context: the new loop takes it
            try:
                g = new_event_loop()
            finally:
                _making.on_demand = False
                _making.ctx = None
            if ctx is None:
                ctx = get_main_context(g)
                _default_ran = False
            ctx._set_home_thread(threading.main_thread().ident or 0)
            _set_default(ctx, g, user=False)
            _default_adopted = False
            _arm_exit_report()
        if main and _default_on_demand and not _default_adopted:
            _default_adopted = adopt = True
    if adopt:
        # Outside the lock: a policy's set_event_loop may ask for the default context.
        asyncio.set_event_loop(g)
    return ctx


class _Spare:
    #: The loop made on demand that handed the context over: still open, and maybe the
    #: main thread's current event loop, it takes the context back when that is free
    #: again, rather than a second loop made on demand leaving it unclosed.
    loop: Any = None


_spare = _Spare()


def _reuse_spare(ctx: MainContext) -> asyncio.AbstractEventLoop | None:
    """The free default context ``ctx`` goes back to the spare on-demand loop, if it
    is open, not running, and nothing was attached to its own context meanwhile."""
    g: Any = _spare.loop
    _spare.loop = None
    if g is None or g.is_closed() or g.is_running() or not g._aioqloop_context._is_empty():
        return None
    own = g._aioq_swap(ctx)
    own._close_with_loop()
    ctx._set_home_thread(threading.main_thread().ident or 0)
    return g  # type: ignore[no-any-return]


def _adopt_default_loop(loop: asyncio.AbstractEventLoop | None) -> None:
    """Make ``loop`` (an aioqloop loop, e.g. gi.events' GLibEventLoop) the loop holding
    the global default context, which becomes that loop's context; already current in
    the main thread."""
    global _default_adopted, _default_ran
    with _default_lock:
        ctx = get_main_context(loop) if loop is not None else None
        # Held strongly, as the on-demand loop is: it is the main thread's current loop.
        _set_default(ctx, loop, user=False)
        _default_adopted = loop is not None
        _default_ran = False
        _arm_exit_report()


_registry.register_default_lookup(_default_context)
_registry.register_run_hook(note_run)
_registry.default_hooks.claim = claim_default
_registry.default_hooks.became = became_default
_registry.default_hooks.bound = bound_default
_registry.default_hooks.release = release_default


def _forget_default_loop() -> None:
    """Close the loop made on demand behind the global default context (if not
    running) and forget the context: the next `MainContext.default()` outside a loop
    makes a new one.  For tests."""
    global _default_adopted, _default_ran
    with _default_lock:
        g = _holder()
        ctx = _usable_default()
        on_demand = _default_on_demand
        adopted, _default_adopted = _default_adopted, False
        _set_default(None, None, user=False)
        _default_ran = False
        spare, _spare.loop = _spare.loop, None
    if spare is not None and not spare.is_closed() and not spare.is_running():
        spare.close()
    if g is not None and (on_demand or adopted) and not g.is_running():
        g.close()
    elif g is None and ctx is not None:
        ctx.close()  # free (its loop closed): nothing else will close it
    if adopted and threading.current_thread() is threading.main_thread():
        asyncio.set_event_loop(None)


def _arm_exit_report() -> None:
    global _exit_report_armed
    if not _exit_report_armed:
        _exit_report_armed = True
        atexit.register(_report_unrun)


def _unrun_work(ctx: MainContext) -> list[str]:
    """What waits in ``ctx`` and never ran: sources never dispatched, scheduled BHs."""
    from .bottomhalf import _BHSource
    from .context import _QueueSource

    names: list[str] = []
    for src in list(ctx._sources.values()):
        if src._destroyed or src._stats is not None:
            continue
        if isinstance(src, _BHSource):
            bh = ctx._bh
            if bh is not None and bh.pending:
                names.extend(repr(b) for b in list(bh.queue))
            continue
        if isinstance(src, _QueueSource):
            continue
        callback = src._callback
        what = getattr(callback, "__qualname__", None) or repr(callback)
        names.append(f"{src!r} (callback {what})" if callback is not None else repr(src))
    return names


def _report_unrun() -> None:
    """At interpreter exit: the work waiting in the global default context (sources
    never dispatched, scheduled bottom halves) is reported with one warning when no
    loop ran the context since it was made or since the last loop holding it closed,
    and no loop of the user's holds it now.

    GLib queues such work until the main loop runs, and so does this context (a loop
    made on the main thread later takes it); a program that ends before any loop ran
    the context would otherwise lose it without a word.  Work added while a loop of the
    user's held the context is that loop's, and ends with it, as asyncio's does.
    """
    with _default_lock:
        ctx = _usable_default()
        if ctx is None or _default_ran or (_holder() is not None and not _default_on_demand):
            return
    names = _unrun_work(ctx)
    if names:
        shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
        warnings.warn(
            f"aioqloop: work added to the global default MainContext was never run, "
            f"as no event loop ran that context: {shown} (run a loop on the main thread, "
            "e.g. aioqloop.run(), or pass context=)",
            RuntimeWarning,
            stacklevel=1,
        )



def new_event_loop(
    *,
    base: str = "asyncio",
    clock: VirtualClock | None = None,
    bql: BigLock | None = None,
) -> EventLoop:
    """Create an aioqloop event loop; usable as ``loop_factory``.

    The loop is an `aioqloop.EventLoop` (an ``asyncio.AbstractEventLoop`` with
    ``main_context`` and a ``create_task`` that returns an `aioqloop.Task`).

    ``base`` is ``"asyncio"`` (the stock selector loop, full priority support) or
    ``"uvloop"``.  ``clock`` is a `VirtualClock` (stock base only: libuv's timers run on
    its own real clock).  ``bql`` is a `BigLock` held while sources dispatch and released
    while the loop waits.
    """
    if base == "asyncio":
        return QSelectorEventLoop(clock=clock, bql=bql)
    if base == "uvloop":
        check_loop_args(clock, bql)
        if clock is not None:
            raise ValueError(
                "a VirtualClock needs base='asyncio': uvloop's timers run on libuv's own "
                "real clock, so virtual time cannot be honoured there"
            )
        from ._uvloop import uvloop_class

        return uvloop_class()(bql=bql)  # type: ignore[call-arg]
    raise ValueError(f"base must be 'asyncio' or 'uvloop', not {base!r}")


def run(
    coro: Coroutine[Any, Any, _T],
    *,
    base: str = "asyncio",
    debug: bool | None = None,
    **loop_kwargs: Any,
) -> _T:
    """Run ``coro`` on a new aioqloop loop and close it, like ``asyncio.run``.

    ``loop_kwargs`` go to `new_event_loop` (``clock=``, ``bql=``).
    """
    if not asyncio.iscoroutine(coro):
        raise TypeError(f"a coroutine was expected, got {coro!r}")

    def factory() -> EventLoop:
        return new_event_loop(base=base, **loop_kwargs)

    if sys.version_info >= (3, 11):
        runner_cls: Any = asyncio.Runner
    else:  # pragma: no cover - exercised on 3.10 only
        from backports.asyncio.runner import (  # type: ignore[import-not-found]
            Runner as runner_cls,
        )
    with runner_cls(debug=debug, loop_factory=factory) as runner:
        return runner.run(coro)  # type: ignore[no-any-return]
