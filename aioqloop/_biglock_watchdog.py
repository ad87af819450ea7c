"""The big lock's owner watchdog: notices owners that vanish while others wait.

A task can finish, and a thread exit, while owning a :class:`aioqloop.BigLock`; this
daemon thread takes the lock back from such an owner so that its waiters do not wait
forever.  Lock order: the watchdog's mutex, then a lock's mutex.
"""

from __future__ import annotations

import os
import threading
from time import sleep
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from aioqloop._biglock_waiters import _Waiter
    from aioqloop.biglock import BigLock


def _gone_reason(owner: object) -> str:
    if isinstance(owner, threading.Thread):
        return "its thread exited while holding it"
    return "it finished while holding it"


#: Seconds between two looks of the watchdog at the owners of contended locks: the
#: longest a waiter stays queued behind a thread that exited or a task that finished.
_WATCH_INTERVAL: Final = 0.1


class _OwnerWatchdog:
    """Notices owners that vanish while others wait for their lock.

    A thread's exit cannot be observed without polling, nor can a task of another
    loop be given a done-callback from here, so one daemon thread looks at the owner of
    every contended lock each :data:`_WATCH_INTERVAL`.  It runs only while some lock
    has waiters and exits at the first look that finds none, so an uncontended lock
    costs nothing.  Lock order: the watchdog's mutex, then a lock's mutex; a
    :class:`BigLock` never takes the watchdog's mutex while holding its own.
    """

    __slots__ = ("_locks", "_mutex", "_thread")

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._locks: set[BigLock] = set()
        self._thread: threading.Thread | None = None

    def watch(self, lock: BigLock) -> None:
        """Look after ``lock``, which has just got a waiter.  Its mutex is not held."""
        with self._mutex:
            lock._dogged = True
            self._locks.add(lock)
            if self._thread is not None:
                return
            thread = threading.Thread(
                target=self._run, name="aioqloop-biglock-watchdog", daemon=True
            )
            try:
                thread.start()
            except RuntimeError:
                # Interpreter shutdown (or no threads left): vanished owners are then
                # noticed at the next acquire only, as they always were.
                for each in self._locks:
                    each._dogged = False
                self._locks.clear()
                return
            self._thread = thread

    def _run(self) -> None:
        while True:
            sleep(_WATCH_INTERVAL)
            gone: list[tuple[BigLock, object, _Waiter | None]] = []
            with self._mutex:
                for lock in list(self._locks):
                    with lock._mutex:
                        if not lock._waiters:
                            lock._dogged = False
                            self._locks.discard(lock)
                            continue
                        owner, woken = lock._look_at_owner_locked()
                    if owner is not None:
                        gone.append((lock, owner, woken))
                if not self._locks and not gone:
                    self._thread = None
                    return
            # Report and wake outside every mutex: logging and waking may run user code.
            for lock, owner, woken in gone:
                lock._report_gone(owner, _gone_reason(owner))
                lock._wake(woken)

    def _after_fork(self) -> None:
        # The child has no watchdog thread and none of the parent's waiting threads.
        self._mutex = threading.Lock()
        for lock in self._locks:
            lock._dogged = False
        self._locks.clear()
        self._thread = None


_watchdog: Final = _OwnerWatchdog()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_watchdog._after_fork)
