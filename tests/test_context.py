"""`MainContext`: GLib's mainloop.c scenarios, iteration rules, threads and running loops."""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from typing import Any

import pytest
from conftest import LOOP_KINDS, HandlerLog, VirtualContext, context_for, iterate, recorder, run_in

import aioqloop
from aioqloop import (
    PRIORITY_DEFAULT,
    PRIORITY_HIGH,
    PRIORITY_LOW,
    IdleSource,
    MainContext,
    MainLoop,
    Source,
    TimeoutSource,
    current_source,
    idle_add,
    main_depth,
    source_remove,
)

DEADLINE = 10.0


def idle(ctx: MainContext, log: list[Any], tag: Any, *, priority: int = PRIORITY_DEFAULT,
         result: bool = True) -> IdleSource:
    src = IdleSource(priority=priority, name=str(tag))
    src.set_callback(recorder(log, tag, result))
    src.attach(ctx)
    return src


class ReadySource(Source):
    """A custom source that is ready while ``self.go`` is set; counts its hook calls."""

    def __init__(self, *, priority: int = PRIORITY_DEFAULT, go: bool = True) -> None:
        super().__init__(priority=priority)
        self.go = go
        self.prepares = 0
        self.checks = 0

    def prepare(self) -> tuple[bool, float | None]:
        self.prepares += 1
        return (self.go, None)

    def check(self) -> bool:
        self.checks += 1
        return self.go


# --------------------------------------------------------------------- composition
def test_a_context_is_its_core_and_owns_its_parts() -> None:
    # One base, the core (compiled or the pure engine's twin); the source set and the
    # dispatcher are objects the context makes and owns, not classes it derives from.
    from aioqloop import _engine
    from aioqloop._contextcore import _PyCore
    from aioqloop._dispatch import Dispatcher
    from aioqloop._fdpoll import FdPoller
    from aioqloop._sourceset import SourceSet
    from aioqloop._waker import Waker

    core = _PyCore if _engine.core is None else _engine.core.ContextCore
    assert MainContext.__bases__ == (core,)
    assert SourceSet not in MainContext.__mro__ and Dispatcher not in MainContext.__mro__
    # The parts declare what they hold: nothing is kept on them by accident.
    assert SourceSet.__slots__ == ("_ctx", "fd_generation")
    assert Dispatcher.__slots__ == ("_ctx",)
    a, b = MainContext(_driver="standalone"), MainContext(_driver="standalone")
    try:
        for ctx in (a, b):
            assert isinstance(ctx._set, SourceSet) and ctx._set._ctx is ctx
            assert isinstance(ctx._dispatcher, Dispatcher) and ctx._dispatcher._ctx is ctx
            assert isinstance(ctx._fds, FdPoller) and isinstance(ctx._waker, Waker)
        for part in ("_set", "_dispatcher", "_fds", "_waker", "_hand"):
            assert getattr(a, part) is not getattr(b, part), part
    finally:
        a.close()
        b.close()


def test_the_core_reaches_the_parts_the_context_holds(ctx: MainContext) -> None:
    # Both engines go through ctx._set and ctx._dispatcher, so a part replaced on one
    # context is the one used: inserting and removing a tree, and the blocking of a
    # non-recursive parent with a child while it dispatches.
    from aioqloop._dispatch import Dispatcher
    from aioqloop._sourceset import SourceSet

    calls: list[str] = []

    class Set(SourceSet):
        __slots__ = ()

        def insert_tree(self, src: Source) -> None:
            calls.append(f"insert {src.name}")
            super().insert_tree(src)

        def remove(self, src: Source) -> None:
            calls.append(f"remove {src.name}")
            super().remove(src)

    class Disp(Dispatcher):
        __slots__ = ()

        def block(self, src: Source) -> None:
            calls.append(f"block {src.name}")
            super().block(src)

    ctx._set = Set(ctx)
    ctx._dispatcher = Disp(ctx)
    parent, child = ReadySource(), ReadySource(go=False)
    parent.name, child.name = "parent", "child"
    parent.add_child_source(child)
    seen: list[bool] = []
    parent.set_callback(lambda: seen.append(child._blocked) or False)
    parent.attach(ctx)
    assert ctx.iteration(False)
    assert seen == [True]  # the child was blocked with its dispatching parent
    # the parent returned False: destroyed, its child with it (children go first)
    assert calls == ["insert parent", "insert child", "block parent", "block child",
                     "remove parent", "remove child"]
    assert parent.is_destroyed and child.is_destroyed


# --------------------------------------------------------------------------- basic


def test_fresh_context_has_nothing_to_do(ctx: MainContext) -> None:
    assert ctx.pending() is False
    assert ctx.iteration(False) is False
    assert ctx.statistics().iterations == 0


def test_attach_find_destroy(ctx: MainContext) -> None:
    log: list[str] = []
    src = Source()
    src.set_callback(recorder(log, "x"))
    sid = src.attach(ctx)
    assert sid > 0
    assert src.id == sid
    assert src.context is ctx
    assert ctx.find_source_by_id(sid) is src
    src.destroy()
    assert src.is_destroyed
    assert ctx.find_source_by_id(sid) is None
    assert src.context is ctx  # like g_source_get_context after destroy
    src.destroy()  # idempotent
    assert log == []


def test_source_remove_once(ctx: MainContext) -> None:
    sid = idle_add(lambda: True, context=ctx)
    assert source_remove(sid, ctx) is True
    assert source_remove(sid, ctx) is False
    assert ctx.pending() is False


