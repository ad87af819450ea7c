"""Tests for `aioqloop.glib`, PyGObject's GLib main-loop API on aioqloop.

Ports of PyGObject's ``tests/test_source.py`` and ``tests/test_mainloop.py`` where they
apply, the shared scenarios checked against results recorded from real GLib, plus units,
threads, nesting inside an aioqloop program, exceptions and bad input.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

import aioqloop
from aioqloop import glib as GLib
from aioqloop.glib import _context as glib_context
from aioqloop.glib import _core as glib_core
from aioqloop.glib import _sources as glib_sources

sys.path.insert(0, str(Path(__file__).parent))
import _glib_programs as programs
import _glib_scenarios as scenarios


@pytest.fixture(autouse=True)
def _fresh_default_loop() -> Any:
    scenarios.reset_aioqloop_default()
    yield
    scenarios.reset_aioqloop_default()


def _capture_excepthook(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Record what reaches ``sys.excepthook`` (where PyGObject reports callback errors)."""
    seen: list[dict[str, Any]] = []
    monkeypatch.setattr(sys, "excepthook", lambda t, v, tb: seen.append({"exception": v}))
    return seen


# --------------------------------------------------------------- shared scenarios
@pytest.mark.parametrize("name", sorted(scenarios.EXPECTED))
def test_scenario_matches_recorded_glib(name: str) -> None:
    assert scenarios.SCENARIOS[name](GLib) == scenarios.EXPECTED[name]


def test_random_programs_observe_what_glib_does() -> None:
    # 400 random programs (sources of four kinds, children, priority and ready-time
    # changes, destroys, nested iterations from callbacks) observe exactly what real
    # GLib observed when the digest was recorded.  On a mismatch, run
    # .ci/glib-differential.sh: its test of the same name names the first program.
    assert programs.digest(GLib) == programs.RECORDED


def test_seconds_phase_scenario_is_coalesced() -> None:
    nphases, _phase, in_window = scenarios.SCENARIOS["seconds_phase"](GLib)
    assert nphases == 1
    assert in_window == [True, True, True]


# ------------------------------------------------------------ test_source.py ports
def test_sources_idle_custom_and_timeout_on_the_default_loop() -> None:
    loop = GLib.MainLoop()
    counts = {"idle": 0, "custom": 0}

    class Idle(GLib.Idle):
        def __init__(self, loop: Any) -> None:
            GLib.Idle.__init__(self)
            self.set_callback(self.callback, loop)

        def callback(self, loop: Any) -> bool:
            counts["idle"] += 1
            return True

    class MySource(GLib.Source):
        def __init__(self) -> None:
            GLib.Source.__init__(self)

        def prepare(self) -> tuple[bool, int]:
            return True, 0

        def check(self) -> bool:
            return True

        def dispatch(self, callback: Any, args: Any) -> bool:
            return bool(callback(*args))

    def my_callback(loop: Any) -> bool:
        counts["custom"] += 1
        if counts["custom"] == 5:
            GLib.timeout_add(1, lambda: loop.quit())
        return True

    idle = Idle(loop)
    assert idle.get_context() is None
    idle.attach()
    assert idle.get_context() == GLib.main_context_default()
    m = MySource()
    assert m.get_context() is None
    m.set_callback(my_callback, loop)
    m.attach()
    assert m.get_context() == GLib.MainContext.default()
    loop.run()
    m.destroy()
    idle.destroy()
    assert counts["custom"] >= 5
    assert counts["idle"] == 0  # the always-ready DEFAULT source starves the idle
    assert m.is_destroyed() and idle.is_destroyed()


def test_is_destroyed_simple() -> None:
    s = GLib.Source()
    assert not s.is_destroyed()
    s.destroy()
    assert s.is_destroyed()
    c = GLib.MainContext()
    s = GLib.Source()
    s.attach(c)
    assert not s.is_destroyed()
    s.destroy()
    assert s.is_destroyed()


def test_context_collected_destroys_its_sources() -> None:
    def f() -> Any:
        c = GLib.MainContext()
        s = GLib.Source()
        s.attach(c)
        return s

    s = f()
    gc.collect()
    assert s.is_destroyed()
    assert s.get_context() is None


def test_remove_true_once_then_false_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    s = GLib.idle_add(dir)
    assert GLib.source_remove(s) is True
    with caplog.at_level(logging.WARNING, logger="aioqloop.glib"):
        assert GLib.source_remove(s) is False
        assert GLib.source_remove(GLib.MAXINT32) is False
        assert GLib.source_remove(GLib.MAXINT32 + 1) is False
        assert GLib.source_remove(GLib.MAXUINT32) is False
    messages = [r.getMessage() for r in caplog.records]
    assert f"Source ID {s} was not found when attempting to remove it" in messages
    assert len(messages) == 4


def test_recurse_property() -> None:
    s = GLib.Idle()
    assert s.can_recurse is False
    s.can_recurse = True
    assert s.can_recurse is True and s.get_can_recurse() is True
    s.set_can_recurse(False)
    assert s.can_recurse is False


