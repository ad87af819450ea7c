"""The seam between a `MainContext` and an asyncio loop it does not own.

`PlainDriver` runs a context inside *any* asyncio loop (the stock ``asyncio.run`` loop,
uvloop, an aioqloop loop's extra contexts) using only public loop API:

* the context's epoll fd is one ``add_reader``;
* the earliest ready time is one ``call_at`` handle, re-armed only when the head of the
  heap moves earlier or the handle fired;
* each GLib iteration is one ``call_soon`` callback, scheduled when something becomes
  ready (a ready time, an fd, a wake-up, an attach); it runs prepare → check → dispatch
  with no wait, since asyncio did the waiting, and schedules the next one while work
  remains, so sources interleave with asyncio callbacks in FIFO order.

Loop-thread only, except for `MainContext._notify`, which reaches the loop by writing the
context's eventfd (part of the epoll set, hence of ``add_reader``).  aioqloop's own loops
do better (priorities against asyncio callbacks, prepare before every poll): see loop.py.
"""

from __future__ import annotations

import asyncio
import math
import threading
from typing import TYPE_CHECKING

from .context import _is_uvloop

if TYPE_CHECKING:
    from .context import MainContext

__all__ = ("PlainDriver",)


class PlainDriver:
    """Drive ``ctx`` from ``loop`` callbacks (see the module docstring)."""

    def __init__(self, ctx: MainContext, loop: asyncio.AbstractEventLoop) -> None:
        self._ctx = ctx
        self._loop = loop
        self._handle: asyncio.Handle | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = math.inf
        self._closed = False
        # libuv rounds timers to milliseconds from a cached clock: aim just past it.
        self._slack = 0.001 if _is_uvloop(loop) else 0.0
        loop.add_reader(ctx._epoll.fileno(), self._on_readable)
        ctx._kick = self._kick
        ctx._deadline_changed = self._on_deadline
        ctx._poll_waiting = True
        self._kick()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        ctx = self._ctx
        ctx._kick = None
        ctx._deadline_changed = None
        if self._handle is not None:
            self._handle.cancel()
        if self._timer is not None:
            self._timer.cancel()
        if not self._loop.is_closed():
            self._loop.remove_reader(ctx._epoll.fileno())

    def _kick(self) -> None:
        if self._handle is None and not self._closed:
            self._handle = self._loop.call_soon(self._run)

    def _on_readable(self) -> None:
        # Dispatch right here, as an add_reader callback would, instead of one more loop
        # iteration later (unless an iteration is already queued: keep FIFO order).
        queued = self._handle is not None
        self._ctx._poll_ready_fds()
        if queued:
            return
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._run()

    def _on_deadline(self, when: float) -> None:
        if when < self._timer_when:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_when = when
            # A timer that fires a little early only costs a re-arm: _run re-checks the
            # heap against the context's own clock, so nothing is dispatched early.
            self._timer = self._loop.call_at(when + self._slack, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_when = math.inf
        self._run()

    def _run(self) -> None:
        """One GLib iteration without a wait; then arrange for the next."""
        self._handle = None
        ctx = self._ctx
        if ctx._closed:
            return
        ctx._owner = threading.get_ident()
        ctx._poll_waiting_set(False)
        try:
            timeout = ctx._prepare()
            prio = ctx._check()
            if prio != math.inf:
                ctx._dispatch(prio)
        finally:
            ctx._poll_waiting_set(True)
        # Re-check after publishing "may sleep" (QEMU's notify_me handshake).
        if ctx._has_work():
            self._kick()
            return
        deadline = ctx._next_deadline()
        if timeout and not ctx._lock_deferred:  # 0.0: nothing left ready after dispatch
            deadline = min(deadline, ctx._clock() + timeout)
        if deadline != math.inf:
            self._on_deadline(deadline)
