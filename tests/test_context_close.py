"""Closing a context withdraws what it registered with its loop; far deadlines never crash."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import Iterator

import pytest

import aioqloop
from aioqloop import BigLock, BottomHalf, MainContext, TimeoutSource

pytestmark = pytest.mark.timeout(30)
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


def test_closing_an_extra_context_leaves_the_loop_usable_for_any_fd(base: str) -> None:
    async def main() -> bytes:
        loop = asyncio.get_running_loop()
        extra = MainContext(loop)
        TimeoutSource(3600).attach(extra)
        epfd = extra._driver_fileno()
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


# ------------------------------------------------ a closed loop: refuse, change nothing

CLOSED_KINDS = ["asyncio", "uvloop", "aioqloop-asyncio", "aioqloop-uvloop", "extra-context"]


class Watched(aioqloop.Source):
    """A source with fd watches, for the add/modify/remove_unix_fd entry points."""


class ClosedLoopScene:
    """A context whose loop ran, then closed, with a few things left in it.

    ``asyncio``/``uvloop``: ``MainContext(loop)`` on a plain loop of that kind (the
    context outlives the loop); ``aioqloop-*``: an aioqloop loop's own context (closed
    with the loop); ``extra-context``: a second ``MainContext(loop)`` on an aioqloop loop.
    """

    def __init__(self, kind: str) -> None:
        if kind == "asyncio":
            loop = asyncio.new_event_loop()
        elif kind == "uvloop":
            import uvloop

            loop = uvloop.new_event_loop()
        elif kind.startswith("aioqloop-"):
            loop = aioqloop.new_event_loop(base=kind.split("-", 1)[1])
        else:
            assert kind == "extra-context"
            loop = aioqloop.new_event_loop()
        self.own = kind.startswith("aioqloop-")
        self.rfd, self.wfd = os.pipe()
        self.ran: list[str] = []

        async def setup() -> MainContext:
            ctx = aioqloop.get_main_context() if self.own else MainContext(loop)
            self.timer = TimeoutSource(3600)
            self.timer.set_callback(lambda: True)
            self.timer.attach(ctx)
            self.watched = Watched()
            self.tag = self.watched.add_unix_fd(self.wfd, aioqloop.IOCondition.OUT)
            self.watched.attach(ctx)
            self.idle_bh = BottomHalf(lambda: self.ran.append("idle bh"), context=ctx)
            self.scheduled_bh = BottomHalf(lambda: self.ran.append("bh"), context=ctx)
            for _ in range(3):
                await asyncio.sleep(0)  # the loop drives the context: its thread owns it
            return ctx

        self.ctx = loop.run_until_complete(setup())
        self.scheduled_bh.schedule()  # queued, never run: the loop closes first
        loop.close()

    def ids(self) -> set[int]:
        return {s.id for s in self.ctx.statistics().sources}

    def pending_bhs(self) -> int:
        carrier = self.ctx._bh
        return 0 if carrier is None else carrier.pending

    def close(self) -> None:
        self.ctx.close()
        os.close(self.rfd)
        os.close(self.wfd)


@pytest.fixture(params=CLOSED_KINDS)
def scene(request: pytest.FixtureRequest, default_held: None) -> Iterator[ClosedLoopScene]:
    # default_held: the aioqloop loops get contexts of their own, which close with them.
    # The global default context outlives the loop that ran it, waiting for the next one
    # (tests/test_default_context.py).
    s = ClosedLoopScene(request.param)
    try:
        yield s
    finally:
        s.close()


def test_a_context_of_a_closed_loop_refuses_new_work_whole_and_lets_work_go(
    scene: ClosedLoopScene,
) -> None:
    # Attach left a source attached (an id, found by id) after "Event loop is closed";
    # BottomHalf.schedule left the bottom half marked scheduled, so every later
    # schedule() was a silent no-op.  Each entry point now refuses before it changes
    # anything, or (removing work) succeeds whole.
    ctx = scene.ctx
    ids, pending = scene.ids(), scene.pending_bhs()
    refused = pytest.raises(RuntimeError, match="is closed")

    src = TimeoutSource(1)
    src.set_callback(lambda: True)
    with refused:
        src.attach(ctx)
    assert (src.id, src.context, src.is_destroyed) == (0, None, False)
    for add in (
        lambda: aioqloop.timeout_add(0.01, lambda: True, context=ctx),
        lambda: aioqloop.idle_add(lambda: True, context=ctx),
        lambda: aioqloop.fd_add(scene.rfd, aioqloop.IOCondition.IN, lambda *a: True,
                                context=ctx),
        lambda: BottomHalf(lambda: None, context=ctx),
    ):
        with refused:
            add()
    ready_time = scene.timer.ready_time
    with pytest.raises(RuntimeError):  # the loop is closed (or the source destroyed)
        scene.timer.set_ready_time(0)
    assert scene.timer.ready_time == ready_time
    fds = list(scene.watched._fds)
    with pytest.raises(RuntimeError):
        scene.watched.add_unix_fd(scene.rfd, aioqloop.IOCondition.IN)
    assert list(scene.watched._fds) == fds
    child = aioqloop.IdleSource()
    with pytest.raises(RuntimeError):
        scene.timer.add_child_source(child)
    for _ in range(2):  # refused every time, not a silent no-op the second time
        with refused:
            scene.idle_bh.schedule()
        assert not scene.idle_bh.scheduled
    with refused:
        ctx.schedule_oneshot(lambda: None)
    with refused:  # nothing runs on it any more, by hand either
        ctx.iteration(False)
    assert scene.ran == [] and scene.scheduled_bh.scheduled
    errors: list[BaseException] = []

    def elsewhere() -> None:
        try:
            ctx.invoke(lambda: None)
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=elsewhere)
    t.start()
    t.join(10)
    assert [type(e) for e in errors] == [RuntimeError]
    assert scene.ids() == ids and scene.pending_bhs() == pending
    # Nothing half-done is left in the refused objects either: they work elsewhere.
    other = MainContext(_driver="standalone")
    try:
        assert src.attach(other) > 0
        assert child.attach(other) > 0  # not left a child of the refusing parent
    finally:
        other.close()

    # Removing work succeeds whole.
    scene.scheduled_bh.cancel()
    assert not scene.scheduled_bh.scheduled
    scene.idle_bh.delete()
    assert scene.idle_bh.deleted
    if not scene.own:  # an aioqloop loop's context destroyed its sources with the loop
        scene.watched.modify_unix_fd(scene.tag, aioqloop.IOCondition.IN)
        scene.watched.remove_unix_fd(scene.tag)
        assert list(scene.watched._fds) == []
        scene.timer.priority = aioqloop.PRIORITY_HIGH
        assert scene.timer.priority == aioqloop.PRIORITY_HIGH
    timer_id = scene.timer.id
    scene.timer.destroy()
    assert scene.timer.is_destroyed and ctx.find_source_by_id(timer_id) is None
    ctx.close()
    assert ctx.closed and scene.ran == []


@pytest.mark.parametrize("kind", ["asyncio", "uvloop", "extra-context"])
def test_queries_and_changes_adding_no_work_finish_on_a_context_of_a_closed_loop(
    kind: str,
) -> None:
    # pending() found a due source ready and asked the closed loop for an iteration:
    # "Event loop is closed" in the middle of its check; a priority change of a ready
    # source raised the same after the priority had changed.  Both add no work: they
    # finish, and nothing runs.
    loop: asyncio.AbstractEventLoop
    if kind == "uvloop":
        import uvloop

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop() if kind == "asyncio" else aioqloop.new_event_loop()
    ran: list[str] = []

    async def setup() -> tuple[MainContext, TimeoutSource]:
        ctx = MainContext(loop)
        due = TimeoutSource(3600)
        due.set_callback(lambda: ran.append("due") and False)
        due.attach(ctx)
        for _ in range(3):
            await asyncio.sleep(0)  # the loop drives the context: its thread owns it
        return ctx, due

    ctx, due = loop.run_until_complete(setup())
    due.set_ready_time(loop.time())  # due now; the loop closes before it runs
    loop.close()
    try:
        assert ctx.pending()  # ready, and nothing ran
        due.priority = aioqloop.PRIORITY_HIGH
        assert due.priority == aioqloop.PRIORITY_HIGH
        assert ctx.pending()
        due.destroy()
        assert not ctx.pending() and ran == []
    finally:
        ctx.close()
