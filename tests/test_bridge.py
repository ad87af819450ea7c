"""`PlainDriver`: a `MainContext` inside a plain asyncio loop (``asyncio.run``)."""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
from typing import Any, cast

import pytest
from conftest import recorder

import aioqloop
from aioqloop import (
    PRIORITY_HIGH,
    BottomHalf,
    FdSource,
    IdleSource,
    IOCondition,
    MainContext,
    Source,
    TimeoutSource,
    bridge,
    fd_add,
    get_main_context,
    main_depth,
)
from aioqloop.bridge import PlainDriver

DEADLINE = 10.0


def test_context_binds_to_running_plain_loop() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        ctx = MainContext()
        assert ctx.loop is loop
        assert isinstance(ctx._driver, PlainDriver)
        assert get_main_context() is get_main_context(loop)
        ctx.close()

    asyncio.run(main())


def test_sources_interleave_with_asyncio_callbacks() -> None:
    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        ctx = MainContext()
        log: list[str] = []
        done = asyncio.Event()
        count = 0

        def tick() -> bool:
            nonlocal count
            count += 1
            log.append("idle")
            if count == 3:
                done.set()
                return False
            return True

        idle = IdleSource()
        idle.set_callback(tick)
        idle.attach(ctx)
        loop.call_soon(log.append, "soon")
        await asyncio.wait_for(done.wait(), DEADLINE)
        ctx.close()
        return log

    log = asyncio.run(main())
    assert log.count("idle") == 3
    assert "soon" in log


def test_timeout_uses_loop_time_and_one_timer() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        ctx = MainContext()
        fired: list[float] = []
        done = asyncio.Event()
        far = TimeoutSource(3600.0)
        far.set_callback(lambda: True)
        far.attach(ctx)
        near = TimeoutSource(0.01)
        start = loop.time()

        def cb() -> bool:
            fired.append(loop.time())
            done.set()
            return False

        near.set_callback(cb)
        near.attach(ctx)
        assert near.ready_time >= start
        await asyncio.wait_for(done.wait(), DEADLINE)
        assert fired[0] >= near.ready_time
        assert not far.is_destroyed
        ctx.close()
        assert far.is_destroyed

    asyncio.run(main())


def test_fd_source_under_plain_loop() -> None:
    async def main() -> None:
        ctx = MainContext()
        r, w = os.pipe()
        got: list[IOCondition] = []
        done = asyncio.Event()

        def cb(fd: int, cond: IOCondition) -> bool:
            got.append(cond)
            os.read(fd, 10)
            done.set()
            return False

        fd_add(r, IOCondition.IN, cb, context=ctx)
        loop = asyncio.get_running_loop()
        loop.call_later(0.005, os.write, w, b"x")
        await asyncio.wait_for(done.wait(), DEADLINE)
        assert got == [IOCondition.IN]
        os.close(r)
        os.close(w)
        ctx.close()

    asyncio.run(main())


def test_an_fd_wakeup_runs_its_iteration_without_queueing_one() -> None:
    # The context's epoll fd became readable: _on_readable polls and iterates right
    # there.  Before, the poll made the fd source ready, whose source_ready queued a
    # call_soon of _run that _on_readable cancelled again: one handle per wake-up.
    async def main() -> None:
        loop = asyncio.get_running_loop()
        ctx = MainContext()
        driver = cast(Any, ctx._driver)
        r, w = os.pipe()
        rounds = 0
        done = asyncio.Event()

        def cb(fd: int, cond: IOCondition) -> bool:
            nonlocal rounds
            os.read(fd, 10)
            rounds += 1
            if rounds < 5:
                loop.call_soon(os.write, w, b"x")  # the next wake-up, from asyncio
            else:
                done.set()
            return True

        fd_add(r, IOCondition.IN, cb, context=ctx)
        for _ in range(3):
            await asyncio.sleep(0)  # the attach's own iteration runs first
        queued: list[Any] = []
        real_call_soon = loop.call_soon

        def spy(callback: Any, *args: Any, **kwargs: Any) -> asyncio.Handle:
            queued.append(callback)
            return real_call_soon(callback, *args, **kwargs)

        loop.call_soon = spy  # type: ignore[method-assign,assignment]
        os.write(w, b"x")
        await asyncio.wait_for(done.wait(), DEADLINE)
        loop.call_soon = real_call_soon  # type: ignore[method-assign]
        assert rounds == 5
        assert [cb for cb in queued if cb == driver._run] == []
        os.close(r)
        os.close(w)
        ctx.close()

    asyncio.run(main())