def test_finalize_runs_once_when_the_last_reference_goes() -> None:
    events: list[str] = []

    class S(GLib.Source):
        def prepare(self) -> tuple[bool, int]:
            return (True, 1)

        def dispatch(self, callback: Any, args: Any) -> bool:
            events.append("dispatch")
            return True

        def finalize(self) -> None:
            events.append("finalize")

    ctx = GLib.MainContext()
    source = S()
    source.attach(ctx)
    assert ctx.iteration(False)
    assert events == ["dispatch"]
    source.destroy()
    source.destroy()
    assert events == ["dispatch"]  # PyGObject: finalize comes with the wrapper's end
    del source
    gc.collect()
    assert events == ["dispatch", "finalize"]
    assert not ctx.iteration(False)


def test_source_dropped_during_dispatch() -> None:
    holder: dict[str, Any] = {}
    events: list[str] = []

    class S(GLib.Source):
        def __init__(self, func: Any = None) -> None:  # never calls Source.__init__
            self.func = func

        def prepare(self) -> tuple[bool, int]:
            return (True, 1)

        def check(self) -> bool:
            return False

        def dispatch(self, callback: Any, args: Any) -> bool:
            events.append("dispatch")
            holder.clear()
            return False

        def finalize(self) -> None:
            events.append("finalize")

    ctx = GLib.MainContext()
    holder["s"] = S()
    sid = holder["s"].attach(ctx)
    while ctx.iteration(may_block=False):
        pass
    assert holder == {}
    assert ctx.find_source_by_id(sid) is None
    assert events == ["dispatch", "finalize"]


def test_extra_init_args() -> None:
    class SourceWithInitArgs(GLib.Source):
        def __init__(self, arg: int, kwarg: Any = None) -> None:
            super().__init__()
            self.arg = arg
            self.kwarg = kwarg

    source = SourceWithInitArgs(1, kwarg=2)
    assert (source.arg, source.kwarg) == (1, 2)
    assert isinstance(source, GLib.Source)
    assert source.priority == GLib.PRIORITY_DEFAULT


def test_out_of_scope_before_dispatch() -> None:
    GLib.Timeout(20)
    GLib.Idle()


@pytest.mark.parametrize("add", ["idle", "timeout"])
@pytest.mark.parametrize("data", [(), ({},), ({}, "hello")])
@pytest.mark.parametrize("priority", [None, GLib.PRIORITY_HIGH])
def test_user_data_and_priority(add: str, data: tuple[Any, ...], priority: int | None) -> None:
    ml = GLib.MainLoop()
    got: list[tuple[Any, ...]] = []

    def cb(*args: Any) -> None:
        got.append(args)
        ml.quit()

    kwargs = {} if priority is None else {"priority": priority}
    if add == "idle":
        sid = GLib.idle_add(cb, *data, **kwargs)
        default = GLib.PRIORITY_DEFAULT_IDLE
    else:
        sid = GLib.timeout_add(1, cb, *data, **kwargs)
        default = GLib.PRIORITY_DEFAULT
    src = ml.get_context().find_source_by_id(sid)
    assert src is not None
    assert src.priority == (default if priority is None else priority)
    ml.run()
    assert got == [data]
    assert ml.get_context().find_source_by_id(sid) is None  # None is falsy: removed


def test_method_callbacks() -> None:
    class Holder:
        def __init__(self) -> None:
            self.loop = GLib.MainLoop()
            self.data: dict[str, Any] = {}

        def cb_with_data(self, data: dict[str, Any]) -> None:
            data["called"] = True
            self.loop.quit()

    h = Holder()
    GLib.idle_add(h.cb_with_data, h.data)
    h.loop.run()
    assert h.data == {"called": True}


# ---------------------------------------------------------- test_mainloop.py ports
@pytest.mark.timeout(20)
def test_child_watch_exception_is_reported_and_loop_continues(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pipe_r, pipe_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(pipe_w)
        os.read(pipe_r, 1)
        os._exit(1)
    os.close(pipe_r)
    seen = _capture_excepthook(monkeypatch)
    loop = GLib.MainLoop()
    statuses: list[int] = []

    def child_died(cpid: int, status: int, loop: Any) -> None:
        statuses.append(status)
        loop.quit()
        raise Exception("deadbabe")

    GLib.child_watch_add(GLib.PRIORITY_DEFAULT, pid, child_died, loop)
    os.write(pipe_w, b"Y")
    os.close(pipe_w)
    loop.run()
    assert len(seen) == 1
    assert str(seen[0]["exception"]) == "deadbabe"
    assert os.WIFEXITED(statuses[0]) and os.WEXITSTATUS(statuses[0]) == 1


@pytest.mark.timeout(20)
def test_unix_signal_add_delivers_user_data() -> None:
    loop = GLib.MainLoop()
    got: list[Any] = []

    def on_signal(*data: Any) -> bool:
        got.append(data)
        loop.quit()
        return GLib.SOURCE_REMOVE

    sid = GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGUSR1, on_signal, "a", 1)
    found = GLib.MainContext.default().find_source_by_id(sid)
    assert found is not None and found.priority == GLib.PRIORITY_HIGH
    GLib.idle_add(lambda: os.kill(os.getpid(), signal.SIGUSR1))
    loop.run()
    assert got == [("a", 1)]


