"""Built-in sources: idles, timeouts, fd watches (poll(2) conditions) and the ``*_add`` helpers."""

from __future__ import annotations

import asyncio
import math
import os
import select
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import LOOP_KINDS, VirtualContext, context_for, iterate, recorder, run_in

from aioqloop import (
    PRIORITY_DEFAULT,
    PRIORITY_DEFAULT_IDLE,
    PRIORITY_HIGH,
    PRIORITY_LOW,
    FdSource,
    IdleSource,
    IOCondition,
    MainContext,
    Source,
    TimeoutSource,
    fd_add,
    idle_add,
    source_remove,
    timeout_add,
)

IN, OUT, PRI, ERR, HUP, NVAL = (IOCondition.IN, IOCondition.OUT, IOCondition.PRI,
                                IOCondition.ERR, IOCondition.HUP, IOCondition.NVAL)
DEADLINE = 10.0


def poll_now(fd: int, events: int) -> IOCondition:
    """What poll(2) reports for ``fd`` right now, as the source should see it."""
    p = select.poll()
    p.register(fd, events)
    got = p.poll(0)
    return IOCondition(got[0][1] if got else 0)


def watch(ctx: MainContext, fd: Any, cond: IOCondition, *, priority: int = PRIORITY_DEFAULT,
          keep: bool = True) -> tuple[FdSource, list[IOCondition]]:
    seen: list[IOCondition] = []
    src = FdSource(fd, cond, priority=priority)

    def cb(fdobj: Any, revents: IOCondition) -> bool:
        assert fdobj is fd
        seen.append(revents)
        return keep

    src.set_callback(cb)
    src.attach(ctx)
    return src, seen


@pytest.fixture
def sockpair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


# ------------------------------------------------------------------------ idle


def test_idle_defaults_and_repeats(ctx: MainContext) -> None:
    src = IdleSource()
    assert src.priority == PRIORITY_DEFAULT_IDLE
    log: list[int] = []
    src.set_callback(recorder(log, 1))
    src.attach(ctx)
    assert iterate(ctx, 4) == 4
    assert log == [1, 1, 1, 1]
    assert ctx.iteration(True) is True  # an idle never lets the context sleep


def test_idle_add_args_priority_and_remove(ctx: MainContext) -> None:
    log: list[tuple[int, str]] = []
    sid = idle_add(lambda a, b: log.append((a, b)) or True, 1, "x", priority=PRIORITY_HIGH,
                   context=ctx)
    src = ctx.find_source_by_id(sid)
    assert isinstance(src, IdleSource)
    assert src.priority == PRIORITY_HIGH
    ctx.iteration(False)
    assert log == [(1, "x")]
    assert source_remove(sid, ctx)
    assert ctx.iteration(False) is False


# --------------------------------------------------------------------- timeout


def test_timeout_first_expiry_and_rearm_without_catch_up(vctx: VirtualContext) -> None:
    ctx = vctx.ctx
    fired: list[float] = []
    src = TimeoutSource(1.0)
    assert src.interval == 1.0
    src.set_callback(lambda: fired.append(vctx.now()) or True)
    src.attach(ctx)
    assert src.ready_time == 1001.0
    vctx.advance(0.999)
    assert iterate(ctx, 2) == 0
    vctx.advance(0.001)
    assert iterate(ctx, 2) == 1
    assert src.ready_time == 1002.0
    # Late by 3.5 intervals: one firing, rearmed from the iteration time (no catch-up).
    vctx.advance(4.5)
    assert iterate(ctx, 5) == 1
    assert fired == [1001.0, 1005.5]
    assert src.ready_time == 1006.5


def test_timeout_rearms_from_iteration_time_not_after_callback(vctx: VirtualContext) -> None:
    ctx = vctx.ctx
    src = TimeoutSource(1.0)

    def slow() -> bool:
        vctx.advance(0.3)  # time spent in the callback does not shift the next expiry
        return True

    src.set_callback(slow)
    src.attach(ctx)
    vctx.advance(1.0)
    assert ctx.iteration(False)
    assert src.ready_time == 1002.0


def test_timeout_add_returns_id_and_removes_on_false(vctx: VirtualContext) -> None:
    ctx = vctx.ctx
    log: list[str] = []
    sid = timeout_add(0.5, lambda tag: log.append(tag) or len(log) < 2, "t", context=ctx)
    src = ctx.find_source_by_id(sid)
    assert isinstance(src, TimeoutSource)
    assert src.priority == PRIORITY_DEFAULT
    for _ in range(4):
        vctx.advance(0.5)
        iterate(ctx, 2)
    assert log == ["t", "t"]
    assert src.is_destroyed
    assert ctx.find_source_by_id(sid) is None


