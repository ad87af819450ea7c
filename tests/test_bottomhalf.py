"""`BottomHalf`: QEMU's test-aio.c bottom-half scenarios, wake-up economy and threads."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
from typing import Any

import pytest
from conftest import LOOP_KINDS, HandlerLog, context_for, iterate, run_in

import aioqloop
from aioqloop import BottomHalf, MainContext
from aioqloop._waker import Waker

DEADLINE = 10.0


class EventfdWrites:
    """Counts the context's wake-up writes from here on (``statistics().wakeup_writes``)."""

    def __init__(self, ctx: MainContext) -> None:
        self._ctx = ctx
        self._start = ctx.statistics().wakeup_writes

    @property
    def count(self) -> int:
        return self._ctx.statistics().wakeup_writes - self._start


def test_schedule_twice_one_call(ctx: MainContext) -> None:
    calls: list[int] = []
    bh = BottomHalf(calls.append, 1, context=ctx)
    assert not bh.scheduled
    bh.schedule()
    bh.schedule()
    assert bh.scheduled
    assert ctx.iteration(False) is True
    assert calls == [1]
    assert not bh.scheduled
    assert ctx.iteration(False) is False


def test_schedule_cancel(ctx: MainContext) -> None:
    calls: list[int] = []
    bh = BottomHalf(calls.append, 1, context=ctx)
    bh.schedule()
    bh.cancel()
    assert not bh.scheduled
    assert ctx.iteration(False) is False
    assert calls == []
    bh.schedule()  # a cancelled BH can be scheduled again
    assert ctx.iteration(False) is True
    assert calls == [1]


def test_schedule_delete(ctx: MainContext) -> None:
    calls: list[int] = []
    bh = BottomHalf(calls.append, 1, context=ctx)
    bh.schedule()
    bh.delete()
    assert bh.deleted and not bh.scheduled
    iterate(ctx, 3)
    assert calls == []
    with pytest.raises(RuntimeError):
        bh.schedule()
    bh.delete()  # idempotent


def test_delete_from_callback(ctx: MainContext) -> None:
    calls: list[str] = []
    bhs: list[BottomHalf] = []

    def cb(i: int) -> None:
        calls.append(f"cb{i}")
        bhs[i].delete()
        if i == 0:
            bhs[2].delete()  # one not yet run in this batch: skipped

    for i in range(4):
        bhs.append(BottomHalf(cb, i, context=ctx))
    for bh in bhs:
        bh.schedule()
    ctx.iteration(False)
    assert calls == ["cb0", "cb1", "cb3"]
    assert all(bh.deleted for bh in bhs)
    assert ctx.iteration(False) is False


def test_self_rescheduling_runs_once_per_iteration(ctx: MainContext) -> None:
    # test-aio.c test_bh_schedule10: a BH scheduled from its own callback waits a round.
    count = 0
    bh: BottomHalf

    def cb() -> None:
        nonlocal count
        count += 1
        if count < 10:
            bh.schedule()

    bh = BottomHalf(cb, context=ctx)
    bh.schedule()
    for i in range(1, 11):
        assert ctx.iteration(False) is True
        assert count == i
    assert ctx.iteration(False) is False


def test_fifo_order(ctx: MainContext) -> None:
    order: list[int] = []
    bhs = [BottomHalf(order.append, i, context=ctx) for i in range(8)]
    for i in (3, 1, 4, 0, 5, 2, 7, 6):
        bhs[i].schedule()
    ctx.iteration(False)
    assert order == [3, 1, 4, 0, 5, 2, 7, 6]


def test_schedule_oneshot(ctx: MainContext) -> None:
    calls: list[tuple[int, str]] = []
    ctx.schedule_oneshot(lambda a, b: calls.append((a, b)), 1, "x")
    ctx.schedule_oneshot(lambda a, b: calls.append((a, b)), 2, "y")
    ctx.iteration(False)
    assert calls == [(1, "x"), (2, "y")]
    assert ctx.iteration(False) is False


def test_bad_arguments(ctx: MainContext) -> None:
    with pytest.raises(TypeError):
        BottomHalf(42, context=ctx)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        BottomHalf(lambda: None, context="ctx")  # type: ignore[arg-type]


def test_blocking_iteration_returns_for_pending_bh(ctx: MainContext) -> None:
    calls: list[int] = []
    BottomHalf(calls.append, 1, context=ctx).schedule()
    assert ctx.iteration(True) is True
    assert calls == [1]


