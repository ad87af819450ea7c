"""The records of :meth:`aioqloop.BigLock.statistics` and the counters behind them.

:class:`BigLockStatistics` and :class:`BigLockOwnerStatistics` are re-exported by
:mod:`aioqloop.biglock`, where user code imports them from.
"""

from __future__ import annotations

import dataclasses

__all__ = ("BigLockOwnerStatistics", "BigLockStatistics")


@dataclasses.dataclass(frozen=True, slots=True)
class BigLockOwnerStatistics:
    """Counters for one kind of owner (tasks or threads).  Times are in seconds.

    :ivar acquisitions: times an owner of this kind got the lock.
    :ivar contended_acquisitions: those of them that had to queue first.
    :ivar total_wait_time: time spent queued, summed over contended acquisitions; a
        wait ends when ownership is handed over, before the waiter wakes up.
    :ivar max_wait_time: the longest single wait.
    :ivar total_hold_time: time spent owning the lock, summed over completed holds.
    :ivar max_hold_time: the longest completed hold.
    """

    acquisitions: int
    contended_acquisitions: int
    total_wait_time: float
    max_wait_time: float
    total_hold_time: float
    max_hold_time: float


@dataclasses.dataclass(frozen=True, slots=True)
class BigLockStatistics:
    """A snapshot of :meth:`BigLock.statistics`.  Times are in seconds.

    The first six fields sum (or take the maximum of) :attr:`tasks` and :attr:`threads`.
    A loop thread that owns the lock to dispatch sources counts as a thread.

    :ivar locked: whether some task or thread owns the lock.
    :ivar owner: the owning task or thread, or ``None``.
    :ivar waiters: tasks and threads queued right now.
    :ivar cancelled_waits: waits that ended without the lock: task cancellation,
        ``KeyboardInterrupt`` in a waiting thread.
    :ivar failed_attempts: :meth:`BigLock.acquire_sync` calls that returned ``False``
        (non-blocking, or the timeout expired).
    :ivar abandoned: times the lock was taken back from a task that had finished or a
        thread that had exited while owning it, or from a waiter that could not be woken.
    """

    acquisitions: int
    contended_acquisitions: int
    total_wait_time: float
    max_wait_time: float
    total_hold_time: float
    max_hold_time: float
    locked: bool
    owner: object | None
    waiters: int
    cancelled_waits: int
    failed_attempts: int
    abandoned: int
    tasks: BigLockOwnerStatistics
    threads: BigLockOwnerStatistics


class _Counters:
    """Mutable statistics for one owner kind; changed with the internal mutex held."""

    __slots__ = ("acquisitions", "contended", "max_hold", "max_wait", "total_hold", "total_wait")

    def __init__(self) -> None:
        self.acquisitions = 0
        self.contended = 0
        self.total_wait = 0.0
        self.max_wait = 0.0
        self.total_hold = 0.0
        self.max_hold = 0.0

    def snapshot(self) -> BigLockOwnerStatistics:
        return BigLockOwnerStatistics(
            self.acquisitions,
            self.contended,
            self.total_wait,
            self.max_wait,
            self.total_hold,
            self.max_hold,
        )