def test_child_watch_add_legacy_form_warns() -> None:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os._exit(3)
    loop = GLib.MainLoop()
    got: list[Any] = []

    def cb(cpid: int, status: int, *data: Any) -> None:
        got.append((cpid, os.WEXITSTATUS(status), data))
        loop.quit()

    with pytest.warns(DeprecationWarning, match="without priority"):
        GLib.child_watch_add(pid, cb, "d")
    loop.run()
    assert got == [(pid, 3, ("d",))]


# --------------------------------------------------------------------- units
def test_monotonic_time_is_the_loop_clock_in_microseconds() -> None:
    async def main() -> tuple[int, float, int]:
        loop = asyncio.get_running_loop()
        return GLib.get_monotonic_time(), loop.time(), GLib.get_real_time()

    clock = aioqloop.VirtualClock(start=1234.5)
    mono, loop_time, real = aioqloop.run(main(), clock=clock)
    assert mono == int(loop_time * 1_000_000) == 1_234_500_000
    assert real > 1_600_000_000 * 1_000_000  # µs since the epoch


def test_timeout_units_on_virtual_time() -> None:
    async def main() -> Any:
        log: list[Any] = []
        done = asyncio.get_running_loop().create_future()
        start = GLib.get_monotonic_time()
        t = GLib.Timeout(250)
        ready_at_attach = None

        def cb(tag: str) -> bool:
            log.append((tag, GLib.get_monotonic_time() - start, t.get_time() - start))
            if len(log) == 3:
                done.set_result(None)
                return False
            return True

        t.set_callback(cb, "t")
        t.attach()
        ready_at_attach = t.get_ready_time() - start
        await done
        return ready_at_attach, log, t.is_destroyed()

    ready, log, destroyed = aioqloop.run(main(), clock=aioqloop.VirtualClock())
    assert ready == 250_000
    assert log == [("t", 250_000, 250_000), ("t", 500_000, 500_000), ("t", 750_000, 750_000)]
    assert destroyed


def test_prepare_timeout_in_ms_wakes_the_loop_on_virtual_time() -> None:
    async def main() -> list[int]:
        done = asyncio.get_running_loop().create_future()
        start = GLib.get_monotonic_time()
        seen: list[int] = []

        class Every40ms(GLib.Source):
            def prepare(self) -> tuple[bool, int]:
                return (False, 40)

            def check(self) -> bool:
                return self.get_time() - start >= 120_000

            def dispatch(self, callback: Any, args: Any) -> bool:
                seen.append(self.get_time() - start)
                done.set_result(None)
                return False

        src = Every40ms()
        src.attach()
        await done
        return seen

    assert aioqloop.run(main(), clock=aioqloop.VirtualClock()) == [120_000]


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        ((True, 10), (True, 0.01)),
        ((False, -1), (False, None)),
        ((0, -5), (False, None)),
        ((True, 0), (True, 0.0)),
        ((False, 2.5), (False, 0.0025)),
        (False, (False, None)),
    ],
)
def test_prepare_result_conversion(result: Any, expected: Any) -> None:
    assert GLib._prepare_result(result) == expected


@pytest.mark.parametrize(
    ("result", "match"),
    [
        (True, "tuple or False"),
        ([True, 0], "tuple or False"),
        ((True,), "exactly 2"),
        ((True, "1"), "number of ms"),
        ((True, float("nan")), "number of ms"),
    ],
)
def test_prepare_result_rejects_garbage(result: Any, match: str) -> None:
    with pytest.raises(TypeError, match=match):
        GLib._prepare_result(result)


def test_ready_time_roundtrips_microseconds() -> None:
    s = GLib.Source()
    assert s.get_ready_time() == -1
    for us in (0, 1, 123_456_789_012, GLib.get_monotonic_time() + 86_400_000_000):
        s.set_ready_time(us)
        assert s.get_ready_time() == us
    s.set_ready_time(-1)
    assert s.get_ready_time() == -1
    s.destroy()
    s.set_ready_time(5)  # no-op on a destroyed source, as GLib allows it
    assert s.get_ready_time() == -1


def test_get_time_is_cached_per_iteration_in_microseconds() -> None:
    ctx = GLib.MainContext()
    seen: list[tuple[int, float]] = []

    class S(GLib.Source):
        def prepare(self) -> tuple[bool, int]:
            return (True, -1)

        def dispatch(self, callback: Any, args: Any) -> bool:
            seen.append((self.get_time(), self._src.time()))
            return False

    s = S()
    s.attach(ctx)
    ctx.iteration(False)
    ((us, seconds),) = seen
    assert us == round(seconds * 1_000_000)


