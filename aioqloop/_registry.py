"""Per-thread dispatch state and the default-context lookup: a leaf every layer may import.

GLib keeps the dispatch stack (``g_main_depth``, ``g_main_current_source``) in thread-local
storage and ``g_main_context_default()`` in a global.  Here both live in this small module
so that sources and bottom halves can find "the default context" without importing the
context or the loops (which import them): the loop layer registers the lookup at import
time, as trio's ``_run_context`` does for its runner.  Nothing here imports the package.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .context import MainContext
    from .source import Source

__all__ = ("current_source", "main_depth")


class _ThreadState(threading.local):
    def __init__(self) -> None:
        # One entry per dispatch level in this thread (GLib's dispatch stack).
        self.current: list[Source] = []


_tls = _ThreadState()


def main_depth() -> int:
    """Dispatch depth in this thread: 0 at top level, 1 in a callback, 2 when nested.

    Like ``g_main_depth``.
    """
    return len(_tls.current)


def current_source() -> Source | None:
    """The source whose callback is running in this thread, or None (``g_main_current_source``)."""
    stack = _tls.current
    return stack[-1] if stack else None


def dispatch_stack() -> list[Source]:
    """This thread's dispatch stack (the engine pushes and pops it around each dispatch)."""
    return _tls.current


# Set by aioqloop.context when it is imported; looked up at call time.
_context_class: type[Any] | None = None
#: Told the context class once it is registered: set by aioqloop._engine when the
#: compiled core is in use (the core checks against the class and calls some of its
#: methods).
_context_class_hook: Callable[[type[Any]], None] | None = None
# Set by aioqloop.loop: the default context of the running loop, else the global one.
_default_lookup: Callable[[], MainContext] | None = None


# Set by aioqloop.loop: told when a loop starts running a context (its report at exit).
_run_hook: Callable[[MainContext], None] | None = None


def register_run_hook(hook: Callable[[MainContext], None]) -> None:
    """Called once by `aioqloop.loop`: what `note_run` calls."""
    global _run_hook
    _run_hook = hook


class DefaultHooks:
    """How a loop being built or closed deals with the global default context: set by
    `aioqloop.loop` (``claim_default``, ``became_default``, ``bound_default``,
    ``release_default``) for both bases (`aioqloop._stock`, `aioqloop._uvloop`), which
    `aioqloop.loop` imports."""

    claim: Callable[[Any], MainContext | None]
    became: Callable[[Any, MainContext], None]
    bound: Callable[[MainContext], None]
    release: Callable[[Any, MainContext], None]

    def bind_new_loop(self, loop: Any, make: Callable[[], MainContext],
                      bind: Callable[[MainContext], None]) -> None:
        """A loop being built takes its context: the global default one when it may
        (``claim``), else a new one from ``make``; ``bind`` makes the loop drive it."""
        ctx = self.claim(loop)
        if ctx is None:
            ctx = make()
            bind(ctx)
            self.became(loop, ctx)
            return
        try:
            bind(ctx)
        finally:
            self.bound(ctx)  # held by this thread until bound, even if binding failed


default_hooks = DefaultHooks()


def note_run(ctx: MainContext) -> None:
    """A loop starts running ``ctx`` (called by both bases' ``run_forever``)."""
    hook = _run_hook
    if hook is not None:
        hook(ctx)


def register_context_class(cls: type[Any]) -> None:
    """Called once by `aioqloop.context`: the class `is_context` checks against."""
    global _context_class
    _context_class = cls
    hook = _context_class_hook
    if hook is not None:
        hook(cls)


def register_default_lookup(lookup: Callable[[], MainContext]) -> None:
    """Called once by `aioqloop.loop`: how `default_context` finds the default context."""
    global _default_lookup
    _default_lookup = lookup


def is_context(obj: object) -> bool:
    """True if ``obj`` is a `MainContext`."""
    cls = _context_class
    return cls is not None and isinstance(obj, cls)


def default_context() -> MainContext:
    """The default context: the running loop's, else the global default (see loop.py)."""
    lookup = _default_lookup
    if lookup is None:  # importing any submodule imports the package, which registers it
        raise RuntimeError("aioqloop.loop is not initialised")
    return lookup()
