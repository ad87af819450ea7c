"""The public contract (design/api.md), promise by promise, through public names only.

Each test names the sentence of the contract it proves.  Stand-alone contexts are iterated
by hand; timing-dependent promises run on a `VirtualClock`, so nothing here waits for
real time to pass.
"""

from __future__ import annotations

import asyncio
import enum
import importlib.metadata
import inspect
import math
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import aioqloop
from aioqloop import (
    PRIORITY_DEFAULT,
    PRIORITY_DEFAULT_IDLE,
    PRIORITY_HIGH,
    PRIORITY_LOW,
    SOURCE_CONTINUE,
    SOURCE_REMOVE,
    BigLock,
    BottomHalf,
    ChildWatchSource,
    FdSource,
    IdleSource,
    IOCondition,
    MainContext,
    MainLoop,
    SignalSource,
    Source,
    TimeoutSource,
    VirtualClock,
)
from aioqloop import glib as GLib

P = inspect.Parameter
POS = P.POSITIONAL_OR_KEYWORD
KW = P.KEYWORD_ONLY
VAR = P.VAR_POSITIONAL
EMPTY = P.empty


# ---------------------------------------------------------------------------- helpers
@pytest.fixture
def ctx() -> Iterator[MainContext]:
    """``MainContext()`` with no running loop: a stand-alone context iterated by hand."""
    context = MainContext()
    yield context
    context.close()


class Virtual:
    """A (not running) aioqloop loop on a manual `VirtualClock`, its context iterated by hand."""

    def __init__(self) -> None:
        self.clock = VirtualClock(100.0, autojump=False)
        self.loop = aioqloop.new_event_loop(clock=self.clock)
        self.ctx = aioqloop.get_main_context(self.loop)

    def now(self) -> float:
        return self.loop.time()


@pytest.fixture
def virt() -> Iterator[Virtual]:
    v = Virtual()
    yield v
    v.loop.close()


def spin(context: MainContext, n: int = 5) -> int:
    """``n`` non-blocking iterations; how many dispatched something."""
    return sum(context.iteration(False) for _ in range(n))


def params(fn: Callable[..., Any]) -> list[tuple[str, Any, Any]]:
    """(name, kind, default) of each parameter, ``self`` dropped."""
    sig = inspect.signature(fn)
    return [(p.name, p.kind, p.default) for p in sig.parameters.values() if p.name != "self"]


def param(fn: Callable[..., Any], name: str) -> inspect.Parameter:
    return inspect.signature(fn).parameters[name]


def collect_handler(loop: asyncio.AbstractEventLoop) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, c: seen.append(c))
    return seen


# ============================================================================ §1 Core
def test_constants_and_iocondition_is_an_intflag_of_poll_values() -> None:
    import select

    assert (aioqloop.PRIORITY_HIGH, aioqloop.PRIORITY_DEFAULT, aioqloop.PRIORITY_HIGH_IDLE,
            aioqloop.PRIORITY_DEFAULT_IDLE, aioqloop.PRIORITY_LOW) == (-100, 0, 100, 200, 300)
    assert SOURCE_CONTINUE is True and SOURCE_REMOVE is False
    assert issubclass(IOCondition, enum.IntFlag)
    for name in ("IN", "PRI", "OUT", "ERR", "HUP", "NVAL"):
        assert int(getattr(IOCondition, name)) == getattr(select, "POLL" + name)


# ------------------------------------------------------------------ Source: defaults
def test_source_defaults() -> None:
    s = Source()
    assert s.priority == PRIORITY_DEFAULT
    assert s.name is None
    assert s.id == 0
    assert s.context is None
    assert s.can_recurse is False
    assert s.is_destroyed is False
    assert s.ready_time == -1


def test_source_init_signature_is_keyword_only() -> None:
    assert params(Source.__init__) == [
        ("priority", KW, PRIORITY_DEFAULT), ("name", KW, None)]
    s = Source(priority=PRIORITY_LOW, name="n")
    assert (s.priority, s.name) == (PRIORITY_LOW, "n")
    with pytest.raises(TypeError):
        Source(5)  # type: ignore[call-arg]  # the positional form it refuses


def test_source_hook_defaults() -> None:
    s = Source()
    assert s.prepare() == (False, None)
    assert s.check() is False
    assert s.finalize() is None
    got: list[tuple[Any, ...]] = []
    assert s.dispatch(lambda *a: got.append(a) or 1, (1, "x")) is True
    assert got == [(1, "x")]
    assert s.dispatch(lambda: 0, ()) is False
    assert s.dispatch(lambda: None, ()) is False
    assert s.dispatch(lambda: "yes", ()) is True


def test_source_method_signatures() -> None:
    assert [n for n, _, _ in params(Source.set_callback)] == ["callback", "args"]
    assert param(Source.set_callback, "args").kind is VAR
    assert params(Source.attach) == [("context", POS, None)]
    assert params(Source.set_ready_time) == [("when", POS, EMPTY)]
    assert [n for n, _, _ in params(Source.dispatch)] == ["callback", "args"]
    assert [n for n, _, _ in params(Source.add_unix_fd)][1:] == ["events"]
    assert [n for n, _, _ in params(Source.modify_unix_fd)] == ["tag", "events"]
    assert [n for n, _, _ in params(Source.remove_unix_fd)] == ["tag"]
    assert [n for n, _, _ in params(Source.query_unix_fd)] == ["tag"]
    assert [n for n, _, _ in params(Source.add_child_source)] == ["child"]
    assert [n for n, _, _ in params(Source.remove_child_source)] == ["child"]
    assert params(Source.time) == []
    assert params(Source.destroy) == []


def test_add_unix_fd_parameter_is_named_as_in_the_contract(
    ctx: MainContext,
    pipe: tuple[int, int],
) -> None:
    # api.md: ``add_unix_fd(fd_or_fileobj, events) -> tag``.
    r, _ = pipe
    s = Source()
    tag = s.add_unix_fd(fd_or_fileobj=r, events=IOCondition.IN)
    assert s.query_unix_fd(tag) == IOCondition(0)


def test_attach_returns_positive_id_and_sets_context(ctx: MainContext) -> None:
    s = IdleSource()
    sid = s.attach(ctx)
    assert sid > 0 and s.id == sid
    assert s.context is ctx
    assert ctx.find_source_by_id(sid) is s
    s.destroy()
    assert s.is_destroyed
    assert ctx.find_source_by_id(sid) is None


def test_attach_without_context_uses_the_running_loops_context() -> None:
    async def main() -> tuple[MainContext | None, MainContext]:
        s = Source()
        s.attach()
        try:
            return s.context, aioqloop.get_main_context()
        finally:
            s.destroy()

    got, expected = aioqloop.run(main())
    assert got is expected


def test_dispatch_return_value_keeps_or_removes(ctx: MainContext) -> None:
    log: list[str] = []
    keep = IdleSource(priority=PRIORITY_DEFAULT)
    keep.set_callback(lambda: log.append("keep") or SOURCE_CONTINUE)
    drop = IdleSource(priority=PRIORITY_DEFAULT)
    drop.set_callback(lambda: log.append("drop") or SOURCE_REMOVE)
    keep.attach(ctx)
    drop.attach(ctx)
    spin(ctx, 3)
    assert log == ["keep", "drop", "keep", "keep"]
    assert drop.is_destroyed and not keep.is_destroyed


def test_set_callback_args_are_passed(ctx: MainContext) -> None:
    got: list[tuple[Any, ...]] = []
    s = IdleSource()
    s.set_callback(lambda *a: got.append(a), 1, "two")
    s.attach(ctx)
    assert ctx.iteration(False)
    assert got == [(1, "two")]


def test_custom_prepare_check_dispatch_finalize(ctx: MainContext) -> None:
    log: list[str] = []

    class Flag(Source):
        flag = False

        def prepare(self) -> tuple[bool, float | None]:
            log.append("prepare")
            return (self.flag, None)

        def check(self) -> bool:
            log.append("check")
            return self.flag

        def dispatch(self, callback: Any, args: tuple[Any, ...]) -> bool:
            log.append("dispatch")
            return False

        def finalize(self) -> None:
            log.append("finalize")

    s = Flag()
    s.attach(ctx)
    assert not ctx.iteration(False)
    assert "prepare" in log and "check" in log and "dispatch" not in log
    log.clear()
    s.flag = True
    assert ctx.iteration(False)
    assert log[-2:] == ["dispatch", "finalize"]
    assert s.is_destroyed


