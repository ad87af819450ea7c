"""`LockGate`: the loop's big-lock rule alone (enter, between, leave, defer, close)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from aioqloop import BigLock
from aioqloop._gate import LockGate


def test_enter_leave_uncontended() -> None:
    lock = BigLock()
    wakes: list[int] = []
    gate = LockGate(lock, None, lambda: wakes.append(1))
    assert gate.enter() is True
    assert lock.held()
    assert gate.between() is True  # nobody waits: kept
    gate.leave()
    assert not lock.locked() and wakes == []


@pytest.mark.timeout(20)
def test_between_lets_a_queued_thread_in_first() -> None:
    lock = BigLock()
    gate = LockGate(lock, None, lambda: None)
    assert gate.enter()
    order: list[str] = []
    started = threading.Event()

    def worker() -> None:
        started.set()
        with lock:
            order.append("worker")

    t = threading.Thread(target=worker)
    t.start()
    started.wait(5)
    while not lock._has_waiters():
        threading.Event().wait(0.001)
    assert gate.between() is True  # released, the worker ran, retaken
    order.append("loop")
    gate.leave()
    t.join(5)
    assert order == ["worker", "loop"]


@pytest.mark.timeout(20)
def test_deferred_behind_own_coroutine_then_handed_over_and_close_withdraws() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()

        async def outside(fn: Any) -> Any:
            # The gate runs on the loop thread outside any task step, as a dispatch does.
            fut = loop.create_future()
            loop.call_soon(lambda: fut.set_result(fn()))
            return await fut

        lock = BigLock()
        woken = threading.Event()
        gate = LockGate(lock, loop, woken.set)
        await lock.acquire()  # a coroutine of this loop holds it
        assert await outside(gate.enter) is False and gate.deferred  # must not block
        lock.release()  # hand-off to the queued dispatch waiter
        assert woken.wait(5) and gate.handed and not gate.deferred
        await outside(gate.give_back)
        assert not lock.locked()

        await lock.acquire()
        assert await outside(gate.enter) is False
        await outside(gate.close)  # withdraws the queued waiter
        lock.release()
        got = threading.Event()

        def worker() -> None:
            if lock.acquire_sync(timeout=5):
                got.set()
                lock.release()

        t = threading.Thread(target=worker)
        t.start()
        await loop.run_in_executor(None, t.join, 5)
        assert got.is_set(), "a closed gate's waiter kept the lock from a worker"

    asyncio.run(main())


def test_a_deferred_gate_hides_ready_sources_until_it_clears() -> None:
    # The context reads the gate's flag each iteration (a C field of the compiled core's
    # GateCore, a slot of the pure engine's LockGate): while it is set nothing counts as
    # ready and nothing runs; once it clears, the ready source runs under the lock.
    from aioqloop import IdleSource, MainContext

    ctx = MainContext(_driver="none")
    lock = BigLock()
    ctx._set_bql(lock)
    gate = ctx._gate
    assert gate is not None
    held: list[bool] = []
    src = IdleSource()
    src.set_callback(lambda: held.append(lock.held()) or False)
    src.attach(ctx)
    try:
        gate.deferred = True
        assert ctx.iteration(False) is False and held == []
        gate.deferred = False
        assert ctx.iteration(False) is True and held == [True]
        assert not lock.locked()  # left after the dispatch
    finally:
        ctx.close()