@pytest.mark.timeout(20)
def test_wakeups_from_threads_reach_plain_loop() -> None:
    async def main() -> None:
        ctx = MainContext()
        loop = asyncio.get_running_loop()
        for _ in range(50):
            fut = loop.create_future()
            bh = BottomHalf(fut.set_result, None, context=ctx)
            t = threading.Thread(target=bh.schedule)
            t.start()
            await asyncio.wait_for(fut, DEADLINE)
            t.join()
            bh.delete()
        ctx.close()

    asyncio.run(main())


def test_nested_iteration_from_callback_on_plain_loop() -> None:
    async def main() -> list[tuple[str, int]]:
        ctx = MainContext()
        seen: list[tuple[str, int]] = []
        done = asyncio.Event()
        high = Source(priority=PRIORITY_HIGH)
        high.set_callback(recorder(seen, ("high", 0), False))

        def outer() -> bool:
            seen.append(("outer", main_depth()))
            inner = IdleSource()
            inner.set_callback(lambda: seen.append(("inner", main_depth())) or False)
            inner.attach(ctx)
            ctx.iteration(False)
            done.set()
            return False

        s = Source()
        s.set_callback(outer)
        s.set_ready_time(0)
        s.attach(ctx)
        await asyncio.wait_for(done.wait(), DEADLINE)
        ctx.close()
        return seen

    assert asyncio.run(main()) == [("outer", 1), ("inner", 2)]


def test_close_detaches_from_loop() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        ctx = MainContext()
        # No fd of the context's until one is watched; the loop watches the epoll fd then.
        assert ctx._driver_fileno() is None
        r, w = os.pipe()
        watch = FdSource(r, IOCondition.IN)
        watch.attach(ctx)
        epfd = ctx._driver_fileno()
        assert epfd is not None
        assert loop._selector.get_key(epfd) is not None  # type: ignore[attr-defined]
        log: list[str] = []
        idle = IdleSource()
        idle.set_callback(recorder(log, "idle"))
        idle.attach(ctx)
        ctx.close()
        with pytest.raises(RuntimeError):
            ctx.iteration(False)
        with pytest.raises(RuntimeError):
            Source().attach(ctx)
        await asyncio.sleep(0.01)
        assert log == []
        # The loop no longer watches the context's epoll fd.
        assert not loop.remove_reader(epfd)
        assert watch.is_destroyed
        os.close(r)
        os.close(w)

    asyncio.run(main())


def test_main_context_on_closed_loop_refused() -> None:
    loop = asyncio.new_event_loop()
    loop.close()
    with pytest.raises(RuntimeError):
        MainContext(loop)
    with pytest.raises(TypeError):
        MainContext("loop")


def test_regular_file_watched_without_in_or_out_does_not_spin_the_plain_driver() -> None:
    # poll(2) reports a regular file ready only for IN/OUT; watching it for PRI alone
    # must let the loop sleep instead of re-running the context forever.
    async def main() -> int:
        ctx = MainContext()
        runs = 0
        driver = cast(PlainDriver, ctx._driver)
        real_run = driver._run

        def counting_run() -> None:
            nonlocal runs
            runs += 1
            real_run()

        driver._run = counting_run  # type: ignore[method-assign]
        with open(os.devnull, "rb") as f:
            src = FdSource(f, IOCondition.PRI)
            src.set_callback(lambda fd, cond: True)
            src.attach(ctx)
            await asyncio.sleep(0.05)
            src.destroy()
        ctx.close()
        return runs

    assert asyncio.run(main()) < 20


def test_port_clock_follows_any_overridden_loop_time() -> None:
    # A loop class or instance with its own time() is read through it.
    import time

    from aioqloop.bridge import LoopPort

    class Shifted(asyncio.SelectorEventLoop):
        def time(self) -> float:
            return 1000.0 + time.monotonic()

    plain, shifted, patched = asyncio.new_event_loop(), Shifted(), asyncio.new_event_loop()
    patched.time = lambda: 5.0  # type: ignore[method-assign]
    try:
        assert abs(LoopPort(plain).time() - plain.time()) < 1.0
        assert LoopPort(shifted).time() > 1000.0
        assert LoopPort(patched).time() == 5.0
        ctx = MainContext(shifted)
        got: list[float] = []
        src = TimeoutSource(0.01)
        src.set_callback(lambda: (got.append(shifted.time()), False)[1])
        src.attach(ctx)
        shifted.run_until_complete(asyncio.sleep(0.05))
        assert len(got) == 1 and got[0] > 1000.0
        ctx.close()
    finally:
        for loop in (plain, shifted, patched):
            loop.close()