def test_remove_invalid_id(ctx: MainContext) -> None:
    assert source_remove(987654, ctx) is False
    assert ctx.find_source_by_id(987654) is None


def test_ids_positive_and_unique(ctx: MainContext) -> None:
    ids = [idle_add(lambda: False, context=ctx) for _ in range(300)]
    assert all(i > 0 for i in ids)
    assert len(set(ids)) == len(ids)
    # Destroyed ids are not found again; fresh ids never collide with live ones.
    for i in ids[::2]:
        assert source_remove(i, ctx)
    more = [idle_add(lambda: False, context=ctx) for _ in range(300)]
    live = set(ids[1::2]) | set(more)
    assert len(live) == len(ids[1::2]) + len(more)
    # All of them run (and remove themselves) like mainloop/overflow.
    while ctx.iteration(False):
        pass
    assert all(ctx.find_source_by_id(i) is None for i in live)


def test_ids_skip_ids_in_use_on_wrap(ctx: MainContext) -> None:
    # mainloop/overflow: next id near the 32-bit limit; ids stay > 0 and unique.
    keep = IdleSource()
    keep.set_callback(lambda: True)
    first = keep.attach(ctx)
    ctx._next_id = 0xFFFFFFFE  # white-box: GLib's g_main_context_new_with_next_id
    ids = [idle_add(lambda: False, context=ctx) for _ in range(5)]
    assert ids[:2] == [0xFFFFFFFE, 0xFFFFFFFF]
    assert 0 not in ids and first not in ids
    assert len(set(ids)) == 5


@pytest.mark.parametrize("mode", ["same", "different", "threads"])
def test_nsources(ctx: MainContext, mode: str) -> None:
    n = 5000
    rng = random.Random(1234)
    calls: list[int] = []
    sources: list[IdleSource] = []

    def make(i: int) -> IdleSource:
        prio = i % 100 if mode == "different" else PRIORITY_DEFAULT
        src = IdleSource(priority=prio)
        src.set_callback(calls.append, i)
        return src

    if mode == "threads":
        lock = threading.Lock()

        def worker(k: int) -> None:
            local = [make(i) for i in range(k, n, 4)]
            for s in local:
                s.attach(ctx)
            with lock:
                sources.extend(local)

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    else:
        for i in range(n):
            src = make(i)
            src.attach(ctx)
            sources.append(src)
    assert len(sources) == n
    for s in sources:
        assert ctx.find_source_by_id(s.id) is s
    rng.shuffle(sources)
    for s in sources:
        sid = s.id
        s.destroy()
        assert ctx.find_source_by_id(sid) is None
    assert calls == []
    assert ctx.pending() is False
    assert ctx.iteration(False) is False


def test_idle_once(ctx: MainContext) -> None:
    log: list[int] = []
    src = idle(ctx, log, 1, result=False)
    assert iterate(ctx, 5) == 1
    assert log == [1]
    assert src.is_destroyed


def test_timeout_once(vctx: VirtualContext) -> None:
    log: list[float] = []
    src = TimeoutSource(0.05)
    src.set_callback(lambda: log.append(vctx.now()) or False)
    src.attach(vctx.ctx)
    assert iterate(vctx.ctx, 3) == 0
    vctx.advance(0.05)
    assert iterate(vctx.ctx, 3) == 1
    assert log == [1000.05]
    assert src.is_destroyed
    vctx.advance(1.0)
    assert iterate(vctx.ctx, 3) == 0


# ------------------------------------------------------------------- priorities


def test_priorities(ctx: MainContext) -> None:
    log: list[str] = []
    a = idle(ctx, log, "a", priority=1)
    b = idle(ctx, log, "b", priority=0)
    assert iterate(ctx, 3) == 3
    assert log == ["b", "b", "b"]
    b.destroy()
    log.clear()
    assert iterate(ctx, 2) == 2
    assert log == ["a", "a"]
    a.destroy()
    assert ctx.pending() is False


def test_attach_order_within_priority(ctx: MainContext) -> None:
    log: list[int] = []
    for i in range(6):
        idle(ctx, log, i, priority=PRIORITY_DEFAULT)
    idle(ctx, log, "low", priority=PRIORITY_LOW)
    ctx.iteration(False)
    ctx.iteration(False)
    assert log == [0, 1, 2, 3, 4, 5] * 2


def test_set_priority_moves_source_to_end_of_its_new_list(ctx: MainContext) -> None:
    # gmain.c's set_priority removes the source and adds it back at the tail.
    log: list[str] = []
    a = idle(ctx, log, "a")
    idle(ctx, log, "b")
    idle(ctx, log, "c")
    a.priority = PRIORITY_HIGH
    ctx.iteration(False)
    assert log == ["a"]
    a.priority = PRIORITY_DEFAULT
    log.clear()
    ctx.iteration(False)
    assert log == ["b", "c", "a"]


def test_prepare_timeout_zero_timeout_at_odd_priority(ctx: MainContext) -> None:
    # mainloop/prepare-timeout: a zero timeout at priority 666 is ready at once.
    log: list[str] = []
    src = TimeoutSource(0, priority=666)
    src.set_callback(recorder(log, "t", False))
    src.attach(ctx)
    assert ctx.pending() is True
    assert ctx.iteration(True) is True  # must not block
    assert log == ["t"]


def test_lower_priorities_not_prepared_when_higher_ready(ctx: MainContext) -> None:
    log: list[str] = []
    high = idle(ctx, log, "high", priority=PRIORITY_HIGH)
    custom = ReadySource(priority=PRIORITY_DEFAULT)
    custom.set_callback(recorder(log, "custom"))
    custom.attach(ctx)
    assert iterate(ctx, 3) == 3
    assert log == ["high"] * 3
    assert custom.prepares == 0
    assert custom.checks == 0
    high.destroy()
    log.clear()
    assert ctx.iteration(False)
    assert log == ["custom"]
    assert custom.prepares == 1


