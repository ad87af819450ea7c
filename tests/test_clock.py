"""VirtualClock: exact virtual times, autojump, manual stepping, real fds alongside."""

from __future__ import annotations

import asyncio
import math
import socket
import sys
import threading
from typing import Any

import pytest

import aioqloop
from aioqloop import VirtualClock

try:  # imported at collection: the GLib namespace may not be built everywhere
    from aioqloop import glib
except ImportError:  # pragma: no cover
    glib = None  # type: ignore[assignment]


def run_virtual(main: Any, clock: VirtualClock | None = None) -> Any:
    clock = clock if clock is not None else VirtualClock()
    return aioqloop.run(main(clock), clock=clock)


# ----------------------------------------------------------------- construction
def test_starts_at_given_time() -> None:
    assert VirtualClock().time() == 0.0
    assert VirtualClock(12.5).time() == 12.5
    assert VirtualClock(3).autojump is True
    assert VirtualClock(autojump=False).autojump is False


@pytest.mark.parametrize("bad", ["1", None, True, [1]])
def test_bad_start_type(bad: Any) -> None:
    with pytest.raises(TypeError):
        VirtualClock(bad)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_bad_start_value(bad: float) -> None:
    with pytest.raises(ValueError):
        VirtualClock(bad)


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_bad_advance(bad: float) -> None:
    clock = VirtualClock()
    with pytest.raises(ValueError):
        clock.advance(bad)
    with pytest.raises(TypeError):
        clock.advance("1")  # type: ignore[arg-type]
    assert clock.time() == 0.0


def test_bad_threshold() -> None:
    with pytest.raises(ValueError):
        VirtualClock(autojump_threshold=-1)


def test_advance_without_loop_moves_at_once() -> None:
    clock = VirtualClock(5.0, autojump=False)
    clock.advance(2.5)
    clock.advance(0)
    assert clock.time() == 7.5


def test_advance_from_several_threads_loses_no_step() -> None:
    # advance() is documented for any thread; it reads and writes the target, and two
    # threads at once lost steps.
    clock = VirtualClock(autojump=False)
    loop = aioqloop.new_event_loop(clock=clock)  # not running: each advance moves time
    steps = 20_000
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as CPython allows
    try:
        threads = [threading.Thread(target=lambda: [clock.advance(1) for _ in range(steps)])
                   for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    finally:
        sys.setswitchinterval(interval)
        loop.close()
    assert not any(thread.is_alive() for thread in threads)
    assert clock.time() == 2 * steps


def test_uvloop_base_refuses_clock() -> None:
    pytest.importorskip("uvloop")
    with pytest.raises(ValueError, match="base='asyncio'"):
        aioqloop.new_event_loop(base="uvloop", clock=VirtualClock())


def test_one_loop_at_a_time() -> None:
    clock = VirtualClock()
    loop = aioqloop.new_event_loop(clock=clock)
    try:
        assert clock.loop is loop
        assert loop.time() == 0.0
        with pytest.raises(RuntimeError, match="one loop"):
            aioqloop.new_event_loop(clock=clock)
    finally:
        loop.close()
    # Once the first loop is closed the clock can drive another one.
    loop2 = aioqloop.new_event_loop(clock=clock)
    assert clock.loop is loop2
    loop2.close()


def test_repr() -> None:
    assert "manual" in repr(VirtualClock(autojump=False))
    assert "autojump" in repr(VirtualClock())


# ------------------------------------------------------------------ autojump
def test_an_hour_of_timers_in_exact_order_and_time() -> None:
    """asyncio.sleep, call_later, TimeoutSource, set_ready_time, asyncio.timeout."""

    async def main(clock: VirtualClock) -> list[tuple[str, float]]:
        loop = asyncio.get_running_loop()
        log: list[tuple[str, float]] = []

        async def sleeper() -> None:
            for _ in range(3):
                await asyncio.sleep(600)
                log.append(("sleep", loop.time()))

        ticks = 0

        def tick() -> bool:
            nonlocal ticks
            ticks += 1
            log.append(("timeout-source", loop.time()))
            return ticks < 2

        src = aioqloop.TimeoutSource(1500.0)
        src.set_callback(tick)
        src.attach()

        class Alarm(aioqloop.Source):
            def dispatch(self, callback: Any, args: Any) -> bool:
                log.append(("ready-time", loop.time()))
                return False

        alarm = Alarm()
        alarm.attach()
        alarm.set_ready_time(loop.time() + 2000.0)

        loop.call_later(100.0, lambda: log.append(("call_later", loop.time())))
        loop.call_at(3599.5, lambda: log.append(("call_at", loop.time())))

        task = asyncio.ensure_future(sleeper())
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(3600.0):  # type: ignore[attr-defined]  # 3.11+
                await asyncio.Event().wait()
        log.append(("timeout", loop.time()))
        await task
        assert src.is_destroyed and alarm.is_destroyed
        return log

    if sys.version_info < (3, 11):  # pragma: no cover
        pytest.skip("asyncio.timeout needs 3.11")
    log = run_virtual(main)
    assert log == [
        ("call_later", 100.0),
        ("sleep", 600.0),
        ("sleep", 1200.0),
        ("timeout-source", 1500.0),
        ("sleep", 1800.0),
        ("ready-time", 2000.0),
        ("timeout-source", 3000.0),
        ("call_at", 3599.5),
        ("timeout", 3600.0),
    ]


def test_wait_for_times_out_virtually() -> None:
    async def main(clock: VirtualClock) -> float:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.Event().wait(), 86400.0 * 365)
        return asyncio.get_running_loop().time()

    assert run_virtual(main, VirtualClock(10.0)) == 10.0 + 86400.0 * 365