def test_core_and_glib_sources_share_one_context() -> None:
    core_ctx = aioqloop.MainContext.default()
    glib_ctx = GLib.MainContext.default()
    assert glib_ctx._ctx is core_ctx
    core_id = aioqloop.idle_add(lambda: False)
    facade = glib_ctx.find_source_by_id(core_id)
    assert isinstance(facade, GLib.Idle)
    assert facade is glib_ctx.find_source_by_id(core_id)  # one facade per source
    assert facade.get_id() == core_id
    glib_id = GLib.timeout_add(10, lambda: False)
    core_src = core_ctx.find_source_by_id(glib_id)
    assert isinstance(core_src, aioqloop.TimeoutSource)
    assert core_src.interval == 0.01
    assert isinstance(glib_ctx.find_source_by_id(glib_id), GLib.Timeout)
    assert GLib.source_remove(core_id) and GLib.source_remove(glib_id)


def test_main_current_source_is_the_same_object() -> None:
    ctx = GLib.MainContext()
    seen: list[Any] = []

    class S(GLib.Source):
        def prepare(self) -> tuple[bool, int]:
            return (True, -1)

        def dispatch(self, callback: Any, args: Any) -> bool:
            seen.append(GLib.main_current_source())
            return False

    s = S()
    s.attach(ctx)
    idle = GLib.Idle(GLib.PRIORITY_HIGH)
    idle.set_callback(lambda: seen.append(GLib.main_current_source()))
    idle.attach(ctx)
    ctx.iteration(False)
    ctx.iteration(False)
    assert seen[0] is idle and seen[1] is s
    assert GLib.main_current_source() is None


def test_set_callback_varargs_and_none() -> None:
    ctx = GLib.MainContext()
    got: list[Any] = []
    s = GLib.Idle()
    s.set_callback(lambda *a: got.append(a) or True, 1, 2, 3)
    s.attach(ctx)
    ctx.iteration(False)
    s.set_callback(lambda: got.append("none") or False)
    ctx.iteration(False)
    assert got == [(1, 2, 3), "none"]
    assert s.is_destroyed()


def test_names_and_child_removal() -> None:
    parent = GLib.Source()
    parent.set_name("parent")
    assert parent.get_name() == "parent"
    child = GLib.Idle()
    parent.add_child_source(child)
    parent.remove_child_source(child)
    assert child.is_destroyed() and not parent.is_destroyed()
    assert "parent" in repr(parent)


def test_unix_fd_source_api_modify_and_remove(pipe: tuple[int, int]) -> None:
    r, w = pipe
    ctx = GLib.MainContext()
    seen: list[int] = []

    class F(GLib.Source):
        def prepare(self) -> tuple[bool, int]:
            return (False, -1)

        def check(self) -> bool:
            return False

        def dispatch(self, callback: Any, args: Any) -> bool:
            seen.append(int(self.query_unix_fd(tag)))
            return True

    f = F()
    tag = f.add_unix_fd(w, GLib.IOCondition.IN)
    f.attach(ctx)
    try:
        assert not ctx.iteration(False)  # nothing to read on a write end
        f.modify_unix_fd(tag, GLib.IOCondition.OUT)
        assert ctx.iteration(False)
        assert seen == [int(GLib.IO_OUT)]
        f.remove_unix_fd(tag)
        assert not ctx.iteration(False)
    finally:
        f.destroy()
        os.close(r)
        os.close(w)


def test_io_add_watch_fd_and_file_forms(pipe: tuple[int, int]) -> None:
    r, w = pipe
    loop = GLib.MainLoop()
    got: list[Any] = []

    def cb(channel: Any, cond: Any, *data: Any) -> bool:
        got.append((channel, int(cond), data))
        if len(got) == 2:
            loop.quit()
        return False

    with open(r, "rb", buffering=0, closefd=False) as f:
        GLib.io_add_watch(r, GLib.PRIORITY_DEFAULT, GLib.IO_IN, cb, "x")
        with pytest.warns(DeprecationWarning, match="without priority"):
            GLib.io_add_watch(f, GLib.IO_IN, cb)
        os.write(w, b"!")
        loop.run()
        assert sorted(got, key=lambda g: len(g[2])) == [(f, 1, ()), (r, 1, ("x",))]
    os.close(r)
    os.close(w)


def test_iochannel_add_watch_warns_at_the_caller_and_watches() -> None:
    r, w = os.pipe()
    ch = GLib.IOChannel.unix_new(r)
    loop = GLib.MainLoop()
    got: list[Any] = []

    def cb(channel: Any, cond: Any, *data: Any) -> bool:
        got.append((channel, int(cond), data))
        loop.quit()
        return False

    try:
        with pytest.warns(GLib.PyGIDeprecationWarning, match="use GLib.io_add_watch") as rec:
            sid = ch.add_watch(GLib.IO_IN, cb, "x", priority=GLib.PRIORITY_HIGH)
        assert rec[0].filename == __file__  # attributed to the caller, not aioqloop
        src = GLib.main_context_default().find_source_by_id(sid)
        assert src is not None and src.get_priority() == GLib.PRIORITY_HIGH
        with pytest.raises(TypeError):
            ch.add_watch(GLib.IO_IN, cb, prio=1)  # a misspelt keyword is refused
        os.write(w, b"!")
        loop.run()
        assert got == [(ch, int(GLib.IO_IN), ("x",))]
    finally:
        os.close(r)
        os.close(w)


