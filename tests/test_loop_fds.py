"""Stock base: the context's fds straight in the selector's epoll set (`aioqloop._selectorfds`)."""

from __future__ import annotations

import asyncio
import os
import selectors
import socket
import tempfile
import types
from collections.abc import Iterator
from typing import Any

import pytest

import aioqloop
from aioqloop import IOCondition
from aioqloop.clock import VirtualClock
from aioqloop.loop import QSelectorEventLoop

IN, OUT, HUP, ERR = IOCondition.IN, IOCondition.OUT, IOCondition.HUP, IOCondition.ERR


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = aioqloop.new_event_loop()
    yield lp
    lp.close()


def hook(lp: asyncio.AbstractEventLoop) -> Any:
    return lp._selector  # type: ignore[attr-defined]


def run_until(lp: asyncio.AbstractEventLoop, cond: Any, limit: int = 200) -> None:
    """Run loop iterations (each one select) until ``cond()``; bounded."""
    for _ in range(limit):
        if cond():
            return
        lp.run_until_complete(asyncio.sleep(0))
    raise AssertionError("condition not reached")


def test_stock_selector_shares_its_epoll_and_the_private_set_is_not_a_reader(
    loop: asyncio.AbstractEventLoop,
) -> None:
    h = hook(loop)
    assert h.direct is not None
    assert h._epfd not in h._real.get_map(), "the private epoll set is still polled"


class _MySelector(selectors.EpollSelector):
    pass


def _wrapped_selector() -> selectors.BaseSelector:
    sel = selectors.EpollSelector()
    real = sel.select
    sel.select = lambda timeout=None: real(timeout)  # type: ignore[method-assign]
    return sel


@pytest.mark.parametrize("make", [_MySelector, selectors.PollSelector, _wrapped_selector])
def test_other_selectors_fall_back_to_the_private_set(make: Any) -> None:
    lp = QSelectorEventLoop(make())
    try:
        h = hook(lp)
        assert h.direct is None
        assert h._epfd in h._real.get_map()
        _roundtrip_with_source(lp)
    finally:
        lp.close()


def _roundtrip_with_source(lp: asyncio.AbstractEventLoop) -> None:
    a, b = socket.socketpair()
    seen: list[int] = []
    ctx = aioqloop.get_main_context(lp)

    def on_b(fd: int, cond: int) -> bool:
        seen.append(int(cond))
        b.recv(16)
        return True

    sid = aioqloop.fd_add(b.fileno(), IN, on_b, context=ctx)
    try:
        a.send(b"x")
        run_until(lp, lambda: seen)
        assert seen == [int(IN)]
    finally:
        aioqloop.source_remove(sid, context=ctx)
        a.close()
        b.close()


def test_fd_source_round_trip(loop: asyncio.AbstractEventLoop) -> None:
    _roundtrip_with_source(loop)


def test_exact_revents_hup_and_err(loop: asyncio.AbstractEventLoop, pipe: tuple[int, int]) -> None:
    ctx = aioqloop.get_main_context(loop)
    r, w = pipe
    got_r: list[int] = []
    got_w: list[int] = []
    s1 = aioqloop.fd_add(r, IN, lambda fd, c: got_r.append(int(c)) and False, context=ctx)
    s2 = aioqloop.fd_add(w, OUT, lambda fd, c: got_w.append(int(c)) and False, context=ctx)
    try:
        run_until(loop, lambda: got_w)
        assert got_w == [int(OUT)]
        os.close(w)
        aioqloop.source_remove(s2, context=ctx)
        run_until(loop, lambda: got_r)
        assert got_r == [int(HUP)], "HUP must reach the context even though IN was asked"
    finally:
        aioqloop.source_remove(s1, context=ctx)
        os.close(r)
    r, w = os.pipe()
    got: list[int] = []
    s3 = aioqloop.fd_add(w, OUT, lambda fd, c: got.append(int(c)) and False, context=ctx)
    try:
        os.close(r)
        run_until(loop, lambda: got)
        assert got == [int(OUT | ERR)]
    finally:
        aioqloop.source_remove(s3, context=ctx)
        os.close(w)


def test_watchers_of_one_fd_merge_and_each_sees_its_own_bits(
    loop: asyncio.AbstractEventLoop,
) -> None:
    ctx = aioqloop.get_main_context(loop)
    a, b = socket.socketpair()
    got_in: list[int] = []
    got_out: list[int] = []
    s1 = aioqloop.fd_add(b.fileno(), IN, lambda fd, c: got_in.append(int(c)) and False,
                         context=ctx)
    s2 = aioqloop.fd_add(b.fileno(), OUT, lambda fd, c: got_out.append(int(c)) and False,
                         context=ctx)
    try:
        run_until(loop, lambda: got_out)
        assert got_out == [int(OUT)] and got_in == []
        a.send(b"x")
        run_until(loop, lambda: got_in)
        assert got_in == [int(IN)]
    finally:
        for sid in (s1, s2):
            aioqloop.source_remove(sid, context=ctx)
        a.close()
        b.close()


