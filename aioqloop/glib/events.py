"""PyGObject's ``gi.events`` (as of 3.56) on aioqloop: asyncio loops that iterate a GLib
context, with or without an event-loop policy.

``GLibEventLoop(main_context=None)`` is an aioqloop event loop whose context *is*
``main_context`` (a `aioqloop.glib.MainContext`): GLib sources attached there and the
loop's asyncio callbacks share one priority order, exactly as under gi.events.  Without
a context it takes the thread-default one, else on the main thread GLib's default one,
else a new one.  The loop is exposed as ``loop._context`` and ``loop._main_loop`` like
PyGObject's.  ``GLibEventLoop`` runs on the stock selector loop; `GLibUVEventLoop` on
uvloop (and ``GLibEventLoopPolicy(base="uvloop")`` makes those).

The loop is a context manager, which is what makes it work without a policy (Python
3.14 deprecates policies, 3.16 removes them): entering pushes its context as the
thread default and registers the loop for that context; a second loop entering the same
context meanwhile is refused (`RuntimeError`); nesting is counted.  ``run_forever``
enters it, so ``asyncio.run(main(), loop_factory=GLibEventLoop)`` needs nothing else.
`GLibEventLoopPolicy` keeps its registry on the class, so ``get_event_loop()`` and the
class methods PyGObject's own code calls (``_get_event_loop``,
``_get_event_loop_for_context``) work whether or not a policy is installed.

A fresh context (``GLib.MainContext()``, nothing attached) is adopted by the loop; so is
the default context while nothing is attached to it and its loop does not run, which
makes the new loop the default one.  A context that another GLibEventLoop adopted is
shared: it follows the loop that last entered it, and moving it while sources are
attached, or while the other loop runs, is refused with `RuntimeError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import aioqloop
from aioqloop import glib as GLib
from aioqloop._tasks import QTask

from . import _core

__all__ = ("GLibEventLoop", "GLibEventLoopPolicy", "GLibTask")  # and GLibUVEventLoop, lazily


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _made_default() -> GLib.MainContext | None:
    """GLib's default context if one was made and is open (none is created)."""
    core = GLib._default_core_if_made()
    if core is None or _core.is_closed(core) or (core.loop is not None and core.loop.is_closed()):
        return None
    return GLib._wrap_context(core)


def _current_context() -> GLib.MainContext | None:
    """gi.events' notion of this thread's context: the thread default, else on the main
    thread GLib's default (only if made: looking never creates one), else None."""
    ctx = GLib.MainContext.get_thread_default()
    if ctx is None and _on_main_thread():
        ctx = _made_default()
    return ctx


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


def _adopted_by_glib_loop(ctx: GLib.MainContext) -> bool:
    """True if ``ctx`` speaks for the context of another open GLibEventLoop."""
    owner: Any = ctx._ctx.loop
    if not isinstance(owner, _Mixin):
        return False
    loop: Any = owner
    return not loop.is_closed()