def test_more_urgent_custom_source_is_prepared(ctx: MainContext) -> None:
    log: list[str] = []
    idle(ctx, log, "idle", priority=PRIORITY_DEFAULT)
    urgent = ReadySource(priority=PRIORITY_HIGH, go=False)
    urgent.set_callback(recorder(log, "urgent"))
    urgent.attach(ctx)
    ctx.iteration(False)
    assert urgent.prepares == 1
    assert urgent.checks == 1
    assert log == ["idle"]
    urgent.go = True
    log.clear()
    ctx.iteration(False)
    assert log == ["urgent"]


def test_check_makes_source_ready(ctx: MainContext) -> None:
    class CheckOnly(Source):
        ready = False

        def check(self) -> bool:
            return self.ready

    log: list[str] = []
    src = CheckOnly()
    src.set_callback(recorder(log, "c"))
    src.attach(ctx)
    assert ctx.iteration(False) is False
    src.ready = True
    assert ctx.iteration(False) is True
    assert log == ["c"]


def test_prepare_timeout_bounds_blocking_iteration(ctx: MainContext) -> None:
    class Soon(Source):
        def __init__(self) -> None:
            super().__init__()
            self.deadline = time.monotonic() + 0.02

        def prepare(self) -> tuple[bool, float | None]:
            left = self.deadline - time.monotonic()
            return (left <= 0, max(left, 0.0))

        def check(self) -> bool:
            return time.monotonic() >= self.deadline

    log: list[str] = []
    src = Soon()
    src.set_callback(recorder(log, "soon", False))
    src.attach(ctx)
    for _ in range(50):  # a blocking iteration returns once the prepare timeout passes
        if ctx.iteration(True):
            break
    assert log == ["soon"]


def test_main_depth_and_current_source(ctx: MainContext) -> None:
    seen: list[tuple[int, Source | None]] = []
    inner = IdleSource(priority=PRIORITY_LOW)
    outer = IdleSource(priority=PRIORITY_DEFAULT)

    def inner_cb() -> bool:
        seen.append((main_depth(), current_source()))
        return False

    def outer_cb() -> bool:
        seen.append((main_depth(), current_source()))
        inner.attach(ctx)
        ctx.iteration(False)
        seen.append((main_depth(), current_source()))
        return False

    inner.set_callback(inner_cb)
    outer.set_callback(outer_cb)
    outer.attach(ctx)
    assert main_depth() == 0
    assert current_source() is None
    ctx.iteration(False)
    assert seen == [(1, outer), (2, inner), (1, outer)]
    assert main_depth() == 0
    assert current_source() is None


class Reentrant(Source):
    """Calls back into the context from a hook (GLib warns and refuses)."""

    def __init__(self, ctx: MainContext, hook: str, action: str) -> None:
        super().__init__()
        self.ctx = ctx
        self.hook = hook
        self.action = action
        self.results: list[Any] = []

    def _reenter(self) -> None:
        if self.action == "iteration":
            self.results.append(self.ctx.iteration(False))
        elif self.action == "pending":
            self.results.append(self.ctx.pending())
        else:
            loop = MainLoop(self.ctx)
            # Bound the test if run() wrongly keeps iterating: quit it from a thread.
            stopper = threading.Timer(0.5, loop.quit)
            stopper.start()
            try:
                loop.run()
            finally:
                stopper.cancel()
            self.results.append(loop.is_running())

    def prepare(self) -> tuple[bool, float | None]:
        if self.hook == "prepare" and not self.results:
            self._reenter()
        return (False, 0.0)

    def check(self) -> bool:
        if self.hook == "check" and not self.results:
            self._reenter()
        return False


@pytest.mark.parametrize("hook", ["prepare", "check"])
def test_iteration_from_hook_warns_and_returns_false(ctx: MainContext, hook: str) -> None:
    src = Reentrant(ctx, hook, "iteration")
    src.attach(ctx)
    with pytest.warns(RuntimeWarning, match="recursively"):
        ctx.iteration(False)
    assert src.results == [False]
    assert not src.is_destroyed


@pytest.mark.parametrize("hook", ["prepare", "check"])
def test_main_loop_run_from_hook_warns_and_returns(ctx: MainContext, hook: str) -> None:
    # mainloop/recursive_loop_child_sources: loop.run() in prepare/check warns and returns.
    src = Reentrant(ctx, hook, "run")
    src.attach(ctx)
    with pytest.warns(RuntimeWarning, match="recursively") as record:
        ctx.iteration(False)
    assert src.results == [False]
    # GLib warns once and returns at once; it does not spin on refused iterations.
    assert len(record) == 1


def test_pending_from_hook_returns_false(ctx: MainContext) -> None:
    src = Reentrant(ctx, "prepare", "pending")
    src.attach(ctx)
    idle(ctx, [], "x")
    ctx.iteration(False)
    assert src.results == [False]


# ---------------------------------------------------------------- child sources


class CounterClock:
    """GLib's test "counter": one tick per iteration whose cached time is new."""

    def __init__(self) -> None:
        self.value = 0
        self.last: float | None = None