def test_asyncio_and_a_source_on_one_fd_each_see_only_their_events(
    loop: asyncio.AbstractEventLoop,
) -> None:
    ctx = aioqloop.get_main_context(loop)
    a, b = socket.socketpair()
    readers: list[str] = []
    writable: list[int] = []
    try:
        loop.add_reader(b.fileno(), lambda: readers.append("r") or b.recv(16))
        sid = aioqloop.fd_add(b.fileno(), OUT,
                              lambda fd, c: writable.append(int(c)) or len(writable) < 3,
                              context=ctx)
        run_until(loop, lambda: len(writable) >= 3)
        assert readers == [], "asyncio's reader ran for a write-only readiness"
        assert writable == [int(OUT)] * 3
        a.send(b"x")
        run_until(loop, lambda: readers)
        assert readers == ["r"]
        # asyncio adds and drops its own registration while the source stays.
        loop.remove_reader(b.fileno())
        sid2 = aioqloop.fd_add(b.fileno(), IN, lambda fd, c: readers.append("s") and False,
                               context=ctx)
        a.send(b"y")
        run_until(loop, lambda: "s" in readers)
        aioqloop.source_remove(sid, context=ctx)
        aioqloop.source_remove(sid2, context=ctx)
        b.recv(16)
        # and asyncio's registration survives a source coming and going.
        loop.add_reader(b.fileno(), lambda: readers.append("r2") or b.recv(16))
        sid3 = aioqloop.fd_add(b.fileno(), OUT, lambda fd, c: False, context=ctx)
        run_until(loop, lambda: ctx.find_source_by_id(sid3) is None)
        a.send(b"z")
        run_until(loop, lambda: "r2" in readers)
        loop.remove_reader(b.fileno())
    finally:
        a.close()
        b.close()


def test_a_writer_added_later_keeps_the_union(loop: asyncio.AbstractEventLoop) -> None:
    ctx = aioqloop.get_main_context(loop)
    a, b = socket.socketpair()
    got: list[int] = []
    writes: list[int] = []
    sid = aioqloop.fd_add(b.fileno(), IN, lambda fd, c: got.append(int(c)) or (b.recv(16)
                          and True), context=ctx)
    try:
        loop.add_writer(b.fileno(), lambda: writes.append(1) or loop.remove_writer(b.fileno()))
        run_until(loop, lambda: writes)
        a.send(b"x")
        run_until(loop, lambda: got)
        assert got == [int(IN)]
    finally:
        aioqloop.source_remove(sid, context=ctx)
        a.close()
        b.close()


def test_reused_number_with_a_dup_alive_does_not_leak_into_the_loop(
    loop: asyncio.AbstractEventLoop,
) -> None:
    ctx = aioqloop.get_main_context(loop)
    r1, w1 = os.pipe()
    keep = os.dup(r1)
    old: list[int] = []
    sid = aioqloop.fd_add(r1, IN, lambda fd, c: old.append(int(c)) or True, context=ctx)
    run_until(loop, lambda: True)
    os.close(r1)  # closed behind the watch's back; its file lives on in `keep`
    r2, w2 = os.pipe()
    if r2 != r1:
        os.dup2(r2, r1)
        os.close(r2)
    fired: list[int] = []
    try:
        aioqloop.source_remove(sid, context=ctx)
        loop.add_reader(r1, lambda: fired.append(1) or os.read(r1, 16))
        os.write(w1, b"x")  # the old file becomes readable
        for _ in range(5):
            loop.run_until_complete(asyncio.sleep(0))
        assert fired == [], "the old file's readiness was reported under the reused number"
        assert old == []
        assert hook(loop).direct.rebuilds >= 1
        os.write(w2, b"y")
        run_until(loop, lambda: fired)
        loop.remove_reader(r1)
    finally:
        for fd in (keep, w1, r1, w2):
            os.close(fd)


def test_regular_file_is_always_ready(loop: asyncio.AbstractEventLoop) -> None:
    ctx = aioqloop.get_main_context(loop)
    with tempfile.TemporaryFile() as f:
        got: list[int] = []
        sid = aioqloop.fd_add(f.fileno(), IN | OUT,
                              lambda fd, c: got.append(int(c)) or len(got) < 2, context=ctx)
        run_until(loop, lambda: len(got) >= 2)
        assert got == [int(IN | OUT)] * 2
        assert ctx.find_source_by_id(sid) is None