def test_prepare_timeout_in_seconds_bounds_a_blocking_iteration(virt: Virtual) -> None:
    # prepare's second item is the longest wait in seconds: a blocking iteration with
    # nothing else to do returns (having dispatched nothing) instead of sleeping forever.
    class Wait(Source):
        def prepare(self) -> tuple[bool, float | None]:
            return (False, 0.0)

    s = Wait()
    s.attach(virt.ctx)
    assert virt.ctx.iteration(True) is False
    s.destroy()


def test_priority_settable_while_attached(ctx: MainContext) -> None:
    log: list[str] = []
    a = IdleSource(priority=PRIORITY_DEFAULT)
    a.set_callback(lambda: log.append("a") or False)
    b = IdleSource(priority=PRIORITY_DEFAULT)
    b.set_callback(lambda: log.append("b") or False)
    a.attach(ctx)
    b.attach(ctx)
    b.priority = PRIORITY_HIGH
    assert b.priority == PRIORITY_HIGH
    assert ctx.iteration(False)
    assert log == ["b"]  # only the most urgent priority dispatches in an iteration
    assert ctx.iteration(False)
    assert log == ["b", "a"]


def test_can_recurse_is_settable() -> None:
    s = Source()
    s.can_recurse = True
    assert s.can_recurse is True


# ------------------------------------------------------------ Source: ready time
def test_set_ready_time_absolute_loop_seconds(virt: Virtual) -> None:
    log: list[float] = []
    s = Source()
    s.set_callback(lambda: log.append(virt.now()) or True)
    s.attach(virt.ctx)
    s.set_ready_time(virt.now() + 5.0)
    assert s.ready_time == pytest.approx(105.0)
    assert spin(virt.ctx) == 0
    virt.clock.advance(4.5)
    assert spin(virt.ctx) == 0
    virt.clock.advance(0.5)
    assert virt.ctx.iteration(False)
    assert log == [pytest.approx(105.0)]
    s.destroy()


def test_set_ready_time_zero_or_past_is_now(virt: Virtual) -> None:
    for when in (0, virt.now() - 50.0):
        s = Source()
        s.set_callback(lambda: False)
        s.attach(virt.ctx)
        s.set_ready_time(when)
        assert virt.ctx.iteration(False), when
        assert s.is_destroyed


def test_set_ready_time_minus_one_is_never(virt: Virtual) -> None:
    s = Source()
    s.set_callback(lambda: True)
    s.attach(virt.ctx)
    s.set_ready_time(virt.now() + 1.0)
    s.set_ready_time(-1)
    assert s.ready_time == -1
    virt.clock.advance(1e6)
    assert spin(virt.ctx) == 0
    s.destroy()


def test_ready_time_is_not_reset_by_dispatch(virt: Virtual) -> None:
    # g_source_set_ready_time: "the ready time is not reset by dispatch".
    n = [0]
    s = Source()
    s.set_callback(lambda: n.__setitem__(0, n[0] + 1) or True)
    s.attach(virt.ctx)
    s.set_ready_time(0)
    assert spin(virt.ctx, 3) == 3
    assert n == [3]
    assert s.ready_time == 0
    s.destroy()


def test_time_is_the_iterations_loop_time(virt: Virtual) -> None:
    seen: list[float] = []
    s = Source()

    def cb() -> bool:
        seen.append(s.time())
        return False

    s.set_callback(cb)
    s.attach(virt.ctx)
    virt.clock.advance(7.0)
    s.set_ready_time(0)
    assert virt.ctx.iteration(False)
    assert seen == [pytest.approx(107.0)]
    assert isinstance(seen[0], float)


# ------------------------------------------------------------------ Source: fds
def test_add_unix_fd_int_query_modify_remove(ctx: MainContext, pipe: tuple[int, int]) -> None:
    r, w = pipe
    seen: list[IOCondition] = []
    s = Source()
    tag = s.add_unix_fd(r, IOCondition.IN)
    s.set_callback(lambda: seen.append(s.query_unix_fd(tag)) or True)
    s.attach(ctx)
    assert spin(ctx) == 0
    os.write(w, b"x")
    assert ctx.iteration(False)
    assert isinstance(seen[-1], IOCondition)
    assert seen[-1] == IOCondition.IN
    # Watch OUT on the read end: never writable, so no dispatch even though data waits.
    s.modify_unix_fd(tag, IOCondition.OUT)
    seen.clear()
    assert spin(ctx) == 0
    s.modify_unix_fd(tag, IOCondition.IN)
    assert ctx.iteration(False) and seen == [IOCondition.IN]
    s.remove_unix_fd(tag)
    seen.clear()
    assert spin(ctx) == 0
    s.destroy()


def test_add_unix_fd_accepts_file_objects(ctx: MainContext) -> None:
    a, b = socket.socketpair()
    try:
        seen: list[IOCondition] = []
        s = Source()
        tag = s.add_unix_fd(a, IOCondition.IN | IOCondition.OUT)
        s.set_callback(lambda: seen.append(s.query_unix_fd(tag)) or False)
        s.attach(ctx)
        assert ctx.iteration(False)
        assert seen == [IOCondition.OUT]
    finally:
        a.close()
        b.close()


def test_add_unix_fd_invalid_fds(ctx: MainContext, pipe: tuple[int, int]) -> None:
    s = Source()
    with pytest.raises(ValueError):
        s.add_unix_fd(-1, IOCondition.IN)
    r, w = pipe
    os.close(r)
    os.close(w)
    with pytest.raises(OSError):
        s.add_unix_fd(r, IOCondition.IN)
    with pytest.raises(TypeError):
        s.add_unix_fd("3", IOCondition.IN)  # type: ignore[arg-type]


# ----------------------------------------------------------- Source: child sources
def test_child_source_makes_parent_ready_and_dispatches_first(ctx: MainContext) -> None:
    log: list[str] = []
    parent = Source(priority=PRIORITY_LOW)
    parent.set_callback(lambda: log.append("parent") or True)
    child = IdleSource()
    child.set_callback(lambda: log.append("child") or True)
    parent.add_child_source(child)
    assert child.priority == PRIORITY_LOW  # a child takes its parent's priority
    parent.attach(ctx)
    assert child.context is ctx
    assert ctx.iteration(False)
    assert log == ["child", "parent"]
    parent.remove_child_source(child)
    assert child.is_destroyed
    log.clear()
    assert spin(ctx) == 0
    parent.destroy()


def test_destroying_the_parent_destroys_children(ctx: MainContext) -> None:
    parent = Source()
    child = Source()
    parent.add_child_source(child)
    parent.attach(ctx)
    parent.destroy()
    assert child.is_destroyed


# ------------------------------------------------------------------ built-in sources
def test_builtin_constructor_signatures() -> None:
    def head(fn: Callable[..., Any]) -> list[tuple[str, Any]]:
        return [(n, k) for n, k, _ in params(fn)]

    assert head(TimeoutSource.__init__)[:2] == [("interval", POS), ("priority", KW)]
    assert param(TimeoutSource.__init__, "priority").default == PRIORITY_DEFAULT
    assert head(IdleSource.__init__)[0] == ("priority", KW)
    assert param(IdleSource.__init__, "priority").default == PRIORITY_DEFAULT_IDLE
    assert head(FdSource.__init__)[:2] == [("fd_or_fileobj", POS), ("condition", POS)]
    assert head(SignalSource.__init__)[0] == ("signum", POS)
    assert head(ChildWatchSource.__init__)[0] == ("pid", POS)
    assert head(BottomHalf.__init__)[:3] == [("callback", POS), ("args", VAR), ("context", KW)]
    assert param(BottomHalf.__init__, "context").default is None
    assert IdleSource().priority == PRIORITY_DEFAULT_IDLE
    assert TimeoutSource(1.0).priority == PRIORITY_DEFAULT
    for cls in (TimeoutSource, IdleSource, FdSource, SignalSource, ChildWatchSource):
        assert issubclass(cls, Source)


def test_timeout_source_is_in_seconds_and_rearms_from_iteration_time(virt: Virtual) -> None:
    fired: list[float] = []
    t = TimeoutSource(2.0)
    t.set_callback(lambda: fired.append(virt.now()) or len(fired) < 3)
    t.attach(virt.ctx)
    virt.clock.advance(1.999)
    assert spin(virt.ctx) == 0
    virt.clock.advance(0.001)
    assert virt.ctx.iteration(False)
    # Dispatched late: the next expiry is 2 s after *this* iteration, no catch-up.
    virt.clock.advance(3.0)
    assert virt.ctx.iteration(False)
    virt.clock.advance(1.9)
    assert spin(virt.ctx) == 0
    virt.clock.advance(0.1)
    assert virt.ctx.iteration(False)
    assert fired == [pytest.approx(102.0), pytest.approx(105.0), pytest.approx(107.0)]
    assert t.is_destroyed  # third callback returned False


