"""aioqloop on uvloop: the same sources and bottom halves, on libuv's loop.

``base="uvloop"`` makes the loop a ``uvloop.Loop`` subclass, so asyncio code keeps
uvloop's speed while GLib-style sources (here a timeout and a bottom half scheduled from
a thread) run on it too.
"""

import asyncio
import threading

import uvloop

import aioqloop


async def main() -> None:
    loop = asyncio.get_running_loop()
    print(f"loop is a uvloop.Loop: {isinstance(loop, uvloop.Loop)} ({type(loop).__name__})")
    ticks = 0
    done = asyncio.Event()
    ticked = asyncio.Event()

    def tick() -> bool:
        nonlocal ticks
        ticks += 1
        if ticks == 5:
            ticked.set()
            return aioqloop.SOURCE_REMOVE
        return aioqloop.SOURCE_CONTINUE

    def from_thread() -> None:
        print(f"bottom half ran on the loop thread: {threading.get_ident() == loop_thread}")
        done.set()

    loop_thread = threading.get_ident()
    aioqloop.timeout_add(0.01, tick)
    bh = aioqloop.BottomHalf(from_thread)
    threading.Thread(target=bh.schedule).start()
    await done.wait()
    await ticked.wait()
    print(f"timeout fired {ticks} times")
    assert ticks == 5


aioqloop.run(main(), base="uvloop")
