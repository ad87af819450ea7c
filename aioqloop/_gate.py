"""`LockGate`: QEMU's main-loop rule for the big lock, in one object.

QEMU's ``os_host_main_loop_wait`` drops the BQL around ``poll()`` and holds it while it
dispatches.  A context created with ``bql=`` does the same through this gate:

* `enter` before a dispatch phase takes the lock, in FIFO order with threads and tasks of
  other loops.  If taking it would wait behind a coroutine of this very loop, the loop
  cannot block: a callback waiter is queued instead, `enter` returns False, the dispatch is
  *deferred* (the context reports nothing ready) and, once the lock is handed over, the
  loop is woken to dispatch (`deferred` clears, `handed` is set);
* `between` two dispatches lets a queued waiter in (release, then take again), so a
  thread waiting for the lock gets it between dispatches rather than after the batch.
  Never before the first dispatch of a batch: a loop that takes the lock, or is handed
  it, dispatches one ready source before anyone else gets it, or under contention the
  lock would pass through the loop without a dispatch and its sources would starve;
* `leave` after the phase releases it; `give_back` returns a lock handed over for a
  dispatch that no longer has anything to run, or that the driver puts off (an idle
  priority while asyncio has work): the loop never polls holding it;
* `close` withdraws a queued callback waiter (a closed loop must not be handed the lock,
  or no thread could take it again).

With the compiled core, the two flags every iteration reads (``deferred``, ``handed``)
are C fields of its base (``aioqloop._cengine.GateCore``), and the core calls `enter`,
`between`, `leave` and `give_back` as the plain functions handed to it at import.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import _engine

if TYPE_CHECKING:
    from .biglock import BigLock

__all__ = ("LockGate",)

_SLOTS: tuple[str, ...] = ("_loop", "_wake", "deferred", "handed", "lock")

if TYPE_CHECKING or _engine.core is None:  # the branch mypy sees
    _GateBase = object
else:
    # The compiled core keeps the flags as C fields of the same names (dispatch.h).
    _GateBase = _engine.core.GateCore
    _SLOTS = tuple(name for name in _SLOTS if not hasattr(_GateBase, name))


class LockGate(_GateBase):
    """The big-lock rule of one context's dispatch (see the module docstring)."""

    __slots__ = _SLOTS

    def __init__(self, lock: BigLock, loop: Any, wake: Callable[[], None]) -> None:
        self.lock = lock
        self._loop = loop
        self._wake = wake  # thread-safe: wakes the context's loop
        #: A dispatch waits for the lock to be handed over (nothing counts as ready).
        self.deferred = False
        #: The lock was handed over to the loop thread and is held for a dispatch.
        self.handed = False

    def enter(self) -> bool:
        """Take the lock for a dispatch phase; False: deferred until it is handed over."""
        if self.lock._acquire_for_dispatch(self._loop, self._granted):
            self.handed = False
            return True
        self.deferred = True
        return False

    def between(self) -> bool:
        """Between two dispatches: let a waiter in.  False: the lock could not be retaken
        without blocking (the rest of the batch is deferred)."""
        lock = self.lock
        if not lock._has_waiters():
            return True
        lock.release()
        return self.enter()

    def leave(self) -> None:
        """After a dispatch phase that `enter` admitted."""
        self.lock.release()

    def give_back(self) -> None:
        """Nothing to dispatch after all: return a lock that was handed over."""
        if self.handed:
            self.handed = False
            self.lock.release()

    def _granted(self) -> None:
        # Called from whichever thread handed the lock over: the loop thread owns it now
        # and must look again, then dispatch or give it back.
        self.handed = True
        self.deferred = False
        self._wake()

    def close(self) -> None:
        """Withdraw a queued waiter, or return a lock handed over meanwhile (loop thread)."""
        if not self.lock._cancel_dispatch() and self.handed:
            self.handed = False
            self.lock.release()
        self.deferred = False


if _engine.core is not None:
    # The core calls the rule without a name lookup: no subclass overrides it.
    _engine.core.configure(gate_enter=LockGate.enter, gate_between=LockGate.between,
                           gate_leave=LockGate.leave, gate_give_back=LockGate.give_back)
