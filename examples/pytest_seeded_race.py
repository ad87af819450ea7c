"""A check-then-act race between two tasks, found by a seeded scheduling order.

Both tasks wake on the same event.  ``buy_gadget`` checks the balance, awaits once (the
purchase record), then withdraws; ``pay_rent`` checks and withdraws in one step.  In
first-in first-out order the rent is paid first and the check sees the right balance,
so the test passes.  Run it under several seeds and some orders run ``buy_gadget``'s
check first: the balance goes negative and the failure report names the seed::

    python -m pytest examples/pytest_seeded_race.py                     # passes (FIFO)
    python -m pytest examples/pytest_seeded_race.py --aioqloop-seeds=8  # some seeds fail
    python -m pytest examples/pytest_seeded_race.py --aioqloop-seed=4   # replays one
"""

import asyncio

import pytest


@pytest.mark.aioqloop(virtual_clock=True)
async def test_balance_never_goes_negative() -> None:
    account = {"balance": 100}
    payday = asyncio.Event()

    async def pay_rent() -> None:
        await payday.wait()
        if account["balance"] >= 50:  # check and act in one step
            account["balance"] -= 50

    async def buy_gadget() -> None:
        await payday.wait()
        if account["balance"] >= 80:  # check ...
            await asyncio.sleep(0)  # ... record the purchase (a suspension point) ...
            account["balance"] -= 80  # ... act on a balance that may have changed

    tasks = [asyncio.create_task(pay_rent()), asyncio.create_task(buy_gadget())]
    await asyncio.sleep(60)
    payday.set()
    await asyncio.gather(*tasks)
    assert account["balance"] >= 0
