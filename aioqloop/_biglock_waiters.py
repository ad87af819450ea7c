"""The big lock's wait queue: its entries and how a queued owner waits.

A :class:`aioqloop.BigLock` keeps one FIFO of `_Waiter` records, QEMU's ``QemuMutex``
waiters made explicit: each says who waits (a task, a thread, a loop thread asking to be
called back), whether ownership was handed to it, and how to wake it.  Also the checks of
``acquire_sync``'s arguments and the bounded blocking wait of a thread.  A waiter's state
changes only under the lock's own mutex (see :mod:`aioqloop.biglock`).
"""

from __future__ import annotations

import asyncio
import math
import numbers
import threading
from collections.abc import Callable
from time import monotonic, perf_counter
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from ._biglock_stats import _Counters

# Waiter kinds: how a waiter is woken.
_TASK: Final = 0  # a future awaited on its own loop
_THREAD: Final = 1  # a blocked thread (maybe running a task that called acquire_sync)
_CALLBACK: Final = 2  # a loop thread that asked to be called back (_acquire_for_dispatch)

# Waiter states, changed only with the internal mutex held.
_PENDING: Final = 0  # in the queue
_GRANTED: Final = 1  # ownership handed over; may not have woken yet
_ABANDONED: Final = 2  # left the queue (cancelled, timed out, interrupted)


class _Waiter:
    """One queued acquirer.  ``state`` changes only with the lock's mutex held."""

    __slots__ = ("counters", "future", "kind", "loop", "owner", "retry", "since", "state", "wakeup")

    def __init__(self, kind: int, owner: object, counters: _Counters) -> None:
        self.kind = kind
        self.owner = owner
        self.counters = counters
        self.state = _PENDING
        self.since = perf_counter()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.future: asyncio.Future[None] | None = None
        self.wakeup: threading.Lock | None = None
        self.retry: Callable[[], None] | None = None


def _resolve(future: asyncio.Future[None]) -> None:
    # The future may have been cancelled with its task; the task then finds its waiter
    # granted and passes the lock on (see BigLock.acquire).
    if not future.done():
        future.set_result(None)


def _task_loop(owner: object) -> object:
    """The loop of a task owner, or None for a thread owner."""
    if isinstance(owner, threading.Thread):
        return None
    get_loop = getattr(owner, "get_loop", None)
    return get_loop() if get_loop is not None else None


def _owner_kind(owner: object) -> str:
    return "thread" if isinstance(owner, threading.Thread) else "task"


def _check_timeout(blocking: object, timeout: object) -> float:
    """Validate :meth:`BigLock.acquire_sync`'s arguments; return the timeout as a float.

    ``-1.0`` means no limit (also for ``blocking=False``, where no wait happens).
    """
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float, numbers.Real)):
        raise TypeError(
            "timeout must be a number of seconds (int or float; -1 = no limit), "
            f"not {type(timeout).__name__}"
        )
    try:
        seconds = float(timeout)
    except OverflowError:  # an int beyond float's range: as good as no limit
        seconds = -math.inf if isinstance(timeout, int) and timeout < 0 else math.inf
    if math.isnan(seconds):
        raise ValueError("timeout must be a number of seconds or -1, not NaN")
    if not blocking:
        if seconds != -1:
            raise ValueError("can't specify a timeout for a non-blocking call")
        return -1.0
    if seconds in (-1, math.inf):
        return -1.0
    if seconds < 0:
        raise ValueError(
            f"timeout must be a non-negative number of seconds or -1 (no limit), not {timeout!r}"
        )
    return seconds


def _block(wakeup: threading.Lock, timeout: float) -> bool:
    """Acquire ``wakeup`` within ``timeout`` seconds (< 0: no limit); return whether it was.

    A finite timeout beyond what :meth:`threading.Lock.acquire` accepts is waited out
    in several waits of at most :data:`threading.TIMEOUT_MAX`.
    """
    if timeout < 0:
        return wakeup.acquire()
    if timeout <= threading.TIMEOUT_MAX:
        return wakeup.acquire(True, timeout)
    deadline = monotonic() + timeout
    while True:
        remaining = deadline - monotonic()
        if remaining <= 0:
            return wakeup.acquire(False)
        if wakeup.acquire(True, min(remaining, threading.TIMEOUT_MAX)):
            return True
