"""The QEMU pattern: one big lock guards device state for the loop, tasks and threads.

The loop is created with ``bql=lock``, so source callbacks run holding the lock (and the
loop drops it while it waits for events).  Worker threads ("vCPUs") take it with
``with lock:``, coroutines with ``async with lock:``, and ``lock.run_in_thread`` runs a
blocking function in a thread that holds it.  No update is ever lost.
"""

import asyncio
import threading

import aioqloop

lock = aioqloop.BigLock(name="bql")
device = {"counter": 0, "irqs": 0}
irqs_done = asyncio.Event()


def vcpu(iterations: int) -> None:
    for _ in range(iterations):
        with lock:  # MMIO access from a vCPU thread
            device["counter"] += 1


def timer_irq() -> bool:
    lock.assert_held()  # sources dispatch with the lock held
    device["irqs"] += 1
    device["counter"] += 1
    if device["irqs"] == 20:
        irqs_done.set()
        return aioqloop.SOURCE_REMOVE
    return aioqloop.SOURCE_CONTINUE


def reset_device() -> int:  # blocking work that needs the lock
    assert lock.held()
    return device["counter"]


async def monitor(iterations: int) -> None:
    for _ in range(iterations):
        async with lock:  # a coroutine never blocks the loop while it waits
            device["counter"] += 1
        await asyncio.sleep(0)


async def main() -> None:
    aioqloop.timeout_add(0.005, timer_irq)
    threads = [threading.Thread(target=vcpu, args=(2000,)) for _ in range(2)]
    for t in threads:
        t.start()
    await monitor(1000)
    for t in threads:
        await asyncio.to_thread(t.join)  # join off the loop: the loop must keep dispatching
    await irqs_done.wait()
    seen = await lock.run_in_thread(reset_device)
    print(f"counter={seen} (expected {2 * 2000 + 1000 + 20}), irqs={device['irqs']}")
    assert seen == 2 * 2000 + 1000 + 20
    st = lock.statistics()
    print(f"lock: {st.acquisitions} acquisitions, {st.contended_acquisitions} contended, "
          f"threads {st.threads.acquisitions}, tasks {st.tasks.acquisitions}")


aioqloop.run(main(), bql=lock)
