"""`Waker`: the eventfd, QEMU's notify_me/notified handshake, the foreign-op queue."""

from __future__ import annotations

import functools
import os
import select
import threading
from collections.abc import Callable

import pytest

from aioqloop._waker import Waker


def readable(w: Waker) -> bool:
    p = select.poll()
    p.register(w.fd, select.POLLIN)
    return bool(p.poll(0))


def test_no_write_while_the_loop_is_awake() -> None:
    w = Waker()
    try:
        w.notify()
        assert w.writes == 0 and not readable(w)
    finally:
        w.close()


def test_one_write_per_sleep_then_drain_rearms() -> None:
    w = Waker()
    try:
        w.set_waiting(True)
        for _ in range(100):
            w.notify()
        assert w.writes == 1 and readable(w)
        w.drain()
        assert not readable(w) and not w.notified
        w.notify()
        assert w.writes == 2
    finally:
        w.close()


def test_force_wakes_an_awake_loop() -> None:
    w = Waker()
    try:
        w.notify(force=True)
        assert w.writes == 1 and readable(w)
    finally:
        w.close()


def test_post_queues_and_wakes_run_ops_in_order() -> None:
    w = Waker()
    try:
        w.set_waiting(True)
        out: list[int] = []
        for i in range(3):
            w.post(functools.partial(out.append, i))
        assert w.writes == 1
        w.run_ops()
        assert out == [0, 1, 2] and not w.ops
    finally:
        w.close()


def test_closed_waker_never_writes_and_refuses_posts() -> None:
    w = Waker()
    fd = w.fd
    w.close()
    w.close()  # idempotent
    w.notify(force=True)
    assert w.writes == 0
    with pytest.raises(RuntimeError, match="closed"):
        w.post(lambda: None)
    with pytest.raises(OSError):
        os.fstat(fd)


def hammer(w: Waker, wait: Callable[[], bool], woke: Callable[[], None]) -> int:
    """4 threads post 2,000 ops each while a consumer publishes "may sleep", sleeps with
    ``wait()`` (False: timed out) whenever it sees no op, calls ``woke()``, and runs what
    is queued; the handshake must never leave a posted op unseen while it sleeps.
    Returns how many ops the consumer ran."""
    total = 4 * 2000
    seen = 0

    def producer() -> None:
        for _ in range(2000):
            w.post(lambda: None)

    threads = [threading.Thread(target=producer) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        while seen < total:
            w.set_waiting(True)
            if not w.ops:
                assert wait(), "lost wake-up: ops posted but no wake-up came"
            w.set_waiting(False)
            woke()
            while w.ops:
                w.ops.popleft()()
                seen += 1
    finally:
        for t in threads:
            t.join(10)
    return seen


@pytest.mark.timeout(30)
def test_threads_hammering_notify_lose_no_wakeup() -> None:
    w = Waker()
    p = select.poll()
    p.register(w.fd, select.POLLIN)

    def woke() -> None:
        if readable(w):
            w.drain()

    try:
        assert hammer(w, lambda: bool(p.poll(10_000)), woke) == 4 * 2000
    finally:
        w.close()


def test_lazy_waker_calls_the_fallback_until_its_eventfd_opens() -> None:
    w = Waker(lazy=True)
    calls: list[int] = []
    w.fallback = lambda: calls.append(1)
    try:
        assert not w.has_fd
        w.set_waiting(True)
        for _ in range(10):
            w.notify()
        assert calls == [1] and w.writes == 1  # the handshake coalesces as with the fd
        w.drain()
        w.notify()
        assert calls == [1, 1] and not w.has_fd
        # Not drained yet: the eventfd opened now starts readable (nothing slept through).
        fd = w.open()
        assert w.has_fd and w.fd == fd and readable(w)
        w.drain()
        w.notify()
        assert calls == [1, 1] and readable(w) and w.writes == 3
    finally:
        w.close()
    assert w.fallback is None
    with pytest.raises(RuntimeError, match="closed"):
        w.open()


@pytest.mark.timeout(30)
def test_threads_hammering_a_lazy_waker_lose_no_wakeup() -> None:
    # The fallback path under threads: the consumer waits on an Event the fallback sets
    # (as uvloop's call_soon_threadsafe would wake the loop), then drains.
    w = Waker(lazy=True)
    woken = threading.Event()
    w.fallback = woken.set

    def woke() -> None:
        woken.clear()
        w.drain()

    try:
        assert hammer(w, lambda: woken.wait(10), woke) == 4 * 2000
        assert not w.has_fd
    finally:
        w.close()


def test_the_lock_has_threading_locks_interface() -> None:
    # The compiled core makes the lock itself (a WakerLock its C paths take without a
    # call); the pure engine's is a threading.Lock.  Both behave the same.
    w = Waker(lazy=True)
    lock = w.lock
    assert not lock.locked()
    with lock:
        assert lock.locked()
        assert lock.acquire(blocking=False) is False
        assert lock.acquire(timeout=0.001) is False
    assert not lock.locked()
    assert lock.acquire() is True
    lock.release()
    with pytest.raises(RuntimeError):
        lock.release()
    with pytest.raises(ValueError):
        lock.acquire(blocking=False, timeout=1)
    w.close()


def test_a_thread_waiting_for_the_lock_gets_it_when_released() -> None:
    # A waiter must not hold the GIL while it blocks, or the holder could never release.
    w = Waker(lazy=True)
    took = threading.Event()
    waiting = threading.Event()

    def take() -> None:
        waiting.set()
        with w.lock:
            took.set()

    with w.lock:
        t = threading.Thread(target=take)
        t.start()
        assert waiting.wait(10)
        assert not took.is_set()
    assert took.wait(10)
    t.join(10)
    assert not w.lock.locked()
    w.close()