def test_idle_source_runs_only_when_nothing_more_urgent(ctx: MainContext) -> None:
    log: list[str] = []
    idle = IdleSource()
    idle.set_callback(lambda: log.append("idle") or False)
    idle.attach(ctx)
    busy = IdleSource(priority=PRIORITY_DEFAULT)
    busy.set_callback(lambda: log.append("busy") or len(log) < 2)
    busy.attach(ctx)
    spin(ctx, 4)
    assert log == ["busy", "busy", "idle"]


def test_fd_source_callback_gets_fd_condition_args(ctx: MainContext, pipe: tuple[int, int]) -> None:
    r, w = pipe
    got: list[tuple[Any, ...]] = []
    s = FdSource(r, IOCondition.IN)
    s.set_callback(lambda *a: got.append(a) or True, "extra")
    s.attach(ctx)
    os.write(w, b"x")
    assert ctx.iteration(False)
    assert got == [(r, IOCondition.IN, "extra")]
    assert isinstance(got[0][1], IOCondition)
    s.destroy()


def test_fd_source_accepts_a_file_object(ctx: MainContext) -> None:
    a, b = socket.socketpair()
    try:
        got: list[tuple[Any, ...]] = []
        s = FdSource(a, IOCondition.IN)
        s.set_callback(lambda *x: got.append(x) or False)
        s.attach(ctx)
        b.send(b"x")
        assert ctx.iteration(False)
        first, cond = got[0]
        assert first is a or first == a.fileno()
        assert cond == IOCondition.IN
    finally:
        a.close()
        b.close()


def test_fd_source_reports_hup_precisely(ctx: MainContext) -> None:
    r, w = os.pipe()
    try:
        got: list[IOCondition] = []
        s = FdSource(r, IOCondition.IN)
        s.set_callback(lambda _fd, cond: got.append(cond) or False)
        s.attach(ctx)
        os.close(w)
        w = -1
        assert ctx.iteration(False)
        assert got == [IOCondition.HUP]  # HUP reported though not asked for; no IN
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def test_fd_source_reports_err(ctx: MainContext) -> None:
    r, w = os.pipe()
    try:
        got: list[IOCondition] = []
        s = FdSource(w, IOCondition.OUT)
        s.set_callback(lambda _fd, cond: got.append(cond) or False)
        s.attach(ctx)
        os.close(r)
        r = -1
        assert ctx.iteration(False)
        assert IOCondition.ERR in got[0]
    finally:
        os.close(w)
        if r >= 0:
            os.close(r)


@pytest.mark.timeout(10)
def test_signal_sources_for_one_signal_all_fire() -> None:
    async def main() -> list[tuple[str, tuple[Any, ...]]]:
        got: list[tuple[str, tuple[Any, ...]]] = []
        done = asyncio.Event()
        sources = []
        for tag in ("a", "b"):
            s = SignalSource(signal.SIGUSR1)
            s.set_callback(lambda *args, tag=tag: got.append((tag, args)) or done.set(), "x")
            s.attach()
            sources.append(s)
        os.kill(os.getpid(), signal.SIGUSR1)
        while len(got) < 2:
            await done.wait()
            done.clear()
        for s in sources:
            s.destroy()
        return got

    got = aioqloop.run(main())
    assert sorted(got) == [("a", ("x",)), ("b", ("x",))]


@pytest.mark.timeout(10)
def test_child_watch_source_callback_gets_pid_and_wait_status() -> None:
    async def main() -> tuple[int, tuple[Any, ...]]:
        pid = os.posix_spawn("/bin/sh", ["sh", "-c", "exit 3"], os.environ)
        fut: asyncio.Future[tuple[Any, ...]] = asyncio.get_running_loop().create_future()
        s = ChildWatchSource(pid)
        s.set_callback(lambda *a: fut.set_result(a), "extra")
        s.attach()
        return pid, await fut

    pid, args = aioqloop.run(main())
    assert args[0] == pid
    assert os.waitstatus_to_exitcode(args[1]) == 3
    assert args[2:] == ("extra",)


# ---------------------------------------------------------------------- BottomHalf
def test_bottom_half_schedule_is_idempotent_and_scheduled_flag(ctx: MainContext) -> None:
    got: list[tuple[Any, ...]] = []
    bh = BottomHalf(lambda *a: got.append(a), 1, 2, context=ctx)
    assert bh.scheduled is False
    bh.schedule()
    bh.schedule()
    bh.schedule()
    assert bh.scheduled is True
    spin(ctx)
    assert got == [(1, 2)]
    assert bh.scheduled is False
    bh.delete()


def test_bottom_half_cancel(ctx: MainContext) -> None:
    got: list[int] = []
    bh = BottomHalf(lambda: got.append(1), context=ctx)
    bh.schedule()
    bh.cancel()
    assert bh.scheduled is False
    spin(ctx)
    assert got == []
    bh.delete()


def test_bottom_half_delete_then_schedule_raises(ctx: MainContext) -> None:
    got: list[int] = []
    bh = BottomHalf(lambda: got.append(1), context=ctx)
    bh.schedule()
    bh.delete()
    with pytest.raises(RuntimeError):
        bh.schedule()
    spin(ctx)
    assert got == []


def test_bottom_half_rescheduled_from_its_callback_runs_on_a_later_iteration(
    ctx: MainContext,
) -> None:
    calls: list[int] = []
    holder: list[BottomHalf] = []

    def cb() -> None:
        calls.append(len(calls))
        if len(calls) < 3:
            holder[0].schedule()

    bh = BottomHalf(cb, context=ctx)
    holder.append(bh)
    bh.schedule()
    assert ctx.iteration(False)
    assert calls == [0]  # not run again within the same iteration
    assert ctx.iteration(False)
    assert calls == [0, 1]
    assert ctx.iteration(False)
    assert calls == [0, 1, 2]
    assert spin(ctx) == 0
    bh.delete()


def test_bottom_half_default_context_is_the_running_loops() -> None:
    async def main() -> bool:
        bh = BottomHalf(lambda: None)
        try:
            return bh.context is aioqloop.get_main_context()
        finally:
            bh.delete()

    assert aioqloop.run(main())


@pytest.mark.timeout(10)
def test_bottom_half_and_oneshot_scheduled_from_threads() -> None:
    async def main() -> tuple[list[str], set[int]]:
        loop = asyncio.get_running_loop()
        ctx = aioqloop.get_main_context()
        log: list[str] = []
        threads: set[int] = set()
        done = asyncio.Event()

        def note(tag: str) -> None:
            log.append(tag)
            threads.add(threading.get_ident())
            if len(log) == 2:
                done.set()

        bh = BottomHalf(note, "bh", context=ctx)
        worker = threading.Thread(
            target=lambda: (bh.schedule(), ctx.schedule_oneshot(note, "oneshot")))
        worker.start()
        await done.wait()
        worker.join()
        bh.delete()
        assert loop is asyncio.get_running_loop()
        return sorted(log), threads

    log, threads = aioqloop.run(main())
    assert log == ["bh", "oneshot"]
    assert threads == {threading.get_ident()}


def test_schedule_oneshot_runs_once(ctx: MainContext) -> None:
    got: list[tuple[Any, ...]] = []
    ctx.schedule_oneshot(lambda *a: got.append(a), "a", 1)
    spin(ctx)
    assert got == [("a", 1)]
    assert [n for n, _, _ in params(MainContext.schedule_oneshot)] == ["callback", "args"]


# -------------------------------------------------------------- *_add functions
def test_add_function_signatures() -> None:
    assert params(aioqloop.timeout_add) == [
        ("interval", POS, EMPTY), ("callback", POS, EMPTY), ("args", VAR, EMPTY),
        ("priority", KW, PRIORITY_DEFAULT), ("context", KW, None)]
    assert params(aioqloop.idle_add) == [
        ("callback", POS, EMPTY), ("args", VAR, EMPTY),
        ("priority", KW, PRIORITY_DEFAULT_IDLE), ("context", KW, None)]
    assert params(aioqloop.fd_add)[:3] == [
        ("fd", POS, EMPTY), ("condition", POS, EMPTY), ("callback", POS, EMPTY)]
    assert params(aioqloop.signal_add)[:2] == [("signum", POS, EMPTY), ("callback", POS, EMPTY)]
    assert params(aioqloop.child_watch_add)[:2] == [("pid", POS, EMPTY), ("callback", POS, EMPTY)]
    for fn in (aioqloop.fd_add, aioqloop.signal_add, aioqloop.child_watch_add):
        assert param(fn, "args").kind is VAR
        assert param(fn, "priority").kind is KW
        assert param(fn, "context").default is None
    assert params(aioqloop.source_remove)[1:] == [("context", POS, None)]


