"""Bottom halves (QEMU's ``QEMUBH``): thread-safe, idempotent "run this soon" requests.

Four threads schedule one bottom half 10,000 times in total; every schedule made before
it runs folds into that one run, so it runs far fewer times than it was scheduled, yet
never misses work.  A deleted bottom half refuses to be scheduled.
"""

import asyncio
import threading

import aioqloop

posted = 0
handled = 0
runs = 0
lock = threading.Lock()


async def main() -> None:
    all_handled = asyncio.Event()

    def complete() -> None:  # runs on the loop thread
        global handled, runs
        runs += 1
        with lock:
            handled = posted
        if handled == 10000:
            all_handled.set()

    bh = aioqloop.BottomHalf(complete, name="io-complete")

    def worker() -> None:
        global posted
        for _ in range(2500):
            with lock:
                posted += 1
            bh.schedule()  # any thread; a no-op while it is already scheduled

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    await all_handled.wait()  # the last schedule() after the last post guarantees a run
    for t in threads:
        t.join()
    print(f"10000 schedules -> {runs} run(s); {handled} of {posted} requests handled")
    assert handled == posted == 10000 and 1 <= runs <= 10000
    bh.delete()
    try:
        bh.schedule()
    except RuntimeError as exc:
        print("after delete():", exc)


aioqloop.run(main())