class CounterSource(Source):
    """mainloop.c's ``counter_source``: ready ``interval`` ticks after (re)arming."""

    def __init__(self, clock: CounterClock, interval: int) -> None:
        super().__init__()
        self.clk = clock
        self.interval = interval
        self.deadline = clock.value + interval

    def prepare(self) -> tuple[bool, float | None]:
        now = self.time()
        if now != self.clk.last:
            self.clk.last = now
            self.clk.value += 1
        return (self.clk.value >= self.deadline, 0.001)

    def dispatch(self, callback: Any, args: tuple[Any, ...]) -> bool:
        again = bool(callback(*args))
        if again:
            self.deadline = self.clk.value + self.interval
        return again


def _spin(v: VirtualContext, running: list[bool]) -> None:
    """``g_main_loop_run`` where each iteration takes one virtual millisecond."""
    while running[0]:
        v.advance(0.001)
        v.ctx.iteration(False)


def test_child_sources_counter_model(vctx: VirtualContext) -> None:
    ctx = vctx.ctx
    clk = CounterClock()
    n = {"a": 0, "b": 0, "c": 0}

    def count(key: str) -> bool:
        n[key] += 1
        return True

    def run_inner_loop() -> bool:
        n["a"] += 1
        running = [True]
        t = CounterSource(clk, 100)
        t.set_callback(lambda: running.__setitem__(0, False))
        t.attach(ctx)
        _spin(vctx, running)
        return True

    parent = CounterSource(clk, 2000)
    parent.set_callback(run_inner_loop)
    parent.priority = PRIORITY_LOW
    parent.attach(ctx)
    b = CounterSource(clk, 250)
    b.set_callback(count, "b")
    parent.add_child_source(b)
    c = CounterSource(clk, 330)
    c.set_callback(count, "c")
    c.priority = PRIORITY_HIGH
    parent.add_child_source(c)
    assert (parent.priority, b.priority, c.priority) == (PRIORITY_LOW,) * 3
    parent.priority = PRIORITY_DEFAULT
    assert (parent.priority, b.priority, c.priority) == (PRIORITY_DEFAULT,) * 3
    with pytest.raises(RuntimeError):
        b.priority = PRIORITY_HIGH
    running = [True]
    end = CounterSource(clk, 1050)
    end.set_callback(lambda: running.__setitem__(0, False))
    end.attach(ctx)
    _spin(vctx, running)
    assert n == {"a": 6, "b": 3, "c": 3}
    parent.destroy()
    assert b.is_destroyed and c.is_destroyed


def test_recursive_child_sources_counter_model(vctx: VirtualContext) -> None:
    ctx = vctx.ctx
    clk = CounterClock()
    n = {"a": 0, "b": 0, "c": 0}

    def count(key: str) -> bool:
        n[key] += 1
        return True

    parent = CounterSource(clk, 500)
    parent.set_callback(count, "a")
    b = CounterSource(clk, 220)
    b.set_callback(count, "b")
    parent.add_child_source(b)
    c = CounterSource(clk, 430)
    c.set_callback(count, "c")
    b.add_child_source(c)
    parent.attach(ctx)
    running = [True]
    end = CounterSource(clk, 2010)
    end.set_callback(lambda: running.__setitem__(0, False))
    end.attach(ctx)
    _spin(vctx, running)
    assert n == {"a": 9, "b": 9, "c": 4}


def test_swapping_child_sources(vctx: VirtualContext) -> None:
    ctx = vctx.ctx
    clk = CounterClock()
    running = [True]
    state: dict[str, Any] = {}
    reached: list[str] = []

    def swap() -> bool:
        old = state.pop("old", None)
        if old is not None:
            parent.remove_child_source(old)
            assert old.is_destroyed
        if "new" not in state:
            new = TimeoutSource(0)
            new.set_callback(lambda: running.__setitem__(0, False))
            parent.add_child_source(new)
            state["new"] = new
        return True

    parent = CounterSource(clk, 50)
    parent.set_callback(swap)
    parent.attach(ctx)
    old = CounterSource(clk, 100)
    parent.add_child_source(old)
    old.set_callback(lambda: reached.append("old"))
    state["old"] = old
    for _ in range(1000):
        if not running[0]:
            break
        vctx.advance(0.001)
        ctx.iteration(False)
    assert not running[0]
    assert reached == []


def test_child_dispatches_before_parent_and_makes_it_ready(ctx: MainContext) -> None:
    log: list[str] = []
    parent = ReadySource(go=False)
    parent.set_callback(recorder(log, "parent"))
    parent.attach(ctx)
    child = ReadySource(go=False)
    child.set_callback(recorder(log, "child"))
    parent.add_child_source(child)
    assert ctx.iteration(False) is False
    child.go = True
    assert ctx.iteration(False) is True
    assert log == ["child", "parent"]


def test_child_added_to_blocked_parent_from_its_callback(ctx: MainContext) -> None:
    # mainloop/blocked_child_sources: must not crash; the child runs later.
    log: list[str] = []
    parent = IdleSource(priority=PRIORITY_DEFAULT)

    def cb() -> bool:
        child = IdleSource()
        child.set_callback(recorder(log, "child", False))
        parent.add_child_source(child)
        assert child.priority == PRIORITY_DEFAULT
        log.append("parent")
        return len(log) < 3

    parent.set_callback(cb)
    parent.attach(ctx)
    iterate(ctx, 5)
    assert log[:3] == ["parent", "child", "parent"]


def test_destroying_parent_destroys_children(ctx: MainContext) -> None:
    parent = IdleSource()
    child = IdleSource()
    grandchild = IdleSource()
    child.add_child_source(grandchild)
    parent.add_child_source(child)
    parent.set_callback(lambda: True)
    parent.attach(ctx)
    assert child.context is ctx and grandchild.context is ctx
    parent.destroy()
    assert child.is_destroyed and grandchild.is_destroyed
    assert ctx.pending() is False