def test_source_remove_and_find_source_by_id_take_id_as_written(ctx: MainContext) -> None:
    # api.md: ``source_remove(id, context=None) -> bool`` and ``find_source_by_id(id)``.
    sid = aioqloop.idle_add(lambda: True, context=ctx)
    try:
        assert ctx.find_source_by_id(id=sid) is not None
        assert aioqloop.source_remove(id=sid, context=ctx) is True
    finally:
        aioqloop.source_remove(sid, ctx)


def test_timeout_add_seconds_args_priority_context(virt: Virtual) -> None:
    got: list[tuple[Any, ...]] = []
    sid = aioqloop.timeout_add(
        1.5, lambda *a: got.append(a) or False, "x", 2, priority=PRIORITY_HIGH, context=virt.ctx)
    src = virt.ctx.find_source_by_id(sid)
    assert isinstance(src, TimeoutSource) and src.priority == PRIORITY_HIGH
    virt.clock.advance(1.4)
    assert spin(virt.ctx) == 0
    virt.clock.advance(0.1)
    assert virt.ctx.iteration(False)
    assert got == [("x", 2)]
    assert virt.ctx.find_source_by_id(sid) is None


def test_idle_add_and_source_remove(ctx: MainContext) -> None:
    got: list[str] = []
    sid = aioqloop.idle_add(lambda a: got.append(a) or True, "i", context=ctx)
    src = ctx.find_source_by_id(sid)
    assert isinstance(src, IdleSource) and src.priority == PRIORITY_DEFAULT_IDLE
    assert ctx.iteration(False) and got == ["i"]
    assert aioqloop.source_remove(sid, ctx) is True
    assert aioqloop.source_remove(sid, context=ctx) is False
    assert src.is_destroyed
    assert spin(ctx) == 0


def test_fd_add_callback_and_removal(ctx: MainContext, pipe: tuple[int, int]) -> None:
    r, w = pipe
    got: list[tuple[Any, ...]] = []
    sid = aioqloop.fd_add(r, IOCondition.IN, lambda *a: got.append(a) or True, "d",
                          priority=PRIORITY_LOW, context=ctx)
    assert ctx.find_source_by_id(sid).priority == PRIORITY_LOW  # type: ignore[union-attr]
    os.write(w, b"x")
    assert ctx.iteration(False)
    assert got == [(r, IOCondition.IN, "d")]
    assert aioqloop.source_remove(sid, ctx) is True


@pytest.mark.timeout(10)
def test_signal_add_and_child_watch_add_return_ids() -> None:
    async def main() -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        loop = asyncio.get_running_loop()
        sig: asyncio.Future[tuple[Any, ...]] = loop.create_future()
        child: asyncio.Future[tuple[Any, ...]] = loop.create_future()
        sid = aioqloop.signal_add(signal.SIGUSR2, lambda *a: sig.set_result(a) or False, "s")
        assert sid > 0
        pid = os.posix_spawn("/bin/sh", ["sh", "-c", "exit 0"], os.environ)
        cid = aioqloop.child_watch_add(pid, lambda *a: child.set_result(a), "c")
        assert cid > 0 and cid != sid
        os.kill(os.getpid(), signal.SIGUSR2)
        got_sig = await sig
        got_child = await child
        assert got_child[0] == pid
        return got_sig, got_child

    got_sig, got_child = aioqloop.run(main())
    assert got_sig == ("s",)
    assert got_child[2:] == ("c",) and os.waitstatus_to_exitcode(got_child[1]) == 0


# ------------------------------------------------------------------- MainContext
def test_main_context_without_loop_is_stand_alone(ctx: MainContext) -> None:
    assert ctx.loop is None
    assert params(MainContext.__init__)[0] == ("loop", POS, None)


def test_main_context_bound_to_a_loop() -> None:
    loop = asyncio.new_event_loop()
    try:
        c = MainContext(loop)
        assert c.loop is loop
        c2 = MainContext(loop=loop)
        assert c2.loop is loop and c2 is not c
    finally:
        loop.close()


def test_default_is_the_running_loops_context() -> None:
    async def main() -> tuple[MainContext, MainContext, asyncio.AbstractEventLoop]:
        return MainContext.default(), aioqloop.get_main_context(), asyncio.get_running_loop()

    d, g, loop = aioqloop.run(main())
    assert d is g and d.loop is loop


@pytest.mark.timeout(10)
def test_default_outside_a_loop_is_the_global_default_context() -> None:
    # g_main_context_default(): outside a running loop every thread gets the main
    # thread's context, created on demand; a worker never gets a loop nobody runs.
    out: dict[str, Any] = {}

    def worker(key: str) -> None:
        out[key] = (MainContext.default(), MainContext.default())

    for key in ("a", "b"):
        t = threading.Thread(target=worker, args=(key,))
        t.start()
        t.join(10)
    a1, a2 = out["a"]
    assert a1 is a2 is out["b"][0]
    assert isinstance(a1, MainContext)
    assert MainContext.default() is a1  # the main thread's own default
    assert asyncio.get_event_loop_policy().get_event_loop() is a1.loop


def test_pending_and_iteration_return_values(ctx: MainContext) -> None:
    assert ctx.pending() is False
    assert ctx.iteration(False) is False
    s = IdleSource()
    s.set_callback(lambda: False)
    s.attach(ctx)
    assert ctx.pending() is True
    assert ctx.iteration(True) is True  # ready: does not block
    assert ctx.pending() is False
    assert params(MainContext.iteration) == [("may_block", POS, True)]


@pytest.mark.timeout(10)
def test_wakeup_from_another_thread_ends_a_blocking_iteration(ctx: MainContext) -> None:
    t = threading.Thread(target=ctx.wakeup)
    t.start()
    assert ctx.iteration(True) is False
    t.join()


def test_iteration_nested_from_a_source_callback(ctx: MainContext) -> None:
    log: list[tuple[str, int]] = []
    inner = IdleSource(priority=PRIORITY_DEFAULT)
    inner.set_callback(lambda: log.append(("inner", aioqloop.main_depth())) or False)

    def outer_cb() -> bool:
        log.append(("outer", aioqloop.main_depth()))
        inner.attach(ctx)
        assert ctx.iteration(False)
        return False

    outer = IdleSource(priority=PRIORITY_DEFAULT)
    outer.set_callback(outer_cb)
    outer.attach(ctx)
    assert ctx.iteration(False)
    assert log == [("outer", 1), ("inner", 2)]


def test_main_depth_and_current_source(ctx: MainContext) -> None:
    assert aioqloop.main_depth() == 0
    assert aioqloop.current_source() is None
    seen: list[tuple[int, Source | None]] = []
    s = IdleSource()
    s.set_callback(lambda: seen.append((aioqloop.main_depth(), aioqloop.current_source())))
    s.attach(ctx)
    ctx.iteration(False)
    assert seen == [(1, s)]
    assert aioqloop.main_depth() == 0 and aioqloop.current_source() is None


def test_invoke_signature() -> None:
    assert params(MainContext.invoke) == [
        ("callback", POS, EMPTY), ("args", VAR, EMPTY), ("priority", KW, PRIORITY_DEFAULT)]


def test_invoke_is_a_direct_call_in_the_owning_thread(ctx: MainContext) -> None:
    got: list[tuple[Any, ...]] = []
    ctx.invoke(lambda *a: got.append(a), 1, 2)
    assert got == [(1, 2)]


def test_invoke_from_a_plain_callback_of_the_loop_is_direct() -> None:
    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        ctx = aioqloop.get_main_context()
        log: list[str] = []
        done = loop.create_future()

        def plain() -> None:  # a call_soon callback: the loop's thread, no task step
            ctx.invoke(log.append, "invoked")
            log.append("after")
            done.set_result(None)

        loop.call_soon(plain)
        await done
        return log

    assert aioqloop.run(main()) == ["invoked", "after"]


def test_invoke_from_a_task_step_is_queued() -> None:
    async def main() -> list[str]:
        ctx = aioqloop.get_main_context()
        log: list[str] = []
        done = asyncio.Event()
        ctx.invoke(lambda: log.append("invoked") or done.set(), priority=PRIORITY_HIGH)
        log.append("after")
        await done.wait()
        return log

    assert aioqloop.run(main()) == ["after", "invoked"]


