"""Closing a context withdraws what it registered with its loop; far deadlines never crash."""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest

import aioqloop
from aioqloop import BigLock, MainContext, TimeoutSource

pytestmark = pytest.mark.timeout(30)
BASES = ["asyncio", "uvloop"]


@pytest.mark.parametrize("base", BASES)
@pytest.mark.usefixtures("default_held")
def test_a_loops_own_context_refuses_to_close_alone(base: str) -> None:
    loop = aioqloop.new_event_loop(base=base)
    try:
        with pytest.raises(RuntimeError, match="close the loop"):
            aioqloop.get_main_context(loop).close()
        assert loop.run_until_complete(asyncio.sleep(0, "ok")) == "ok"
    finally:
        loop.close()
    assert aioqloop.get_main_context(loop).closed


@pytest.mark.parametrize("base", BASES)
def test_closing_an_extra_context_leaves_the_loop_usable_for_any_fd(base: str) -> None:
    async def main() -> bytes:
        loop = asyncio.get_running_loop()
        extra = MainContext(loop)
        TimeoutSource(3600).attach(extra)
        epfd = extra.driver_fileno()
        extra.close()
        # Sockets until one reuses the closed epoll fd's number (or a few tries).
        socks = []
        for _ in range(8):
            a, b = socket.socketpair()
            socks += [a, b]
            if epfd in (a.fileno(), b.fileno()):
                break
        a, b = socks[-2], socks[-1]
        a.setblocking(False)
        b.setblocking(False)
        got = loop.create_future()
        loop.add_reader(a.fileno(), lambda: got.set_result(a.recv(16)))
        b.send(b"ping")
        try:
            return await asyncio.wait_for(got, 5)
        finally:
            loop.remove_reader(a.fileno())
            for s in socks:
                s.close()

    assert aioqloop.run(main(), base=base) == b"ping"


def test_loop_closed_while_queued_for_the_lock_does_not_keep_it() -> None:
    lock = BigLock()
    loop = aioqloop.new_event_loop(bql=lock)
    try:
        async def main() -> None:
            await lock.acquire()  # a coroutine of this loop holds the lock (and ends
            aioqloop.idle_add(lambda: False)  # holding it), so this dispatch waits
            for _ in range(5):
                await asyncio.sleep(0)

        loop.run_until_complete(main())
    finally:
        loop.close()  # withdraws the loop's queued dispatch waiter
    got = threading.Event()

    def worker() -> None:
        if lock.acquire_sync(timeout=5):
            got.set()
            lock.release()

    t = threading.Thread(target=worker)
    t.start()
    t.join(10)
    assert got.is_set()
    assert not lock.locked()


FAR = [25 * 86400.0, 30 * 86400.0, 10 * 365 * 86400.0, 2**32 / 1000]


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("far", FAR)
def test_far_future_deadlines_on_a_running_loop(base: str, far: float) -> None:
    async def main() -> str:
        loop = asyncio.get_running_loop()
        aioqloop.timeout_add(far, lambda: False)
        s = TimeoutSource(1)
        s.set_callback(lambda: False)
        s.attach(aioqloop.get_main_context())
        s.set_ready_time(loop.time() + far)
        await asyncio.sleep(0.02)  # the loop sleeps on the far deadline: no OverflowError
        return "ok"

    assert aioqloop.run(main(), base=base) == "ok"


@pytest.mark.parametrize("far", [*FAR, 1e9, 1e300])
def test_far_prepare_timeout_and_hand_run_iteration(far: float) -> None:
    class Far(aioqloop.Source):
        def prepare(self) -> tuple[bool, float | None]:
            return (False, far)

    ctx = MainContext(_driver="standalone")
    try:
        Far().attach(ctx)
        aioqloop.timeout_add(far, lambda: False, context=ctx)
        fired: list[int] = []
        aioqloop.timeout_add(0.01, lambda: fired.append(1) and False, context=ctx)
        while not fired:
            ctx.iteration(True)
        assert fired == [1]
    finally:
        ctx.close()


@pytest.mark.parametrize("base", BASES)
def test_closed_fd_is_reported_nval_when_nothing_else_drives_the_context(base: str) -> None:
    import os

    async def main() -> aioqloop.IOCondition:
        r, w = os.pipe()
        got: asyncio.Future[aioqloop.IOCondition] = asyncio.get_running_loop().create_future()

        def cb(_fd: int, cond: aioqloop.IOCondition) -> bool:
            if not got.done():
                got.set_result(cond)
            return False

        aioqloop.fd_add(r, aioqloop.IOCondition.IN, cb)
        os.close(r)  # behind the watch's back
        os.close(w)
        return await asyncio.wait_for(got, 10)

    assert aioqloop.run(main(), base=base) == aioqloop.IOCondition.NVAL


@pytest.mark.parametrize("base", BASES)
def test_reused_fd_number_under_a_live_dup_gives_no_spurious_dispatch(base: str) -> None:
    import os

    async def main() -> int:
        r1, w1 = os.pipe()
        os.write(w1, b"x")  # the old file is readable
        keep = os.dup(r1)  # and stays open through a dup
        aioqloop.fd_add(r1, aioqloop.IOCondition.IN, lambda _fd, _c: True)
        os.close(r1)
        r2, w2 = os.pipe()
        if r2 != r1:
            os.dup2(r2, r1)
            os.close(r2)
        calls = 0

        def cb(_fd: int, _c: aioqloop.IOCondition) -> bool:
            nonlocal calls
            calls += 1
            return True

        aioqloop.fd_add(r1, aioqloop.IOCondition.IN, cb)
        for _ in range(50):
            await asyncio.sleep(0)
        await asyncio.sleep(0.05)
        for fd in (keep, w1, r1, w2):
            os.close(fd)
        return calls

    # The old watch reports on the number like GLib would (NVAL/IN of the new pipe, which
    # is empty); the new pipe itself never looks readable.
    assert aioqloop.run(main(), base=base) == 0
