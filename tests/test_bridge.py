"""`PlainDriver`: a `MainContext` inside a plain asyncio loop (``asyncio.run``)."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest
from conftest import recorder

from aioqloop import (
    PRIORITY_HIGH,
    BottomHalf,
    FdSource,
    IdleSource,
    IOCondition,
    MainContext,
    Source,
    TimeoutSource,
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
        MainContext("loop")  # type: ignore[arg-type]


def test_regular_file_watched_without_in_or_out_does_not_spin_the_plain_driver() -> None:
    # poll(2) reports a regular file ready only for IN/OUT; watching it for PRI alone
    # must let the loop sleep instead of re-running the context forever.
    async def main() -> int:
        ctx = MainContext()
        runs = 0
        real_run = ctx._driver._run

        def counting_run() -> None:
            nonlocal runs
            runs += 1
            real_run()

        ctx._driver._run = counting_run
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
