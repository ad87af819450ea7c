"""The big lock: QEMU's Big QEMU Lock (BQL) for asyncio tasks and threads.

:class:`BigLock` is one mutual-exclusion lock shared by coroutines on any number of
event loops and by plain threads.  :data:`bql` is the process-wide instance.

Owner identity
--------------
The owner is the current :class:`asyncio.Task` when there is one, else the current
thread.  That also holds for ``with lock:`` and :meth:`BigLock.acquire_sync` called
inside a coroutine: the task owns it, so the same task must release it, and
:meth:`BigLock.held` answers for the task, not for the thread running it.  The lock is
not recursive, like ``bql_lock()``; :meth:`BigLock.guard` is ``BQL_LOCK_GUARD``, which
takes the lock only when the caller does not already hold it.

One queue, direct hand-off
--------------------------
Tasks and threads wait in one FIFO queue.  Release never frees the lock while someone
waits: it makes the head waiter the owner on the spot and then wakes it.  A newcomer
therefore queues whenever anyone is waiting, so nobody can barge in between a release
and the wake-up.  QEMU learned this the hard way: a plain mutex let the main loop
"release the mutex and take it back again" while a vCPU thread starved, and its replay
mutex grew a queue for exactly that reason.

* A waiting task awaits a future on its own loop and never blocks that loop.  Hand-off
  resolves the future directly when it runs on that loop's thread, and through
  ``loop.call_soon_threadsafe`` otherwise (QEMU's ``aio_co_wake``).
* A waiting thread blocks on a private ``threading.Lock`` that the hand-off releases.
  It never spins or polls, and it gives up the GIL while it waits.

Cancellation never leaks the lock.  A task cancelled while it waits leaves the queue.
A task cancelled at the moment the lock was handed to it owns the lock already, so it
passes it on to the next waiter (or frees it) before the ``CancelledError`` goes on.
A thread whose timeout expires at the moment of hand-off simply returns ``True``.

Thread safety and free-threaded builds
--------------------------------------
All state (owner, queue, statistics) changes inside a short critical section guarded
by an internal ``threading.Lock``.  Correctness therefore does not rest on the GIL
making attribute updates or deque operations atomic, and the lock is equally correct
on free-threaded (``3.13t``/``3.14t``) builds.  The uncontended path costs that
internal lock, a few attribute updates and one ``time.perf_counter()`` call each for
acquire and release: no system call and no allocation.  Wake-ups (resolving a future,
``call_soon_threadsafe``, releasing a thread's private lock, calling a ``retry``
callback) always happen after the critical section ends.

Deadlocks the lock refuses
--------------------------
A thread that runs an event loop must never block waiting for a coroutine of that
same loop: the coroutine could never run.  :meth:`BigLock.acquire_sync` therefore
raises :exc:`RuntimeError` instead of blocking when the holder, or any waiter ahead in
the queue, is a task of the loop running in the calling thread, or is the calling
thread itself.  Waiting behind threads and behind tasks of other loops is allowed.

Owners that vanish
------------------
A task that finishes, or a thread that exits, while holding the lock can never release
it.  The lock notices when someone next tries to acquire it, and also while someone
already waits: as long as a lock has waiters, a watchdog thread looks at its owner
every 0.1 s (a task of the waiter's own loop is noticed at
once, through its done-callback).  The watchdog exists only while some lock is
contended, so the uncontended path pays nothing for it; it exits one interval after
the last waiter is served.  On a vanished owner the lock logs an error on the
``aioqloop`` logger naming it, hands the lock to the next waiter as if the owner had
released it, and counts the event in :attr:`BigLockStatistics.abandoned`.
``with lock:`` and ``async with lock:`` release on every exit, including exceptions
and cancellation, so only bare :meth:`BigLock.acquire` / :meth:`BigLock.acquire_sync`
calls can leak.  A task that is still pending on a loop that no longer runs is not a
vanished owner: it may still run and release.

Interrupts
----------
``KeyboardInterrupt`` and ``SystemExit`` never leak the lock nor strand a waiter.  A
thread interrupted while it waits leaves the queue, or, if the lock was handed to it
in the same instant, passes it on before the interrupt goes on.  A release
interrupted while it wakes the next owner finishes the wake-up (waking is idempotent)
before the interrupt goes on.  :meth:`BigLock.released` takes the lock back even when
interrupted meanwhile, then re-raises, so an enclosing ``with lock:`` still owns what
it releases.

Event-loop integration
----------------------
A loop created with a big lock follows QEMU's ``os_host_main_loop_wait``: it holds the
lock while it dispatches sources, releases it before it waits for events (unlock,
poll, lock), and yields it between two dispatches whenever someone is waiting.  The
private hooks :meth:`BigLock._acquire_for_dispatch` and :meth:`BigLock._has_waiters`
serve that loop; their docstrings state the contract.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import functools
import logging
import threading
from collections.abc import Callable
from time import perf_counter
from types import TracebackType
from typing import Any, Final, ParamSpec, TypeVar

from ._biglock_scopes import _Guard, _Released
from ._biglock_stats import BigLockOwnerStatistics, BigLockStatistics, _Counters
from ._biglock_waiters import (
    _ABANDONED,
    _CALLBACK,
    _GRANTED,
    _TASK,
    _THREAD,
    _block,
    _check_timeout,
    _owner_kind,
    _resolve,
    _task_loop,
    _Waiter,
)
from ._biglock_watchdog import _gone_reason, _watchdog

__all__ = ("BigLock", "BigLockOwnerStatistics", "BigLockStatistics", "bql")

_P = ParamSpec("_P")
_T = TypeVar("_T")

_logger: Final = logging.getLogger("aioqloop")

# asyncio's cheap "which loop runs in this thread" (None outside a loop); it does not
# raise, unlike get_running_loop().
_get_running_loop = asyncio._get_running_loop
_current_task = asyncio.current_task
_current_thread = threading.current_thread
_new_private_lock = threading.Lock

# current_thread(), cached per thread: reading a thread-local attribute costs about half
# of a current_thread() call, and the identity is looked up on every acquire and release.
_tls = threading.local()


def _remember_thread() -> threading.Thread:
    thread = _tls.thread = _current_thread()
    return thread


class BigLock:
    """A fair lock shared by asyncio tasks (on any loop) and threads: QEMU's BQL.

    Use ``async with lock:`` / ``await lock.acquire()`` in coroutines and ``with lock:`` /
    ``lock.acquire_sync()`` in threads; :meth:`release` serves both.  Waiters are served
    first come, first served, with ownership handed directly to the next one.  The lock
    is not recursive; use :meth:`guard` to take it only when not already held.

    :param name: shown in :func:`repr` and in error messages; a :class:`str` or ``None``.
    """

    __slots__ = (
        "__weakref__",
        "_abandoned",
        "_acquired_at",
        "_cancelled_waits",
        "_dispatch_waiters",
        "_dogged",
        "_failed_attempts",
        "_mutex",
        "_name",
        "_owner",
        "_owner_counters",
        "_task_counters",
        "_thread_counters",
        "_waiters",
        "_watched",
    )

    def __init__(self, *, name: str | None = None) -> None:
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str or None, not {type(name).__name__}")
        self._name = name
        # Guards every field below.  Held only for short sections that never block,
        # never call user code and never wake anyone.
        self._mutex = threading.Lock()
        self._owner: object | None = None
        # Invariant: _owner is None implies _waiters is empty (hand-off never leaves the
        # lock free while someone waits), so the fast path only tests _owner.
        self._waiters: collections.deque[_Waiter] = collections.deque()
        # At most one _CALLBACK waiter per loop thread.
        self._dispatch_waiters: dict[threading.Thread, _Waiter] = {}
        # The owner task carries our done-callback (see _watch_owner_locked).
        self._watched = False
        # The watchdog looks at this lock's owner (see _OwnerWatchdog); set and cleared
        # only with the watchdog's mutex held, read anywhere as a hint.
        self._dogged = False
        self._task_counters = _Counters()
        self._thread_counters = _Counters()
        self._owner_counters = self._thread_counters
        self._acquired_at = 0.0
        self._cancelled_waits = 0
        self._failed_attempts = 0
        self._abandoned = 0

    # ------------------------------------------------------------------ #
    # Introspection
    # ------------------------------------------------------------------ #

    @property
    def name(self) -> str | None:
        """The name given at construction, or ``None``."""
        return self._name

    def __repr__(self) -> str:
        # Lock-free on purpose: error messages built inside the critical section use it.
        label = f"{self._name!r}" if self._name is not None else f"at {id(self):#x}"
        owner = self._owner
        if owner is None:
            return f"<BigLock {label} unlocked>"
        return f"<BigLock {label} locked by {owner!r} waiters={len(self._waiters)}>"

    def locked(self) -> bool:
        """Return whether any task or thread owns the lock."""
        return self._owner is not None

    def held(self) -> bool:
        """Return whether the caller owns the lock: the current task, else the current thread.

        Like ``bql_locked()``.  Inside a coroutine this asks about the task: a loop
        thread that owns the lock while it dispatches sources does not make its tasks
        owners.
        """
        owner = self._owner
        if owner is None:
            return False
        return owner is self._caller()

    def assert_held(self) -> None:
        """Raise :exc:`AssertionError` unless the caller owns the lock (see :meth:`held`).

        An explicit check, not an ``assert`` statement, so it also works under ``-O``.
        """
        if not self.held():
            kind = _owner_kind(self._caller())
            raise AssertionError(f"the current {kind} must hold {self!r}")

    def statistics(self) -> BigLockStatistics:
        """Return a consistent snapshot of the counters; see :class:`BigLockStatistics`."""
        with self._mutex:
            tasks = self._task_counters.snapshot()
            threads = self._thread_counters.snapshot()
            owner = self._owner
            waiters = len(self._waiters)
            cancelled, failed, abandoned = (
                self._cancelled_waits,
                self._failed_attempts,
                self._abandoned,
            )
        return BigLockStatistics(
            acquisitions=tasks.acquisitions + threads.acquisitions,
            contended_acquisitions=tasks.contended_acquisitions + threads.contended_acquisitions,
            total_wait_time=tasks.total_wait_time + threads.total_wait_time,
            max_wait_time=max(tasks.max_wait_time, threads.max_wait_time),
            total_hold_time=tasks.total_hold_time + threads.total_hold_time,
            max_hold_time=max(tasks.max_hold_time, threads.max_hold_time),
            locked=owner is not None,
            owner=owner,
            waiters=waiters,
            cancelled_waits=cancelled,
            failed_attempts=failed,
            abandoned=abandoned,
            tasks=tasks,
            threads=threads,
        )

    def _waiter_count(self) -> int:
        """Queued waiters right now (for tests and the loop's diagnostics)."""
        return len(self._waiters)

    # ------------------------------------------------------------------ #
    # Coroutines
    # ------------------------------------------------------------------ #

    async def acquire(self) -> bool:
        """Wait until the current task owns the lock, then return ``True``.

        Does not yield when the lock is free and nobody waits.  Raises
        :exc:`RuntimeError` if the task already holds it, or outside a task.
        """
        task = _current_task()
        if task is None:
            raise RuntimeError(
                "BigLock.acquire() must be awaited inside an asyncio task; "
                "threads use 'with lock:' or lock.acquire_sync()"
            )
        # Fast path.  Explicit acquire/release of the mutex: a with statement on a
        # threading.Lock costs more than the rest of this block.
        mutex = self._mutex
        mutex.acquire()
        try:
            if self._owner is None:
                self._owner = task
                self._owner_counters = counters = self._task_counters
                counters.acquisitions += 1
                self._acquired_at = perf_counter()
                return True
        finally:
            mutex.release()
        return await self._acquire_contended(task)

    async def _acquire_contended(self, task: asyncio.Task[Any]) -> bool:
        """Slow path of :meth:`acquire`: queue a future and wait for the hand-off."""
        while True:
            with self._mutex:
                owner = self._owner
                if owner is None:
                    return self._take_locked(task, self._task_counters)
                if owner is task:
                    raise RuntimeError(self._recursion_message("task"))
                if not self._owner_is_gone_locked(owner):
                    loop = task.get_loop()
                    future: asyncio.Future[None] = loop.create_future()
                    waiter = _Waiter(_TASK, task, self._task_counters)
                    waiter.loop = loop
                    waiter.future = future
                    self._waiters.append(waiter)
                    self._watch_owner_locked(owner, loop)
                    break
                woken = self._reclaim_locked()
            self._hand_on_from_gone(owner, woken)
        self._watch()
        try:
            await future
        except BaseException:
            # Cancelled (or the loop is shutting down).  Whether the lock was already
            # handed to us is decided under the mutex, not by the future's state: the
            # hand-off may have happened on another thread a moment ago.
            with self._mutex:
                granted = waiter.state == _GRANTED
                if not granted:
                    self._waiters.remove(waiter)
                    waiter.state = _ABANDONED
                    self._cancelled_waits += 1
            if granted:
                self._pass_on(task)
            raise
        return True

    # ``async with lock:`` awaits acquire() directly: one coroutine fewer per use.
    __aenter__ = acquire

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    # ------------------------------------------------------------------ #
    # Threads (and synchronous code anywhere)
    # ------------------------------------------------------------------ #

    def acquire_sync(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Take the lock from synchronous code; return whether it was taken.

        The arguments follow :meth:`threading.Lock.acquire`, except that no finite
        timeout is too large:

        :param blocking: if false, return ``False`` at once when the lock is not free.
            Any object with a truth value, as :meth:`threading.Lock.acquire` accepts.
        :param timeout: longest wait in seconds, an :class:`int` or :class:`float`
            (not a :class:`bool`).  ``-1`` (or ``math.inf``) waits without limit; any
            other value must be finite and non-negative, and is honoured however large
            (a wait longer than :data:`threading.TIMEOUT_MAX` is made of several).
            Only ``-1`` may be given with ``blocking=False``.

        Raises :exc:`TypeError` or :exc:`ValueError`, naming the argument, for anything
        else (NaN, other negative numbers, strings, ``None``, ``True``).  The owner is
        the current task if called inside a coroutine, else the current thread.
        Raises :exc:`RuntimeError` if that owner already holds the lock, or if waiting
        would block this thread behind a coroutine of the event loop running in it (or
        behind this thread itself): that wait could never end.
        """
        if timeout != -1 or not blocking:
            timeout = _check_timeout(blocking, timeout)
        loop = _get_running_loop()
        me: object | None = _current_task(loop) if loop is not None else None
        if me is None:
            try:
                me = _tls.thread
            except AttributeError:
                me = _remember_thread()
            counters = self._thread_counters
        else:
            counters = self._task_counters
        mutex = self._mutex
        mutex.acquire()
        try:
            if self._owner is None:
                self._owner = me
                self._owner_counters = counters
                counters.acquisitions += 1
                self._acquired_at = perf_counter()
                return True
        finally:
            mutex.release()
        return self._acquire_sync_contended(me, counters, loop, blocking, timeout)

    def _acquire_sync_contended(
        self,
        me: object,
        counters: _Counters,
        loop: asyncio.AbstractEventLoop | None,
        blocking: bool,
        timeout: float,
    ) -> bool:
        """Slow path of :meth:`acquire_sync`."""
        thread = _current_thread()
        queued = False
        try:
            while True:
                with self._mutex:
                    owner = self._owner
                    if owner is None:
                        return self._take_locked(me, counters)
                    if owner is me:
                        raise RuntimeError(self._recursion_message(_owner_kind(me)))
                    if not self._owner_is_gone_locked(owner):
                        if not blocking:
                            self._failed_attempts += 1
                            return False
                        blocker = self._blocker_locked(loop, thread)
                        if blocker is not None:
                            raise RuntimeError(self._deadlock_message(blocker, thread))
                        queued = True  # first: the interrupt may come as the call returns
                        waiter = self._enqueue_thread_locked(me, counters)
                        break
                    woken = self._reclaim_locked()
                self._hand_on_from_gone(owner, woken)
            self._watch()
            return self._wait_thread(waiter, timeout)
        except BaseException:
            if queued:
                # A KeyboardInterrupt (or any signal handler's exception) between queueing
                # and the wait's own guard: the waiter may be in the queue with nobody to
                # wake, or granted already.  Nothing may stay behind either way.
                self._abandon_thread_wait(me)
            raise

    def _hand_on_from_gone(self, owner: object, woken: _Waiter | None) -> None:
        """After `_reclaim_locked`: say who never released, and wake the next owner."""
        self._report_gone(owner, _gone_reason(owner))
        self._wake(woken)

    def _watch(self) -> None:
        """Have the watchdog look after this lock (once), before a waiter blocks."""
        if not self._dogged:
            _watchdog.watch(self)

    def _take_locked(self, me: object, counters: _Counters) -> bool:
        """The lock is free: ``me`` takes it (the slow paths; the fast ones inline this).
        Holds ``_mutex``."""
        self._owner = me
        self._owner_counters = counters
        counters.acquisitions += 1
        self._acquired_at = perf_counter()
        return True

    def _abandon_thread_wait(self, me: object) -> None:
        """Leave the queue, or pass on a lock handed over meanwhile, for the thread ``me``
        whose wait was interrupted.  Mutex not held."""
        with self._mutex:
            mine = [w for w in self._waiters if w.kind == _THREAD and w.owner is me]
            for waiter in mine:
                self._waiters.remove(waiter)
                waiter.state = _ABANDONED
                self._cancelled_waits += 1
        self._pass_on(me)  # only if the lock was handed to ``me`` meanwhile

    # ``with lock:`` calls acquire_sync() directly: one call fewer per use.
    __enter__ = acquire_sync

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def release(self) -> None:
        """Release the lock held by the caller and hand it to the next waiter, if any.

        Raises :exc:`RuntimeError` if the caller (current task, else current thread)
        does not own it.
        """
        # The hot path: _caller() and the uncontended hand-off are inlined.
        loop = _get_running_loop()
        me: object | None = _current_task(loop) if loop is not None else None
        if me is None:
            try:
                me = _tls.thread
            except AttributeError:
                me = _remember_thread()
        mutex = self._mutex
        mutex.acquire()
        try:
            if self._owner is not me:
                raise RuntimeError(self._not_owner_message(me, "release()"))
            if self._waiters or self._watched:
                woken = self._handoff_locked(perf_counter())
            else:
                counters = self._owner_counters
                held_for = perf_counter() - self._acquired_at
                counters.total_hold += held_for
                if held_for > counters.max_hold:  # noqa: PLR1730 (max() is a call: hot path)
                    counters.max_hold = held_for
                self._owner = None
                return
        finally:
            mutex.release()
        self._wake(woken)

    # ------------------------------------------------------------------ #
    # Helpers built on the above
    # ------------------------------------------------------------------ #

    def guard(self) -> _Guard:
        """Hold the lock for a block, taking it only if the caller does not hold it yet.

        QEMU's ``BQL_LOCK_GUARD``.  Works as ``with lock.guard():`` and as
        ``async with lock.guard():``; on exit it releases only what it took.
        """
        return _Guard(self)

    def released(self) -> _Released:
        """Drop the lock for a blocking section and take it back afterwards.

        ``with lock.released():`` (threads) or ``async with lock.released():``
        (coroutines), like QEMU's ``bql_unlock(); poll(); bql_lock()``.  Raises
        :exc:`RuntimeError` on entry if the caller does not hold the lock.  The async
        form re-acquires even if cancelled meanwhile, then re-raises the cancellation,
        so an enclosing ``async with lock:`` still owns what it releases.  In a
        coroutine prefer the async form: the sync one blocks the loop thread while it
        takes the lock back, and raises :exc:`RuntimeError` rather than wait behind a
        task of that loop.
        """
        return _Released(self)

    def wrap(self, fn: Callable[_P, _T]) -> Callable[_P, _T]:
        """Return a function that calls ``fn`` with the lock held (``with lock:``).

        Recipe for executor users::

            result = await loop.run_in_executor(None, bql.wrap(fn), arg1, arg2)

        The wrapper runs in the executor thread, so that thread owns the lock while
        ``fn`` runs.  Do not await it while the calling task holds the lock.
        """

        @functools.wraps(fn)
        def locked_call(*args: _P.args, **kwargs: _P.kwargs) -> _T:
            with self:
                return fn(*args, **kwargs)

        return locked_call

    async def run_in_thread(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run ``fn(*args)`` in the loop's default executor holding the lock; return its result.

        The executor thread takes the lock with ``with lock:``, so it queues fairly with
        everyone else.  The current context variables are copied, as in
        :func:`asyncio.to_thread`.  Raises :exc:`RuntimeError` if the calling task holds
        the lock, since the thread would then wait for it forever.
        """
        if self.held():
            raise RuntimeError(
                f"run_in_thread() called by a task holding {self!r}: the worker thread "
                "would wait for it forever; release it first (async with lock.released():)"
            )
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        call = functools.partial(context.run, self.wrap(fn), *args)
        return await loop.run_in_executor(None, call)

    # ------------------------------------------------------------------ #
    # Event-loop hooks (private: used by aioqloop's loops)
    # ------------------------------------------------------------------ #

    def _acquire_for_dispatch(
        self, loop: asyncio.AbstractEventLoop, retry: Callable[[], None]
    ) -> bool:
        """Take the lock for the loop thread before it dispatches sources.

        Called on ``loop``'s thread outside any task step.  Returns ``True`` when the
        calling thread owns the lock: it already did (for instance it was handed over
        after an earlier ``False``), or the lock could be had without waiting for a
        coroutine of ``loop`` (then this blocks in FIFO order behind threads and tasks
        of other loops).  Otherwise the holder or an earlier waiter needs ``loop`` to
        run, so this queues a callback waiter and returns ``False`` at once; when the
        lock reaches it the calling thread becomes the owner and ``retry()`` is called,
        from whichever thread released the lock (or from the watchdog thread, when the
        holder vanished).  ``retry`` must be thread-safe and idempotent (after an
        interrupt it is called a second time for the same hand-off) and should not
        raise; if it raises an :exc:`Exception`, the error is logged and the lock passed
        on.  While a callback waiter is pending, further calls from the same thread
        return ``False`` without queueing again.  A loop that stops using the lock
        withdraws its waiter with :meth:`_cancel_dispatch`.
        """
        thread = _current_thread()
        counters = self._thread_counters
        while True:
            with self._mutex:
                owner = self._owner
                if owner is thread:
                    return True
                if owner is None:
                    return self._take_locked(thread, counters)
                if thread in self._dispatch_waiters:
                    return False
                if not self._owner_is_gone_locked(owner):
                    if self._blocker_locked(loop, thread) is not None:
                        waiter = _Waiter(_CALLBACK, thread, counters)
                        waiter.retry = retry
                        self._waiters.append(waiter)
                        self._dispatch_waiters[thread] = waiter
                        deferred = True
                    else:
                        waiter = self._enqueue_thread_locked(thread, counters)
                        deferred = False
                    break
                woken = self._reclaim_locked()
            self._hand_on_from_gone(owner, woken)
        self._watch()
        if deferred:
            return False
        return self._wait_thread(waiter, -1.0)

    def _has_waiters(self) -> bool:
        """Whether anyone is queued.  A cheap hint, read without the mutex.

        Between two dispatches the loop calls :meth:`release` then
        :meth:`_acquire_for_dispatch` when this is true; the FIFO hand-off lets the
        waiters in first.
        """
        return bool(self._waiters)

    def _cancel_dispatch(self) -> bool:
        """Withdraw the calling thread's pending callback waiter, if any.

        For a loop that closes (or stops using the lock) while it waits for it; call on
        the loop's thread.  Returns ``True`` if a waiter was withdrawn: it is out of the
        queue, will never be handed the lock nor have its ``retry`` called, and nobody
        queued behind it waits for it any more.  Returns ``False`` if there was none or it
        was already granted: then the calling thread owns the lock and must
        :meth:`release` it (``statistics().owner`` tells which).
        """
        thread = _current_thread()
        with self._mutex:
            waiter = self._dispatch_waiters.pop(thread, None)
            if waiter is None:
                return False
            self._waiters.remove(waiter)
            waiter.state = _ABANDONED
            self._cancelled_waits += 1
            return True

    # ------------------------------------------------------------------ #
    # Internals
    # ------------------------------------------------------------------ #

    @staticmethod
    def _caller() -> object:
        """The caller's owner identity: the current task, else the current thread."""
        loop = _get_running_loop()
        if loop is not None:
            task = _current_task(loop)
            if task is not None:
                return task
        try:
            thread: threading.Thread = _tls.thread
        except AttributeError:
            thread = _remember_thread()
        return thread

    def _enqueue_thread_locked(self, me: object, counters: _Counters) -> _Waiter:
        """Queue a waiter that blocks its thread.  Holds ``_mutex``."""
        wakeup = _new_private_lock()
        wakeup.acquire()  # the hand-off releases it; the waiter's second acquire blocks
        waiter = _Waiter(_THREAD, me, counters)
        waiter.wakeup = wakeup
        self._waiters.append(waiter)
        return waiter

    def _wait_thread(self, waiter: _Waiter, timeout: float) -> bool:
        """Block until ``waiter`` is granted or ``timeout`` seconds pass (-1: no limit).

        Mutex not held.  ``timeout`` is a float already checked by :func:`_check_timeout`.
        """
        wakeup = waiter.wakeup
        assert wakeup is not None
        try:
            # The return sits inside the try: an interrupt raised right after the
            # private lock was obtained still finds the waiter granted below.
            if _block(wakeup, timeout):
                return True
        except BaseException:
            # KeyboardInterrupt or similar while blocked, or just after the hand-off:
            # whether we own the lock is decided under the mutex, not by how far the
            # wait got.  Leave the queue, or pass the lock on, before it goes on.
            with self._mutex:
                granted = waiter.state == _GRANTED
                if not granted:
                    self._waiters.remove(waiter)
                    waiter.state = _ABANDONED
                    self._cancelled_waits += 1
            if granted:
                self._pass_on(waiter.owner)
            raise
        with self._mutex:
            if waiter.state == _GRANTED:
                # Handed over just as the timeout expired: we own it, so keep it.
                return True
            self._waiters.remove(waiter)
            waiter.state = _ABANDONED
            self._failed_attempts += 1
        return False

    def _blocker_locked(self, loop: object, thread: threading.Thread) -> object | None:
        """Who would make waiting here a deadlock, or ``None``.  Holds ``_mutex``.

        ``thread`` is about to block and ``loop`` is the loop running in it (or None).
        Blocked, the thread cannot run ``loop``'s coroutines, nor release a lock that
        it owns itself, nor run a callback waiter queued for itself.
        """
        owner = self._owner
        if owner is thread or (loop is not None and _task_loop(owner) is loop):
            return owner
        for waiter in self._waiters:
            kind = waiter.kind
            if kind == _TASK:
                if waiter.loop is loop:
                    return waiter.owner
            elif kind == _CALLBACK and waiter.owner is thread:
                return waiter.owner
        return None

    def _handoff_locked(self, now: float) -> _Waiter | None:
        """End the current hold at ``now`` and give the lock to the head waiter.

        Holds ``_mutex``.  Frees the lock if nobody waits.  Returns the waiter to wake
        (after the mutex is released), or ``None``.
        """
        counters = self._owner_counters
        held_for = now - self._acquired_at
        counters.total_hold += held_for
        counters.max_hold = max(counters.max_hold, held_for)
        if self._watched:
            self._watched = False
            remove = getattr(self._owner, "remove_done_callback", None)
            if remove is not None:
                remove(self._on_owner_done)
        if not self._waiters:
            self._owner = None
            return None
        waiter = self._waiters.popleft()
        waiter.state = _GRANTED
        self._owner = waiter.owner
        self._owner_counters = counters = waiter.counters
        counters.acquisitions += 1
        counters.contended += 1
        waited = now - waiter.since
        counters.total_wait += waited
        counters.max_wait = max(counters.max_wait, waited)
        self._acquired_at = now
        if waiter.kind == _CALLBACK:
            del self._dispatch_waiters[waiter.owner]  # type: ignore[arg-type]
        return waiter

    def _wake(self, waiter: _Waiter | None) -> None:
        """Tell a granted waiter it owns the lock.  Mutex not held; any thread.

        An interrupt (``KeyboardInterrupt``, ``SystemExit``) raised while a task or a
        loop is being told does not strand it: telling is idempotent (resolving a
        done future is a no-op, ``retry`` must tolerate a second call), so it is done
        once more before the interrupt goes on.  If that fails too, the new owner is
        treated as one that cannot be woken: the lock is passed on.
        """
        if waiter is None:
            return
        if waiter.kind == _THREAD:
            # One C call that checks no signal: it either happened or it did not.
            assert waiter.wakeup is not None
            waiter.wakeup.release()
            return
        try:
            self._tell(waiter)
        except BaseException as interrupt:
            try:
                self._tell(waiter)
            except BaseException as again:
                self._cannot_wake(waiter, "waking it was interrupted", again)
            raise interrupt

    def _tell(self, waiter: _Waiter) -> None:
        """Wake a granted task or callback waiter (see :meth:`_wake`).

        Handles the new owner's own failures (a closed loop, a ``retry`` that raises an
        :exc:`Exception`) by passing the lock on; lets interrupts through.
        """
        error: Exception
        if waiter.kind == _TASK:
            loop, future = waiter.loop, waiter.future
            assert loop is not None and future is not None
            if _get_running_loop() is loop:
                _resolve(future)
                return
            try:
                loop.call_soon_threadsafe(_resolve, future)
                return
            except RuntimeError as exc:  # the waiter's loop is closed
                error = exc
            reason = "its event loop is closed"
        else:
            assert waiter.retry is not None
            try:
                waiter.retry()
                return
            except Exception as exc:
                error = exc
            reason = "its retry callback failed"
        self._cannot_wake(waiter, reason, error)

    def _cannot_wake(self, waiter: _Waiter, reason: str, error: BaseException) -> None:
        """The new owner will never run: take the lock back and pass it on."""
        with self._mutex:
            self._abandoned += 1
        _logger.error(
            "%r could not hand the lock to %r (%s); passing it on",
            self,
            waiter.owner,
            reason,
            exc_info=error,
        )
        self._pass_on(waiter.owner)

    def _pass_on(self, owner: object) -> None:
        """Release on behalf of ``owner`` if it still owns the lock.  Mutex not held."""
        with self._mutex:
            if self._owner is not owner:
                return
            woken = self._handoff_locked(perf_counter())
        self._wake(woken)

    def _owner_is_gone_locked(self, owner: object) -> bool:
        """Whether ``owner`` (a task or thread) can no longer release.  Holds ``_mutex``."""
        if isinstance(owner, threading.Thread):
            return not owner.is_alive()
        done = getattr(owner, "done", None)
        return bool(done()) if done is not None else False

    def _reclaim_locked(self) -> _Waiter | None:
        """Take the lock back from a finished owner.  Holds ``_mutex``."""
        self._abandoned += 1
        return self._handoff_locked(perf_counter())

    def _report_gone(self, owner: object, reason: str) -> None:
        _logger.error(
            "%r: %r never released the lock (%s); handing it to the next waiter",
            self,
            owner,
            reason,
        )

    def _watch_owner_locked(self, owner: object, loop: asyncio.AbstractEventLoop) -> None:
        """Notice when a task owner of ``loop`` finishes while others wait.

        Holds ``_mutex``; only on the contended path.  Limited to owners on the caller's
        own loop, because a future's callbacks may only be touched from its loop's thread.
        """
        if self._watched or _task_loop(owner) is not loop:
            return
        add = getattr(owner, "add_done_callback", None)
        if add is not None:
            add(self._on_owner_done)
            self._watched = True

    def _on_owner_done(self, task: object) -> None:
        """Done-callback of a watched owner task: reclaim the lock if it was leaked."""
        with self._mutex:
            if self._owner is not task:
                return
            self._watched = False  # the callback has fired; nothing left to remove
            woken = self._reclaim_locked()
        self._report_gone(task, "it finished while holding it")
        self._wake(woken)

    def _look_at_owner_locked(self) -> tuple[object | None, _Waiter | None]:
        """The watchdog's look at a contended lock.  Holds ``_mutex``.

        Returns ``(gone_owner, woken)``: the owner that vanished (``None`` if it is
        alive or the lock is free) and the waiter to wake once the mutex is released.
        """
        owner = self._owner
        if owner is None or not self._owner_is_gone_locked(owner):
            return None, None
        return owner, self._reclaim_locked()

    def _recursion_message(self, kind: str) -> str:
        return (
            f"the current {kind} already holds {self!r} and it is not recursive; "
            "use 'with lock.guard():' or 'async with lock.guard():' to take it only "
            "when it is not already held"
        )

    def _not_owner_message(self, me: object, action: str) -> str:
        owner = self._owner
        state = "it is not locked" if owner is None else f"it is held by {owner!r}"
        return (
            f"{action} called by the current {_owner_kind(me)}, which is not holding "
            f"this lock ({state})"
        )

    def _deadlock_message(self, blocker: object, thread: threading.Thread) -> str:
        if blocker is thread:
            who = "this thread itself (for instance its event loop, while it dispatches)"
        else:
            who = f"{blocker!r}, which needs this thread's event loop to run"
        return (
            f"acquire_sync() would deadlock: waiting for {self!r} here blocks the thread "
            f"behind {who}; in a coroutine use 'async with lock:' or 'await lock.acquire()'"
        )


#: The process-wide big lock, QEMU's BQL.
bql: Final = BigLock(name="bql")
