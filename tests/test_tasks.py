"""`aioqloop._tasks`: what both bases share for prioritized tasks (PyGObject's GLibTask).

The module's own contract, beside the task API of test_task_api.py: the routing
``call_soon`` (which queues a prioritized task's steps in the context) sits on the loop
instance only while some task has a non-default priority, so plain asyncio work runs the
base loop's own ``call_soon`` the rest of the time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

import aioqloop
from aioqloop import PRIORITY_DEFAULT, PRIORITY_HIGH, PRIORITY_LOW, EventLoop, Task


@pytest.fixture
def loop(base: str) -> Iterator[EventLoop]:
    lp = aioqloop.new_event_loop(base=base)
    yield lp
    lp.close()


def _routed(loop: EventLoop) -> bool:
    """Is the routing ``call_soon`` installed on the instance?"""
    return "call_soon" in vars(loop)


def test_routing_is_installed_only_while_a_task_has_a_priority(loop: EventLoop) -> None:
    async def main() -> list[bool]:
        seen = [_routed(loop)]
        release = asyncio.Event()
        a = asyncio.create_task(release.wait())
        b = asyncio.create_task(release.wait())
        assert isinstance(a, Task) and isinstance(b, Task)
        a.set_priority(PRIORITY_HIGH)
        b.set_priority(PRIORITY_LOW)
        seen.append(_routed(loop))
        a.set_priority(PRIORITY_LOW)  # a change between non-default priorities
        seen.append(_routed(loop))
        a.set_priority(PRIORITY_DEFAULT)  # back to default: b still needs the routing
        seen.append(_routed(loop))
        release.set()
        await asyncio.gather(a, b)  # b ends at its priority: forgotten when done
        seen.append(_routed(loop))
        assert b.get_priority() == PRIORITY_DEFAULT
        return seen

    assert loop.run_until_complete(main()) == [False, True, True, True, False]


def test_plain_call_soon_is_the_base_loops_own_without_priorities(loop: EventLoop) -> None:
    # No per-call Python frame of ours under a plain call_soon: the attribute found on
    # the instance is the class's method.
    assert type(loop).call_soon is loop.call_soon.__func__  # type: ignore[attr-defined]