# ------------------------------------------------------------------ source time


def test_source_time_cached_within_iteration(ctx: MainContext) -> None:
    times: list[tuple[str, float]] = []
    t2: TimeoutSource

    def cb1() -> bool:
        first = t1.time()
        time.sleep(0.002)
        assert t1.time() == first  # constant within one callback
        times.append(("t1", first))
        return len(times) < 3

    def cb2() -> bool:
        now = t2.time()
        t2.destroy()
        assert t2.time() == now  # still valid after self-destroy
        times.append(("t2", now))
        return False

    t1 = TimeoutSource(0)
    t1.set_callback(cb1)
    t1.attach(ctx)
    t2 = TimeoutSource(0)
    t2.set_callback(cb2)
    t2.attach(ctx)
    ctx.iteration(False)
    assert [k for k, _ in times] == ["t1", "t2"]
    assert times[0][1] == times[1][1]  # same for every source of one iteration
    ctx.iteration(False)
    assert times[2][0] == "t1"
    assert times[2][1] > times[0][1]  # larger in the next iteration


def test_source_time_cached_across_prepare_of_two_sources(ctx: MainContext) -> None:
    seen: list[float] = []

    class Peek(Source):
        def prepare(self) -> tuple[bool, float | None]:
            seen.append(self.time())
            return (False, 0.0)

    for _ in range(2):
        Peek().attach(ctx)
    ctx.iteration(False)
    assert len(seen) == 2
    assert seen[0] == seen[1]


# ------------------------------------------------------------------- ready time


class ReadyTimeSource(Source):
    def __init__(self, reset: bool) -> None:
        super().__init__()
        self.reset = reset
        self.dispatched = 0

    def dispatch(self, callback: Any, args: tuple[Any, ...]) -> bool:
        self.dispatched += 1
        if self.reset:
            self.set_ready_time(-1)
        return True


def test_ready_time(ctx: MainContext) -> None:
    src = ReadyTimeSource(reset=True)
    src.attach(ctx)
    assert src.ready_time == -1
    assert iterate(ctx, 3) == 0
    src.set_ready_time(-1)
    assert iterate(ctx, 3) == 0
    tomorrow = time.monotonic() + 86400
    src.set_ready_time(tomorrow)
    assert iterate(ctx, 3) == 0
    assert src.ready_time == tomorrow and src.dispatched == 0
    src.set_ready_time(-1)
    assert iterate(ctx, 3) == 0
    for when in (time.monotonic(), time.monotonic() - 1.0, 0):
        src.set_ready_time(when)
        assert ctx.iteration(False) is True
        assert src.ready_time == -1
    assert src.dispatched == 3


def test_dispatch_does_not_reset_ready_time(ctx: MainContext) -> None:
    src = ReadyTimeSource(reset=False)
    src.attach(ctx)
    src.set_ready_time(0)
    assert iterate(ctx, 3) == 3
    assert src.ready_time == 0
    assert src.dispatched == 3


def test_various_ready_times(vctx: VirtualContext) -> None:
    rng = random.Random(99)
    now = vctx.now()
    whens = [-1e308, -1e18, 0.0, now - 1, now, now + 0.25, now + 0.5, now + 1.0, now + 2.0,
             now + 1e9, 1e308, float("inf")]
    whens += [now + rng.uniform(-2, 3) for _ in range(40)]
    fired: dict[int, float] = {}
    sources: list[Source] = []
    for i, when in enumerate(whens):
        src = Source()

        def cb(i: int = i) -> bool:
            fired.setdefault(i, sources[i].time())
            return False

        src.set_callback(cb)
        src.set_ready_time(when)
        src.attach(vctx.ctx)
        sources.append(src)
    for _ in range(10):
        vctx.advance(0.1)
        iterate(vctx.ctx, 3)
    end = vctx.now()
    for i, when in enumerate(whens):
        if i in fired:
            assert when <= fired[i]
        else:
            assert when > end, (i, when)


def test_set_ready_time_from_thread_wakes_blocking_iteration(ctx: MainContext) -> None:
    src = ReadyTimeSource(reset=True)
    src.attach(ctx)
    started = threading.Event()

    def poke() -> None:
        started.wait(DEADLINE)
        time.sleep(0.01)  # let the main thread reach its poll; correctness does not depend on it
        src.set_ready_time(0)

    t = threading.Thread(target=poke)
    t.start()
    started.set()
    for _ in range(100):
        if ctx.iteration(True):
            break
    t.join()
    assert src.dispatched == 1


# --------------------------------------------------------------------- wakeup


def test_wakeup_then_blocking_iteration_never_hangs(ctx: MainContext) -> None:
    for _ in range(100):
        ctx.wakeup()
        assert ctx.iteration(True) is False


@pytest.mark.timeout(20)
def test_wakeup_from_thread_wakes_blocking_iteration(ctx: MainContext) -> None:
    rounds = 50
    done = threading.Event()

    def waker() -> None:
        while not done.is_set():
            ctx.wakeup()
            time.sleep(0.001)

    t = threading.Thread(target=waker)
    t.start()
    try:
        for _ in range(rounds):
            ctx.iteration(True)  # returns because of the wake-up
    finally:
        done.set()
        t.join()


# --------------------------------------------------------------------- invoke


def test_invoke_on_owner_thread_is_synchronous_and_repeats(ctx: MainContext) -> None:
    calls: list[int] = []

    def fn(x: int) -> bool:
        calls.append(x)
        return len(calls) < 4

    ctx.invoke(fn, 7)
    assert calls == [7, 7, 7, 7]
    assert ctx.pending() is False


