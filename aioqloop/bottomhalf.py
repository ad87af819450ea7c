"""`BottomHalf`: QEMU's ``QEMUBH`` on a `MainContext`.

A bottom half is a callback that any thread can ask to run "as soon as possible" on the
context's thread.  Scheduling is idempotent (``BH_PENDING``): N schedules before it runs
give one call.  One carrying source per context (priority `PRIORITY_DEFAULT`) runs the
scheduled ones in FIFO order (QEMU's order is an accident of its lock-free list; FIFO is
friendlier); each dispatch takes a slice of the queue, so a bottom half scheduled from a
bottom half runs on a later iteration (QEMU's ``BHListSlice``), and a nested iteration
runs what is left of the outer slice first.

`schedule` writes the context's eventfd only when the loop may be sleeping and no write
is outstanding (QEMU's ``notify_me``/``notified``): bursts from worker threads cost one
wake-up, and scheduling while the loop is awake or dispatching costs none.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .constants import PRIORITY_DEFAULT
from .source import Source

if TYPE_CHECKING:
    from .context import MainContext

__all__ = ("BottomHalf",)

_get_ident = threading.get_ident


class BottomHalf:
    """A callback any thread can schedule to run once soon on ``context``'s thread.

    Like QEMU's ``qemu_bh_new``/``qemu_bh_schedule``/``qemu_bh_cancel``/``qemu_bh_delete``.
    ``context`` defaults to `MainContext.default` in the creating thread.
    """

    __slots__ = ("__weakref__", "_args", "_callback", "_ctx", "_deleted", "_name",
                 "_oneshot", "_scheduled")

    def __init__(
        self,
        callback: Callable[..., Any],
        *args: Any,
        context: MainContext | None = None,
        name: str | None = None,
    ) -> None:
        from .context import MainContext

        if not callable(callback):
            raise TypeError(f"callback must be callable, not {type(callback).__name__}")
        if context is None:
            context = MainContext.default()
        elif not isinstance(context, MainContext):
            raise TypeError(f"context must be a MainContext, not {type(context).__name__}")
        context._check_closed()
        self._ctx = context
        self._callback = callback
        self._args = args
        self._name = name or getattr(callback, "__qualname__", None) or repr(callback)
        self._scheduled = False
        self._deleted = False
        self._oneshot = False
        _BHSource.ensure(context)

    @property
    def scheduled(self) -> bool:
        """True while scheduled and not yet run or cancelled."""
        return self._scheduled

    @property
    def deleted(self) -> bool:
        """True after `delete` (or after a one-shot ran)."""
        return self._deleted

    @property
    def context(self) -> MainContext:
        """The context it runs on."""
        return self._ctx

    def schedule(self) -> None:
        """Run the callback once on a coming iteration (any thread; idempotent).

        Raises `RuntimeError` after `delete`.
        """
        if self._deleted:
            raise RuntimeError(f"schedule() on deleted {self!r}")
        ctx = self._ctx
        with ctx._lock:
            if ctx._closed:
                # Its eventfd is closed, and the number may belong to another file now.
                raise RuntimeError(f"schedule() of {self!r}: its MainContext is closed")
            if self._scheduled:
                return
            self._scheduled = True
            if not ctx._bh_pending:
                ctx._bh_queue.clear()  # only cancelled entries can be left
            ctx._bh_pending += 1
            ctx._bh_queue.append(self)
            if ctx._notified or not ctx._poll_waiting:
                return  # the loop is awake and re-checks before it sleeps
            kick = ctx._kick
            if kick is not None and ctx._owner == _get_ident():
                kick()  # same thread under a plain driver: no pipe write needed
                return
            ctx._notified = True
            # Under the lock, so MainContext.close() cannot free the eventfd between the
            # check above and this write.
            os.eventfd_write(ctx._efd, 1)

    def cancel(self) -> None:
        """Unschedule it if it has not run yet (``qemu_bh_cancel``)."""
        ctx = self._ctx
        with ctx._lock:
            if self._scheduled:
                self._scheduled = False
                ctx._bh_pending -= 1

    def delete(self) -> None:
        """Cancel and free it; `schedule` then raises (``qemu_bh_delete``).  Idempotent."""
        self.cancel()
        self._deleted = True

    def __repr__(self) -> str:
        state = "deleted" if self._deleted else "scheduled" if self._scheduled else "idle"
        return f"<BottomHalf {self._name!r} {state}>"


class _BHSource(Source):
    """The per-context source that runs scheduled bottom halves."""

    def __init__(self) -> None:
        super().__init__(priority=PRIORITY_DEFAULT, name="bottom halves")
        # Recursive, so a nested iteration from a bottom half runs the rest of the batch.
        self._can_recurse = True
        self._slices: list[deque[BottomHalf]] = []

    @classmethod
    def ensure(cls, ctx: MainContext) -> None:
        if ctx._bh_source is None or ctx._bh_source._destroyed:
            src = cls()
            ctx._bh_source = src
            src.attach(ctx)

    def dispatch(self, callback: Callable[..., Any] | None, args: tuple[Any, ...]) -> bool:
        ctx = self._context
        assert ctx is not None
        lock = ctx._lock
        with lock:
            batch = ctx._bh_queue
            ctx._bh_queue = deque()
        slices = self._slices
        slices.append(batch)
        try:
            for current in slices:  # outer slices first, as QEMU chains nested slices
                while current:
                    bh = current.popleft()
                    with lock:
                        if not bh._scheduled:
                            continue
                        bh._scheduled = False
                        ctx._bh_pending -= 1
                    if bh._deleted:
                        continue
                    if bh._oneshot:
                        bh._deleted = True
                    try:
                        bh._callback(*bh._args)
                    except (SystemExit, KeyboardInterrupt):
                        raise
                    except BaseException as exc:
                        ctx._report(exc, self, f"bottom half {bh._name!r}", destroy=False,
                                    callback=bh._callback)
        finally:
            slices.remove(batch)
        return True
