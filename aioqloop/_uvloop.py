"""The uvloop base (`QUVLoop`): a ``uvloop.Loop`` subclass whose context runs on public API.

libuv gives no hook before its poll and no view of its ready queue, so the loop's context
is driven by `aioqloop.bridge.PlainDriver`: one ``add_reader`` for the context's epoll fd,
one ``call_at`` for the earliest ready time (and for the NVAL audit of watched fds), and
one ``call_soon`` queued when something becomes ready, which runs GLib iterations while
sources stay ready (at most ``bridge.BATCH``).  GLib's rules hold among sources and
prioritized task steps; against uvloop's own callbacks a batch of source dispatches is
one more callback in uvloop's FIFO (docs/tutorial/uvloop.md lists what differs).
With ``bql=`` the lock is held while sources dispatch; it cannot be dropped around
libuv's poll, which aioqloop does not see.

Fds keep the private epoll set here (a wake-up costs libuv's ``epoll_wait`` and one
zero-timeout ``epoll_wait`` on the private set), unlike the stock base, which shares its
selector's epoll object (`aioqloop._selectorfds`).  uvloop's public API has no access to
libuv's epoll object, and ``add_reader``/``add_writer`` per watched fd is no cheaper:
libuv reports only readable/writable (an error or hang-up comes as both, PRI not at all),
so the exact poll(2) revents GLib hands to a source would still need a syscall per
event, and one fd number takes one reader only, so a source and asyncio code on the same
fd would replace each other's callbacks.

The class is built on first use, so importing aioqloop does not import uvloop.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

from . import _registry
from ._tasks import EventLoop
from .bridge import PlainDriver
from .context import MainContext

if TYPE_CHECKING:
    from .biglock import BigLock

__all__ = ("uvloop_class",)

_QUVLoop: type[EventLoop] | None = None


def uvloop_class() -> type[EventLoop]:
    """`QUVLoop`, built on first use (needs uvloop: ``pip install 'aioqloop[uvloop]'``)."""
    global _QUVLoop
    if _QUVLoop is not None:
        return _QUVLoop
    try:
        import uvloop
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            "base='uvloop' needs uvloop: pip install 'aioqloop[uvloop]'", name="uvloop"
        ) from exc

    class QUVLoop(EventLoop, uvloop.Loop):  # type: ignore[misc]
        """aioqloop on uvloop: the context runs through public loop API only."""

        def __init__(self, *, bql: BigLock | None = None) -> None:
            super().__init__()  # libuv's loop and fds exist already (__cinit__)
            self._aioq_bql = bql
            _registry.default_hooks.bind_new_loop(
                self, lambda: MainContext(self, _driver="loop"), self._aioq_bind)

        def _aioq_bind(self, ctx: MainContext) -> None:
            """Drive ``ctx`` from this loop (a new context, or the global default
            context moving here: ``aioqloop.loop.claim_default``)."""
            self._aioqloop_context = ctx
            driver = self._aioq_driver = PlainDriver(ctx, self)
            if ctx._driver_fileno() is not None:
                # Its fds were opened under another loop: watch them from this one.
                driver.epoll_changed()
            ctx._set_bql(self._aioq_bql)

        def _aioq_swap(self, ctx: MainContext | None) -> MainContext:
            """Let the context go (`MainContext._driver_detach`) and drive ``ctx``
            instead (detached; None: a new one); returns the context let go."""
            old = self._aioqloop_context
            old._driver_detach()
            if ctx is None:
                ctx = MainContext(self, _driver="loop")
            else:
                ctx._rebind(self)
            self._aioq_bind(ctx)
            return old

        def close(self) -> None:
            if not self.is_closed() and not self.is_running():
                _registry.default_hooks.release(self, self._aioqloop_context)
            # uvloop's close walks libuv's handles and warns about each unclosed one
            # *before* closing it.  With ResourceWarning as an error (pytest's
            # filterwarnings = error) that raise skips the handle's close, and the
            # uv_run() that follows waits forever on the still-active handle (a
            # listening server left open blocks close() for good).  So collect the
            # warnings while every handle closes, then re-issue them under the
            # caller's filters; one that a filter turns into an error is only shown
            # (uvloop itself swallows it as unraisable), so close() still never raises.
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ResourceWarning)
                super().close()
            _reissue(caught)

        def __del__(self) -> None:
            # A loop dropped without close(): free the context's fds with it, and give
            # back what its sources hold (signal dispositions).
            ctx: Any = getattr(self, "_aioqloop_context", None)
            if ctx is not None and not ctx.closed and not self.is_running():
                try:
                    _registry.default_hooks.release(self, ctx)
                except Exception:
                    pass
            parent: Any = getattr(super(), "__del__", None)
            if parent is not None:
                parent()

    _QUVLoop = QUVLoop
    return QUVLoop


def _reissue(caught: list[warnings.WarningMessage]) -> None:
    """Warn again, under the caller's filters, what uvloop's close() warned; one that a
    filter turns into an error is only shown (close() never raises)."""
    for w in caught:
        try:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno,
                                   source=w.source)
        except Warning:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
