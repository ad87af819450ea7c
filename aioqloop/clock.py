"""`VirtualClock`: deterministic loop time for tests (QEMU's ``QEMU_CLOCK_VIRTUAL``).

A loop made with ``new_event_loop(clock=VirtualClock())`` reads ``loop.time()`` from the
clock.  Time moves only when the loop has nothing to do: with ``autojump`` (the default)
it jumps straight to the next deadline (asyncio's timers and the context's ready times),
like trio's ``MockClock(autojump_threshold=0)``; without it, only up to the target set by
`advance`, one deadline at a time, so each timer runs at its own deadline in deadline
order (QEMU's ``qemu_clock_advance_virtual_time``).  The poll still happens, with timeout
0, so real fds and other threads keep working while time skips.
"""

from __future__ import annotations

import math
import selectors
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

__all__ = ("VirtualClock",)


class VirtualClock:
    """Loop time in seconds that starts at ``start`` and moves only when the loop is idle.

    ``autojump=True`` jumps to the next deadline whenever nothing is ready; with False,
    time moves only through `advance`.
    """

    def __init__(self, start: float = 0.0, *, autojump: bool = True) -> None:
        if isinstance(start, bool) or not isinstance(start, (int, float)):
            raise TypeError(f"start must be a number of seconds, not {type(start).__name__}")
        if math.isnan(start) or math.isinf(start):
            raise ValueError(f"start must be a finite number of seconds, not {start!r}")
        self._now = float(start)
        self._target = float(start)
        self.autojump = bool(autojump)
        self._loop: asyncio.AbstractEventLoop | None = None

    def time(self) -> float:
        """The current virtual time in seconds."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Let time move ``seconds`` further (manual stepping).

        The loop then moves it deadline by deadline while idle, so each timer fires at its
        own deadline; with no timer in between, time lands on the target.
        """
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise TypeError(f"seconds must be a number, not {type(seconds).__name__}")
        if math.isnan(seconds) or seconds < 0 or math.isinf(seconds):
            raise ValueError(f"time can't go backwards or jump to infinity: {seconds!r}")
        self._target = max(self._target, self._now) + float(seconds)
        loop = self._loop
        if loop is None or not loop.is_running():
            self._now = self._target  # no loop to step through the deadlines
        else:
            loop.call_soon_threadsafe(_noop)  # wake it so it can move time

    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._loop is not None and self._loop is not loop and not self._loop.is_closed():
            raise RuntimeError("a VirtualClock drives one loop at a time")
        self._loop = loop

    def _next_deadline(self) -> float:
        loop: Any = self._loop
        best = math.inf
        scheduled = getattr(loop, "_scheduled", None)
        if scheduled:
            for handle in scheduled:
                if not handle._cancelled:
                    best = min(best, handle._when)
                    break
        ctx = getattr(loop, "_aioqloop_context", None)
        if ctx is not None:
            best = min(best, ctx._next_deadline())
        return best

    def _idle_select(
        self, real: selectors.BaseSelector, timeout: float | None
    ) -> list[tuple[selectors.SelectorKey, int]]:
        """Called by the loop when nothing was ready in a zero-timeout poll."""
        now = self._now
        limit = math.inf if self.autojump else self._target
        if timeout is not None:
            deadline = self._next_deadline()
            if deadline == math.inf:
                deadline = now + timeout
            step = min(max(deadline, now), limit)
            if step > now:
                self._now = step
                return []
        if not self.autojump and self._target > now:
            self._now = self._target
            return []
        # Nothing can make time move: wait for real events (fds, other threads).
        return real.select(None if timeout is None else None)

    def __repr__(self) -> str:
        mode = "autojump" if self.autojump else "manual"
        return f"<VirtualClock time={self._now:.6f} {mode} at {id(self):#x}>"


def _noop() -> None:
    pass