@pytest.mark.timeout(10)
def test_invoke_from_another_thread_runs_in_the_loop_thread() -> None:
    async def main() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        ctx = aioqloop.get_main_context()
        fut: asyncio.Future[int] = loop.create_future()
        t = threading.Thread(
            target=lambda: ctx.invoke(lambda: fut.set_result(threading.get_ident())))
        t.start()
        ident = await fut
        t.join()
        return ident, threading.get_ident()

    ran_in, loop_thread = aioqloop.run(main())
    assert ran_in == loop_thread


def test_statistics_counts_dispatches_per_source(ctx: MainContext) -> None:
    n = [0]
    s = IdleSource(name="counter")

    def cb() -> bool:
        n[0] += 1
        return True

    s.set_callback(cb)
    sid = s.attach(ctx)
    spin(ctx, 3)
    stats = ctx.statistics()
    rows = [r for r in stats.sources if r.id == sid]
    assert len(rows) == 1
    assert rows[0].dispatches == 3
    assert rows[0].dispatch_time >= 0.0
    s.destroy()


# ---------------------------------------------------------------------- MainLoop
def test_main_loop_signature_and_properties(ctx: MainContext) -> None:
    assert params(MainLoop.__init__)[0] == ("context", POS, None)
    ml = MainLoop(ctx)
    assert ml.context is ctx
    assert ml.is_running() is False


def test_main_loop_run_quit_is_running(ctx: MainContext) -> None:
    ml = MainLoop(ctx)
    seen: list[bool] = []

    def cb() -> bool:
        seen.append(ml.is_running())
        ml.quit()
        return False

    aioqloop.idle_add(cb, context=ctx)
    ml.run()
    assert seen == [True]
    assert ml.is_running() is False


def test_main_loop_drives_the_asyncio_loop() -> None:
    loop = aioqloop.new_event_loop()
    try:
        ml = MainLoop(aioqloop.get_main_context(loop))
        log: list[str] = []

        async def coro() -> None:
            await asyncio.sleep(0)
            log.append("task")
            ml.quit()

        loop.call_soon(log.append, "callback")
        task = loop.create_task(coro())
        ml.run()
        assert task.done()
        assert log == ["callback", "task"]
    finally:
        loop.close()


def test_main_loop_nested_from_a_source_callback(ctx: MainContext) -> None:
    outer = MainLoop(ctx)
    log: list[str] = []

    def cb() -> bool:
        inner = MainLoop(ctx)
        aioqloop.idle_add(lambda: log.append("nested") or inner.quit() or False, context=ctx)
        inner.run()
        log.append("inner returned")
        outer.quit()
        return False

    aioqloop.idle_add(cb, priority=PRIORITY_HIGH, context=ctx)
    outer.run()
    assert log == ["nested", "inner returned"]


@pytest.mark.timeout(10)
def test_main_loop_quit_from_another_thread(ctx: MainContext) -> None:
    ml = MainLoop(ctx)
    started = threading.Event()
    aioqloop.idle_add(lambda: started.set() or False, priority=PRIORITY_HIGH, context=ctx)
    t = threading.Thread(target=lambda: started.wait() and ml.quit())
    t.start()
    ml.run()
    t.join()
    assert not ml.is_running()


# ------------------------------------------------------------------------ Errors
# (The arg-type ignores mark the deliberately wrong types: the refusal is the test.)
@pytest.mark.parametrize("make", [
    lambda: TimeoutSource("1"),  # type: ignore[arg-type]
    lambda: Source(priority="high"),  # type: ignore[arg-type]
    lambda: Source(name=3),  # type: ignore[arg-type]
    lambda: FdSource(object(), IOCondition.IN),  # type: ignore[arg-type]
    lambda: FdSource(0, "IN"),  # type: ignore[arg-type]
    lambda: aioqloop.timeout_add(1, "not callable"),  # type: ignore[arg-type]
    lambda: aioqloop.idle_add(None),  # type: ignore[arg-type]
    lambda: Source().set_callback(42),  # type: ignore[arg-type]
    lambda: Source().set_ready_time("now"),  # type: ignore[arg-type]
    lambda: Source().attach("context"),  # type: ignore[arg-type]
    lambda: Source().add_child_source("child"),  # type: ignore[arg-type]
    lambda: MainContext("loop"),
    lambda: MainLoop("ctx"),  # type: ignore[arg-type]
    lambda: BottomHalf(None),  # type: ignore[arg-type]
], ids=lambda f: "")
def test_wrong_types_raise_type_error(make: Callable[[], Any]) -> None:
    with pytest.raises(TypeError):
        make()


@pytest.mark.parametrize("make", [
    lambda: TimeoutSource(-1),
    lambda: TimeoutSource(math.nan),
    lambda: aioqloop.timeout_add(-0.5, lambda: False),
    lambda: aioqloop.timeout_add(math.nan, lambda: False),
    lambda: FdSource(-1, IOCondition.IN),
    lambda: Source().set_ready_time(math.nan),
], ids=lambda f: "")
def test_bad_values_raise_value_error(make: Callable[[], Any]) -> None:
    with pytest.raises((ValueError, OSError)):
        make()


def test_invalid_fd_raises_os_error_at_the_call(ctx: MainContext, pipe: tuple[int, int]) -> None:
    r, w = pipe
    os.close(r)
    os.close(w)
    with pytest.raises(OSError):
        FdSource(r, IOCondition.IN)
    with pytest.raises(OSError):
        aioqloop.fd_add(r, IOCondition.IN, lambda *a: True, context=ctx)


def test_attaching_an_attached_or_destroyed_source_raises(ctx: MainContext) -> None:
    s = Source()
    s.attach(ctx)
    with pytest.raises(RuntimeError):
        s.attach(ctx)
    s.destroy()
    with pytest.raises(RuntimeError):
        s.attach(ctx)
    d = Source()
    d.destroy()
    with pytest.raises(RuntimeError):
        d.attach(ctx)


def _raise(exc: BaseException) -> Any:
    raise exc


@pytest.mark.parametrize("where", ["callback", "prepare", "check", "dispatch"])
def test_exception_goes_to_the_handler_source_destroyed_loop_keeps_running(
    where: str,
) -> None:
    boom = ValueError(where)

    class Faulty(Source):
        def prepare(self) -> tuple[bool, float | None]:
            if where == "prepare":
                raise boom
            return (True, None)

        def check(self) -> bool:
            if where == "check":
                raise boom
            return True

        def dispatch(self, callback: Any, args: tuple[Any, ...]) -> bool:
            if where == "dispatch":
                raise boom
            return super().dispatch(callback, args)

    async def main() -> tuple[list[dict[str, Any]], Source, list[str]]:
        loop = asyncio.get_running_loop()
        seen = collect_handler(loop)
        log: list[str] = []
        s = Faulty()
        s.set_callback(lambda: _raise(boom))
        s.attach()
        after = asyncio.Event()
        aioqloop.idle_add(lambda: log.append("idle ran") or after.set() or False)
        await after.wait()
        await asyncio.sleep(0)
        log.append("loop alive")
        return seen, s, log

    seen, s, log = aioqloop.run(main())
    assert s.is_destroyed
    assert log == ["idle ran", "loop alive"]
    assert len(seen) == 1
    assert seen[0]["exception"] is boom
    assert seen[0]["source"] is s


def test_exception_in_a_hand_iterated_loop_bound_context_goes_to_handler() -> None:
    loop = aioqloop.new_event_loop()
    try:
        seen = collect_handler(loop)
        ctx = aioqloop.get_main_context(loop)
        boom = RuntimeError("x")
        sid = aioqloop.idle_add(lambda: _raise(boom), context=ctx)
        src = ctx.find_source_by_id(sid)
        ok = IdleSource()
        ok.set_callback(lambda: False)
        ok.attach(ctx)
        spin(ctx, 3)
        assert src is not None and src.is_destroyed
        assert ok.is_destroyed  # the other source still ran
        assert [c["exception"] for c in seen] == [boom]
        assert seen[0]["source"] is src
    finally:
        loop.close()


# ------------------------------------------------- priorities across asyncio / tasks
def test_asyncio_callbacks_run_at_priority_default() -> None:
    # Stock base only: docs/tutorial/uvloop.md documents that a context
    # iteration there is a call_soon, FIFO with uvloop's callbacks.
    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        log: list[str] = []
        done = loop.create_future()
        aioqloop.idle_add(lambda: log.append("low") or done.set_result(None) or False,
                          priority=PRIORITY_LOW)
        aioqloop.idle_add(lambda: log.append("high") or False, priority=PRIORITY_HIGH)
        n = [0]

        def chain() -> None:
            log.append("cb")
            n[0] += 1
            if n[0] < 3:
                loop.call_soon(chain)

        loop.call_soon(chain)
        await done
        return log

    assert aioqloop.run(main()) == ["high", "cb", "cb", "cb", "low"]