@pytest.mark.parametrize("interval", [21475.0, 4294968.0, 1e12])
def test_huge_timeouts_never_fire(vctx: VirtualContext, interval: float) -> None:
    # timeout.c seconds / weeks-overflow: huge intervals must not overflow into "now".
    log: list[int] = []
    timeout_add(interval, recorder(log, 1), context=vctx.ctx)
    for _ in range(5):
        vctx.advance(2.1)
        assert iterate(vctx.ctx, 2) == 0
    assert log == []


def test_zero_timeout_fires_each_iteration(ctx: MainContext) -> None:
    log: list[int] = []
    timeout_add(0, recorder(log, 1), context=ctx)
    assert iterate(ctx, 3) == 3
    assert log == [1, 1, 1]


def test_blocking_iteration_waits_for_timeout(ctx: MainContext) -> None:
    log: list[int] = []
    timeout_add(0.02, recorder(log, 1, False), context=ctx)
    for _ in range(50):
        if ctx.iteration(True):
            break
    assert log == [1]


@pytest.mark.parametrize("bad", [-1, -0.001, math.nan, math.inf])
def test_timeout_bad_interval(bad: float) -> None:
    with pytest.raises(ValueError):
        TimeoutSource(bad)


@pytest.mark.parametrize("bad", ["1", None, True, [1]])
def test_timeout_interval_wrong_type(bad: Any) -> None:
    with pytest.raises(TypeError):
        TimeoutSource(bad)


def test_add_functions_reject_non_callables(ctx: MainContext, pipe: tuple[int, int]) -> None:
    with pytest.raises(TypeError):
        timeout_add(1.0, "nope", context=ctx)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        idle_add(42, context=ctx)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        fd_add(pipe[0], IN, None, context=ctx)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        timeout_add(-5, lambda: True, context=ctx)
    assert ctx.pending() is False


# ---------------------------------------------------------- fd conditions exactly


def test_fd_out_and_in_on_socketpair(sockpair: tuple[socket.socket, socket.socket],
                                     ctx: MainContext) -> None:
    a, b = sockpair
    wsrc, wseen = watch(ctx, a, OUT)
    _rsrc, rseen = watch(ctx, b, IN)
    assert wsrc.fd == a.fileno()
    ctx.iteration(False)
    assert wseen == [OUT] and rseen == []
    assert poll_now(a.fileno(), OUT) == OUT
    wsrc.destroy()
    a.send(b"x")
    ctx.iteration(False)
    assert rseen == [IN] == [poll_now(b.fileno(), IN)]
    # Level-triggered: still readable, fires again.
    ctx.iteration(False)
    assert rseen == [IN, IN]
    b.recv(10)
    assert ctx.iteration(False) is False


def test_fd_hup_when_socket_peer_closes(ctx: MainContext,
                                        sockpair: tuple[socket.socket, socket.socket]) -> None:
    a, b = sockpair
    _, seen = watch(ctx, b, IN, keep=False)
    a.close()
    expected = poll_now(b.fileno(), IN)
    assert expected & HUP
    ctx.iteration(False)
    assert seen == [expected]


def test_fd_hup_on_pipe_whose_writer_closed(ctx: MainContext, pipe: tuple[int, int]) -> None:
    r, w = pipe
    _, seen = watch(ctx, r, IN, keep=False)
    assert ctx.iteration(False) is False
    os.close(w)
    ctx.iteration(False)
    assert seen == [poll_now(r, IN)] == [HUP]


def test_fd_err_on_pipe_whose_reader_closed(ctx: MainContext, pipe: tuple[int, int]) -> None:
    r, w = pipe
    _, seen = watch(ctx, w, OUT, keep=False)
    os.close(r)
    ctx.iteration(False)
    expected = poll_now(w, OUT)
    assert expected & ERR
    assert seen == [expected]


def test_fd_hup_reported_even_if_not_asked(ctx: MainContext, pipe: tuple[int, int]) -> None:
    r, w = pipe
    _, seen = watch(ctx, r, PRI, keep=False)
    os.close(w)
    ctx.iteration(False)
    assert seen == [HUP]


