"""aioqloop's event loops: the ways in, the owned context, priorities across asyncio.

Both bases are covered where a behaviour is promised on both (sources, timeouts, fds,
bottom halves from threads, priorities among sources, the big lock); the ordering of
sources and task steps *against asyncio's own callbacks* is a stock-base guarantee
(libuv gives no view of its ready queue), so those tests run on ``base="asyncio"`` only.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, cast

import pytest
import uvloop
from conftest import BASES

import aioqloop
from aioqloop import (
    PRIORITY_DEFAULT,
    PRIORITY_DEFAULT_IDLE,
    PRIORITY_HIGH,
    PRIORITY_LOW,
    BigLock,
    BottomHalf,
    IOCondition,
    MainContext,
    Source,
)
from aioqloop.loop import QSelectorEventLoop, QTask


def run(main: Callable[[], Coroutine[Any, Any, Any]], base: str = "asyncio", **kw: Any) -> Any:
    """``aioqloop.run(main())``; a wedged loop fails in 10 s instead of hanging.

    (pytest-timeout's signal cannot interrupt uvloop while it sleeps in libuv.)
    """

    async def bounded() -> Any:
        return await asyncio.wait_for(main(), 10)

    return aioqloop.run(bounded(), base=base, **kw)


def base_class(base: str) -> type[asyncio.AbstractEventLoop]:
    return QSelectorEventLoop if base == "asyncio" else uvloop.Loop


@pytest.fixture
def thread_default_loop() -> Iterator[None]:
    """Close whatever loop `MainContext.default()` created for this thread."""
    yield
    from aioqloop import loop as core_loop

    core_loop._forget_default_loop()
    asyncio.set_event_loop(None)


# ---------------------------------------------------------------- entry points
def test_run_returns_value_on_the_chosen_base(base: str) -> None:
    async def main() -> tuple[int, asyncio.AbstractEventLoop]:
        await asyncio.sleep(0)
        return 42, asyncio.get_running_loop()

    value, loop = run(main, base)
    assert value == 42
    assert isinstance(loop, base_class(base))
    assert loop.is_closed()


def test_run_passes_debug_and_refuses_non_coroutines(base: str) -> None:
    async def main() -> bool:
        return asyncio.get_running_loop().get_debug()

    assert run(main, base, debug=True) is True
    assert run(main, base, debug=False) is False

    def not_a_coroutine() -> None:
        pass

    with pytest.raises(TypeError, match="coroutine"):
        aioqloop.run(not_a_coroutine, base=base)  # type: ignore[arg-type]


def test_run_forwards_loop_kwargs() -> None:
    clock = aioqloop.VirtualClock(500.0)

    async def main() -> float:
        await asyncio.sleep(100)  # autojump: no real wait
        return asyncio.get_running_loop().time()

    assert aioqloop.run(main(), clock=clock) >= 600.0


def test_uvloop_run_accepts_the_uvloop_base() -> None:
    async def main() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    def factory() -> uvloop.Loop:
        # aioqloop's uvloop-base loop is a uvloop.Loop subclass; its static type omits it.
        return cast(uvloop.Loop, aioqloop.new_event_loop(base="uvloop"))

    loop = uvloop.run(main(), loop_factory=factory)
    assert isinstance(loop, uvloop.Loop)
    assert isinstance(aioqloop.get_main_context(loop), MainContext)


def test_runner_with_loop_factory(base: str) -> None:
    async def main(x: int) -> tuple[int, MainContext]:
        await asyncio.sleep(0)
        return x * 2, aioqloop.get_main_context()

    factory = functools.partial(aioqloop.new_event_loop, base=base)
    if sys.version_info >= (3, 11):
        runner_cls: Any = asyncio.Runner
    else:  # pragma: no cover - 3.10: the backport aioqloop depends on there
        from backports.asyncio.runner import (  # type: ignore[import-not-found]
            Runner as runner_cls,
        )
    with runner_cls(loop_factory=factory) as runner:
        loop = runner.get_loop()
        assert isinstance(loop, base_class(base))
        first, ctx1 = runner.run(main(1))
        second, ctx2 = runner.run(main(2))
    assert (first, second) == (2, 4)
    assert ctx1 is ctx2 is aioqloop.get_main_context(loop)
    assert loop.is_closed()


@pytest.mark.skipif(sys.version_info < (3, 12), reason="asyncio.run(loop_factory=) is 3.12+")
def test_asyncio_run_with_loop_factory() -> None:  # pragma: no cover - 3.12+
    async def main() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    loop = asyncio.run(main(), loop_factory=aioqloop.new_event_loop)  # type: ignore[call-arg]
    assert isinstance(loop, QSelectorEventLoop)


def test_event_loop_policy(base: str) -> None:
    async def main() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    old = asyncio.get_event_loop_policy()
    policy = aioqloop.EventLoopPolicy(base=base)
    assert isinstance(policy, asyncio.AbstractEventLoopPolicy)
    asyncio.set_event_loop_policy(policy)
    try:
        loop = asyncio.new_event_loop()
        try:
            assert isinstance(loop, base_class(base))
            assert isinstance(loop.main_context, MainContext)  # type: ignore[attr-defined]
        finally:
            loop.close()
        assert isinstance(asyncio.run(main()), base_class(base))
    finally:
        asyncio.set_event_loop_policy(old)


def test_event_loop_policy_rejects_a_bad_base() -> None:
    with pytest.raises(ValueError, match="base"):
        aioqloop.EventLoopPolicy(base="trio")


def test_event_loop_policy_is_built_lazily() -> None:
    # A fresh interpreter: importing aioqloop must not build (or warn about) the policy.
    code = (
        "import aioqloop, aioqloop._policy as l\n"
        "assert l._policy_cls is None\n"
        "assert 'EventLoopPolicy' not in vars(aioqloop)\n"
        "cls = aioqloop.EventLoopPolicy\n"
        "assert cls is aioqloop.EventLoopPolicy is l._policy_cls\n"
        "import asyncio\n"
        "assert issubclass(cls, asyncio.AbstractEventLoopPolicy)\n"
    )
    subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", "-c", code],
        check=True,
        timeout=30,
    )


def test_bad_arguments_are_refused_at_the_call() -> None:
    with pytest.raises(ValueError, match="base must be"):
        aioqloop.new_event_loop(base="tokio")
    with pytest.raises(ValueError, match="VirtualClock"):
        aioqloop.new_event_loop(base="uvloop", clock=aioqloop.VirtualClock())
    for base in BASES:
        with pytest.raises(TypeError, match="BigLock"):
            aioqloop.new_event_loop(base=base, bql=threading.Lock())  # type: ignore[arg-type]


# ------------------------------------------------------------- owned contexts
def test_each_loop_owns_its_default_context(base: str) -> None:
    loops = [aioqloop.new_event_loop(base=base) for _ in range(2)]
    try:
        ctxs = [aioqloop.get_main_context(loop) for loop in loops]
        for loop, ctx in zip(loops, ctxs):
            assert ctx is loop.main_context
            assert ctx.loop is loop
            assert aioqloop.get_main_context(loop) is ctx  # stable
        assert ctxs[0] is not ctxs[1]
    finally:
        for loop in loops:
            loop.close()

    async def main() -> tuple[MainContext, MainContext, MainContext]:
        loop = asyncio.get_running_loop()
        return aioqloop.get_main_context(), MainContext.default(), loop.main_context  # type: ignore[attr-defined]

    a, b, c = run(main, base)
    assert a is b is c


@pytest.mark.usefixtures("thread_default_loop")
def test_default_context_outside_a_loop_is_the_threads_own() -> None:
    ctx = MainContext.default()
    assert ctx is MainContext.default()
    loop = ctx.loop
    assert isinstance(loop, QSelectorEventLoop)
    assert not loop.is_running()
    # the thread's loop is also asyncio's current loop for this thread
    assert asyncio.get_event_loop_policy().get_event_loop() is loop


@pytest.mark.timeout(30)
@pytest.mark.usefixtures("thread_default_loop")
def test_default_context_is_the_running_loops_else_the_global_one() -> None:
    main_ctx = MainContext.default()
    seen: dict[str, Any] = {}

    def in_thread() -> None:
        async def main() -> None:
            seen["running"] = MainContext.default()
            seen["own"] = aioqloop.get_main_context()
            seen["loop"] = asyncio.get_running_loop()

        aioqloop.run(main())
        # No loop runs here any more: the global default (the main thread's), never a
        # fresh loop of this thread that nobody would run.
        seen["idle"] = MainContext.default()
        seen["idle_again"] = MainContext.default()

    t = threading.Thread(target=in_thread)
    t.start()
    t.join(20)
    assert not t.is_alive()
    assert seen["running"] is seen["own"]
    assert seen["running"].loop is seen["loop"]
    assert seen["running"] is not main_ctx
    assert seen["idle"] is seen["idle_again"] is main_ctx
    assert MainContext.default() is main_ctx


# ----------------------------------------- priorities across asyncio (stock base)
def test_high_source_dispatches_before_earlier_asyncio_callbacks() -> None:
    log: list[str] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        loop.call_soon(log.append, "a")
        aioqloop.idle_add(lambda: log.append("high") and False, priority=PRIORITY_HIGH)
        loop.call_soon(log.append, "b")
        loop.call_soon(done.set_result, None)
        await done

    run(main)
    assert log == ["high", "a", "b"]


def test_default_source_queues_fifo_with_asyncio_callbacks() -> None:
    log: list[str] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def source_cb() -> bool:
            log.append("source")
            loop.call_soon(log.append, "after")
            loop.call_soon(done.set_result, None)
            return False

        loop.call_soon(log.append, "a")
        aioqloop.idle_add(source_cb, priority=PRIORITY_DEFAULT)
        loop.call_soon(log.append, "b")
        await done

    run(main)
    # FIFO by the order things became ready: after "a" (queued before the source was
    # attached), before "b" (queued after), and before what it queues itself.
    assert log == ["a", "source", "b", "after"]


def test_default_source_and_callback_chain_interleave() -> None:
    log: list[str] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def chain(n: int) -> None:
            log.append("cb")
            if n:
                loop.call_soon(chain, n - 1)
            else:
                done.set_result(None)

        def source_cb() -> bool:
            log.append("src")
            return not done.done()

        aioqloop.idle_add(source_cb, priority=PRIORITY_DEFAULT)
        loop.call_soon(chain, 20)
        await done

    run(main)
    # One dispatch of the source per loop iteration, one chain step per iteration:
    # neither starves the other.
    body = log[log.index("src") :]
    assert body.count("cb") >= 19
    assert all(a != b for a, b in itertools.pairwise(body)), log


def test_idle_source_waits_until_asyncio_has_nothing_ready() -> None:
    log: list[Any] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        idle_ran = asyncio.Event()

        def idle_cb() -> bool:
            log.append("idle")
            idle_ran.set()
            return False

        async def busy() -> None:
            for i in range(30):
                log.append(i)
                await asyncio.sleep(0)

        aioqloop.idle_add(idle_cb)  # PRIORITY_DEFAULT_IDLE
        await loop.create_task(busy())
        await idle_ran.wait()

    run(main)
    # The busy task always had a step ready, so the idle was starved until it ended.
    assert log.index("idle") > log.index(29)


@pytest.mark.parametrize(
    ("priority", "first"),
    [(PRIORITY_HIGH, ["task", "a", "b"]), (PRIORITY_DEFAULT, ["a", "task", "b"])],
)
def test_task_priority_against_queued_callbacks(priority: int, first: list[str]) -> None:
    log: list[str] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        gate = loop.create_future()

        async def worker() -> None:
            await gate
            log.append("task")

        task = loop.create_task(worker())
        assert isinstance(task, QTask)
        task.set_priority(priority)
        assert task.get_priority() == priority
        await asyncio.sleep(0)  # the worker now waits on the gate
        loop.call_soon(log.append, "a")
        gate.set_result(None)  # wakes the worker through call_soon
        loop.call_soon(log.append, "b")
        await task

    run(main)
    assert log[:3] == first


@pytest.mark.parametrize(
    ("priority", "starved"),
    [(PRIORITY_LOW, True), (PRIORITY_DEFAULT_IDLE, True), (PRIORITY_DEFAULT, False)],
)
def test_low_priority_task_steps_wait_for_an_idle_loop(priority: int, starved: bool) -> None:
    log: list[Any] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        gate = loop.create_future()

        async def low() -> None:
            await gate
            log.append("low")

        async def busy() -> None:
            for i in range(30):
                log.append(i)
                if i == 2:
                    gate.set_result(None)
                await asyncio.sleep(0)

        task = loop.create_task(low())
        task.set_priority(priority)  # type: ignore[attr-defined]
        await asyncio.sleep(0)
        await asyncio.gather(task, loop.create_task(busy()))
        assert task.get_priority() == PRIORITY_DEFAULT  # type: ignore[attr-defined]

    run(main)
    assert (log.index("low") > log.index(29)) is starved


def test_task_priority_api(base: str) -> None:
    async def main() -> list[int]:
        loop = asyncio.get_running_loop()

        async def child() -> int:
            for _ in range(3):
                await asyncio.sleep(0)
            return 7

        task = asyncio.create_task(child())
        assert isinstance(task, QTask)
        assert task.get_priority() == PRIORITY_DEFAULT
        with pytest.raises(TypeError, match="priority"):
            task.set_priority(True)
        with pytest.raises(TypeError, match="priority"):
            task.set_priority("high")  # type: ignore[arg-type]
        task.set_priority(PRIORITY_HIGH)
        got = [task.get_priority(), await task]
        # a custom task factory is respected: its tasks are the factory's
        loop.set_task_factory(lambda lp, coro, **kw: asyncio.Task(coro, loop=lp, **kw))
        plain = loop.create_task(child())
        loop.set_task_factory(None)
        got.append(int(isinstance(plain, QTask)))
        got.append(await plain)
        return got

    assert run(main, base) == [PRIORITY_HIGH, 7, 0, 7]


def test_prepare_runs_before_every_poll() -> None:
    log: list[str] = []

    class Counting(Source):
        def prepare(self) -> tuple[bool, float | None]:
            log.append("prepare")
            return (False, None)

    async def main() -> None:
        src = Counting()
        src.attach(aioqloop.get_main_context())
        for _ in range(20):
            log.append("step")
            await asyncio.sleep(0)  # one step per loop iteration
        src.destroy()

    run(main)
    steps = log[log.index("step") :]
    assert steps.count("step") == 20
    assert ["step", "step"] not in [steps[i : i + 2] for i in range(len(steps) - 1)], log


@pytest.mark.timeout(20)
def test_prepare_timeout_bounds_the_poll(base: str) -> None:
    class Deadline(Source):
        """Ready once its own clock passes a deadline; only prepare/check know it."""

        def __init__(self, deadline: float) -> None:
            super().__init__()
            self.deadline = deadline

        def prepare(self) -> tuple[bool, float | None]:
            left = self.deadline - self.time()
            return (left <= 0, max(left, 0.0))

        def check(self) -> bool:
            return self.time() >= self.deadline

    async def main() -> None:
        loop = asyncio.get_running_loop()
        fired = loop.create_future()
        src = Deadline(loop.time() + 0.02)
        src.set_callback(lambda: fired.set_result(None))
        src.attach(aioqloop.get_main_context())
        # nothing else would ever wake the loop: only the prepare timeout does
        await fired

    run(main, base)


def test_loop_tolerates_a_mixin_swapped_onto_its_class(base: str) -> None:
    calls: list[str] = []

    class Mixin:
        def call_soon(self, *args: Any, **kwargs: Any) -> Any:
            calls.append("call_soon")
            return super().call_soon(*args, **kwargs)  # type: ignore[misc]

    loop = aioqloop.new_event_loop(base=base)
    loop.__class__ = type("Patched", (Mixin, type(loop)), {})
    log: list[str] = []

    async def main() -> None:
        done = loop.create_future()

        def rec(tag: str) -> bool:
            log.append(tag)
            if len(log) == 3:
                done.set_result(None)
            return False

        aioqloop.timeout_add(0.001, rec, "timeout")
        aioqloop.idle_add(rec, "idle")
        aioqloop.idle_add(rec, "high", priority=PRIORITY_HIGH)
        await done

    try:
        assert isinstance(loop, Mixin)
        assert aioqloop.get_main_context(loop) is loop.main_context
        loop.run_until_complete(main())
    finally:
        loop.close()
    assert log[0] == "high"
    assert sorted(log) == ["high", "idle", "timeout"]
    assert calls


# ------------------------------------------------------------- on both bases
def test_sources_and_timeouts_dispatch(base: str) -> None:
    log: list[str] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        ticks = 0

        def tick() -> bool:
            nonlocal ticks
            ticks += 1
            log.append("tick")
            if ticks == 3:
                done.set_result(None)
                return False
            return True

        aioqloop.timeout_add(0.002, tick)
        aioqloop.idle_add(lambda: log.append("idle") and False)
        await done

    run(main, base)
    assert log.count("tick") == 3
    assert log.count("idle") == 1


def test_fd_sources_dispatch(base: str) -> None:
    async def main() -> list[Any]:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        got: list[Any] = []
        done = loop.create_future()

        def on_readable(sock: socket.socket, cond: IOCondition) -> bool:
            data = sock.recv(100)
            got.append((bytes(data), IOCondition.IN in cond))
            if not data:
                got.append(IOCondition.HUP in cond)
                done.set_result(None)
                return False
            return True

        with a, b:
            aioqloop.fd_add(a, IOCondition.IN, on_readable)
            b.send(b"ping")
            while not got:
                await asyncio.sleep(0.001)
            b.close()
            await done
        return got

    got = run(main, base)
    assert got[0] == (b"ping", True)
    assert got[-1] is True  # HUP reported with the EOF


@pytest.mark.timeout(30)
def test_bottom_halves_scheduled_from_threads(base: str) -> None:
    async def main() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        runs: list[int] = []

        def bh_cb() -> None:
            assert threading.get_ident() == loop_thread
            runs.append(1)
            if len(runs) == 1:
                done.set_result(None)

        loop_thread = threading.get_ident()
        bh = BottomHalf(bh_cb)
        assert bh.scheduled is False
        threads = [threading.Thread(target=bh.schedule) for _ in range(4)]
        for t in threads:
            t.start()
        await done
        for t in threads:
            t.join()
        # schedules before it ran coalesce; later ones run it again; one run at least
        await asyncio.sleep(0.01)
        bh.delete()
        return len(runs), len(threads)

    n, nthreads = run(main, base)
    assert 1 <= n <= nthreads


def test_priorities_among_sources(base: str) -> None:
    log: list[str] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def rec(tag: str) -> Callable[[], bool]:
            def cb() -> bool:
                log.append(tag)
                if tag == "low":
                    done.set_result(None)
                return False

            return cb

        # attached least urgent first: the order comes from the priorities
        aioqloop.idle_add(rec("low"), priority=PRIORITY_LOW)
        aioqloop.idle_add(rec("idle"), priority=PRIORITY_DEFAULT_IDLE)
        aioqloop.idle_add(rec("default"), priority=PRIORITY_DEFAULT)
        aioqloop.idle_add(rec("high"), priority=PRIORITY_HIGH)
        await done

    run(main, base)
    assert log == ["high", "default", "idle", "low"]


# ---------------------------------------------------------------- the big lock
@pytest.mark.timeout(30)
def test_bql_is_held_while_sources_dispatch_and_free_while_the_loop_sleeps(
    base: str,
) -> None:
    lock = BigLock(name="test-bql")

    async def main() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        out: dict[str, Any] = {"in_dispatch": []}
        three = loop.create_future()

        def tick() -> bool:
            out["in_dispatch"].append((lock.held(), lock.locked()))
            if len(out["in_dispatch"]) == 3:
                three.set_result(None)
                return False
            return True

        aioqloop.timeout_add(0.001, tick)
        await three
        # a task step is not a dispatch phase: the loop does not lend the lock to tasks
        out["in_task"] = (lock.held(), lock.locked())

        # With nothing to do the loop sleeps; a thread must get the lock meanwhile.
        got = loop.create_future()

        def worker() -> None:
            ok = lock.acquire_sync(timeout=10)
            if ok:
                lock.release()
            loop.call_soon_threadsafe(got.set_result, ok)

        t = threading.Thread(target=worker)
        t.start()
        out["thread_got_it"] = await got
        t.join()
        return out

    out = run(main, base, bql=lock)
    assert out["in_dispatch"] == [(True, True)] * 3
    assert out["in_task"] == (False, False)
    assert out["thread_got_it"] is True
    assert not lock.locked()


# ---------------------------------------------------------------- big lock discipline
@pytest.mark.timeout(30)
def test_bql_waiting_thread_gets_in_between_dispatches_of_a_busy_loop(base: str) -> None:
    import time as _time

    # A continuous stream of ready sources must not starve a thread waiting for the lock:
    # the loop yields it between two dispatches (FIFO hand-off), not after a batch.
    lock = aioqloop.BigLock()
    rounds = 40

    async def main() -> tuple[int, int, int]:
        dispatches = 0
        streak = max_streak = seen = 0
        stop = False

        def busy() -> bool:
            nonlocal dispatches, streak, max_streak, seen
            lock.assert_held()
            if lock._has_waiters():
                # A thread queued behind the lock: the loop must let it in before the
                # next dispatch, so no two dispatches in a row may see it waiting.
                seen += 1
                streak += 1
                max_streak = max(max_streak, streak)
            else:
                streak = 0
            dispatches += 1
            _time.sleep(0.0002)  # drop the GIL mid-dispatch so the thread can queue
            return not stop

        for _ in range(3):  # several sources: hand-offs inside one batch too
            aioqloop.idle_add(busy, priority=aioqloop.PRIORITY_DEFAULT)
        acquired = 0

        def worker() -> None:
            nonlocal acquired
            for _ in range(rounds):
                _time.sleep(0.002)  # work outside the lock, then ask again (often mid-batch)
                with lock:
                    acquired += 1
                    assert lock.held()

        await asyncio.wait_for(asyncio.to_thread(worker), 20)
        stop = True
        await asyncio.sleep(0)
        return acquired, max_streak, dispatches

    acquired, max_streak, dispatches = aioqloop.run(main(), base=base, bql=lock)
    assert acquired == rounds
    assert dispatches > rounds  # the loop kept dispatching all along
    assert max_streak <= 1
    assert not lock.locked()


def test_debug_mode_warns_about_a_slow_dispatch(caplog: pytest.LogCaptureFixture) -> None:
    import time as _time

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_debug(True)
        loop.slow_callback_duration = 0.01
        done = asyncio.Event()

        def slow() -> bool:
            _time.sleep(0.03)
            done.set()
            return False

        src = aioqloop.IdleSource(name="sluggish")
        src.set_callback(slow)
        src.attach()
        await done.wait()

    with caplog.at_level("WARNING", logger="aioqloop"):
        aioqloop.run(main())
    messages = [r.getMessage() for r in caplog.records if r.name == "aioqloop"]
    assert any("sluggish" in m and "took" in m for m in messages), messages


# --------------------------------------------------------- review regressions
@pytest.mark.timeout(30)
def test_refused_nested_run_keeps_the_running_thread_owner(base: str) -> None:
    # run_forever() cleared the context's owner in its finally even when asyncio refused
    # to start (the loop already runs): the context then took other threads for its own
    # and let them iterate it while the loop ran.
    async def main() -> str:
        loop = asyncio.get_running_loop()
        ctx = aioqloop.get_main_context()
        coro = asyncio.sleep(0)
        with pytest.raises(RuntimeError, match="already running"):
            loop.run_until_complete(coro)
        coro.close()
        outcome: list[str] = []

        def other_thread() -> None:
            try:
                ctx.iteration(False)
                outcome.append("iterated")
            except RuntimeError as exc:
                outcome.append(str(exc))

        t = threading.Thread(target=other_thread)
        t.start()
        await asyncio.to_thread(t.join)
        return outcome[0]

    assert "another thread" in aioqloop.run(main(), base=base)


def test_a_refused_bql_leaves_no_half_built_loop(base: str) -> None:
    # The bql was checked after the base loop (selector, self-pipe, context) was built:
    # the half-built loop kept its fds and warned "unclosed event loop" at GC.
    import gc
    import os

    aioqloop.new_event_loop(base=base).close()  # uvloop opens a few fds once per process
    gc.collect()
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(3):
        with pytest.raises(TypeError, match="BigLock"):
            aioqloop.new_event_loop(base=base, bql=threading.Lock())  # type: ignore[arg-type]
    assert len(os.listdir("/proc/self/fd")) == before
    gc.collect()


def test_tasks_look_like_asyncio_tasks_in_reprs(base: str) -> None:
    # asyncio's slow-callback and "Task was destroyed" logs print the task's repr.
    async def child() -> None:
        pass

    async def main() -> tuple[str, bool]:
        task = asyncio.get_running_loop().create_task(child())
        await task
        return repr(task), hasattr(task, "set_priority")

    text, prioritized = run(main, base)
    assert text.startswith("<Task finished ")
    assert prioritized