def test_start_offset_and_fractional_deadlines_are_exact() -> None:
    async def main(clock: VirtualClock) -> list[float]:
        loop = asyncio.get_running_loop()
        seen: list[float] = []
        for d in (0.1, 0.2, 0.3, 0.7):
            loop.call_later(d, lambda: seen.append(loop.time()))
        await asyncio.sleep(1)
        return seen

    start = 1000.0
    seen = run_virtual(main, VirtualClock(start))
    assert seen == [start + 0.1, start + 0.2, start + 0.3, start + 0.7]


def test_prepare_timeout_moves_time() -> None:
    """A custom source's prepare() wait is a deadline too."""

    async def main(clock: VirtualClock) -> list[float]:
        loop = asyncio.get_running_loop()
        seen: list[float] = []

        class Every5(aioqloop.Source):
            def __init__(self) -> None:
                super().__init__()
                self.due = loop.time() + 5

            def prepare(self) -> tuple[bool, float | None]:
                now = loop.time()
                return now >= self.due, max(0.0, self.due - now)

            def check(self) -> bool:
                return loop.time() >= self.due

            def dispatch(self, callback: Any, args: Any) -> bool:
                seen.append(loop.time())
                self.due += 5
                return len(seen) < 3

        Every5().attach()
        while len(seen) < 3:
            await asyncio.sleep(1)
        return seen

    assert run_virtual(main) == [5.0, 10.0, 15.0]


def test_glib_timeout_add_seconds_follows_clock() -> None:
    if glib is None:  # pragma: no cover
        pytest.skip("aioqloop.glib is not available")

    async def main(clock: VirtualClock) -> list[float]:
        loop = asyncio.get_running_loop()
        seen: list[float] = []
        done = asyncio.Event()

        def cb() -> bool:
            seen.append(loop.time())
            if len(seen) == 2:
                done.set()
                return False
            return True

        glib.timeout_add_seconds(30, cb)
        await done.wait()
        return seen

    seen = run_virtual(main)
    # GLib may round second-granularity timeouts; they still run on virtual time.
    assert len(seen) == 2 and 29.0 <= seen[0] <= 31.0 and 59.0 <= seen[1] <= 62.0