def test_fd_pri_with_tcp_urgent_data(ctx: MainContext) -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    client = socket.create_connection(server.getsockname())
    conn, _ = server.accept()
    try:
        _, seen = watch(ctx, conn, PRI, keep=False)
        assert ctx.iteration(False) is False
        client.send(b"!", socket.MSG_OOB)
        for _ in range(200):
            if poll_now(conn.fileno(), PRI) & PRI:
                break
            select.select([conn], [], [conn], 0.01)
        ctx.iteration(False)
        assert seen == [poll_now(conn.fileno(), PRI)]
        assert seen[0] & PRI
    finally:
        conn.close()
        client.close()
        server.close()


def test_fd_nval_for_fd_closed_behind_the_source(ctx: MainContext, pipe: tuple[int, int]) -> None:
    r, w = pipe
    ctx.fd_audit_interval = 0.0
    src, seen = watch(ctx, r, IN, keep=False)
    assert ctx.iteration(False) is False
    os.close(r)  # behind the source's back
    assert poll_now(r, IN) == NVAL
    for _ in range(5):
        ctx.iteration(False)
    assert seen == [NVAL]
    assert src.is_destroyed
    assert ctx.pending() is False
    os.close(w)


def test_destroy_after_fd_closed_with_other_watch_on_it(
    sockpair: tuple[socket.socket, socket.socket], ctx: MainContext
) -> None:
    a, _ = sockpair
    s1, _ = watch(ctx, a, IN)
    s2, _ = watch(ctx, a, OUT)
    a.close()
    s1.destroy()  # must not raise because the fd is gone
    s2.destroy()
    assert ctx.pending() is False


@pytest.mark.parametrize("kind", LOOP_KINDS)
def test_closed_fd_does_not_wedge_running_loop(kind: str) -> None:
    async def main() -> list[IOCondition]:
        ctx = context_for(kind)
        ctx.fd_audit_interval = 0.01
        r, w = os.pipe()
        seen: list[IOCondition] = []
        nval = asyncio.Event()

        def cb(fd: int, cond: IOCondition) -> bool:
            seen.append(cond)
            nval.set()
            return False

        fd_add(r, IN, cb, context=ctx)
        await asyncio.sleep(0)
        os.close(r)  # behind the source's back; nothing else happens on it
        await asyncio.wait_for(nval.wait(), 3.0)
        # The loop keeps working: a timeout and a plain sleep still complete.
        ticked = asyncio.Event()
        timeout_add(0.005, lambda: ticked.set(), context=ctx)
        await asyncio.wait_for(ticked.wait(), DEADLINE)
        os.close(w)
        return seen

    assert run_in(kind, main) == [NVAL]


def test_dev_null_fires_immediately(ctx: MainContext) -> None:
    with open(os.devnull, "rb") as f:
        _, seen = watch(ctx, f, IN, keep=False)
        assert ctx.pending() is True
        ctx.iteration(False)
        assert seen == [poll_now(f.fileno(), IN)] == [IN]


# ------------------------------------------------------------ fd vs priorities


def test_unix_fd_pipe_high_writer_default_reader(ctx: MainContext,
                                                 pipe: tuple[int, int]) -> None:
    # mainloop/unix-fd: each iteration changes at most one side.
    r, w = pipe
    os.set_blocking(r, False)
    os.set_blocking(w, False)
    total = 1 << 20
    state = {"written": 0, "read": 0}
    chunk = b"x" * 8192

    def writer(fd: int, cond: IOCondition) -> bool:
        try:
            state["written"] += os.write(fd, chunk[: total - state["written"]])
        except BlockingIOError:
            pass
        return state["written"] < total

    def reader(fd: int, cond: IOCondition) -> bool:
        state["read"] += len(os.read(fd, 65536))
        return state["read"] < total

    fd_add(w, OUT, writer, priority=PRIORITY_HIGH, context=ctx)
    fd_add(r, IN, reader, priority=PRIORITY_DEFAULT, context=ctx)
    for _ in range(10000):
        before = dict(state)
        if not ctx.iteration(False) and state["read"] >= total:
            break
        changed = [k for k in state if state[k] != before[k]]
        assert len(changed) <= 1
    assert state == {"written": total, "read": total}


def test_unix_fd_source_priorities(sockpair: tuple[socket.socket, socket.socket],
                                   ctx: MainContext) -> None:
    # mainloop/unix-fd-source: a socket both readable and writable.
    a, b = sockpair
    b.send(b"data")
    _out_src, outs = watch(ctx, a, OUT, priority=PRIORITY_DEFAULT)
    in_src, ins = watch(ctx, a, IN, priority=PRIORITY_DEFAULT_IDLE)
    ctx.iteration(False)
    assert (outs, ins) == ([OUT], [])
    in_src.priority = PRIORITY_HIGH
    ctx.iteration(False)
    assert (outs, ins) == ([OUT], [IN])
    in_src.priority = PRIORITY_DEFAULT
    ctx.iteration(False)
    assert (outs, ins) == ([OUT, OUT], [IN, IN])


