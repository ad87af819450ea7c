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

import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from . import _engine, _registry
from ._checks import check_callback, check_name
from .constants import PRIORITY_DEFAULT
from .source import Source

if TYPE_CHECKING:
    from .context import MainContext

__all__ = ("BottomHalf",)

_get_ident = threading.get_ident
_ensure_lock = threading.Lock()  # `_BHSource.ensure`: one new carrier at a time


class _CarrierMethods:
    """`_BHCarrier._run_one`, the method the compiled core (`BHCarrierCore`) replaces;
    the pure-Python engine's reference."""

    __slots__ = ()

    def _run_one(self, ctx: MainContext, src: _BHSource, bh: BottomHalf) -> None:
        """Run one bottom half of a batch unless it was cancelled (QEMU's
        ``aio_bh_call``); an exception other than KeyboardInterrupt or SystemExit is
        reported naming it (context's thread)."""
        carrier = cast("_BHCarrier", self)
        with ctx._waker.lock:
            if not bh._scheduled:
                return
            bh._scheduled = False
            carrier.pending -= 1
        if bh._deleted:
            return
        if bh._oneshot:
            bh._deleted = True
        try:
            bh._callback(*bh._args)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            ctx._report(exc, src, f"bottom half {bh._name!r}", destroy=False,
                        callback=bh._callback)


if TYPE_CHECKING or _engine.core is None:
    class _CarrierBase(_CarrierMethods):
        """A context's bottom-half state (pure-Python engine)."""

        __slots__ = ("pending", "queue", "source")
else:
    class _CarrierBase(_engine.core.BHCarrierCore, _CarrierMethods):
        """The three fields and _run_one as C (aioqloop/_csrc/bh.h)."""

        __slots__ = ()


class _BHCarrier(_CarrierBase):
    """A context's bottom-half state: the queue, the pending count and the carrying source.

    ``pending`` and ``queue`` are guarded by the context's wake-up lock (any thread
    schedules); the context marks ``source`` ready while ``pending`` is non-zero.
    """

    __slots__ = ()

    if TYPE_CHECKING:
        source: _BHSource
        pending: int
        queue: deque[BottomHalf]

    def __init__(self, source: _BHSource) -> None:
        self.source = source
        self.pending = 0
        self.queue = deque()


class _BHMethods:
    """`BottomHalf.schedule`, the method the compiled core (`aioqloop._cengine.BHCore`)
    replaces; the pure-Python engine's reference."""

    __slots__ = ()

    def schedule(self) -> None:
        """Run the callback once on a coming iteration (any thread; idempotent).

        On the context's own thread the carrying source becomes ready at once, so the
        bottom half keeps its place among asyncio callbacks scheduled after it.  From
        another thread the loop is woken through the context's `Waker`, once per burst.
        Raises `RuntimeError` after `delete` or once the context is closed.
        """
        bh = cast("BottomHalf", self)
        if bh._deleted:
            raise RuntimeError(f"schedule() on deleted {bh!r}")
        ctx = bh._ctx
        waker = ctx._waker
        with waker.lock:
            carrier = ctx._bh  # under the lock: `_BHSource.ensure` may replace it
            if waker.closed:
                raise RuntimeError(f"schedule() of {bh!r}: its MainContext is closed")
            if bh._scheduled:
                return
            # Refused before anything changes: work nothing would ever run.
            ctx._check_loop_open()
            bh._scheduled = True
            assert carrier is not None
            if not carrier.pending:
                carrier.queue.clear()  # only cancelled entries can be left
            carrier.pending += 1
            carrier.queue.append(bh)
            if ctx._owner != _get_ident():
                waker.notify_locked()
                return
        ctx._mark_ready(carrier.source)


if TYPE_CHECKING or _engine.core is None:
    class _BHBase(_BHMethods):
        """A bottom half's state (pure-Python engine)."""

        __slots__ = ("_args", "_callback", "_ctx", "_deleted", "_name", "_oneshot",
                     "_scheduled")
else:
    class _BHBase(_engine.core.BHCore, _BHMethods):
        """A bottom half's state and schedule() as C fields and a C method."""

        __slots__ = ()


