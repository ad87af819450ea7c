"""PyGObject 3.50's ``gi.events`` on aioqloop: asyncio loops that iterate a GLib context.

``GLibEventLoop(main_context)`` is an aioqloop event loop whose context *is*
``main_context`` (a `aioqloop.glib.MainContext`): GLib sources attached there and the
loop's asyncio callbacks share one priority order, exactly as under gi.events.  The loop
is exposed as ``loop._context`` and ``loop._main_loop`` like PyGObject's.
`GLibEventLoopPolicy` maps the thread-default (on the main thread: the default) context
to its loop; `GLibTask` is the loop's task class (``set_priority``/``get_priority``).
``GLibEventLoop`` runs on the stock selector loop; `GLibUVEventLoop` on uvloop (and
``GLibEventLoopPolicy(base="uvloop")`` makes those).

A fresh context (``GLib.MainContext()``, nothing attached) is adopted by the loop; so is
the default context while nothing is attached to it and its loop does not run, which
makes the new loop the default one.  Any other context is refused with `RuntimeError`.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import warnings
from typing import Any

import aioqloop
from aioqloop import glib as GLib

from . import _core

__all__ = ("GLibEventLoop", "GLibEventLoopPolicy", "GLibTask")  # and GLibUVEventLoop, lazily


def _adopt(loop: asyncio.AbstractEventLoop, main_context: GLib.MainContext) -> GLib.MainContext:
    """Make ``main_context`` (the facade) speak for ``loop``'s own core context."""
    if not isinstance(main_context, GLib.MainContext):
        raise TypeError(f"expected a GLib.MainContext, not {type(main_context).__name__}")
    core = aioqloop.get_main_context(loop)
    old = main_context._ctx
    if old is core:
        return main_context
    if _core.has_sources(old):
        raise RuntimeError("this GLib.MainContext has sources attached; it has its loop already")
    was_default = old is GLib._default_core_if_made()
    if old.loop is not None and old.loop.is_running():
        raise RuntimeError("this GLib.MainContext is iterated by a running loop")
    GLib._rebind(main_context, core)
    if was_default:
        GLib._make_default(loop, core)
    if old.loop is None:
        old.close()
    return main_context


class _Mixin:
    _context: GLib.MainContext
    _main_loop: GLib.MainLoop
    #: gi.events decides the context from ``main_context`` (a fresh one by default), so
    #: the core's "a loop made on the main thread takes the default context" is off.
    _aioq_takes_default = False

    def _glib_setup(self, main_context: GLib.MainContext) -> None:
        loop: Any = self
        self._context = _adopt(loop, main_context)
        self._main_loop = GLib.MainLoop(self._context)

    def __repr__(self) -> str:
        loop: Any = self
        return (
            f"<{type(self).__name__} running={loop.is_running()} "
            f"closed={loop.is_closed()} debug={loop.get_debug()}>"
        )


class GLibEventLoop(_Mixin, _core.loop_class("asyncio")):  # type: ignore[misc]
    """gi.events' ``GLibEventLoop`` on the stock selector loop."""

    def __init__(self, main_context: GLib.MainContext | None = None) -> None:
        super().__init__()
        self._glib_setup(main_context if main_context is not None else GLib.MainContext())


_uv_class: type | None = None


def _uv() -> type:
    global _uv_class
    if _uv_class is None:

        class GLibUVEventLoop(_Mixin, _core.loop_class("uvloop")):  # type: ignore[misc]
            """gi.events' ``GLibEventLoop`` on uvloop."""

            def __init__(self, main_context: GLib.MainContext | None = None) -> None:
                super().__init__()
                self._glib_setup(
                    main_context if main_context is not None else GLib.MainContext()
                )

        _uv_class = GLibUVEventLoop
    return _uv_class


def __getattr__(name: str) -> Any:
    if name == "GLibUVEventLoop":
        return _uv()
    raise AttributeError(name)