@pytest.mark.parametrize("base", ["asyncio"])  # uvloop: ordered against sources only
@pytest.mark.parametrize(("priority", "expected"), [
    (None, ["task", "idle"]),
    (PRIORITY_LOW, ["idle", "task"]),
])
def test_task_set_priority_orders_task_steps(
    priority: int | None, expected: list[str], base: str
) -> None:
    async def main() -> tuple[list[str], int, int]:
        loop = asyncio.get_running_loop()
        log: list[str] = []

        async def body() -> None:
            await asyncio.sleep(0)
            log.append("task")

        task: Any = loop.create_task(body())
        before = task.get_priority()
        if priority is not None:
            task.set_priority(priority)
        idled = asyncio.Event()
        aioqloop.idle_add(lambda: log.append("idle") or idled.set() or False,
                          priority=PRIORITY_DEFAULT_IDLE)
        after = task.get_priority()
        await task
        await idled.wait()
        return log, before, after

    log, before, after = aioqloop.run(main(), base=base)
    assert before == PRIORITY_DEFAULT
    assert after == (PRIORITY_DEFAULT if priority is None else priority)
    assert log == expected


# ============================================================ §2 Loops, policy, running
def test_new_event_loop_signature_and_bases() -> None:
    assert params(aioqloop.new_event_loop) == [
        ("base", KW, "asyncio"), ("clock", KW, None), ("bql", KW, None)]
    bases = ["asyncio"]
    try:
        import uvloop  # noqa: F401

        bases.append("uvloop")
    except ImportError:  # pragma: no cover - uvloop is a test dependency
        pass
    for base in bases:
        loop = aioqloop.new_event_loop(base=base)
        try:
            assert isinstance(loop, asyncio.AbstractEventLoop)
            assert loop.run_until_complete(asyncio.sleep(0, "ok")) == "ok"
            assert aioqloop.get_main_context(loop).loop is loop
        finally:
            loop.close()
    with pytest.raises(ValueError):
        aioqloop.new_event_loop(base="tk")


def test_run_signature_and_behaviour() -> None:
    ps = params(aioqloop.run)
    assert ps[:3] == [("coro", POS, EMPTY), ("base", KW, "asyncio"), ("debug", KW, None)]
    assert ps[3][1] is P.VAR_KEYWORD

    async def main() -> tuple[bool, float]:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await asyncio.sleep(3600)
        return loop.get_debug(), loop.time() - t0

    dbg, slept = aioqloop.run(main(), debug=True, clock=VirtualClock())
    assert dbg is True
    assert slept == pytest.approx(3600.0)


def test_get_main_context_signature_and_identity() -> None:
    assert params(aioqloop.get_main_context) == [("loop", POS, None)]
    loop = aioqloop.new_event_loop()
    try:
        c = aioqloop.get_main_context(loop)
        assert isinstance(c, MainContext)
        assert aioqloop.get_main_context(loop) is c
        assert aioqloop.get_main_context(loop=loop) is c
    finally:
        loop.close()


def test_event_loop_policy_signature() -> None:
    assert params(aioqloop.EventLoopPolicy.__init__) == [("base", POS, "asyncio")]
    policy = aioqloop.EventLoopPolicy(base="asyncio")
    assert isinstance(policy, asyncio.AbstractEventLoopPolicy)
    loop = policy.new_event_loop()
    try:
        assert aioqloop.get_main_context(loop).loop is loop
    finally:
        loop.close()


def test_usable_with_asyncio_runner() -> None:
    if sys.version_info >= (3, 11):
        runner_cls: Any = asyncio.Runner
    else:  # pragma: no cover - Python 3.10
        from backports.asyncio.runner import (  # type: ignore[import-not-found]
            Runner as runner_cls,
        )

    async def main() -> MainContext:
        return MainContext.default()

    with runner_cls(loop_factory=aioqloop.new_event_loop) as runner:
        ctx = runner.run(main())
        assert ctx is aioqloop.get_main_context(runner.get_loop())


@pytest.mark.skipif(sys.version_info < (3, 12), reason="asyncio.run(loop_factory=) is 3.12+")
def test_usable_with_asyncio_run_loop_factory() -> None:  # pragma: no cover - 3.12+
    async def main() -> int:
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        aioqloop.idle_add(lambda: done.set_result(7) or False)
        return await done

    assert asyncio.run(main(), loop_factory=aioqloop.new_event_loop) == 7  # type: ignore[call-arg]


# ================================================================== §3 The big lock
def test_biglock_signatures_and_process_wide_instance() -> None:
    assert isinstance(aioqloop.bql, BigLock)
    BigLock()  # no required arguments
    assert params(BigLock.acquire_sync) == [("blocking", POS, True), ("timeout", POS, -1)]
    assert params(BigLock.acquire) == []
    for name in ("release", "locked", "held", "assert_held", "guard", "released",
                 "statistics"):
        assert params(getattr(BigLock, name)) == [], name
    assert [n for n, _, _ in params(BigLock.run_in_thread)] == ["fn", "args"]
    assert inspect.iscoroutinefunction(BigLock.acquire)
    assert inspect.iscoroutinefunction(BigLock.run_in_thread)


def test_biglock_async_with_and_acquire_release() -> None:
    async def main() -> None:
        lock = BigLock()
        assert not lock.locked() and not lock.held()
        async with lock:
            assert lock.locked() and lock.held()
            lock.assert_held()
        assert not lock.locked()
        assert await lock.acquire() is True
        assert lock.held()
        lock.release()
        assert not lock.locked()

    aioqloop.run(main())


def test_biglock_is_not_recursive() -> None:
    async def main() -> None:
        lock = BigLock()
        async with lock:
            with pytest.raises(RuntimeError):
                await lock.acquire()
            with pytest.raises(RuntimeError):
                async with lock:
                    pass
        lock.acquire_sync()
        try:
            with pytest.raises(RuntimeError):
                lock.acquire_sync()
        finally:
            lock.release()

    aioqloop.run(main())
    lock = BigLock()
    with lock:
        with pytest.raises(RuntimeError):
            lock.acquire_sync(blocking=False)
    assert not lock.locked()


def test_biglock_assert_held_raises_when_not_held() -> None:
    lock = BigLock()
    with pytest.raises((AssertionError, RuntimeError)):
        lock.assert_held()


def test_biglock_with_inside_a_coroutine_is_owned_by_the_task() -> None:
    async def main() -> tuple[bool, bool, bool]:
        lock = BigLock()
        other_sees: list[bool] = []
        with lock:  # uncontended: succeeds without waiting
            assert lock.held()

            async def other() -> None:
                other_sees.append(lock.held())

            await asyncio.get_running_loop().create_task(other())
            await asyncio.sleep(0)
            held_after_await = lock.held()
        return other_sees[0], held_after_await, lock.locked()

    other_held, held_after_await, still_locked = aioqloop.run(main())
    assert other_held is False  # another task on the same thread does not own it
    assert held_after_await is True
    assert still_locked is False


@pytest.mark.timeout(10)
def test_biglock_sync_use_in_threads_and_timeout() -> None:
    lock = BigLock()
    out: dict[str, Any] = {}
    lock.acquire_sync()
    try:

        def worker() -> None:
            out["nonblocking"] = lock.acquire_sync(blocking=False)
            out["timeout"] = lock.acquire_sync(timeout=0.01)
            out["held_in_thread"] = lock.held()

        t = threading.Thread(target=worker)
        t.start()
        t.join()
    finally:
        lock.release()
    assert out == {"nonblocking": False, "timeout": False, "held_in_thread": False}

    def taker() -> None:
        with lock:
            out["inside"] = lock.held()

    t = threading.Thread(target=taker)
    t.start()
    t.join()
    assert out["inside"] is True and not lock.locked()


@pytest.mark.timeout(10)
def test_biglock_loop_thread_acquire_sync_raises_instead_of_waiting_for_its_own_task() -> None:
    async def main() -> None:
        lock = BigLock()
        loop = asyncio.get_running_loop()
        taken = asyncio.Event()
        release = asyncio.Event()

        async def holder() -> None:
            async with lock:
                taken.set()
                await release.wait()

        task = loop.create_task(holder())
        await taken.wait()
        result: list[Any] = []

        def plain() -> None:  # loop thread, no task: must not deadlock
            try:
                result.append(lock.acquire_sync())
            except RuntimeError as exc:
                result.append(exc)
            release.set()

        loop.call_soon(plain)
        await task
        assert len(result) == 1 and isinstance(result[0], RuntimeError)

    aioqloop.run(main())