# ------------------------------------------------------ timeout_add_seconds (§2.7)
def test_timer_perturb_matches_glib_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    monkeypatch.setenv("HOSTNAME", "aioqloop-test")
    monkeypatch.setattr(glib_sources, "_perturb_us", None)
    assert GLib._timer_perturb() == 220598  # what GLib 2.74 computes for this host name
    monkeypatch.delenv("HOSTNAME")
    monkeypatch.setattr(glib_sources, "_perturb_us", None)
    assert GLib._timer_perturb() == 0


@pytest.mark.parametrize(
    ("now", "seconds", "perturb", "expected"),
    [
        (10.2, 1, 0, 11.0),  # remainder 0.2 s < 0.25 s: rounds down
        (10.25, 1, 0, 12.0),  # remainder 0.25 s: rounds up
        (10.9, 2, 0, 13.0),
        (10.0, 1, 300_000, 11.3),  # all land on the session phase
        (10.5, 1, 300_000, 11.3),
        (10.6, 1, 300_000, 12.3),  # 11.6 - 0.3 leaves 0.3 s >= 0.25 s: next second
    ],
)
def test_seconds_coalescing(
    monkeypatch: pytest.MonkeyPatch, now: float, seconds: int, perturb: int, expected: float
) -> None:
    monkeypatch.setattr(glib_sources, "_perturb_us", perturb)
    assert GLib._coalesced_expiry(now, seconds) == pytest.approx(expected, abs=1e-6)


