"""`MainLoop`: GLib's ``GMainLoop`` (``run``/``quit``/``is_running``) on a `MainContext`.

``run()`` does what the situation allows:

* the context's loop is not running (plain synchronous code): it runs that asyncio loop
  until `quit` (``run_forever`` + ``stop``), so coroutines and sources both progress;
* it is called on the loop's thread from a source callback or a plain callback while the
  loop runs: a **nested** loop, ``while running: context.iteration(True)``, as in GLib
  (sources dispatch at depth 2; asyncio callbacks wait for the outer loop);
* from a coroutine it would block the loop: `RuntimeError`; ``await loop.run_async()``
  waits for `quit` instead;
* a stand-alone context (no asyncio loop) is iterated by hand.
"""

from __future__ import annotations

import asyncio
import threading
import warnings
from typing import Any

from .context import MainContext

__all__ = ("MainLoop",)


class MainLoop:
    """A GLib-style main loop over ``context`` (default: `MainContext.default`)."""

    def __init__(self, context: MainContext | None = None, is_running: bool = False) -> None:
        if context is None:
            context = MainContext.default()
        elif not isinstance(context, MainContext):
            raise TypeError(f"context must be a MainContext, not {type(context).__name__}")
        self._context = context
        self._running = bool(is_running)
        self._stoppers: list[Any] = []
        self._lock = threading.Lock()

    @property
    def context(self) -> MainContext:
        """The context this loop iterates."""
        return self._context

    def is_running(self) -> bool:
        """True between `run` and `quit`."""
        return self._running

    def run(self) -> None:
        """Iterate until `quit` (see the module docstring for the cases)."""
        ctx = self._context
        if ctx.closed:
            raise RuntimeError("the MainContext is closed")
        if ctx._in_hook:
            warnings.warn(
                "MainLoop.run() called recursively from within a source's check() or "
                "prepare()",
                RuntimeWarning,
                stacklevel=2,
            )
            return
        loop = ctx.loop
        self._running = True
        try:
            if loop is None:
                while self._running:
                    ctx.iteration(True)
                return
            if loop.is_running():
                if asyncio._get_running_loop() is not loop:
                    raise RuntimeError(
                        "MainLoop.run(): the context's loop runs in another thread; "
                        "quit it there, or use MainContext.invoke() to run code in it"
                    )
                if asyncio.current_task(loop) is not None:
                    raise RuntimeError(
                        "MainLoop.run() inside a coroutine would block the event loop; "
                        "use 'await main_loop.run_async()' instead"
                    )
                while self._running:
                    ctx.iteration(True)
                return
            if loop.is_closed():
                raise RuntimeError("MainLoop.run(): the context's event loop is closed")
            with self._lock:
                # A quit() from another thread since _running was set above found no
                # stopper to call: honour it here instead of running forever.
                if not self._running:
                    return
                self._stoppers.append(loop)
            try:
                loop.run_forever()
            finally:
                with self._lock:
                    if loop in self._stoppers:
                        self._stoppers.remove(loop)
        finally:
            self._running = False

    async def run_async(self) -> None:
        """Wait, without blocking the loop, until `quit` is called."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._running = True
        with self._lock:
            if not self._running:  # quit() from another thread just now: see run()
                return
            self._stoppers.append(fut)
        try:
            await fut
        finally:
            self._running = False
            with self._lock:
                if fut in self._stoppers:
                    self._stoppers.remove(fut)

    def quit(self) -> None:
        """Make `run` return (any thread).  A quit before run is lost, as in GLib."""
        self._running = False
        with self._lock:
            stoppers = list(self._stoppers)
        for stopper in stoppers:
            if isinstance(stopper, asyncio.Future):
                floop = stopper.get_loop()
                if not floop.is_closed():
                    floop.call_soon_threadsafe(_resolve, stopper)
            elif not stopper.is_closed():
                stopper.call_soon_threadsafe(stopper.stop)
        self._context.wakeup()

    def __repr__(self) -> str:
        return f"<MainLoop running={self._running} context={self._context!r}>"


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