def _run_on_plain(base: str, main: Any) -> Any:
    """Run ``main()`` where a `PlainDriver` drives the context: the uvloop base or a
    context bound to a plain asyncio loop."""
    if base == "uvloop":
        pytest.importorskip("uvloop")
        return aioqloop.run(main(), base="uvloop")
    return asyncio.run(main())


def _plain_context(base: str) -> MainContext:
    return get_main_context() if base == "uvloop" else MainContext()


@pytest.mark.parametrize("base", ["uvloop", "asyncio"])
def test_ready_sources_run_in_batches_between_the_loop_callbacks(base: str) -> None:
    # While sources stay ready, one loop callback runs several iterations (no loop
    # round trip per dispatch), but at most bridge.BATCH: the loop's own callbacks
    # (here a task's steps) still get their turn.
    async def main() -> list[int]:
        ctx = _plain_context(base)
        dispatches = 0

        def repeat() -> bool:
            nonlocal dispatches
            dispatches += 1
            return True

        src = IdleSource()
        src.set_callback(repeat)
        src.attach(ctx)
        seen = []
        try:
            for _ in range(6):
                await asyncio.sleep(0)
                seen.append(dispatches)
        finally:
            src.destroy()
            if base == "asyncio":
                ctx.close()
        return seen

    seen = _run_on_plain(base, main)
    steps = [b - a for a, b in itertools.pairwise(seen[1:])]
    assert all(2 <= step <= bridge.BATCH for step in steps), (seen, steps)


@pytest.mark.parametrize("base", ["uvloop", "asyncio"])
def test_sources_made_ready_in_a_batch_queue_no_loop_callback_each(base: str) -> None:
    # A chain of one-shot idles (each attaches the next): inside a batch a source made
    # ready is the batch's business, so the driver queues one call_soon per batch, not
    # one per source.
    n = 200

    async def main() -> tuple[int, int, int]:
        loop = asyncio.get_running_loop()
        ctx = _plain_context(base)
        driver = ctx._driver
        queued = 0
        real_call_soon = loop.call_soon

        def counting_call_soon(callback: Any, *args: Any, **kwargs: Any) -> Any:
            nonlocal queued
            if getattr(callback, "__self__", None) is driver:
                queued += 1
            return real_call_soon(callback, *args, **kwargs)

        done = loop.create_future()
        count = 0

        def link() -> bool:
            nonlocal count
            count += 1
            if count == n:
                done.set_result(None)
            else:
                aioqloop.idle_add(link, context=ctx)
            return False

        before = ctx.statistics()
        loop.call_soon = counting_call_soon  # type: ignore[method-assign,assignment]
        try:
            aioqloop.idle_add(link, context=ctx)
            await done
        finally:
            del loop.call_soon
            after = ctx.statistics()
            if base == "asyncio":
                ctx.close()
        return queued, after.iterations - before.iterations, count

    queued, iterations, count = _run_on_plain(base, main)
    assert (iterations, count) == (n, n)
    assert queued <= n // bridge.BATCH + 2, queued


@pytest.mark.parametrize("base", ["uvloop", "asyncio"])
def test_prepare_hooks_are_asked_again_after_a_dispatch_that_zeroed_the_wait(
    base: str,
) -> None:
    # Prepare said "something is ready" (a zero wait) and the dispatch ran it: only a new
    # prepare knows what the prepare hooks want now, so the driver iterates again instead
    # of sleeping until the next ready time (here: none).
    class SecondLook(aioqloop.Source):
        def __init__(self) -> None:
            super().__init__()
            self.looks = 0

        def prepare(self) -> tuple[bool, float | None]:
            self.looks += 1
            return (self.looks >= 2, None)

    async def main() -> int:
        ctx = _plain_context(base)
        fired = asyncio.get_running_loop().create_future()
        once = IdleSource()
        once.set_callback(lambda: False)
        once.attach(ctx)
        hooked = SecondLook()
        hooked.set_callback(lambda: fired.set_result(hooked.looks) and False)
        hooked.attach(ctx)
        return cast(int, await asyncio.wait_for(fired, 5))

    assert _run_on_plain(base, main) == 2
