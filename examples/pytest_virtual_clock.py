"""Testing timer code on virtual time with aioqloop's pytest plugin.

``@pytest.mark.aioqloop(virtual_clock=True)`` runs the test on an aioqloop loop whose
clock jumps to the next deadline whenever the loop is idle, so an hour of timeouts
takes no real time.  Run it with ``python -m pytest examples/pytest_virtual_clock.py``.
"""

import asyncio

import pytest

import aioqloop


@pytest.mark.aioqloop(virtual_clock=True)
async def test_an_hour_of_sleep_is_instant(virtual_clock: aioqloop.VirtualClock) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    await asyncio.sleep(3600)
    assert loop.time() - start == pytest.approx(3600)
    assert virtual_clock.time() == loop.time()


@pytest.mark.aioqloop(virtual_clock=True)
async def test_timeout_source_fires_on_virtual_time(virtual_clock: aioqloop.VirtualClock) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    fired: list[float] = []
    done = asyncio.Event()

    def heartbeat() -> bool:
        fired.append(round(loop.time() - start, 6))
        if len(fired) == 3:
            done.set()
            return aioqloop.SOURCE_REMOVE
        return aioqloop.SOURCE_CONTINUE

    aioqloop.timeout_add(60, heartbeat)  # every minute
    await done.wait()
    assert fired == [60, 120, 180]