class _Mixin:
    """What GLibEventLoop adds to an aioqloop loop of either base."""

    _context: GLib.MainContext
    _main_loop: GLib.MainLoop
    #: gi.events decides the context from ``main_context`` (a fresh one by default), so
    #: the core's "a loop made on the main thread takes the default context" is off.
    _aioq_takes_default = False

    def _glib_setup(self, main_context: GLib.MainContext | None) -> None:
        loop: Any = self
        self._loop_enter_count = 0
        self._loop_was_set = False
        self._ctx_was_set = False
        self._glib_quit_funcs: list[Callable[[], Any]] = []
        self._glib_paused = 0
        if main_context is None:
            main_context = GLib.MainContext.get_thread_default()
        if main_context is None and _on_main_thread():
            main_context = _made_default()
            if main_context is None:
                # No default context yet: this loop's fresh one becomes it (asking for
                # the default would first make a plain aioqloop loop for it).
                fresh = GLib.MainContext()
                self._context = _adopt(loop, fresh)
                GLib._make_default(loop, fresh._ctx)
                self._main_loop = GLib.MainLoop(self._context)
                return
        if main_context is None:
            main_context = GLib.MainContext()
        if _adopted_by_glib_loop(main_context):
            # Another GLibEventLoop's context: shared, claimed on entering (_claim).
            if not isinstance(main_context, GLib.MainContext):  # pragma: no cover
                raise TypeError("expected a GLib.MainContext")
            self._context = main_context
        else:
            self._context = _adopt(loop, main_context)
        self._main_loop = GLib.MainLoop(self._context)

    def _claim(self) -> None:
        """Make the shared context speak for this loop (see the module docstring)."""
        loop: Any = self
        if self._context._ctx is not aioqloop.get_main_context(loop):
            _adopt(loop, self._context)

    # ------------------------------------------------------------ context manager
    def __enter__(self) -> None:
        """Push the loop's context as the thread default and register the loop for it.

        Nested entries are counted.  Refused (`RuntimeError`, nothing changed) while
        another asyncio loop runs in this thread, or another open GLibEventLoop is
        registered for this thread's context.
        """
        loop: Any = self
        if self._loop_enter_count > 0:
            self._loop_enter_count += 1
            return
        if not loop.is_running() and asyncio._get_running_loop() is not None:
            raise RuntimeError("Thread already has a python EventLoop")
        ctx = _current_context()
        registry = GLibEventLoopPolicy._loops
        other = registry.get(hash(ctx)) if ctx is not None else None
        if other is not None and not other.is_closed() and other is not self:
            raise RuntimeError(
                f"A GLibEventLoop is already registered through the policy ({other!r}, "
                f"self={self!r})"
            )
        self._claim()
        if other is self:
            self._loop_was_set = True
        else:
            registry[hash(self._context)] = loop
        if ctx is None or hash(ctx) != hash(self._context):
            self._context.push_thread_default()
            self._ctx_was_set = True
        self._loop_enter_count += 1

    def __exit__(self, *exc: object) -> None:
        """Undo the matching `__enter__` (the last one pops and unregisters)."""
        self._loop_enter_count -= 1
        if self._loop_enter_count > 0:
            return
        if not self._loop_was_set:
            registry = GLibEventLoopPolicy._loops
            key = hash(self._context)
            if registry.get(key) is self:
                del registry[key]
        if self._ctx_was_set:
            self._context.pop_thread_default()
        self._loop_was_set = False
        self._ctx_was_set = False

    # ------------------------------------------------------------------ running
    def run_forever(self) -> None:
        """Run the loop, entered (`__enter__`) for the length of the run."""
        loop: Any = self
        if loop.is_running():
            raise RuntimeError("This event loop is already running")
        with self:
            super().run_forever()  # type: ignore[misc]

    def stop(self) -> None:
        """Stop the loop, and the innermost GLib main loop run under `running`."""
        super().stop()  # type: ignore[misc]
        if self._glib_quit_funcs:
            self._glib_quit_funcs[-1]()

    @contextlib.contextmanager
    def running(self, quit_func: Callable[[], Any]) -> Iterator[None]:
        """gi.events' hook for GLib API iterating this loop's context itself (a
        ``GLib.MainLoop.run``, ``Gio.Application.run``): while the block runs, `stop`
        also calls ``quit_func`` (the innermost one when such runs nest)."""
        self._glib_quit_funcs.append(quit_func)
        try:
            yield
        finally:
            self._glib_quit_funcs.pop()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """gi.events' guarantee that the loop is *not* iterated inside the block.

        Python code iterating the context by hand (``ctx.iteration()``) dispatches GLib
        sources only, never this loop's asyncio callbacks; inside the block that holds
        for the raw ``g_main_context_iteration`` (``super(GLib.MainContext, ctx)``) too.
        """
        self._glib_paused += 1
        try:
            yield
        finally:
            self._glib_paused -= 1

    def __repr__(self) -> str:
        loop: Any = self
        return (
            f"<{type(self).__name__} running={loop.is_running()} "
            f"closed={loop.is_closed()} debug={loop.get_debug()} "
            f"ctx=0x{hash(self._context) & (2**64 - 1):X} "
            f"loop=0x{id(self._main_loop):X}>"
        )


