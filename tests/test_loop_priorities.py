"""GLib's priority rules against asyncio's own queue (the stock base's selector hook).

Plain asyncio callbacks and task steps are `PRIORITY_DEFAULT`, as under PyGObject's
gi.events: strict priorities, FIFO at the default priority, idles only when asyncio has
nothing ready.  On uvloop the same rules hold among sources and prioritized task steps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import pytest

import aioqloop
from aioqloop import PRIORITY_DEFAULT, PRIORITY_DEFAULT_IDLE, PRIORITY_HIGH

pytestmark = pytest.mark.timeout(30)


def _prio_tasks(priorities: tuple[int, ...]) -> list[int]:
    order: list[int] = []

    async def worker(p: int) -> None:
        for _ in range(3):
            await asyncio.sleep(0)
            order.append(p)

    async def main() -> None:
        tasks = []
        for p in priorities:
            t: Any = asyncio.get_running_loop().create_task(worker(p))
            t.set_priority(p)  # right after create_task, as PyGObject's test does
            tasks.append(t)
        await asyncio.gather(*tasks)

    aioqloop.run(main())
    return order


def test_task_priorities_are_strict() -> None:
    # PyGObject's test_glib_task_prio asserts the same order.
    order = _prio_tasks((PRIORITY_DEFAULT_IDLE, PRIORITY_DEFAULT, PRIORITY_HIGH))
    assert order == [PRIORITY_HIGH] * 3 + [PRIORITY_DEFAULT] * 3 + [PRIORITY_DEFAULT_IDLE] * 3


def test_prioritized_task_steps_are_strict_among_themselves(base: str) -> None:
    order: list[int] = []

    async def worker(p: int) -> None:
        for _ in range(3):
            await asyncio.sleep(0)
            order.append(p)

    async def main() -> None:
        tasks = []
        for p in (PRIORITY_DEFAULT_IDLE, PRIORITY_HIGH):
            t: Any = asyncio.get_running_loop().create_task(worker(p))
            t.set_priority(p)
            tasks.append(t)
        await asyncio.gather(*tasks)

    aioqloop.run(main(), base=base)
    assert order == [PRIORITY_HIGH] * 3 + [PRIORITY_DEFAULT_IDLE] * 3


def test_urgent_source_holds_off_every_asyncio_callback() -> None:
    # While a HIGH source stays ready, no asyncio callback runs, not even one that was
    # queued before it became ready.
    async def main() -> list[str]:
        log: list[str] = []
        left = 5

        def high() -> bool:
            nonlocal left
            log.append("high")
            left -= 1
            return left > 0

        loop = asyncio.get_running_loop()
        loop.call_soon(log.append, "soon")
        loop.call_later(0, log.append, "later")
        aioqloop.idle_add(high, priority=PRIORITY_HIGH)
        for _ in range(10):
            await asyncio.sleep(0)
        return log

    log = aioqloop.run(main())
    assert log[:5] == ["high"] * 5
    assert set(log[5:]) == {"soon", "later"}


@pytest.mark.parametrize("kind", ["bh", "idle"])
def test_default_source_made_ready_before_a_yield_has_run_when_the_task_resumes(kind: str) -> None:
    async def main() -> list[str]:
        log: list[str] = []
        if kind == "bh":
            aioqloop.BottomHalf(log.append, "source").schedule()
        else:
            aioqloop.idle_add(lambda: log.append("source") and False, priority=PRIORITY_DEFAULT)
        await asyncio.sleep(0)
        log.append("task")
        return log

    assert aioqloop.run(main()) == ["source", "task"]


def test_default_sources_and_call_soon_run_in_the_order_they_became_ready(base: str) -> None:
    # On uvloop too: the context's iteration is queued when the source becomes ready.
    async def main() -> list[str]:
        log: list[str] = []
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        loop.call_soon(log.append, "a")
        aioqloop.BottomHalf(log.append, "bh").schedule()
        loop.call_soon(log.append, "b")
        loop.call_soon(done.set_result, None)
        await done
        return log

    assert aioqloop.run(main(), base=base) == ["a", "bh", "b"]


def test_idle_class_waits_while_asyncio_has_work() -> None:
    async def main() -> list[str]:
        log: list[str] = []
        aioqloop.idle_add(lambda: log.append("idle") and False)
        for i in range(3):
            log.append(f"yield{i}")
            await asyncio.sleep(0)
        await asyncio.sleep(0.01)  # the loop goes quiet: now the idle runs
        return log

    assert aioqloop.run(main()) == ["yield0", "yield1", "yield2", "idle"]


def test_plain_call_soon_chain_is_not_wrapped() -> None:
    # No per-callback wrapping of plain asyncio handles while no source is ready.
    async def main() -> int:
        loop = asyncio.get_running_loop()
        handle = loop.call_soon(lambda: None)
        # The stock loop's ready queue (private, so not in its type).
        ready: Iterable[asyncio.Handle] = loop._ready  # type: ignore[attr-defined]
        return sum(1 for h in ready if h is handle)

    assert aioqloop.run(main()) == 1