# ------------------------------------------------------------- manual stepping
def test_advance_steps_in_deadline_order_with_fifo_ties() -> None:
    async def main(clock: VirtualClock) -> list[tuple[str, float]]:
        loop = asyncio.get_running_loop()
        log: list[tuple[str, float]] = []

        def at(name: str) -> Any:
            return lambda: log.append((name, loop.time()))

        def source(name: str, interval: float) -> None:
            src = aioqloop.TimeoutSource(interval)
            src.set_callback(lambda: log.append((name, loop.time())) or False)
            src.attach()

        source("c1", 3.0)
        loop.call_later(1.0, at("a"))
        source("c2", 3.0)
        loop.call_later(2.0, at("b"))
        source("c3", 3.0)
        loop.call_later(4.0, at("d1"))
        loop.call_at(4.0, at("d2"))
        loop.call_later(4.0, at("d3"))
        loop.call_later(9.0, at("late"))
        source("src", 2.5)

        await asyncio.sleep(0)
        assert log == [] and loop.time() == 0.0  # a manual clock does not jump
        await clock.advance_async(5.0)
        assert loop.time() == 5.0
        snapshot = list(log)
        await clock.advance_async(3.0)
        assert loop.time() == 8.0 and log == snapshot  # 9.0 not reached yet
        await clock.advance_async(1.0)
        assert loop.time() == 9.0
        return log

    log = run_virtual(main, VirtualClock(autojump=False))
    assert log == [
        ("a", 1.0), ("b", 2.0), ("src", 2.5), ("c1", 3.0), ("c2", 3.0), ("c3", 3.0),
        ("d1", 4.0), ("d2", 4.0), ("d3", 4.0), ("late", 9.0),
    ]


def test_call_at_ties_run_fifo() -> None:
    async def main(clock: VirtualClock) -> list[int]:
        loop = asyncio.get_running_loop()
        out: list[int] = []
        for i in range(8):
            loop.call_at(3.0, out.append, i)
        await clock.advance_async(3.0)
        return out

    assert run_virtual(main, VirtualClock(autojump=False)) == list(range(8))


def test_advance_from_callback_then_timers_follow() -> None:
    """Sync advance() inside the loop: the loop steps once the callback returns."""

    async def main(clock: VirtualClock) -> list[float]:
        loop = asyncio.get_running_loop()
        seen: list[float] = []
        done = asyncio.Event()
        loop.call_later(4.0, lambda: seen.append(loop.time()))
        loop.call_later(6.0, lambda: (seen.append(loop.time()), done.set()))
        clock.advance(10.0)
        await done.wait()
        return seen

    assert run_virtual(main, VirtualClock(autojump=False)) == [4.0, 6.0]


@pytest.mark.timeout(10)
def test_advance_from_another_thread_wakes_the_loop() -> None:
    async def main(clock: VirtualClock) -> float:
        loop = asyncio.get_running_loop()
        started = threading.Event()

        def stepper() -> None:
            started.wait()
            clock.advance(7.0)

        t = threading.Thread(target=stepper)
        t.start()
        loop.call_soon(started.set)
        await asyncio.sleep(7.0)  # the loop blocks in a real poll until advance() wakes it
        t.join()
        return loop.time()

    assert run_virtual(main, VirtualClock(autojump=False)) == 7.0


def test_advance_async_in_autojump_mode() -> None:
    async def main(clock: VirtualClock) -> tuple[float, list[float]]:
        loop = asyncio.get_running_loop()
        seen: list[float] = []
        loop.call_later(2.0, lambda: seen.append(loop.time()))
        await clock.advance_async(3.0)
        return loop.time(), seen

    assert run_virtual(main) == (3.0, [2.0])


def test_advance_async_on_wrong_loop() -> None:
    clock = VirtualClock()

    async def main() -> None:
        await clock.advance_async(1)

    with pytest.raises(RuntimeError, match="loop this clock drives"):
        aioqloop.run(main())


