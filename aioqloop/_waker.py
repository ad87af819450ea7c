"""`Waker`: how other threads reach a context's thread (GLib's ``GWakeup``, QEMU's ``aio_notify``).

One eventfd, readable while a wake-up is outstanding, and QEMU's ``notify_me``/``notified``
handshake so that a burst of cross-thread operations costs one write:

* the loop publishes ``poll_waiting = True`` ("I may sleep") before it looks at its queues
  for the last time, and ``False`` once it is awake again;
* a producer writes the eventfd only while ``poll_waiting`` is set and no write is
  outstanding (``notified``); the loop clears ``notified`` after draining.

Both flags and the foreign-operation queue are guarded by one small lock, so the handshake
does not rely on the GIL's ordering (free-threaded builds).  Operations that other threads
ask of the context (attach, destroy, set_ready_time while the loop runs) wait in `ops` and
run on the loop thread at the start of its next prepare or check.

**Lazy.**  ``Waker(lazy=True)`` opens no eventfd until `open` is called: until then a
wake-up calls `fallback` (any thread), which a driver sets to reach its loop by the
loop's own means (uvloop's ``call_soon_threadsafe``), and the loop thread drains it as
usual.  A loop that never needs a private poll then holds no fd of aioqloop's (uvloop
keeps a loop that ran alive until it is closed, and everything it holds with it).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from . import _engine

__all__ = ("FREE_THREADED", "Waker")

#: A build without the GIL: flag writes need the lock's barrier to be ordered.
FREE_THREADED = not getattr(sys, "_is_gil_enabled", lambda: True)()


_SLOTS = ("_closed", "_fd", "fallback", "lock", "notified", "opened", "ops", "poll_waiting",
          "writes")

if TYPE_CHECKING or _engine.core is None:  # the branch mypy sees
    _WakerBase = object
else:
    # The compiled core keeps the flags, the lock and the queue the iteration reads as C
    # fields of the same names (aioqloop/_csrc/waker.h); it makes the lock itself.
    _WakerBase = _engine.core.WakerCore
    _SLOTS = tuple(name for name in _SLOTS if not hasattr(_WakerBase, name))


class Waker(_WakerBase):
    """An eventfd with QEMU's notify handshake and a queue of foreign operations."""

    __slots__ = _SLOTS

    def __init__(self, lazy: bool = False) -> None:
        self._fd = -1
        self._closed = False
        #: Called instead of writing while no eventfd is open (any thread; lazy wakers).
        self.fallback: Callable[[], None] | None = None
        #: The eventfd once opened (a list, for a finalizer that must not hold the waker).
        self.opened: list[int] = []
        if _engine.core is None:
            # The core's WakerCore makes its own lock (a WakerLock, with threading.Lock's
            # interface) that its C paths take without a call.
            self.lock = threading.Lock()
        #: The loop may be sleeping: a producer must write (QEMU's ``notify_me``).
        self.poll_waiting = False
        #: A write is outstanding and not yet drained (QEMU's ``notified``).
        self.notified = False
        #: Operations posted by other threads, run on the loop thread.
        self.ops: deque[Callable[[], None]] = deque()
        #: Wake-ups sent so far, eventfd writes or fallback calls (`MainContext.statistics`).
        self.writes = 0
        if not lazy:
            self.open()

    @property
    def fd(self) -> int:
        """The eventfd (readable while a wake-up is outstanding), opened if need be."""
        return self._fd if self._fd >= 0 else self.open()

    @property
    def has_fd(self) -> bool:
        """True once the eventfd is open."""
        return self._fd >= 0

    def open(self) -> int:
        """Open the eventfd now (any thread; idempotent) and return it.

        A wake-up sent through `fallback` and not drained yet is carried over: the new
        eventfd starts readable, so a poll that begins now does not sleep through it.
        """
        with self.lock:
            if self._closed:
                raise RuntimeError("the MainContext is closed")
            if self._fd < 0:
                self._fd = os.eventfd(1 if self.notified else 0,
                                      os.EFD_NONBLOCK | os.EFD_CLOEXEC)
                self.opened.append(self._fd)
            return self._fd

    @property
    def closed(self) -> bool:
        return self._closed

    def set_waiting(self, value: bool) -> None:
        """Publish whether the loop may sleep, ordered before the loop's next reads of the
        queues (QEMU's ``notify_me`` + ``smp_mb``): the GIL orders it on GIL builds, a
        free-threaded build needs the lock's barrier."""
        if FREE_THREADED:
            with self.lock:
                self.poll_waiting = value
        else:
            self.poll_waiting = value

    def notify(self, force: bool = False) -> None:
        """Wake the loop if it may be sleeping (any thread).  ``force``: wake it anyway."""
        with self.lock:
            self.notify_locked(force)

    def notify_locked(self, force: bool = False) -> None:
        """`notify` for a caller that holds `lock` (e.g. after queueing under it)."""
        # A closed waker's fd number may already belong to another file: never write it.
        if self._closed or self.notified or not (self.poll_waiting or force):
            return
        self.notified = True
        self.writes += 1
        if self._fd >= 0:
            os.eventfd_write(self._fd, 1)
        elif self.fallback is not None:
            self.fallback()

    def post(self, op: Callable[[], None]) -> None:
        """Queue ``op`` for the loop thread and wake it (any thread)."""
        with self.lock:
            if self._closed:
                raise RuntimeError("the MainContext is closed")
            self.ops.append(op)
            self.notify_locked()

    def run_ops(self) -> None:
        """Run the posted operations (loop thread)."""
        ops = self.ops
        while ops:
            try:
                op = ops.popleft()
            except IndexError:
                break
            op()

    def drain(self) -> None:
        """Consume an outstanding wake-up (loop thread, after the poll reported the fd).

        Read first, then clear ``notified``: the other order lets a producer set the flag
        and write between the two, the read swallows that write while the flag stays set,
        and no producer writes again (a lost wake-up).  This order costs at worst one
        spurious wake-up.
        """
        if self._fd >= 0:
            with contextlib.suppress(BlockingIOError):
                os.eventfd_read(self._fd)
        with self.lock:
            self.notified = False

    def close(self) -> None:
        """Close the eventfd; later notifications are ignored, `post` raises."""
        with self.lock:
            if self._closed:
                return
            self._closed = True
            self.fallback = None
            if self._fd >= 0:
                self.opened.clear()
                with contextlib.suppress(OSError):
                    os.close(self._fd)
                self._fd = -1


if _engine.core is not None:
    # The core calls these without a name lookup (collect runs the posted operations; a
    # bottom half's schedule wakes the loop under the lock).
    _engine.core.configure(waker_run_ops=Waker.run_ops,
                           waker_notify_locked=Waker.notify_locked)
