"""Priorities across sources and tasks: the most urgent ready priority runs first.

Sources, plain asyncio callbacks and task steps share GLib's priority scale (lower is
more urgent).  A ``PRIORITY_HIGH`` timeout beats default work, and an idle source waits
until nothing else is ready; ``task.set_priority`` moves a task's coming steps (its
first step was queued by ``create_task``, so the change applies from the next one).
"""

import asyncio

import aioqloop

order: list[str] = []


def once(label: str):  # a source callback that logs and removes its source
    return lambda: order.append(label) or aioqloop.SOURCE_REMOVE


async def worker(name: str) -> None:
    for step in range(2):
        order.append(f"{name} step {step}")
        await asyncio.sleep(0)


async def main() -> None:
    loop = asyncio.get_running_loop()
    aioqloop.idle_add(once("idle source"))
    aioqloop.timeout_add(0, once("high-priority timeout"), priority=aioqloop.PRIORITY_HIGH)
    loop.call_soon(order.append, "asyncio call_soon")
    default_task = asyncio.create_task(worker("default task"))
    low_task = asyncio.create_task(worker("low task"))
    low_task.set_priority(aioqloop.PRIORITY_LOW)  # later steps: only when nothing else is ready
    print("low task priority:", low_task.get_priority())
    await asyncio.gather(default_task, low_task)
    await asyncio.sleep(0.01)
    for i, what in enumerate(order):
        print(f"{i}: {what}")
    assert order.index("high-priority timeout") < order.index("asyncio call_soon")
    assert order.index("default task step 1") < order.index("idle source")
    assert order.index("idle source") < order.index("low task step 1")
    print("order respects priorities")


aioqloop.run(main())