@pytest.mark.timeout(10)
def test_biglock_tasks_and_threads_share_one_fifo_queue() -> None:
    async def main() -> list[str]:
        lock = BigLock()
        loop = asyncio.get_running_loop()
        order: list[str] = []
        await lock.acquire()

        async def task_waiter(tag: str) -> None:
            async with lock:
                order.append(tag)

        t1 = loop.create_task(task_waiter("task1"))
        await asyncio.sleep(0)
        queued = threading.Event()

        def thread_waiter() -> None:
            queued.set()
            with lock:
                order.append("thread")

        th = threading.Thread(target=thread_waiter)
        th.start()
        await loop.run_in_executor(None, queued.wait)
        # Wait until the thread is really queued, observed through the statistics.
        while lock.statistics().waiters < 2:
            await asyncio.sleep(0.001)
        t2 = loop.create_task(task_waiter("task2"))
        await asyncio.sleep(0)
        lock.release()
        await t1
        await loop.run_in_executor(None, th.join)
        await t2
        return order

    assert aioqloop.run(main()) == ["task1", "thread", "task2"]


def test_biglock_cancelled_waiter_does_not_leak() -> None:
    async def main() -> None:
        lock = BigLock()
        await lock.acquire()
        waiter = asyncio.get_running_loop().create_task(lock.acquire())
        await asyncio.sleep(0)
        waiter.cancel()
        lock.release()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert not lock.locked()

    aioqloop.run(main())


def test_biglock_guard_sync_and_async() -> None:
    lock = BigLock()
    with lock.guard():
        assert lock.held()
        with lock.guard():  # already held: no re-acquire, no release
            assert lock.held()
        assert lock.held()
    assert not lock.locked()

    async def main() -> None:
        async with lock.guard():
            assert lock.held()
            async with lock.guard():
                assert lock.held()
            assert lock.held()
        assert not lock.locked()

    aioqloop.run(main())


@pytest.mark.timeout(10)
def test_biglock_released_sync_and_async() -> None:
    lock = BigLock()
    with lock:
        with lock.released():
            assert not lock.locked()
            t = threading.Thread(target=lambda: lock.acquire_sync() and lock.release())
            t.start()
            t.join()
        assert lock.held()
    assert not lock.locked()

    async def main() -> None:
        async with lock:
            async with lock.released():
                assert not lock.locked()
            assert lock.held()

    aioqloop.run(main())


def test_biglock_statistics() -> None:
    lock = BigLock()
    with lock:
        pass
    with lock:
        pass
    st = lock.statistics()
    assert st.acquisitions == 2
    assert st.contended_acquisitions == 0
    assert st.total_hold_time >= st.max_hold_time >= 0.0
    assert st.total_wait_time >= 0.0
    assert st.locked is False and st.owner is None and st.waiters == 0


@pytest.mark.timeout(10)
def test_biglock_run_in_thread() -> None:
    async def main() -> tuple[Any, bool, int]:
        lock = BigLock()

        def fn(a: int, b: int) -> tuple[int, bool, int]:
            return a + b, lock.held(), threading.get_ident()

        value, held, ident = await lock.run_in_thread(fn, 2, 3)
        assert not lock.locked()
        return value, held, ident

    value, held, ident = aioqloop.run(main())
    assert value == 5 and held is True and ident != threading.get_ident()


@pytest.mark.timeout(10)
def test_loop_with_bql_dispatches_with_the_lock_held_and_releases_it_while_waiting() -> None:
    lock = BigLock()

    async def main() -> tuple[list[bool], bool]:
        loop = asyncio.get_running_loop()
        held: list[bool] = []
        fut = loop.create_future()
        aioqloop.idle_add(lambda: held.append(lock.held()) or fut.set_result(None) or False)
        await fut
        # The loop waits for an executor thread: the lock is free for that thread.
        got = await loop.run_in_executor(None, lambda: lock.acquire_sync(timeout=5)
                                         and (lock.release() or True))
        return held, got

    held, got = aioqloop.run(main(), bql=lock)
    assert held == [True]
    assert got is True


# ============================================================= §4 GLib compatibility
def test_glib_names_exist() -> None:
    for name in ("MainLoop", "MainContext", "Source", "Idle", "Timeout", "timeout_add",
                 "timeout_add_seconds", "idle_add", "source_remove", "unix_fd_add_full",
                 "unix_signal_add", "child_watch_add", "main_depth", "main_current_source",
                 "get_monotonic_time", "PRIORITY_HIGH", "PRIORITY_DEFAULT",
                 "PRIORITY_HIGH_IDLE", "PRIORITY_DEFAULT_IDLE", "PRIORITY_LOW",
                 "SOURCE_CONTINUE", "SOURCE_REMOVE", "IOCondition"):
        assert hasattr(GLib, name), name
    for name in ("default", "iteration", "pending", "find_source_by_id", "invoke_full",
                 "wakeup"):
        assert callable(getattr(GLib.MainContext, name)), name
    for name in ("attach", "destroy", "is_destroyed", "set_callback", "get_context", "get_id",
                 "set_ready_time", "get_ready_time", "get_time", "add_unix_fd",
                 "query_unix_fd", "add_child_source", "dispatch", "finalize"):
        assert callable(getattr(GLib.Source, name)), name
    assert GLib.PRIORITY_DEFAULT == 0 and GLib.SOURCE_REMOVE is False


@pytest.mark.timeout(10)
def test_glib_mainloop_from_plain_sync_code_in_ms() -> None:
    def worker() -> None:  # a fresh thread: no asyncio loop anywhere
        loop = GLib.MainLoop()
        log: list[Any] = []
        t0 = GLib.get_monotonic_time()

        def tick(tag: str) -> bool:
            log.append((tag, GLib.main_depth()))
            return GLib.SOURCE_REMOVE

        GLib.idle_add(tick, "idle")
        GLib.timeout_add(20, lambda: log.append(("ms", GLib.get_monotonic_time() - t0))
                         or loop.quit() or False)
        loop.run()
        out["log"] = log
        out["ctx"] = loop.get_context()

    out: dict[str, Any] = {}
    t = threading.Thread(target=worker)
    t.start()
    t.join()
    log = out["log"]
    assert log[0] == ("idle", 1)
    assert log[1][0] == "ms" and log[1][1] >= 20_000  # microseconds: at least 20 ms passed
    assert isinstance(out["ctx"], GLib.MainContext)


def test_glib_custom_source_prepare_in_ms_and_properties() -> None:
    clock = VirtualClock(10.0)
    loop = aioqloop.new_event_loop(clock=clock)
    try:
        log: list[Any] = []

        class Ticker(GLib.Source):
            def prepare(self) -> tuple[bool, int]:
                return (False, 1000)  # milliseconds

            def check(self) -> bool:
                return False

            def dispatch(self, callback: Any, args: Any) -> bool:
                log.append(("dispatch", self.get_time()))
                return bool(callback(*args))

        async def main() -> None:
            gctx = GLib.MainContext.default()
            src = Ticker()
            src.priority = GLib.PRIORITY_HIGH
            assert src.priority == GLib.PRIORITY_HIGH
            assert src.can_recurse is False
            fired = asyncio.Event()
            src.set_callback(lambda *a: log.append(("cb", a)) or fired.set() or False, "d")
            sid = src.attach(gctx)
            assert src.get_id() == sid > 0
            assert src.get_context() == gctx
            assert gctx.find_source_by_id(sid) is src
            src.set_ready_time(GLib.get_monotonic_time() + 2_500_000)  # µs: 2.5 s
            assert src.get_ready_time() == GLib.get_monotonic_time() + 2_500_000
            await asyncio.sleep(2.4)
            assert log == []
            await fired.wait()  # the clock jumps to the ready time
            assert src.is_destroyed()

        loop.run_until_complete(main())
        assert log[0][0] == "dispatch"
        assert log[0][1] == 12_500_000  # get_time(): µs of the loop clock
        assert log[1] == ("cb", ("d",))
    finally:
        loop.close()


