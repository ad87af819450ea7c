"""The big lock's scoped forms: :meth:`aioqloop.BigLock.guard` and
:meth:`aioqloop.BigLock.released`.

``guard()`` takes the lock unless the caller holds it already and gives back only what it
took (QEMU's ``BQL_LOCK_GUARD``); ``released()`` drops a held lock around a blocking call
and always takes it back, even when interrupted (``bql_unlock()`` ... ``bql_lock()``).
Both work with ``with`` and ``async with``.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import TYPE_CHECKING

from ._biglock_waiters import _owner_kind

if TYPE_CHECKING:
    from .biglock import BigLock


class _Guard:
    """Context manager returned by :meth:`BigLock.guard` (sync and async)."""

    __slots__ = ("_lock", "_took")

    def __init__(self, lock: BigLock) -> None:
        self._lock = lock
        self._took = False

    def __enter__(self) -> None:
        if not self._lock.held():
            # Marked before the call: an interrupt between a successful acquire and
            # the mark would otherwise leave __exit__ not releasing what was taken.
            self._took = True
            try:
                self._lock.acquire_sync()
            except BaseException:
                self._took = False
                raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._took:
            self._took = False
            self._lock.release()

    async def __aenter__(self) -> None:
        if not self._lock.held():
            self._took = True
            try:
                await self._lock.acquire()
            except BaseException:
                self._took = False
                raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)


class _Released:
    """Context manager returned by :meth:`BigLock.released` (sync and async)."""

    __slots__ = ("_lock",)

    def __init__(self, lock: BigLock) -> None:
        self._lock = lock

    def _drop(self) -> None:
        lock = self._lock
        if not lock.held():
            raise RuntimeError(
                f"released() called by the current {_owner_kind(lock._caller())}, "
                f"which is not holding {lock!r}"
            )
        lock.release()

    def __enter__(self) -> None:
        self._drop()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Take the lock back even if interrupted meanwhile (KeyboardInterrupt while
        # queued), then re-raise: the enclosing 'with lock:' will release it.
        interrupt: BaseException | None = None
        while True:
            try:
                self._lock.acquire_sync()
                break
            except (KeyboardInterrupt, SystemExit) as error:
                interrupt = error
                if self._lock.held():
                    break  # taken back just before the interrupt came through
        if interrupt is not None:
            raise interrupt

    async def __aenter__(self) -> None:
        self._drop()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Take the lock back even if cancelled meanwhile (as asyncio.Condition.wait
        # does): the enclosing 'async with lock:' will release it.
        cancelled: asyncio.CancelledError | None = None
        while True:
            try:
                await self._lock.acquire()
                break
            except asyncio.CancelledError as error:
                cancelled = error
        if cancelled is not None:
            raise cancelled