def test_invoke_from_idle_is_synchronous(ctx: MainContext) -> None:
    calls: list[int] = []

    def cb() -> bool:
        ctx.invoke(lambda: calls.append(main_depth()))
        assert calls == [1]
        return False

    idle_add(cb, context=ctx)
    ctx.iteration(False)
    assert calls == [1]


@pytest.mark.timeout(20)
def test_invoke_from_other_thread_runs_in_loop_thread(ctx: MainContext) -> None:
    where: list[int] = []
    main = threading.get_ident()
    keepalive = TimeoutSource(5.0)
    keepalive.set_callback(lambda: True)
    keepalive.attach(ctx)
    in_iteration = threading.Event()

    class Flag(Source):
        def prepare(self) -> tuple[bool, float | None]:
            in_iteration.set()
            return (False, None)

    Flag().attach(ctx)

    def other() -> None:
        in_iteration.wait(DEADLINE)
        ctx.invoke(lambda: where.append(threading.get_ident()) or False,
                   priority=PRIORITY_HIGH)

    t = threading.Thread(target=other)
    t.start()
    for _ in range(100):
        ctx.iteration(True)
        if where:
            break
    t.join()
    assert where == [main]


# ----------------------------------------------------------- errors in hooks


class Failing(Source):
    def __init__(self, where: str) -> None:
        super().__init__()
        self.where = where
        self.set_callback(self._cb)

    def _cb(self) -> bool:
        if self.where == "callback":
            raise ValueError("boom in callback")
        return True

    def prepare(self) -> tuple[bool, float | None]:
        if self.where == "prepare":
            raise ValueError("boom in prepare")
        if self.where == "prepare-result":
            return "nonsense"  # type: ignore[return-value]
        return (True, None)

    def check(self) -> bool:
        if self.where == "check":
            raise ValueError("boom in check")
        return True

    def dispatch(self, callback: Any, args: tuple[Any, ...]) -> bool:
        if self.where == "dispatch":
            raise ValueError("boom in dispatch")
        return bool(callback(*args))

    def finalize(self) -> None:
        if self.where == "finalize":
            raise ValueError("boom in finalize")


HOOKS = ["prepare", "check", "dispatch", "callback", "prepare-result"]


def _make_check_not_ready(src: Failing) -> None:
    # For a failing check, prepare must not already report ready.
    if src.where == "check":
        src.prepare = lambda: (False, 0.0)  # type: ignore[method-assign]


@pytest.mark.parametrize("where", HOOKS)
def test_hook_error_is_logged_on_standalone_context(
    ctx: MainContext, where: str, caplog: pytest.LogCaptureFixture
) -> None:
    src = Failing(where)
    _make_check_not_ready(src)
    src.attach(ctx)
    log: list[str] = []
    idle(ctx, log, "other", priority=PRIORITY_LOW)
    with caplog.at_level(logging.ERROR, logger="aioqloop"):
        for _ in range(3):
            ctx.iteration(False)
    assert src.is_destroyed
    records = [r for r in caplog.records if r.name == "aioqloop"]
    assert len(records) == 1
    assert records[0].exc_info is not None
    if where == "prepare-result":
        assert records[0].exc_info[0] is TypeError
    else:
        assert records[0].exc_info[0] is ValueError
    assert log  # the context keeps running


def test_finalize_error_is_logged_on_standalone_context(
    ctx: MainContext, caplog: pytest.LogCaptureFixture
) -> None:
    src = Failing("finalize")
    src.attach(ctx)
    with caplog.at_level(logging.ERROR, logger="aioqloop"):
        src.destroy()
    assert any(r.exc_info and r.exc_info[0] is ValueError for r in caplog.records)
    assert ctx.iteration(False) is False


@pytest.mark.parametrize("kind", LOOP_KINDS)
@pytest.mark.parametrize("where", [*HOOKS, "finalize"])
def test_hook_error_goes_to_loop_exception_handler(kind: str, where: str) -> None:
    handler = HandlerLog()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        handler.install(loop)
        ctx = context_for(kind)
        src = Failing(where)
        _make_check_not_ready(src)
        if where == "finalize":
            src.set_callback(lambda: False)
        src.attach(ctx)
        after = asyncio.Event()
        idle_add(lambda: after.set(), priority=PRIORITY_LOW, context=ctx)
        await asyncio.wait_for(after.wait(), DEADLINE)
        for _ in range(5):
            await asyncio.sleep(0)
        assert src.is_destroyed

    run_in(kind, main)
    assert len(handler.contexts) == 1
    c = handler.contexts[0]
    assert isinstance(c["exception"], TypeError if where == "prepare-result" else ValueError)
    assert isinstance(c["source"], Failing)
    assert "message" in c


# -------------------------------------------------------------- running loops


@pytest.mark.parametrize("kind", LOOP_KINDS)
def test_running_loop_core_scenarios(kind: str) -> None:
    async def main() -> list[str]:
        ctx = context_for(kind)
        assert ctx.loop is asyncio.get_running_loop()
        log: list[str] = []
        done = asyncio.Event()
        a = IdleSource(priority=1)
        a.set_callback(recorder(log, "a"))
        b = IdleSource(priority=0)
        count = 0

        def b_cb() -> bool:
            nonlocal count
            count += 1
            log.append("b")
            return count < 3

        b.set_callback(b_cb)
        a.attach(ctx)
        b.attach(ctx)

        def stop() -> bool:
            a.destroy()
            done.set()
            return False

        t = TimeoutSource(0.01)
        t.set_callback(stop)
        t.attach(ctx)
        await asyncio.wait_for(done.wait(), DEADLINE)
        return log

    log = run_in(kind, main)
    assert log[:3] == ["b", "b", "b"]
    assert set(log[3:]) <= {"a"}