def test_glib_idle_timeout_objects_and_source_remove() -> None:
    async def main() -> list[str]:
        log: list[str] = []
        done = asyncio.Event()
        idle = GLib.Idle()
        idle.set_callback(lambda *a: log.append("Idle") or False)
        idle.attach()
        t = GLib.Timeout(5)
        t.set_callback(lambda *a: log.append("Timeout") or done.set() or False)
        t.attach()
        sid = GLib.timeout_add_seconds(100, lambda: log.append("never"))
        assert GLib.source_remove(sid) is True
        await done.wait()
        return log

    assert aioqloop.run(main(), clock=VirtualClock()) == ["Idle", "Timeout"]


@pytest.mark.timeout(10)
def test_glib_unix_fd_signal_child_watch_positional_forms() -> None:
    async def main() -> dict[str, tuple[Any, ...]]:
        loop = asyncio.get_running_loop()
        got: dict[str, tuple[Any, ...]] = {}
        done = asyncio.Event()

        def note(key: str, *a: Any) -> bool:
            got[key] = a
            if len(got) == 3:
                done.set()
            return GLib.SOURCE_REMOVE

        r, w = os.pipe()
        try:
            GLib.unix_fd_add_full(GLib.PRIORITY_DEFAULT, r, GLib.IOCondition.IN,
                                  lambda *a: note("fd", *a), "fdata")
            GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGUSR1,
                                 lambda *a: note("sig", *a), "sdata")
            pid = os.posix_spawn("/bin/sh", ["sh", "-c", "exit 4"], os.environ)
            GLib.child_watch_add(GLib.PRIORITY_DEFAULT, pid,
                                 lambda *a: note("child", *a), "cdata")
            os.write(w, b"x")
            os.kill(os.getpid(), signal.SIGUSR1)
            await done.wait()
            got["pid"] = (pid, r)
        finally:
            os.close(r)
            os.close(w)
        assert loop.is_running()
        return got

    got = aioqloop.run(main())
    pid, r = got["pid"]
    assert got["fd"] == (r, GLib.IOCondition.IN, "fdata")
    assert got["sig"] == ("sdata",)
    assert got["child"][0] == pid and got["child"][2:] == ("cdata",)
    assert os.waitstatus_to_exitcode(got["child"][1]) == 4


def test_glib_invoke_full_main_current_source_and_wakeup() -> None:
    async def main() -> list[Any]:
        ctx = GLib.MainContext.default()
        out: list[Any] = []
        done = asyncio.Event()

        def in_source() -> bool:
            out.append(GLib.main_current_source())
            out.append(GLib.main_depth())
            done.set()
            return False

        sid = GLib.idle_add(in_source)
        ctx.invoke_full(GLib.PRIORITY_HIGH, lambda *a: out.append(a) or False, "inv")
        ctx.wakeup()
        await done.wait()
        out.append(sid)
        return out

    out = aioqloop.run(main())
    assert out[0] == ("inv",)
    src, depth, sid = out[1], out[2], out[3]
    assert isinstance(src, GLib.Source) and src.get_id() == sid
    assert depth == 1
    assert GLib.main_current_source() is None and GLib.main_depth() == 0


def test_glib_mainloop_run_inside_an_aioqloop_program() -> None:
    # Inside an aioqloop program, GLib code that runs a (nested) main loop from a
    # callback works: the nested loop keeps dispatching the same context.
    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        log: list[str] = []
        done = loop.create_future()

        def callback() -> None:
            ml = GLib.MainLoop()
            GLib.timeout_add(1, lambda: log.append("timeout") or ml.quit() or False)
            ml.run()
            log.append("returned")
            done.set_result(None)

        loop.call_soon(callback)
        await done
        return log

    assert aioqloop.run(main()) == ["timeout", "returned"]


# =================================================================== §5 Testing
def test_pytest11_entry_point_is_registered() -> None:
    eps = importlib.metadata.entry_points(group="pytest11")
    names = {ep.name: ep.value for ep in eps}
    assert "aioqloop" in names
    module = next(ep for ep in eps if ep.name == "aioqloop").load()
    for fixture in ("main_context", "bql", "virtual_clock"):
        assert hasattr(module, fixture), fixture


@pytest.mark.aioqloop
@pytest.mark.asyncio
async def test_fixtures_main_context_and_bql(main_context: MainContext, bql: BigLock) -> None:
    assert main_context is aioqloop.get_main_context()
    assert isinstance(bql, BigLock) and bql is not aioqloop.bql
    fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    aioqloop.idle_add(lambda: fut.set_result("ran") or False, context=main_context)
    assert await fut == "ran"


@pytest.mark.aioqloop(virtual_clock=True)
@pytest.mark.asyncio
async def test_fixture_virtual_clock_jumps_when_idle(virtual_clock: VirtualClock) -> None:
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await asyncio.sleep(86_400)
    assert loop.time() - t0 == pytest.approx(86_400)
    assert virtual_clock.time() == loop.time()


def test_virtual_clock_jumps_to_the_next_deadline_when_idle() -> None:
    clock = VirtualClock()
    loop = aioqloop.new_event_loop(clock=clock)
    try:
        fired: list[float] = []

        async def main() -> None:
            done = asyncio.Event()
            aioqloop.timeout_add(500.0, lambda: fired.append(loop.time()) or done.set() or False)
            await done.wait()

        loop.run_until_complete(main())
        assert fired == [pytest.approx(500.0)]
        assert clock.time() == loop.time()
    finally:
        loop.close()


def test_virtual_clock_advance_steps_manually() -> None:
    clock = VirtualClock(autojump=False)
    loop = aioqloop.new_event_loop(clock=clock)
    try:
        t0 = loop.time()
        clock.advance(2.5)
        assert loop.time() == pytest.approx(t0 + 2.5)
        assert params(VirtualClock.advance) == [("seconds", POS, EMPTY)]
        with pytest.raises(ValueError):
            clock.advance(-1)
    finally:
        loop.close()


@pytest.mark.timeout(10)
def test_virtual_clock_jumps_for_a_nested_main_loop() -> None:
    # A nested MainLoop.run() (nestable from a callback, §1) waiting for a timeout is an
    # idle loop: the virtual clock must jump to the deadline rather than wait forever.
    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        log: list[str] = []
        done = loop.create_future()

        def callback() -> None:
            ml = MainLoop(aioqloop.get_main_context())
            aioqloop.timeout_add(5.0, lambda: log.append("timeout") or ml.quit() or False)
            # Safety net so a regression fails instead of hanging: quit after 1 real s.
            guard = threading.Timer(1.0, ml.quit)
            guard.start()
            ml.run()
            guard.cancel()
            done.set_result(None)

        loop.call_soon(callback)
        await done
        return log

    assert aioqloop.run(main(), clock=VirtualClock()) == ["timeout"]


def test_glib_source_fds_children_and_timeout_add_priority() -> None:
    async def main() -> list[Any]:
        out: list[Any] = []
        done = asyncio.Event()
        r, w = os.pipe()
        try:
            parent = GLib.Source()
            tag = parent.add_unix_fd(r, GLib.IOCondition.IN)
            child = GLib.Idle()
            child.set_callback(lambda *a: out.append("child") or False)
            parent.add_child_source(child)

            def parent_cb(*a: Any) -> bool:
                out.append(("parent", parent.query_unix_fd(tag)))
                done.set()
                return False

            parent.set_callback(parent_cb)
            parent.attach()
            os.write(w, b"x")
            await done.wait()
            assert parent.is_destroyed()
        finally:
            os.close(r)
            os.close(w)
        got: list[tuple[Any, ...]] = []
        fired = asyncio.Event()
        sid = GLib.timeout_add(10, lambda *d: got.append(d) or fired.set() or False, "a", "b",
                               priority=GLib.PRIORITY_HIGH)
        src = GLib.MainContext.default().find_source_by_id(sid)
        assert src is not None and src.priority == GLib.PRIORITY_HIGH
        await fired.wait()
        out.append(got)
        return out

    out = aioqloop.run(main(), clock=VirtualClock())
    assert ("parent", GLib.IOCondition.IN) in out
    assert out[-1] == [("a", "b")]


def test_exception_in_finalize_goes_to_the_handler() -> None:
    loop = aioqloop.new_event_loop()
    try:
        seen = collect_handler(loop)
        boom = KeyError("fin")

        class Bad(Source):
            def finalize(self) -> None:
                raise boom

        s = Bad()
        s.attach(aioqloop.get_main_context(loop))
        s.destroy()
        assert [(c["exception"], c["source"]) for c in seen] == [(boom, s)]
    finally:
        loop.close()


def test_main_loop_default_context_is_the_running_loops() -> None:
    async def main() -> bool:
        return MainLoop().context is aioqloop.get_main_context()

    assert aioqloop.run(main())