#: gi.events' ``GLibTask``: the task class of aioqloop loops (``set_priority`` etc.).
GLibTask = asyncio.Task


class GLibEventLoopPolicy(asyncio.AbstractEventLoopPolicy):
    """gi.events' policy: one `GLibEventLoop` per GLib context.

    `get_event_loop` gives the loop of the thread-default context (on the main thread,
    of the default context), created on first use; a thread with neither gets
    `RuntimeError`.  `set_event_loop` pushes a loop's context as the thread default.
    """

    def __init__(self, base: str = "asyncio") -> None:
        self._base = base
        self._loops: dict[int, asyncio.AbstractEventLoop] = {}
        self._child_watcher: Any = None

    def _loop_class(self) -> Any:
        return GLibEventLoop if self._base == "asyncio" else _uv()

    def get_event_loop(self) -> asyncio.AbstractEventLoop:
        """The loop of this thread's (default) GLib context; see the class docstring."""
        ctx = GLib.MainContext.get_thread_default()
        if ctx is None and threading.current_thread() is threading.main_thread():
            if GLib._default_core_if_made() is None:
                # No default context yet: this loop's fresh one becomes it (asking
                # for the default would first make a plain aioqloop loop for it).
                fresh = GLib.MainContext()
                loop: asyncio.AbstractEventLoop = self._loop_class()(fresh)
                GLib._make_default(loop, fresh._ctx)
                self._loops[hash(fresh)] = loop
                return loop
            ctx = GLib.MainContext.default()
        if ctx is None:
            raise RuntimeError(
                f"There is no main context set for thread {threading.current_thread().name!r}."
            )
        return self.get_event_loop_for_context(ctx)

    def get_event_loop_for_context(self, ctx: GLib.MainContext) -> asyncio.AbstractEventLoop:
        """The loop of ``ctx``, created on first use."""
        loop = self._loops.get(hash(ctx))
        if loop is not None and not loop.is_closed():
            return loop
        new: asyncio.AbstractEventLoop = self._loop_class()(ctx)
        self._loops[hash(ctx)] = new
        return new

    def set_event_loop(self, loop: asyncio.AbstractEventLoop | None) -> None:
        """Attach ``loop`` to this thread (only one without a context), or detach (None)."""
        ctx_td = GLib.MainContext.get_thread_default()
        ctx = ctx_td
        on_main = threading.current_thread() is threading.main_thread()
        if ctx is None and on_main and GLib._default_core_if_made() is not None:
            ctx = GLib.MainContext.default()
        if loop is None:
            if ctx is not None:
                self._loops.pop(hash(ctx), None)
            if ctx_td is not None:
                ctx_td.pop_thread_default()
            return
        if not isinstance(loop, _Mixin):
            # Not a GLib event loop: aioqloop's core announces the default loop it makes
            # for a thread this way; it is not this policy's to track.
            return
        # The main thread always has GLib's default context (here made on demand, so
        # it may not exist yet): no other loop can be attached to it.
        if ctx is not None or on_main:
            raise RuntimeError(
                f"Thread {threading.current_thread().name!r} already has a main context, "
                "get_event_loop() will create a new loop if needed"
            )
        loop._context.push_thread_default()
        self._loops[hash(loop._context)] = loop

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        """A new loop on a new GLib context."""
        loop: asyncio.AbstractEventLoop = self._loop_class()(GLib.MainContext())
        return loop

    if sys.version_info < (3, 14):

        def get_child_watcher(self) -> Any:
            """A thread-based child watcher, as gi.events provides (asyncio < 3.14).

            GLib's own child watch must not reap the children asyncio waits for, so,
            like PyGObject, this uses ``asyncio.ThreadedChildWatcher``.
            """
            if self._child_watcher is None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)
                    self._child_watcher = asyncio.ThreadedChildWatcher()
                if threading.current_thread() is threading.main_thread():
                    self._child_watcher.attach_loop(self.get_event_loop())
            return self._child_watcher