def test_unix_fd_priority(ctx: MainContext, pipe: tuple[int, int]) -> None:
    # mainloop/unix-fd-priority: idle at 0, fd at 10 (lower fd number), fd at 0.
    r, w = pipe
    os.write(w, b"x")
    log: list[str] = []
    idle_add(recorder(log, "idle"), priority=0, context=ctx)
    low_fd, high_fd = sorted(os.dup(r) for _ in range(2))
    try:
        fd_add(low_fd, IN, lambda *_: log.append("fd10") or True, priority=10, context=ctx)
        fd_add(high_fd, IN, lambda *_: log.append("fd0") or True, priority=0, context=ctx)
        ctx.iteration(False)
        assert log == ["idle", "fd0"]
    finally:
        for fd in (low_fd, high_fd):
            os.close(fd)


def test_nfds_two_watches_one_fd(sockpair: tuple[socket.socket, socket.socket],
                                 ctx: MainContext) -> None:
    # mainloop/nfds: watches on one fd merge; the LOW one waits for the DEFAULT ones.
    a, b = sockpair
    b.send(b"x")
    _, ins = watch(ctx, a, IN, priority=PRIORITY_DEFAULT)
    _, outs = watch(ctx, a, OUT, priority=PRIORITY_DEFAULT)
    _, lows = watch(ctx, a, IN | OUT, priority=PRIORITY_LOW)
    ctx.iteration(False)
    assert (ins, outs, lows) == ([IN], [OUT], [])


def test_fd_readiness_from_thread_wakes_blocking_iteration(ctx: MainContext,
                                                           pipe: tuple[int, int]) -> None:
    import threading

    r, w = pipe
    _, seen = watch(ctx, r, IN, keep=False)
    t = threading.Timer(0.01, os.write, (w, b"x"))
    t.start()
    for _ in range(50):
        if ctx.iteration(True):
            break
    t.join()
    assert seen == [IN]


# ------------------------------------------------------------- fd errors


def test_fd_source_invalid_fds(pipe: tuple[int, int]) -> None:
    r, w = pipe
    with pytest.raises(ValueError):
        FdSource(-1, IN)
    os.close(w)
    with pytest.raises(OSError):
        FdSource(w, IN)
    with pytest.raises(TypeError):
        FdSource("3", IN)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        FdSource(True, IN)
    with pytest.raises(TypeError):
        FdSource(r, "IN")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        FdSource(r, 0x1000)


def test_fd_add_on_closed_file_object(pipe: tuple[int, int]) -> None:
    r, w = pipe
    f = os.fdopen(r, "rb")
    os.close(w)
    f.close()
    with pytest.raises((OSError, ValueError)):
        FdSource(f, IN)


def test_fd_source_without_callback_warns_and_is_destroyed(ctx: MainContext,
                                                            pipe: tuple[int, int]) -> None:
    r, w = pipe
    os.write(w, b"x")
    src = FdSource(r, IN)
    src.attach(ctx)
    with pytest.warns(RuntimeWarning, match="no callback"):
        ctx.iteration(False)
    assert src.is_destroyed


def test_custom_source_fds_api(sockpair: tuple[socket.socket, socket.socket],
                               ctx: MainContext) -> None:
    # mainloop/source-unix-fd-api: add / query / modify / remove.
    a, b = sockpair
    got: list[tuple[IOCondition, IOCondition]] = []

    class Two(Source):
        pass

    src = Two()
    ta = src.add_unix_fd(a, IN)
    tb = src.add_unix_fd(b.fileno(), OUT)
    src.set_callback(lambda: got.append((src.query_unix_fd(ta), src.query_unix_fd(tb))) or True)
    src.attach(ctx)
    # A higher-priority source with no fds does not stop A's fds from being polled.
    Source(priority=PRIORITY_HIGH).attach(ctx)
    ctx.iteration(False)
    assert got == [(IOCondition(0), OUT)]
    src.modify_unix_fd(ta, OUT)
    src.modify_unix_fd(tb, IN)
    ctx.iteration(False)
    assert got[-1] == (OUT, IOCondition(0))
    src.remove_unix_fd(tb)
    with pytest.raises(ValueError):
        src.query_unix_fd(tb)
    src.remove_unix_fd(ta)
    assert ctx.iteration(False) is False
    assert len(got) == 2