@pytest.mark.parametrize("kind", LOOP_KINDS)
def test_running_loop_iteration_from_coroutine_refused(kind: str) -> None:
    async def main() -> None:
        ctx = context_for(kind)
        with pytest.raises(RuntimeError):
            ctx.iteration(False)

    run_in(kind, main)


@pytest.mark.parametrize("kind", LOOP_KINDS)
def test_running_loop_nested_iteration_from_callback(kind: str) -> None:
    async def main() -> list[tuple[str, int]]:
        ctx = context_for(kind)
        seen: list[tuple[str, int]] = []
        done = asyncio.Event()

        def outer() -> bool:
            seen.append(("outer", main_depth()))
            inner = IdleSource(priority=PRIORITY_DEFAULT)
            inner.set_callback(lambda: seen.append(("inner", main_depth())) or False)
            inner.attach(ctx)
            ctx.iteration(False)
            done.set()
            return False

        idle_add(outer, context=ctx)
        await asyncio.wait_for(done.wait(), DEADLINE)
        return seen

    assert run_in(kind, main) == [("outer", 1), ("inner", 2)]


@pytest.mark.parametrize("kind", LOOP_KINDS)
def test_running_loop_timeouts_and_ready_time(kind: str) -> None:
    async def main() -> None:
        ctx = context_for(kind)
        loop = asyncio.get_running_loop()
        fired: list[float] = []
        done = asyncio.Event()
        src = Source()

        def cb() -> bool:
            fired.append(loop.time())
            done.set()
            return False

        src.set_callback(cb)
        when = loop.time() + 0.02
        src.set_ready_time(when)
        src.attach(ctx)
        await asyncio.wait_for(done.wait(), DEADLINE)
        assert fired[0] >= when
        ticks: list[int] = []
        finished = asyncio.Event()

        def tick() -> bool:
            ticks.append(1)
            if len(ticks) == 3:
                finished.set()
                return False
            return True

        aioqloop.timeout_add(0.005, tick, context=ctx)
        await asyncio.wait_for(finished.wait(), DEADLINE)
        assert len(ticks) == 3

    run_in(kind, main)


@pytest.mark.parametrize("kind", LOOP_KINDS)
@pytest.mark.timeout(30)
def test_running_loop_cross_thread_operations(kind: str) -> None:
    n_threads, per_thread = 4, 200

    async def main() -> None:
        ctx = context_for(kind)
        loop_thread = threading.get_ident()
        ran: list[int] = []
        threads_seen: set[int] = set()
        done = asyncio.Event()
        total = n_threads * per_thread * 2

        def note(i: int) -> bool:
            threads_seen.add(threading.get_ident())
            ran.append(i)
            if len(ran) == total:
                done.set()
            return False

        def worker(k: int) -> None:
            for i in range(per_thread):
                ctx.invoke(note, k * 1000 + i + 1)
                s = Source()
                s.set_callback(note, -(k * 1000 + i + 1))
                s.attach(ctx)
                s.set_ready_time(0)
                doomed = TimeoutSource(100.0)
                doomed.set_callback(lambda: False)
                doomed.attach(ctx)
                doomed.destroy()
                ctx.wakeup()

        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(None, worker, k) for k in range(n_threads)))
        await asyncio.wait_for(done.wait(), DEADLINE)
        assert threads_seen == {loop_thread}
        assert len(set(ran)) == total

    run_in(kind, main)


@pytest.mark.parametrize("kind", LOOP_KINDS)
@pytest.mark.timeout(20)
def test_running_loop_wakeup_and_attach_from_thread_while_idle(kind: str) -> None:
    async def main() -> None:
        ctx = context_for(kind)
        loop = asyncio.get_running_loop()
        for _ in range(30):
            got = loop.create_future()

            def fire(fut: asyncio.Future[None] = got) -> bool:
                fut.set_result(None)
                return False

            def attach_later(cb: Any = fire) -> None:
                s = Source()
                s.set_callback(cb)
                s.set_ready_time(0)
                s.attach(ctx)

            t = threading.Thread(target=attach_later)
            t.start()
            await asyncio.wait_for(got, DEADLINE)
            t.join()

    run_in(kind, main)


# ------------------------------------------- priorities against asyncio callbacks


def test_high_source_runs_before_earlier_call_soon() -> None:
    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        ctx = aioqloop.get_main_context()
        log: list[str] = []
        done = asyncio.Event()

        def later() -> None:
            log.append("call_soon")
            done.set()

        high = Source(priority=PRIORITY_HIGH)
        high.set_callback(recorder(log, "high", False))
        high.attach(ctx)
        loop.call_soon(later)
        high.set_ready_time(0)
        await asyncio.wait_for(done.wait(), DEADLINE)
        return log

    assert aioqloop.run(main()) == ["high", "call_soon"]


def test_idle_waits_for_asyncio_to_be_idle() -> None:
    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        ctx = aioqloop.get_main_context()
        log: list[str] = []
        done = asyncio.Event()

        def chain(n: int) -> None:
            log.append(f"soon{n}")
            if n < 5:
                loop.call_soon(chain, n + 1)

        def on_idle() -> bool:
            log.append("idle")
            done.set()
            return False

        idle_add(on_idle, context=ctx)
        loop.call_soon(chain, 0)
        await asyncio.wait_for(done.wait(), DEADLINE)
        return log

    log = aioqloop.run(main())
    assert log.index("idle") > log.index("soon5")