class GLibEventLoop(_Mixin, _core.loop_class("asyncio")):  # type: ignore[misc]
    """gi.events' ``GLibEventLoop`` on the stock selector loop."""

    def __init__(self, main_context: GLib.MainContext | None = None) -> None:
        super().__init__()
        self._glib_setup(main_context)


_uv_class: type | None = None


def _uv() -> type:
    global _uv_class
    if _uv_class is None:

        class GLibUVEventLoop(_Mixin, _core.loop_class("uvloop")):  # type: ignore[misc]
            """gi.events' ``GLibEventLoop`` on uvloop."""

            def __init__(self, main_context: GLib.MainContext | None = None) -> None:
                super().__init__()
                self._glib_setup(main_context)

        _uv_class = GLibUVEventLoop
    return _uv_class


def __getattr__(name: str) -> Any:
    if name == "GLibUVEventLoop":
        return _uv()
    raise AttributeError(name)


#: gi.events' ``GLibTask``: the task class of aioqloop loops (``set_priority`` etc.).
GLibTask = QTask

# Python 3.14 deprecates the policy classes (3.16 removes them): take the base without
# the deprecation warning, and none once it is gone, as gi.events does.
_PolicyBase: Any = getattr(asyncio.events, "_AbstractEventLoopPolicy", None)
if _PolicyBase is None:
    _PolicyBase = getattr(asyncio, "AbstractEventLoopPolicy", object)


def _get_policy() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return asyncio.get_event_loop_policy()


def _set_policy(policy: Any) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        asyncio.set_event_loop_policy(policy)


