"""`MainLoop`: GLib's ``GMainLoop`` over a `MainContext` (run / quit / is_running / nesting)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import aioqloop
from aioqloop import MainContext, MainLoop, main_depth


@pytest.fixture
def thread_default_loop() -> Iterator[None]:
    """Close the loop `MainContext.default()` creates for this thread, after the test."""
    yield
    loop = MainContext.default().loop
    assert loop is not None
    loop.close()
    asyncio.set_event_loop(None)


def bounded_run(main: Any, base: str = "asyncio") -> Any:
    """Run ``main()`` on an aioqloop loop; a wedged loop fails in 10 s instead of hanging."""

    async def bounded() -> Any:
        return await asyncio.wait_for(main(), 10)

    return aioqloop.run(bounded(), base=base)


# ------------------------------------------------------- glib/tests/mainloop.c
@pytest.mark.usefixtures("thread_default_loop")
def test_mainloop_basic() -> None:
    # glib/tests/mainloop.c test_mainloop_basic
    loop = MainLoop()
    assert not loop.is_running()
    assert loop.context is MainContext.default()
    assert main_depth() == 0
    assert MainLoop(is_running=True).is_running()
    assert "MainLoop" in repr(loop)


def test_mainloop_rejects_a_non_context() -> None:
    with pytest.raises(TypeError, match="MainContext"):
        MainLoop(context="default")  # type: ignore[arg-type]


# ----------------------------------------------------------- from sync code
@pytest.mark.timeout(30)
@pytest.mark.usefixtures("thread_default_loop")
def test_run_and_quit_from_sync_code_drive_the_threads_loop() -> None:
    ml = MainLoop()
    loop = ml.context.loop
    assert loop is not None
    seen: dict[str, Any] = {}

    async def coro() -> None:
        # coroutines progress while MainLoop.run() drives the asyncio loop
        await asyncio.sleep(0)
        seen["coro"] = asyncio.get_running_loop()

    def on_idle() -> bool:
        seen["depth"] = main_depth()
        seen["running"] = ml.is_running()
        if "coro" in seen:
            ml.quit()
            return False
        return True

    loop.create_task(coro())
    aioqloop.idle_add(on_idle)
    ml.run()
    assert seen == {"coro": loop, "depth": 1, "running": True}
    assert not ml.is_running()
    assert not loop.is_running()
    assert not loop.is_closed()  # the thread's loop stays usable for the next run()

    # run again: a second MainLoop on the same context works the same way
    ml2 = MainLoop()
    aioqloop.timeout_add(0.001, lambda: ml2.quit())
    ml2.run()
    assert not ml2.is_running()


@pytest.mark.timeout(30)
@pytest.mark.usefixtures("thread_default_loop")
def test_quit_from_another_thread() -> None:
    ml = MainLoop()
    started = threading.Event()
    aioqloop.idle_add(lambda: started.set() and False)

    def quitter() -> None:
        assert started.wait(10)
        ml.quit()

    t = threading.Thread(target=quitter)
    t.start()
    ml.run()  # returns only because the thread quit it
    t.join()
    assert started.is_set()
    assert not ml.is_running()


@pytest.mark.timeout(30)
@pytest.mark.usefixtures("thread_default_loop")
def test_quit_before_run_is_lost() -> None:
    ml = MainLoop()
    ml.quit()  # nothing runs yet: GLib forgets it
    log: list[str] = []

    def later() -> bool:
        log.append("timeout")
        ml.quit()
        return False

    aioqloop.timeout_add(0.005, later)
    ml.run()
    assert log == ["timeout"]  # run() did not return before the source quit it


@pytest.mark.usefixtures("thread_default_loop")
def test_run_on_a_closed_loop_is_refused() -> None:
    ctx = MainContext.default()
    assert ctx.loop is not None
    ctx.loop.close()
    with pytest.raises(RuntimeError, match="closed"):
        MainLoop(ctx).run()


# ------------------------------------------------------------------- nesting
@pytest.mark.timeout(30)
def test_nested_run_from_a_source_callback(base: str) -> None:
    log: list[Any] = []

    async def main() -> list[Any]:
        loop = asyncio.get_running_loop()
        ctx = aioqloop.get_main_context()
        outer_done = loop.create_future()
        loop.call_soon(log.append, "asyncio callback")

        def outer() -> bool:
            log.append(("outer", main_depth()))
            inner = MainLoop(ctx)

            def in_nested() -> bool:
                log.append(("nested", main_depth(), inner.is_running()))
                inner.quit()
                return False

            aioqloop.timeout_add(0.001, in_nested)
            inner.run()  # a nested GLib loop: sources dispatch at depth 2
            log.append(("back", main_depth(), inner.is_running()))
            outer_done.set_result(None)
            return False

        aioqloop.idle_add(outer)
        await outer_done
        return log

    got = bounded_run(main, base)
    assert ("outer", 1) in got
    assert ("nested", 2, True) in got
    assert ("back", 1, False) in got
    assert got.index(("outer", 1)) < got.index(("nested", 2, True)) < got.index(("back", 1, False))


def test_run_inside_a_coroutine_is_refused(base: str) -> None:
    async def main() -> str:
        ml = MainLoop(aioqloop.get_main_context())
        with pytest.raises(RuntimeError, match="run_async") as info:
            ml.run()
        assert not ml.is_running()
        return str(info.value)

    assert "coroutine" in bounded_run(main, base)


@pytest.mark.timeout(30)
def test_run_on_a_loop_running_in_another_thread_is_refused() -> None:
    ready = threading.Event()
    stop = threading.Event()
    box: dict[str, MainContext] = {}

    async def serve() -> None:
        box["ctx"] = aioqloop.get_main_context()
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.005)

    t = threading.Thread(target=aioqloop.run, args=(serve(),))
    t.start()
    try:
        assert ready.wait(10)
        with pytest.raises(RuntimeError, match="another thread"):
            MainLoop(box["ctx"]).run()
    finally:
        stop.set()
        t.join(10)
    assert not t.is_alive()


# ------------------------------------------------------------------ run_async
@pytest.mark.timeout(30)
def test_run_async_until_quit(base: str) -> None:
    async def main() -> list[Any]:
        ml = MainLoop(aioqloop.get_main_context())
        log: list[Any] = []

        def tick() -> bool:
            log.append(("tick", ml.is_running()))
            if len(log) == 3:
                ml.quit()
                return False
            return True

        aioqloop.timeout_add(0.001, tick)
        await ml.run_async()  # sources keep dispatching while it waits
        log.append(("after", ml.is_running()))

        # quit from another thread wakes a waiting run_async too
        ml2 = MainLoop(aioqloop.get_main_context())
        loop = asyncio.get_running_loop()
        loop.call_soon(threading.Thread(target=ml2.quit).start)
        await ml2.run_async()
        log.append(("thread quit", ml2.is_running()))
        return log

    assert bounded_run(main, base) == [
        ("tick", True),
        ("tick", True),
        ("tick", True),
        ("after", False),
        ("thread quit", False),
    ]


# ------------------------------------------------------- stand-alone context
@pytest.mark.timeout(30)
def test_main_loop_on_a_standalone_context() -> None:
    ctx = MainContext()  # no loop runs here: a stand-alone context
    try:
        assert ctx.loop is None
        ml = MainLoop(ctx)
        assert ml.context is ctx
        log: list[Any] = []

        def tick() -> bool:
            log.append(main_depth())
            if len(log) == 2:
                ml.quit()
                return False
            return True

        aioqloop.timeout_add(0.001, tick, context=ctx)
        ml.run()
        assert log == [1, 1]
        assert not ml.is_running()

        # a thread's quit wakes the blocking poll (no source is ever ready here)
        ml2 = MainLoop(ctx)
        threads: list[threading.Thread] = []

        def start_quitter() -> bool:
            # dispatched inside run(): the quit cannot come before it (it would be lost)
            threads.append(threading.Thread(target=ml2.quit))
            threads[0].start()
            return False

        aioqloop.idle_add(start_quitter, context=ctx)
        ml2.run()
        threads[0].join()
        assert not ml2.is_running()
    finally:
        ctx.close()


class _QuitInTheWindow:
    """A lock whose first acquisition lets another thread call ``quit()`` first.

    It reproduces deterministically a quit landing between ``run()`` marking the loop
    running and registering how to stop it.
    """

    def __init__(self, ml: MainLoop) -> None:
        self._ml = ml
        self._real = threading.Lock()
        self._fired = False

    def __enter__(self) -> None:
        if not self._fired:
            self._fired = True
            t = threading.Thread(target=self._ml.quit)
            t.start()
            t.join()
        self._real.acquire()

    def __exit__(self, *exc: object) -> None:
        self._real.release()


@pytest.mark.timeout(30)
def test_quit_from_another_thread_right_after_run_starts_is_not_lost() -> None:
    loop = aioqloop.new_event_loop()
    try:
        ml = MainLoop(aioqloop.get_main_context(loop))
        ml._lock = _QuitInTheWindow(ml)  # type: ignore[assignment]
        ran: list[str] = []
        loop.call_soon(ran.append, "loop ran")
        loop.call_soon(loop.stop)  # so the unfixed code fails instead of hanging
        ml.run()
        assert ran == []
        assert not ml.is_running()
    finally:
        loop.close()


@pytest.mark.timeout(30)
@pytest.mark.asyncio
async def test_quit_from_another_thread_right_after_run_async_starts_is_not_lost() -> None:
    ml = MainLoop(aioqloop.get_main_context())
    ml._lock = _QuitInTheWindow(ml)  # type: ignore[assignment]
    await asyncio.wait_for(ml.run_async(), 5)
    assert not ml.is_running()
