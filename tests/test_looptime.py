"""aioqloop's own timeouts under looptime (PyPI ``looptime``), which fast-forwards a loop's
time by swapping the loop's class for one whose ``time()`` is fake.

aioqloop must read the loop's time through the loop when it computes deadlines, so its
timeouts (core `timeout_add`, the GLib namespace's ``timeout_add``) move with looptime's
clock.  Each test waits on a virtual horizon far beyond the timeout: if aioqloop used
another clock, looptime would jump to that horizon first and the test fails at once,
instead of hanging or waiting in real time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import aioqloop

looptime = pytest.importorskip("looptime")

try:
    from aioqloop import glib
except ImportError:  # pragma: no cover - the GLib namespace may not be built everywhere
    glib = None  # type: ignore[assignment]

HORIZON = 3600.0  # virtual seconds: far beyond every timeout below

@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A stock-base aioqloop loop, patched by looptime as its pytest plugin patches one."""
    lp = aioqloop.new_event_loop()
    looptime.patch_event_loop(lp, start=100.0)
    yield lp
    lp.close()


def _fire_once(loop: asyncio.AbstractEventLoop, fired: asyncio.Future[float]) -> Callable[[], bool]:
    def callback() -> bool:
        if not fired.done():
            fired.set_result(loop.time())
        return False  # one shot

    return callback


@pytest.mark.timeout(30)
def test_looptime_is_active_on_the_loop(loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> float:
        await asyncio.sleep(50)  # plain asyncio: looptime's own business
        return loop.time()

    assert isinstance(loop, looptime.LoopTimeEventLoop)
    assert loop.run_until_complete(main()) == pytest.approx(150.0)


@pytest.mark.timeout(30)
def test_core_timeout_add_fast_forwards(loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> float:
        fired: asyncio.Future[float] = loop.create_future()
        aioqloop.timeout_add(3.0, _fire_once(loop, fired))  # seconds
        return await asyncio.wait_for(fired, HORIZON)

    assert loop.run_until_complete(main()) == pytest.approx(103.0)


@pytest.mark.timeout(30)
@pytest.mark.skipif(glib is None, reason="aioqloop.glib not available")
def test_glib_timeout_add_3000_fast_forwards(loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> tuple[float, float]:
        fired: asyncio.Future[float] = loop.create_future()
        glib.timeout_add(3000, _fire_once(loop, fired))  # ms, as GLib counts
        first = await asyncio.wait_for(fired, HORIZON)
        again: asyncio.Future[float] = loop.create_future()
        glib.timeout_add(500, _fire_once(loop, again))
        return first, await asyncio.wait_for(again, HORIZON)

    first, second = loop.run_until_complete(main())
    assert first == pytest.approx(103.0)
    assert second == pytest.approx(103.5)


@pytest.mark.timeout(30)
def test_timeouts_interleave_with_asyncio_sleeps(loop: asyncio.AbstractEventLoop) -> None:
    """Deadline order across both kinds of timer holds on looptime's clock."""

    async def main() -> list[tuple[str, Any]]:
        log: list[tuple[str, Any]] = []
        done: asyncio.Future[float] = loop.create_future()

        def source() -> bool:
            log.append(("source", round(loop.time(), 3)))
            done.set_result(loop.time())
            return False

        aioqloop.timeout_add(2.0, source)

        async def sleeper() -> None:
            await asyncio.sleep(1.0)
            log.append(("sleep 1", round(loop.time(), 3)))

        task = loop.create_task(sleeper())
        await asyncio.wait_for(done, HORIZON)
        await task
        return log

    assert loop.run_until_complete(main()) == [("sleep 1", 101.0), ("source", 102.0)]