def test_nested_iteration_does_not_see_a_blocked_sources_fd(
    loop: asyncio.AbstractEventLoop,
) -> None:
    ctx = aioqloop.get_main_context(loop)
    a, b = socket.socketpair()
    calls: list[str] = []

    def outer(fd: int, c: int) -> bool:
        calls.append("outer")
        if len(calls) == 1:
            ctx.iteration(False)  # the fd is still readable: must not re-enter
        b.recv(16)
        return False

    sid = aioqloop.fd_add(b.fileno(), IN, outer, context=ctx)
    try:
        a.send(b"x")
        run_until(loop, lambda: ctx.find_source_by_id(sid) is None)
        assert calls == ["outer"]
        # and the loop's poll still serves asyncio afterwards
        got: list[int] = []
        loop.add_reader(b.fileno(), lambda: got.append(1) or b.recv(16))
        a.send(b"y")
        run_until(loop, lambda: got)
        loop.remove_reader(b.fileno())
    finally:
        a.close()
        b.close()


def test_virtual_clock_loop_serves_fd_sources() -> None:
    lp = aioqloop.new_event_loop(clock=VirtualClock())
    try:
        assert hook(lp).direct is not None
        _roundtrip_with_source(lp)

        async def sleepy() -> None:
            await asyncio.sleep(3600)  # virtual: no real wait

        lp.run_until_complete(sleepy())
    finally:
        lp.close()


def test_wakeup_from_another_thread_on_an_empty_context(
    loop: asyncio.AbstractEventLoop,
) -> None:
    ctx = aioqloop.get_main_context(loop)
    done: list[int] = []

    async def main() -> None:
        await loop.run_in_executor(None, ctx.invoke, lambda: done.append(1) and False)
        for _ in range(100):
            if done:
                return
            await asyncio.sleep(0.01)

    loop.run_until_complete(asyncio.wait_for(main(), 10))
    assert done == [1]


def test_closing_the_context_withdraws_its_fds(loop: asyncio.AbstractEventLoop) -> None:
    ctx = aioqloop.get_main_context(loop)
    a, b = socket.socketpair()
    try:
        aioqloop.fd_add(b.fileno(), OUT, lambda fd, c: True, context=ctx)
        loop.add_reader(a.fileno(), lambda: None)
        h = hook(loop)
        h.direct.withdraw()
        assert h.direct._ctx_mask == {}
        ep = h._real._selector
        # b is no longer in the loop's epoll set; a (asyncio's) still is.
        with pytest.raises(FileNotFoundError):
            ep.unregister(b.fileno())
        ep.modify(a.fileno(), selectors.EVENT_READ)
        loop.remove_reader(a.fileno())
    finally:
        a.close()
        b.close()


def test_fd_closed_behind_the_watch_is_reported_nval(
    loop: asyncio.AbstractEventLoop,
    pipe: tuple[int, int],
) -> None:
    ctx = aioqloop.get_main_context(loop)
    ctx.fd_audit_interval = 0.0  # audit at every sleep
    r, w = pipe
    got: list[int] = []
    sid = aioqloop.fd_add(r, IN, lambda fd, c: got.append(int(c)) and False, context=ctx)
    run_until(loop, lambda: True)
    os.close(r)  # epoll drops its entry silently
    try:
        run_until(loop, lambda: got)
        assert got == [int(IOCondition.NVAL)]
        assert ctx.find_source_by_id(sid) is None
        # asyncio's I/O on the loop still works afterwards (the number may be reused).
        a, b = socket.socketpair()
        fired: list[int] = []
        loop.add_reader(b.fileno(), lambda: fired.append(1) or b.recv(16))
        a.send(b"x")
        run_until(loop, lambda: fired)
        loop.remove_reader(b.fileno())
        a.close()
        b.close()
    finally:
        os.close(w)


def test_a_key_map_that_is_not_a_dict_still_serves_both(loop: asyncio.AbstractEventLoop) -> None:
    # A selector whose key map is some other Mapping: the hook's select takes the general
    # path (SelectorFds.select), with the same results for asyncio and the context.
    direct = hook(loop).direct
    direct._fd_to_key = types.MappingProxyType(direct._real._fd_to_key)
    a, b = socket.socketpair()
    got: list[bytes] = []
    try:
        loop.add_reader(a.fileno(), lambda: got.append(a.recv(16)))
        b.send(b"y")
        run_until(loop, lambda: got)
        assert got == [b"y"]
        _roundtrip_with_source(loop)
    finally:
        loop.remove_reader(a.fileno())
        a.close()
        b.close()