class GLibEventLoopPolicy(_PolicyBase):  # type: ignore[misc]
    """gi.events' policy: one `GLibEventLoop` per GLib context, in a registry on the
    class (shared with the loops' own `__enter__`), so that it works installed or not.

    `get_event_loop` gives the loop of the thread-default context (on the main thread,
    of the default context), created on first use; a thread with neither gets
    `RuntimeError`.  `set_event_loop` pushes a loop's context as the thread default.
    Used as a context manager, it is the installed policy for the block and closes the
    loops it knows at the end.
    """

    #: ``{hash(context): loop}`` for every context with a registered loop.
    _loops: ClassVar[dict[int, Any]] = {}
    _child_watcher: Any = None
    _base = "asyncio"

    def __init__(self, base: str | None = None) -> None:
        if base is not None:
            if base not in ("asyncio", "uvloop"):
                raise ValueError(f"base must be 'asyncio' or 'uvloop', not {base!r}")
            self._base = base
        self._orig_policy: Any = None

    @staticmethod
    def _class_of(base: str) -> Any:
        return GLibEventLoop if base == "asyncio" else _uv()

    def _loop_class(self) -> Any:
        return self._class_of(self._base)

    # ------------------------------------------------------------- look-ups
    def get_event_loop(self) -> asyncio.AbstractEventLoop:
        """The loop of this thread's (default) GLib context; see the class docstring."""
        loop = self._lookup(self._loop_class(), force_implicit=True)
        assert loop is not None
        return loop  # type: ignore[no-any-return]

    def get_event_loop_for_context(self, ctx: GLib.MainContext) -> asyncio.AbstractEventLoop:
        """The loop of ``ctx``, created on first use."""
        loop = self._lookup_for(self._loop_class(), ctx, force_implicit=True)
        assert loop is not None
        return loop  # type: ignore[no-any-return]

    @classmethod
    def _get_event_loop(cls, force_implicit: bool = False) -> Any:
        """gi.events' class-level look-up: this thread's loop; without
        ``force_implicit``, None rather than an error or a new loop unless a
        GLibEventLoopPolicy is installed."""
        return cls._lookup(cls._class_of(cls._base), force_implicit)

    @classmethod
    def _get_event_loop_for_context(
        cls, ctx: GLib.MainContext, force_implicit: bool = False
    ) -> Any:
        """gi.events' class-level look-up of ``ctx``'s loop; see `_get_event_loop`."""
        return cls._lookup_for(cls._class_of(cls._base), ctx, force_implicit)

    @classmethod
    def _lookup(cls, loop_class: Any, force_implicit: bool) -> Any:
        ctx = _current_context()
        if ctx is None:
            if _on_main_thread():
                # GLib's default context does not exist yet, so no loop is registered
                # for it: a new loop makes it (only when asked to create).
                if not force_implicit:
                    return None
                loop = loop_class()
                cls._loops[hash(loop._context)] = loop
                return loop
            if not force_implicit:
                return None
            raise RuntimeError(
                f"There is no main context set for thread {threading.current_thread().name!r}."
            )
        return cls._lookup_for(loop_class, ctx, force_implicit)

    @classmethod
    def _lookup_for(cls, loop_class: Any, ctx: GLib.MainContext, force_implicit: bool) -> Any:
        loop = cls._loops.get(hash(ctx))
        if loop is not None and not loop.is_closed():
            return loop
        if not force_implicit and not isinstance(_get_policy(), GLibEventLoopPolicy):
            return None
        new = loop_class(ctx)
        cls._loops[hash(new._context)] = new
        if cls._child_watcher is not None and hash(ctx) == hash(_made_default()):
            cls._child_watcher.attach_loop(new)
        return new

    # ------------------------------------------------------------- setting
    def set_event_loop(self, loop: asyncio.AbstractEventLoop | None) -> None:
        """Attach ``loop`` to this thread (only one without a context), or detach (None)."""
        ctx_td = GLib.MainContext.get_thread_default()
        ctx = _current_context()
        if loop is None:
            if ctx is not None:
                old = self._loops.pop(hash(ctx), None)
                if old is not None and hash(old._context) != hash(ctx):
                    warnings.warn(
                        "GMainContext was changed unknowingly by asyncio integration!",
                        RuntimeWarning,
                        stacklevel=2,
                    )
            if ctx_td is not None:
                ctx_td.pop_thread_default()
            return
        if not isinstance(loop, _Mixin):
            # Not a GLib event loop: aioqloop's core announces the default loop it makes
            # for a thread this way; it is not this policy's to track.
            return
        # The main thread always has GLib's default context (here made on demand, so
        # it may not exist yet): no other loop can be attached to it.
        if ctx is not None or _on_main_thread():
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

    # ------------------------------------------------------- context manager
    def __enter__(self) -> GLibEventLoopPolicy:
        """Install this policy for the block (the previous one comes back after)."""
        self._orig_policy = _get_policy()
        _set_policy(self)
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the loops the registry holds and restore the previous policy."""
        for loop in list(self._loops.values()):
            if not loop.is_closed() and not loop.is_running():
                loop.close()
        _set_policy(self._orig_policy)

    if sys.version_info < (3, 14):

        @classmethod
        def get_child_watcher(cls) -> Any:
            """A thread-based child watcher, as gi.events provides (asyncio < 3.14).

            GLib's own child watch must not reap the children asyncio waits for, so,
            like PyGObject, this uses ``asyncio.ThreadedChildWatcher``.
            """
            if cls._child_watcher is None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)
                    cls._child_watcher = asyncio.ThreadedChildWatcher()
                if _on_main_thread():
                    cls._child_watcher.attach_loop(cls._lookup(cls._class_of(cls._base), True))
            return cls._child_watcher