class BottomHalf(_BHBase):
    """A callback any thread can schedule to run once soon on ``context``'s thread.

    Like QEMU's ``qemu_bh_new``/``qemu_bh_schedule``/``qemu_bh_cancel``/``qemu_bh_delete``.
    ``context`` defaults to `MainContext.default` (the running loop's context, else the
    global default context).
    """

    __slots__ = ("__weakref__",)

    def __init__(
        self,
        callback: Callable[..., Any],
        *args: Any,
        context: MainContext | None = None,
        name: str | None = None,
    ) -> None:
        check_callback(callback)
        check_name(name)
        if context is None:
            context = _registry.default_context()
        elif not _registry.is_context(context):
            raise TypeError(f"context must be a MainContext, not {type(context).__name__}")
        context._check_closed()
        context._check_loop_open()
        self._ctx = context
        self._callback = callback
        self._args = args
        self._name = name or getattr(callback, "__qualname__", None) or repr(callback)
        self._scheduled = False
        self._deleted = False
        self._oneshot = False
        _BHSource.ensure(context)

    @classmethod
    def _oneshot_on(
        cls, context: MainContext, callback: Callable[..., Any], args: tuple[Any, ...]
    ) -> None:
        bh = cls(callback, *args, context=context)
        bh._oneshot = True
        bh.schedule()

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

    def cancel(self) -> None:
        """Unschedule it if it has not run yet (``qemu_bh_cancel``)."""
        ctx = self._ctx
        with ctx._waker.lock:
            carrier = ctx._bh
            if self._scheduled and carrier is not None:
                self._scheduled = False
                carrier.pending -= 1

    def delete(self) -> None:
        """Cancel and free it; `schedule` then raises (``qemu_bh_delete``).  Idempotent."""
        self.cancel()
        self._deleted = True

    def __repr__(self) -> str:
        state = "deleted" if self._deleted else "scheduled" if self._scheduled else "idle"
        return f"<BottomHalf {self._name!r} {state}>"


class _BHSource(Source):
    """The per-context source that runs scheduled bottom halves (QEMU's ``aio_bh_poll``).

    Each dispatch takes a slice of the queue, so a bottom half scheduled from a bottom
    half runs on a later iteration (QEMU's ``BHListSlice``); a nested iteration runs what
    is left of the outer slice first.  If a callback lets KeyboardInterrupt or SystemExit
    out, the rest of the slice goes back to the head of the queue, still scheduled.
    """

    _survives_escape = True

    def __init__(self) -> None:
        super().__init__(priority=PRIORITY_DEFAULT, name="bottom halves")
        # Recursive, so a nested iteration from a bottom half runs the rest of the batch.
        self._can_recurse = True
        self._slices: list[deque[BottomHalf]] = []

    @classmethod
    def ensure(cls, ctx: MainContext) -> None:
        """Give ``ctx`` a live carrier (any thread; `BottomHalf` calls it)."""
        carrier = ctx._bh
        if carrier is not None and not carrier.source._destroyed:
            return
        # One at a time: two threads making a context's first bottom halves would each
        # attach a carrier, and what was queued on the one replaced would never run.
        with _ensure_lock:
            carrier = ctx._bh
            if carrier is not None and not carrier.source._destroyed:
                return
            src = cls()
            new = _BHCarrier(src)
            src.attach(ctx)  # first: a refused attach leaves the context as it was
            with ctx._waker.lock:  # schedule() reads the carrier under it
                old = ctx._bh
                if old is not None:  # its source was destroyed: carry its queue over
                    new.pending, new.queue = old.pending, old.queue
                ctx._bh = new

    @staticmethod
    def drop_scheduled(ctx: MainContext) -> None:
        """Unschedule every bottom half queued on ``ctx``, keeping its carrier (the loop
        that held the global default context closes: its work ends with it, and the
        bottom halves stay usable on the next loop)."""
        carrier = ctx._bh
        if carrier is None:
            return
        with ctx._waker.lock:
            for bh in carrier.queue:
                bh._scheduled = False
            carrier.queue = deque()
            carrier.pending = 0

    def dispatch(self, callback: Callable[..., Any] | None, args: tuple[Any, ...]) -> bool:
        ctx = self._context
        assert ctx is not None
        carrier = ctx._bh
        assert carrier is not None
        lock = ctx._waker.lock
        with lock:
            batch = carrier.queue
            carrier.queue = deque()
        slices = self._slices
        slices.append(batch)
        try:
            for current in slices:  # outer slices first, as QEMU chains nested slices
                while current:
                    carrier._run_one(ctx, self, current.popleft())
        finally:
            slices.remove(batch)
            if batch:
                # Left by KeyboardInterrupt/SystemExit: back to the head of the queue.
                with lock:
                    batch.extend(carrier.queue)
                    carrier.queue = batch
        return True


if _engine.core is not None:
    # BHCore.schedule queues on the carrier's deque without a name lookup.
    _engine.core.configure(deque_append=deque.append, deque_clear=deque.clear)