def test_timeout_add_seconds_fires_on_the_phase_and_rearms(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(glib_sources, "_perturb_us", 300_000)

    async def main() -> list[int]:
        done = asyncio.get_running_loop().create_future()
        fired: list[int] = []

        def cb(tag: str) -> bool:
            fired.append(GLib.get_monotonic_time())
            if len(fired) == 3:
                done.set_result(None)
                return False
            return True

        GLib.timeout_add_seconds(2, cb, "s")
        await done
        return fired

    fired = aioqloop.run(main(), clock=aioqloop.VirtualClock(start=100.9))
    # 100.9 + 2 = 102.9; minus the phase: 102.6 s, remainder 0.6 s >= 0.25: 103 + 0.3
    assert fired == [103_300_000, 105_300_000, 107_300_000]


# ------------------------------------------------ MainLoop: sync, nested, async
def test_main_loop_run_from_sync_code_runs_asyncio_too() -> None:
    loop = GLib.MainLoop()
    aio_loop = GLib.MainContext.default()._ctx.loop
    assert aio_loop is not None
    log: list[str] = []

    async def coro() -> None:
        await asyncio.sleep(0)
        log.append("coroutine")
        GLib.idle_add(lambda: log.append("idle") or loop.quit())

    aio_loop.create_task(coro())
    assert not loop.is_running()
    loop.run()
    assert log == ["coroutine", "idle"]
    assert not loop.is_running()


def test_nested_main_loop_inside_an_aioqloop_program() -> None:
    async def main() -> list[Any]:
        loop = GLib.MainLoop()
        log: list[Any] = []
        done = asyncio.get_running_loop().create_future()

        def inner() -> bool:
            log.append(("inner", GLib.main_depth(), loop.is_running()))
            loop.quit()
            return False

        def outer() -> bool:
            current = GLib.main_current_source()
            assert current is not None
            log.append(("outer", GLib.main_depth(), current.get_id()))
            GLib.timeout_add(1, inner)
            loop.run()  # nested, from a source callback
            log.append(("after", GLib.main_depth(), loop.is_running()))
            done.set_result(None)
            return False

        sid = GLib.idle_add(outer)
        await done
        log.append(("top", GLib.main_depth(), sid))
        return log

    log = aioqloop.run(main())
    sid = log[-1][2]
    assert log == [("outer", 1, sid), ("inner", 2, True), ("after", 1, False), ("top", 0, sid)]


def test_run_from_a_coroutine_is_refused_and_run_async_works() -> None:
    async def main() -> list[str]:
        loop = GLib.MainLoop()
        with pytest.raises(RuntimeError, match="run_async"):
            loop.run()
        log: list[str] = []
        GLib.timeout_add(5, lambda: log.append("timeout") or loop.quit())
        await loop.run_async()
        log.append("after")
        return log

    assert aioqloop.run(main()) == ["timeout", "after"]


def test_main_loop_new_and_default_context() -> None:
    ml = GLib.MainLoop.new(None, False)
    assert ml.get_context() == GLib.MainContext.default()
    assert not ml.is_running()
    assert GLib.main_depth() == 0
    assert "MainLoop" in repr(ml)


# ---------------------------------------------------------------- threads
@pytest.mark.timeout(20)
def test_invoke_full_from_another_thread_runs_in_the_owner() -> None:
    ctx = GLib.MainContext()
    loop = GLib.MainLoop(ctx)
    main_ident = threading.get_ident()
    seen: list[Any] = []

    def invoked(tag: str) -> bool:
        seen.append((tag, threading.get_ident() == main_ident, ctx.is_owner()))
        loop.quit()
        return False

    def start_worker() -> bool:
        threading.Thread(
            target=lambda: ctx.invoke_full(GLib.PRIORITY_HIGH, invoked, "from-thread")
        ).start()
        return False

    s = GLib.Idle()
    s.set_callback(start_worker)
    s.attach(ctx)
    loop.run()
    assert seen == [("from-thread", True, True)]


@pytest.mark.timeout(20)
def test_invoke_full_on_unowned_default_from_a_thread_runs_there() -> None:
    ctx = GLib.MainContext.default()  # the default of the main thread
    seen: list[bool] = []

    def invoked() -> bool:
        seen.append(threading.current_thread() is not threading.main_thread())
        return False

    t = threading.Thread(target=lambda: ctx.invoke_full(GLib.PRIORITY_DEFAULT, invoked))
    t.start()
    t.join()
    assert seen == [True]  # GLib: the thread acquires the free default context


@pytest.mark.timeout(20)
def test_invoke_full_queues_when_another_thread_took_the_default_meanwhile(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The free default context is acquired for a direct call; when another thread took
    # it between the owner check and the acquire, GLib queues an idle source instead of
    # calling the function on a thread that does not own the context.
    ctx = GLib.MainContext.default()
    took, release = threading.Event(), threading.Event()

    def holder() -> None:
        assert ctx.acquire()
        took.set()
        release.wait(10)
        ctx.release()

    thread = threading.Thread(target=holder)
    thread.start()
    assert took.wait(10)
    seen: list[bool] = []

    def invoked() -> bool:
        seen.append(ctx.is_owner())
        return False

    # The owner as read just before the other thread acquired the context.
    monkeypatch.setattr(glib_core, "owner", lambda core: None)
    try:
        ctx.invoke_full(GLib.PRIORITY_DEFAULT, invoked)
    finally:
        monkeypatch.undo()
        release.set()
        thread.join(10)
    assert seen == []  # not called by a thread that does not own the context
    while ctx.iteration(False):  # queued: the owner (now this thread) runs it
        pass
    assert seen == [True]


@pytest.mark.timeout(20)
def test_idle_add_from_a_worker_reaches_the_main_loop() -> None:
    loop = GLib.MainLoop()
    seen: list[Any] = []

    def from_worker(tag: str) -> bool:
        seen.append((tag, threading.current_thread() is threading.main_thread()))
        loop.quit()
        return False

    def start() -> bool:
        threading.Thread(target=lambda: GLib.idle_add(from_worker, "w")).start()
        return False

    GLib.idle_add(start)
    loop.run()
    assert seen == [("w", True)]


@pytest.mark.timeout(20)
def test_quit_and_wakeup_from_another_thread() -> None:
    ctx = GLib.MainContext()
    loop = GLib.MainLoop(ctx)
    started = threading.Event()

    def mark() -> bool:
        started.set()
        return False

    s = GLib.Idle()
    s.set_callback(mark)
    s.attach(ctx)

    def stopper() -> None:
        started.wait()
        ctx.wakeup()
        loop.quit()

    t = threading.Thread(target=stopper)
    t.start()
    loop.run()
    t.join()
    assert not loop.is_running()


def test_worker_asking_first_creates_the_shared_default() -> None:
    from aioqloop import loop as core_loop

    glib_context._global_default = None
    result: list[Any] = []
    t = threading.Thread(target=lambda: result.append(GLib.MainContext.default()))
    t.start()
    t.join()
    assert GLib.MainContext.default() == result[0]  # adopted by the main thread
    assert core_loop._holder() is result[0]._ctx.loop
    assert asyncio.get_event_loop_policy().get_event_loop() is core_loop._holder()


# ------------------------------------------------------------ exceptions
def test_callback_exception_goes_to_sys_excepthook(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _capture_excepthook(monkeypatch)
    loop = GLib.MainLoop()
    log: list[str] = []

    def bad() -> bool:
        log.append("bad")
        raise ValueError("boom")

    def good() -> bool:
        log.append("good")
        if log.count("good") == 2:
            loop.quit()
        return True

    bad_id = GLib.idle_add(bad)
    good_id = GLib.idle_add(good)
    loop.run()
    assert log == ["bad", "good", "good"]
    assert len(seen) == 1
    assert isinstance(seen[0]["exception"], ValueError)
    assert GLib.MainContext.default().find_source_by_id(bad_id) is None
    assert GLib.source_remove(good_id)


def test_hook_exception_and_bad_prepare_result_destroy_the_source(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ctx = GLib.MainContext()
    seen = _capture_excepthook(monkeypatch)

    class BadPrepare(GLib.Source):
        def prepare(self) -> Any:
            return True

        def check(self) -> bool:
            return False

    class RaisingCheck(GLib.Source):
        def check(self) -> bool:
            raise KeyError("c")

    a, b = BadPrepare(), RaisingCheck()
    a.attach(ctx)
    b.attach(ctx)
    ctx.iteration(False)
    assert a.is_destroyed() and b.is_destroyed()
    excs = sorted(type(c["exception"]).__name__ for c in seen)
    assert excs == ["KeyError", "TypeError"]


def test_direct_invoke_exception_is_reported_not_raised(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen = _capture_excepthook(monkeypatch)
    ctx = GLib.MainContext.default()

    def bad() -> bool:
        raise ValueError("in invoke")

    ctx.invoke_full(GLib.PRIORITY_DEFAULT, bad)
    assert [str(c["exception"]) for c in seen] == ["in invoke"]


# -------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        # (The arg-type ignores mark the deliberately wrong types: the refusal is the test.)
        (lambda: GLib.timeout_add(-1, print), OverflowError, "not in range"),
        (lambda: GLib.timeout_add(2**32, print), ValueError, "not in range"),
        (lambda: GLib.timeout_add("x", print), TypeError, "must be a number"),  # type: ignore[arg-type]
        (lambda: GLib.timeout_add(float("nan"), print), ValueError, "finite"),  # type: ignore[arg-type]
        (lambda: GLib.timeout_add(10, 5), TypeError, "Callback needs to be a function"),  # type: ignore[arg-type]
        (lambda: GLib.timeout_add_seconds(-1, print), OverflowError, "not in range"),
        (lambda: GLib.idle_add(5), TypeError, "Callback needs to be a function"),  # type: ignore[arg-type]
        (lambda: GLib.idle_add(print, priority="x"), TypeError, "priority"),
        (lambda: GLib.idle_add(print, prio=1), TypeError, "unexpected keyword"),
        (lambda: GLib.source_remove(-1), OverflowError, "not in range"),
        (lambda: GLib.source_remove("x"), TypeError, "must be a number"),  # type: ignore[arg-type]
        (lambda: GLib.Timeout(-5), OverflowError, "not in range"),
        (lambda: GLib.Idle().attach(5), TypeError, "Expected GLib.MainContext"),  # type: ignore[arg-type]
        (lambda: GLib.Idle().set_ready_time("x"), TypeError, "must be a number"),  # type: ignore[arg-type]
        (lambda: GLib.Source().add_child_source(5), TypeError, "GLib.Source"),  # type: ignore[arg-type]
        (lambda: GLib.Idle().set_callback(5), TypeError, "Callback needs to be a function"),  # type: ignore[arg-type]
        (lambda: GLib.Idle().set_priority(None), TypeError, "priority"),  # type: ignore[arg-type]
        (lambda: GLib.MainContext().find_source_by_id(-1), OverflowError, "not in range"),
        (lambda: GLib.MainContext().invoke_full("x", print), TypeError, "priority"),  # type: ignore[arg-type]
        (lambda: GLib.MainContext().invoke_full(0, None), TypeError, "Callback"),  # type: ignore[arg-type]
        (lambda: GLib.MainLoop(5), TypeError, "Expected GLib.MainContext"),  # type: ignore[arg-type]
        (lambda: GLib.unix_fd_add_full(0, "x", GLib.IO_IN, print), TypeError, "fd"),  # type: ignore[arg-type]
        (lambda: GLib.child_watch_add(0, 1), TypeError, "expected callback"),
    ],
)
def test_bad_input_raises_at_the_call(call: Any, exc: type[BaseException], match: str) -> None:
    with pytest.raises(exc, match=match):
        call()


def test_closed_fd_raises_oserror(pipe: tuple[int, int]) -> None:
    r, w = pipe
    os.close(r)
    os.close(w)
    with pytest.raises(OSError):
        GLib.unix_fd_add_full(GLib.PRIORITY_DEFAULT, r, GLib.IO_IN, print)


def test_attach_twice_or_destroyed_raises() -> None:
    ctx = GLib.MainContext()
    s = GLib.Idle()
    s.attach(ctx)
    with pytest.raises(RuntimeError, match="already attached"):
        s.attach(ctx)
    d = GLib.Idle()
    d.destroy()
    with pytest.raises(RuntimeError, match="destroyed"):
        d.attach(ctx)


def test_zero_ids_return_none_and_log(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="aioqloop.glib"):
        assert GLib.MainContext().find_source_by_id(0) is None
        assert GLib.source_remove(0) is False
    assert len(caplog.records) == 2


def test_float_interval_is_truncated_like_pygobject() -> None:
    # A float where the annotation says int: PyGObject accepts it, and so must we.
    sid = GLib.timeout_add(1.9, lambda: False)  # type: ignore[arg-type]
    src = aioqloop.MainContext.default().find_source_by_id(sid)
    assert isinstance(src, aioqloop.TimeoutSource) and src.interval == 0.001
    assert GLib.source_remove(sid)


# ------------------------------------------------- PyGObject conformance (issue items)
def test_io_add_watch_passes_only_the_asked_conditions_and_idles_still_run(
    pipe: tuple[int, int],
) -> None:
    r, w = pipe
    os.write(w, b"x")
    os.close(w)  # the reader now sees IN|HUP, then HUP for ever
    calls: list[int] = []
    idles: list[int] = []
    ml = GLib.MainLoop()

    def on_in(fd: int, cond: int) -> bool:
        calls.append(int(cond))
        os.read(fd, 1)
        return True

    def idle() -> bool:
        idles.append(1)
        if len(idles) == 50:
            ml.quit()
        return True

    sid = GLib.io_add_watch(r, GLib.PRIORITY_DEFAULT, GLib.IO_IN, on_in)
    iid = GLib.idle_add(idle)
    ml.run()
    assert calls == [int(GLib.IO_IN)]  # HUP was not asked for: never passed, never fires
    assert GLib.source_remove(sid) and GLib.source_remove(iid)
    os.close(r)


def test_io_add_watch_keyword_priority_and_old_forms_warn(pipe: tuple[int, int]) -> None:
    r, _ = pipe
    with pytest.warns(GLib.PyGIDeprecationWarning):
        sid = GLib.io_add_watch(r, GLib.IO_IN, lambda *a: True, priority=GLib.PRIORITY_HIGH)
    src = GLib.MainContext.default().find_source_by_id(sid)
    assert src is not None and src.priority == GLib.PRIORITY_HIGH
    assert GLib.source_remove(sid)
    with pytest.raises(TypeError):
        GLib.io_add_watch(r, GLib.PRIORITY_DEFAULT, GLib.IO_IN)


@pytest.mark.parametrize(("verdict", "kept"), [((0, 1), False), ((1, 0), True), ((), False)])
def test_callback_tuple_verdict_is_its_first_element(verdict: Any, kept: bool) -> None:
    ctx = GLib.MainContext()
    src = GLib.Idle()
    src.set_callback(lambda: verdict)
    src.attach(ctx)
    ctx.iteration(False)
    assert src.is_destroyed() is not kept
    src.destroy()


def test_fd_watch_lets_go_of_its_socket_without_the_cyclic_gc() -> None:
    import socket
    import weakref

    a, b = socket.socketpair()
    ref = weakref.ref(a)
    ctx = GLib.MainContext.default()
    sid = GLib.io_add_watch(a, GLib.PRIORITY_DEFAULT, GLib.IO_IN, lambda s, c: False)
    del a
    b.send(b"x")
    gc.disable()
    try:
        while ctx.find_source_by_id(sid) is not None:
            ctx.iteration(True)
        assert ref() is None  # freed by reference counting alone
    finally:
        gc.enable()
        b.close()


def test_ready_time_of_minus_infinity_is_a_past_time() -> None:
    s = GLib.Source()
    s._src.set_ready_time(float("-inf"))
    assert 0 <= s.get_ready_time() <= GLib.get_monotonic_time()
    s.destroy()


def test_missing_names_exist() -> None:
    assert GLib.check_version(2, 0, 0) is None
    assert GLib.check_version(3, 0, 0) is not None
    with pytest.warns(GLib.PyGIDeprecationWarning):
        GLib.threads_init()
    with pytest.warns(GLib.PyGIDeprecationWarning):
        assert GLib.get_current_time() > 1.3e9
    assert GLib.Error("m", "d", 2).matches("d", 2)
    assert isinstance(GLib.timeout_source_new(5), GLib.Timeout)
    assert isinstance(GLib.idle_source_new(), GLib.Idle)
    assert GLib.unix_signal_add_full is GLib.unix_signal_add
    ctx = GLib.MainContext()
    assert ctx.acquire() and ctx.is_owner()
    ctx.release()
    assert not ctx.is_owner()
    assert GLib.MainContext.get_thread_default() is None
    ctx.push_thread_default()
    assert GLib.MainContext.get_thread_default() is ctx
    assert GLib.MainContext.ref_thread_default() is ctx
    ctx.pop_thread_default()
    assert GLib.MainContext.get_thread_default() is None


def test_non_blocking_iteration_inside_a_coroutine_dispatches_sources_only() -> None:
    # gi.events' test_nested_context_iteration; the core refuses any iteration in a task.
    async def main() -> tuple[list[str], list[str]]:
        loop = asyncio.get_running_loop()
        log: list[str] = []
        loop.call_soon(log.append, "asyncio")
        GLib.idle_add(lambda: log.append("idle") and False)
        ctx = GLib.MainContext.default()
        while ctx.iteration(False):
            pass
        during = list(log)
        with pytest.raises(RuntimeError, match="coroutine"):
            ctx.iteration(True)  # would block the loop
        with pytest.raises(RuntimeError, match="coroutine"):
            aioqloop.get_main_context().iteration(False)  # the core's own rule
        await asyncio.sleep(0)
        return during, log

    during, after = aioqloop.run(main())
    assert during == ["idle"]
    assert after == ["idle", "asyncio"]


def test_the_overrides_argument_parsers_pygobjects_tests_call_are_there() -> None:
    # PyGObject's test_overrides_glib.py and test_subprocess.py call these as GLib._name.
    args = GLib._child_watch_add_get_args(GLib.PRIORITY_DEFAULT, 1234, print)
    assert args[:3] == (GLib.PRIORITY_DEFAULT, 1234, print)
    assert callable(GLib._io_add_watch_get_args)