def test_schedule_while_dispatching_writes_no_eventfd(
    ctx: MainContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes = EventfdWrites(ctx)
    calls: list[str] = []
    later = BottomHalf(calls.append, "later", context=ctx)
    others = [BottomHalf(calls.append, f"o{i}", context=ctx) for i in range(5)]

    def first() -> None:
        calls.append("first")
        later.schedule()
        for bh in others:
            bh.schedule()

    BottomHalf(first, context=ctx).schedule()
    ctx.iteration(False)
    ctx.iteration(False)
    assert calls == ["first", "later", "o0", "o1", "o2", "o3", "o4"]
    assert writes.count == 0


@pytest.mark.timeout(20)
def test_burst_from_thread_while_sleeping_costs_one_write(
    ctx: MainContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes = EventfdWrites(ctx)
    n = 200
    calls: list[int] = []
    bhs = [BottomHalf(calls.append, i, context=ctx) for i in range(n)]
    # The context as it is while its thread waits in the poll (QEMU's notify_me set).
    ctx._waker.set_waiting(True)
    t = threading.Thread(target=lambda: [bh.schedule() for bh in bhs])
    t.start()
    t.join()
    assert writes.count == 1
    ctx._waker.set_waiting(False)
    assert ctx.iteration(True) is True
    assert calls == list(range(n))
    assert ctx.iteration(False) is False
    assert writes.count == 1


@pytest.mark.timeout(20)
def test_burst_from_thread_during_real_sleep_runs_all(ctx: MainContext,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    writes = EventfdWrites(ctx)
    n = 500
    calls: list[int] = []
    bhs = [BottomHalf(calls.append, i, context=ctx) for i in range(n)]
    t = threading.Thread(target=lambda: [bh.schedule() for bh in bhs])
    sleeps = 0
    t.start()
    while len(calls) < n:
        sleeps += 1
        ctx.iteration(True)
    t.join()
    assert sorted(calls) == list(range(n))
    # At most one wake-up write per time the context went to sleep.
    assert writes.count <= sleeps


def test_schedule_right_after_wakeup_is_taken_writes_nothing(
    ctx: MainContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    bh = BottomHalf(calls.append, 1, context=ctx)
    real_drain = Waker.drain

    def drain_then_schedule(waker: Waker) -> None:
        # Another thread schedules right after the loop took its wake-up: the loop is
        # awake and re-checks before sleeping, so no second write is needed.
        real_drain(waker)
        bh.schedule()

    monkeypatch.setattr(Waker, "drain", drain_then_schedule)
    ctx.wakeup()
    writes = EventfdWrites(ctx)
    ctx.iteration(True)
    assert writes.count == 0
    monkeypatch.setattr(Waker, "drain", real_drain)
    while not calls:
        ctx.iteration(True)
    assert calls == [1]


@pytest.mark.parametrize("kind", LOOP_KINDS)
@pytest.mark.timeout(40)
def test_threaded_stress_every_bh_runs(kind: str) -> None:
    n_threads, per_thread, rounds = 4, 50, 20

    async def main() -> None:
        ctx = context_for(kind)
        loop = asyncio.get_running_loop()
        loop_thread = threading.get_ident()
        counts = [0] * (n_threads * per_thread)
        wrong_thread: list[int] = []
        remaining = n_threads * per_thread * rounds
        done = asyncio.Event()

        def cb(i: int) -> None:
            nonlocal remaining
            if threading.get_ident() != loop_thread:
                wrong_thread.append(i)
            counts[i] += 1
            remaining -= 1
            if remaining == 0:
                done.set()

        bhs = [BottomHalf(cb, i, context=ctx) for i in range(len(counts))]

        def worker(k: int) -> None:
            mine = bhs[k * per_thread:(k + 1) * per_thread]
            for _ in range(rounds):
                for bh in mine:
                    bh.schedule()
                # Wait until each of mine ran before scheduling it again (no coalescing);
                # give up after the deadline so a lost wake-up fails instead of hanging.
                give_up = time.monotonic() + DEADLINE / 2
                while any(bh.scheduled for bh in mine):
                    if time.monotonic() > give_up:
                        return
                    time.sleep(0.0002)

        await asyncio.gather(*(loop.run_in_executor(None, worker, k) for k in range(n_threads)))
        await asyncio.wait_for(done.wait(), DEADLINE)  # every round ran, or a wake-up was lost
        assert wrong_thread == []
        assert counts == [rounds] * len(counts)

    run_in(kind, main)


@pytest.mark.timeout(60)
def test_threads_making_a_contexts_first_bottom_halves_lose_none(base: str) -> None:
    # Each thread's BottomHalf() gives the context its carrier if it has none yet; two
    # threads doing so at once attached two carriers, and the bottom half queued on the
    # one replaced never ran (nor could it be scheduled again: it stayed scheduled).
    threads, rounds = 4, 30

    async def main() -> None:
        interval = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)  # switch threads as often as CPython allows
        try:
            for _ in range(rounds):
                ctx = MainContext()  # a fresh context on this loop: no carrier yet
                ran: list[int] = []
                made: list[BottomHalf] = []
                all_ran = asyncio.Event()
                barrier = threading.Barrier(threads)

                def note(k: int) -> None:
                    ran.append(k)
                    if len(ran) == threads:
                        all_ran.set()

                def worker(k: int) -> None:
                    barrier.wait(DEADLINE)
                    bh = BottomHalf(note, k, context=ctx)
                    made.append(bh)
                    bh.schedule()

                loop = asyncio.get_running_loop()
                await asyncio.gather(*(loop.run_in_executor(None, worker, k)
                                       for k in range(threads)))
                try:
                    await asyncio.wait_for(all_ran.wait(), DEADLINE)
                except asyncio.TimeoutError:
                    stuck = [bh for bh in made if bh.scheduled]
                    pytest.fail(f"ran {sorted(ran)} of {threads}; still scheduled: {stuck}")
                assert sorted(ran) == list(range(threads))  # each once
                ctx.close()
        finally:
            sys.setswitchinterval(interval)

    aioqloop.run(main(), base=base)


@pytest.mark.parametrize("kind", LOOP_KINDS)
def test_bh_exception_goes_to_handler_and_bh_source_survives(kind: str) -> None:
    handler = HandlerLog()

    async def main() -> list[str]:
        handler.install(asyncio.get_running_loop())
        ctx = context_for(kind)
        calls: list[str] = []
        done = asyncio.Event()

        def bad() -> None:
            raise KeyError("bh")

        BottomHalf(bad, context=ctx).schedule()
        BottomHalf(lambda: (calls.append("ok"), done.set()), context=ctx).schedule()
        await asyncio.wait_for(done.wait(), DEADLINE)
        again = asyncio.Event()
        BottomHalf(again.set, context=ctx).schedule()
        await asyncio.wait_for(again.wait(), DEADLINE)
        return calls

    assert run_in(kind, main) == ["ok"]
    assert len(handler.contexts) == 1
    assert isinstance(handler.contexts[0]["exception"], KeyError)
    assert "source" in handler.contexts[0]


def test_bh_exception_logged_on_standalone(ctx: MainContext,
                                           caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []

    def bad() -> None:
        raise ValueError("x")

    BottomHalf(bad, context=ctx).schedule()
    BottomHalf(calls.append, 1, context=ctx).schedule()
    with caplog.at_level(logging.ERROR, logger="aioqloop"):
        ctx.iteration(False)
    assert calls == [1]
    assert [r.exc_info[0] for r in caplog.records if r.exc_info] == [ValueError]


def test_nested_iteration_runs_rest_of_outer_batch(ctx: MainContext) -> None:
    order: list[Any] = []

    def first() -> None:
        order.append("first")
        ctx.iteration(False)
        order.append("first-done")

    BottomHalf(first, context=ctx).schedule()
    BottomHalf(order.append, "second", context=ctx).schedule()
    ctx.iteration(False)
    assert order == ["first", "second", "first-done"]


def test_schedule_on_a_closed_context_raises_and_writes_to_no_fd(pipe: tuple[int, int]) -> None:
    # After close() the eventfd number can belong to another file (here, likely the new
    # pipe): schedule() used to write 8 bytes into it, or fail with a bare EBADF.
    ctx = MainContext(_driver="standalone")
    bh = BottomHalf(lambda: None, context=ctx)
    ctx.close()
    r, _ = pipe
    os.set_blocking(r, False)
    with pytest.raises(RuntimeError, match="closed"):
        bh.schedule()
    with pytest.raises(BlockingIOError):
        os.read(r, 64)
    assert not bh.scheduled


@pytest.mark.skipif(__import__("aioqloop").ENGINE != "c",
                    reason="the compiled core's type checks")
def test_compiled_schedule_refuses_a_context_of_another_kind(ctx: MainContext) -> None:
    # The core reads the context's waker and carrier as C fields: anything else is
    # refused with a TypeError, and nothing changes.
    ran: list[int] = []
    bh = BottomHalf(lambda: ran.append(1), context=ctx)
    bh._ctx = object()  # type: ignore[assignment]
    with pytest.raises(TypeError):
        bh.schedule()
    assert not bh.scheduled
    bh._ctx = ctx
    bh.schedule()
    ctx.iteration(False)
    assert ran == [1]