# -------------------------------------------------------------------- real fds
def test_socketpair_data_arrives_while_time_jumps() -> None:
    """The loop polls real fds before each jump: data sent at virtual t=100 is read
    at t=100, before the timers after it."""

    async def main(clock: VirtualClock) -> list[tuple[str, float]]:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        log: list[tuple[str, float]] = []
        got = asyncio.Event()

        def readable() -> None:
            log.append(("recv " + a.recv(100).decode(), loop.time()))
            got.set()

        loop.add_reader(a, readable)
        for t in range(1, 201):
            loop.call_at(float(t), lambda: log.append(("tick", loop.time())))
        loop.call_at(100.0, lambda: b.send(b"hello"))
        await got.wait()
        await asyncio.sleep(150)
        loop.remove_reader(a)
        a.close()
        b.close()
        return log

    log = run_virtual(main)
    i = log.index(("recv hello", 100.0))
    assert log[i - 1] == ("tick", 100.0)
    assert log[i + 1] == ("tick", 101.0)
    assert [t for name, t in log if name == "tick"] == [float(t) for t in range(1, 201)]


@pytest.mark.timeout(10)
def test_blocks_for_real_events_when_no_deadline() -> None:
    """With nothing scheduled, time cannot move: the loop waits for the fd."""

    async def main(clock: VirtualClock) -> tuple[bytes, float]:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        go = threading.Event()

        def writer() -> None:
            go.wait()
            b.send(b"x")

        t = threading.Thread(target=writer)
        t.start()
        loop.call_soon(go.set)
        reader, writer_ = await asyncio.open_connection(sock=a)
        data = await reader.readexactly(1)
        t.join()
        writer_.close()
        await writer_.wait_closed()
        b.close()
        return data, loop.time()

    assert run_virtual(main, VirtualClock(42.0)) == (b"x", 42.0)


@pytest.mark.timeout(10)
def test_autojump_threshold_lets_executor_finish_first() -> None:
    async def main(clock: VirtualClock) -> tuple[str, float]:
        loop = asyncio.get_running_loop()
        release = threading.Event()
        fut = loop.run_in_executor(None, lambda: (release.wait(5), "done")[1])
        loop.call_soon(release.set)
        result = await asyncio.wait_for(fut, 1000.0)
        return result, loop.time()

    result, t = run_virtual(main, VirtualClock(autojump_threshold=5.0))
    assert result == "done" and t == 0.0


# ------------------------------------------------- executor threads (no autojump)
@pytest.mark.timeout(20)
@pytest.mark.parametrize("how", ["run_in_executor", "to_thread"])
def test_no_jump_while_an_executor_thread_works(how: str) -> None:
    """A timeout pending while a thread works does not fire early: time stays put until
    the thread's result is back (without the rule, wait_for would time out at once)."""

    async def main(clock: VirtualClock) -> tuple[str, float, float]:
        loop = asyncio.get_running_loop()
        started = threading.Event()
        release = threading.Event()

        def work() -> str:
            started.set()
            release.wait(10)
            return "done"

        # The thread is released from another real thread once it has started, so the
        # loop has been idle, with a deadline pending, while the work was out.
        threading.Thread(target=lambda: (started.wait(10), release.set()), daemon=True).start()
        if how == "to_thread":
            coro: Any = asyncio.to_thread(work)
        else:
            coro = loop.run_in_executor(None, work)
        result = await asyncio.wait_for(coro, 1000.0)
        during = loop.time()
        await asyncio.sleep(3600)  # and jumps again afterwards
        return result, during, loop.time()

    assert run_virtual(main) == ("done", 0.0, 3600.0)


@pytest.mark.timeout(20)
def test_executor_result_can_schedule_earlier_work() -> None:
    """The thread's result schedules a timer due before a pending one: it runs first,
    at its own virtual time."""

    async def main(clock: VirtualClock) -> list[tuple[str, float]]:
        loop = asyncio.get_running_loop()
        log: list[tuple[str, float]] = []
        loop.call_later(100.0, lambda: log.append(("late", loop.time())))
        release = threading.Event()
        threading.Timer(0.05, release.set).start()
        await loop.run_in_executor(None, release.wait, 10)
        loop.call_later(10.0, lambda: log.append(("after thread", loop.time())))
        await asyncio.sleep(200)
        return log

    assert run_virtual(main) == [("after thread", 10.0), ("late", 100.0)]
