"""`aioqloop._sourceset`: a context's source set, changed from any thread.

GLib's ``g_source_attach``, ``g_source_set_ready_time``, ``g_source_add_unix_fd`` and
``g_source_destroy`` may be called from any thread.  Here, on the thread that owns the
context (or on an unowned one) the change is applied at once; from another thread it is
posted to the owner, whose sleep is cut short so the change takes effect without delay.
A priority change is the exception: it must come from the owning thread.  These run on
both engines (the compiled core has its own attach and insert) and, where a loop owns
the context, on both bases.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import aioqloop
from aioqloop import PRIORITY_DEFAULT, PRIORITY_HIGH, IdleSource, IOCondition, MainContext, Source

DEADLINE = 5.0


def until(predicate: Callable[[], bool]) -> None:
    """Block until ``predicate()`` holds (a state another thread reaches)."""
    give_up = time.monotonic() + DEADLINE
    while not predicate():
        assert time.monotonic() < give_up, "condition never became true"
        time.sleep(0.0005)


def _run(base: str, main: Callable[[], Any]) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(main(), DEADLINE)

    return aioqloop.run(bounded(), base=base)


def test_attach_from_another_thread_wakes_an_unowned_blocking_iteration(
    ctx: MainContext,
) -> None:
    # Nobody owns a stand-alone context: a thread may be about to block in it while
    # another attaches; the attach must wake it, or the iteration sleeps for ever.
    dispatched: list[bool] = []

    def iterate() -> None:
        dispatched.append(ctx.iteration(True))

    t = threading.Thread(target=iterate)
    t.start()
    try:
        # The iterating thread has published that it may sleep (QEMU's notify_me): from
        # here on only a wake-up gets it out of its poll.
        until(lambda: ctx._waker.poll_waiting)
        src = IdleSource()
        src.set_callback(lambda: False)
        src.attach(ctx)
        t.join(DEADLINE)
        assert not t.is_alive(), "the blocking iteration was not woken by the attach"
        assert dispatched == [True] and src.is_destroyed
    finally:
        if t.is_alive():
            ctx.wakeup()
            t.join(DEADLINE)


def test_attach_from_a_worker_is_applied_by_the_owning_loop(base: str) -> None:
    async def main() -> tuple[int, list[str]]:
        ran: list[str] = []
        done = asyncio.Event()

        def cb() -> bool:
            ran.append(threading.current_thread().name)
            done.set()
            return False

        ctx = aioqloop.get_main_context()

        def worker() -> int:
            src = IdleSource()
            src.set_callback(cb)
            return src.attach(ctx)

        sid = await asyncio.to_thread(worker)
        await done.wait()
        return sid, ran

    sid, ran = _run(base, main)
    assert sid > 0 and ran == [threading.main_thread().name]


def test_ready_time_set_from_a_worker_wakes_the_sleeping_loop(base: str) -> None:
    async def main() -> float:
        fired = asyncio.Event()
        src = Source()
        src.set_callback(lambda: fired.set() or False)
        src.attach(aioqloop.get_main_context())  # ready time -1: never due

        def worker() -> None:
            src.set_ready_time(0)  # due now: posted to the owner, which must wake

        threading.Thread(target=worker).start()
        await fired.wait()
        return src.ready_time

    assert _run(base, main) == 0


def test_fd_watch_added_from_a_worker_is_polled_by_the_loop(
    base: str, pipe: tuple[int, int],
) -> None:
    r, w = pipe

    async def main() -> list[IOCondition]:
        got: list[IOCondition] = []
        done = asyncio.Event()

        class Watch(Source):
            tag: Any = None

            def dispatch(self, callback: Any, args: tuple[Any, ...]) -> bool:
                got.append(self.query_unix_fd(self.tag))
                done.set()
                return False

        src = Watch()
        src.attach(aioqloop.get_main_context())

        def worker() -> None:
            src.tag = src.add_unix_fd(r, IOCondition.IN)
            os.write(w, b"x")

        await asyncio.to_thread(worker)
        await done.wait()
        return got

    assert _run(base, main) == [IOCondition.IN]


def test_destroy_from_a_worker_unlists_the_source_at_once(base: str) -> None:
    async def main() -> tuple[bool, bool]:
        ctx = aioqloop.get_main_context()
        src = Source()
        sid = src.attach(ctx)

        def worker() -> bool:
            src.destroy()
            return ctx.find_source_by_id(sid) is None  # before the owner has run

        unlisted = await asyncio.to_thread(worker)
        return unlisted, src.is_destroyed

    assert _run(base, main) == (True, True)


def test_a_priority_change_must_come_from_the_owning_thread(base: str) -> None:
    async def main() -> tuple[BaseException | None, int]:
        src = Source(priority=PRIORITY_DEFAULT)
        src.attach(aioqloop.get_main_context())
        caught: list[BaseException] = []

        def worker() -> None:
            try:
                src.priority = PRIORITY_HIGH
            except RuntimeError as exc:
                caught.append(exc)

        await asyncio.to_thread(worker)
        prio = src.priority
        src.destroy()
        return (caught[0] if caught else None), prio

    exc, prio = _run(base, main)
    assert isinstance(exc, RuntimeError) and "thread" in str(exc)
    assert prio == PRIORITY_DEFAULT  # refused whole: nothing changed


pytestmark = pytest.mark.timeout(30)