def test_busy_task_starves_idle() -> None:
    async def main() -> tuple[int, int]:
        ctx = aioqloop.get_main_context()
        idles = 0

        def on_idle() -> bool:
            nonlocal idles
            idles += 1
            return True

        idle_add(on_idle, context=ctx)
        steps = 0
        for _ in range(200):
            await asyncio.sleep(0)
            steps += 1
        starved = idles
        await asyncio.sleep(0.01)  # now asyncio is idle: the idle runs
        return starved, idles

    starved, later = aioqloop.run(main())
    assert starved == 0
    assert later > 0


def test_default_source_interleaves_fifo_with_asyncio() -> None:
    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        ctx = aioqloop.get_main_context()
        log: list[str] = []
        done = asyncio.Event()
        src = Source(priority=PRIORITY_DEFAULT)
        src.set_callback(recorder(log, "source", False))
        src.attach(ctx)
        src.set_ready_time(0)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        loop.call_soon(lambda: (log.append("after"), done.set()))
        await asyncio.wait_for(done.wait(), DEADLINE)
        return log

    assert aioqloop.run(main()) == ["source", "after"]


@pytest.mark.parametrize("later", [-1, 1e12])
def test_ready_time_cleared_between_iterations(ctx: MainContext, later: float) -> None:
    # GLib clears READY on dispatch; the next iteration looks at the new ready time.
    src = ReadyTimeSource(reset=False)
    src.set_ready_time(0)
    src.attach(ctx)
    assert ctx.iteration(False) is True
    src.set_ready_time(later)
    assert ctx.iteration(False) is False
    assert src.dispatched == 1


# --------------------------------------------------------- review regressions
def test_context_bound_to_a_plain_loop_does_not_keep_it_and_its_fds() -> None:
    # The loop -> context mapping used to be a WeakKeyDictionary whose value (the
    # context) refers to the loop: neither was ever freed, two fds leaked per loop.
    import gc
    import os
    import weakref

    async def main() -> weakref.ref[MainContext]:
        ctx = aioqloop.get_main_context()
        assert aioqloop.get_main_context() is ctx
        return weakref.ref(ctx)

    gc.collect()
    before = len(os.listdir("/proc/self/fd"))
    refs = [asyncio.run(main()) for _ in range(5)]
    gc.collect()
    assert [r() for r in refs] == [None] * 5
    assert len(os.listdir("/proc/self/fd")) <= before


def test_fd_removed_in_a_dispatch_with_a_nested_iteration_can_be_watched_again(
    ctx: MainContext,
    pipe: tuple[int, int],
) -> None:
    # The nested iteration unpolls the blocked source's fd; removing the fd before the
    # dispatch ended left it marked unpolled, so no later watch of it was ever polled.
    import os

    r, w = pipe
    class Nesting(Source):
        tag: Any = None

        def dispatch(self, callback: Any, args: tuple[Any, ...]) -> bool:
            ctx.iteration(False)
            self.remove_unix_fd(self.tag)
            return True

    nesting = Nesting()
    nesting.tag = nesting.add_unix_fd(r, aioqloop.IOCondition.IN)
    nesting.attach(ctx)
    os.write(w, b"x")
    assert ctx.iteration(False) is True
    seen: list[Any] = []
    aioqloop.fd_add(r, aioqloop.IOCondition.IN, lambda fd, cond: seen.append(cond),
                    context=ctx)
    assert ctx.iteration(False) is True
    assert seen == [aioqloop.IOCondition.IN]


def test_ready_time_heap_stays_bounded(ctx: MainContext) -> None:
    # Lazy deletion kept one heap entry per re-arm and per destroyed timeout until its
    # time came (a debounce re-armed far ahead, request timeouts removed early): the
    # heap must stay within a small multiple of the live ready times.
    far = ctx._clock() + 3600.0
    debounce = TimeoutSource(3600.0)
    debounce.set_callback(lambda: True)
    debounce.attach(ctx)
    for i in range(5000):
        debounce.set_ready_time(far + i)
    for _ in range(5000):
        source_remove(aioqloop.timeout_add(3600.0, lambda: True, context=ctx), ctx)
    assert ctx._deadline_count() <= 2 * 64 + 2
    assert ctx._next_deadline() == far + 4999
    debounce.set_ready_time(0)
    assert ctx.iteration(False) is True


def test_source_destroyed_in_its_callback_is_finalized_when_keyboardinterrupt_escapes(
    ctx: MainContext,
) -> None:
    finalized: list[str] = []

    class Interrupted(Source):
        def dispatch(self, callback: Any, args: tuple[Any, ...]) -> bool:
            self.destroy()
            raise KeyboardInterrupt

        def finalize(self) -> None:
            finalized.append("finalize")

    src = Interrupted()
    src.set_ready_time(0)
    src.attach(ctx)
    with pytest.raises(KeyboardInterrupt):
        ctx.iteration(False)
    assert finalized == ["finalize"]
    assert main_depth() == 0


def test_wakeup_of_a_closed_context_writes_to_no_fd(pipe: tuple[int, int]) -> None:
    # After close() the eventfd number can belong to another file: a late wakeup() from
    # some thread must not write 8 bytes into it (nor fail).
    import os

    context = MainContext(_driver="standalone")
    context.close()
    r, _ = pipe
    os.set_blocking(r, False)
    context.wakeup()
    with pytest.raises(BlockingIOError):
        os.read(r, 64)
