"""The global default context is the one the main thread's loop runs (GLib's
``g_main_context_default``), on both bases and both engines.

Each scenario runs in a fresh interpreter (``sys.executable``): which loop holds the
default context is process-global state, and the report of unrun work is made at exit.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from aioqloop import _engine

ENGINES = [
    pytest.param("c", marks=pytest.mark.skipif(_engine.core is None, reason="no C core")),
    "python",
]

pytestmark = pytest.mark.timeout(60)

# Shared by every scenario: a bounded wait (a lost callback fails in 5 s, never hangs).
PRELUDE = """
import asyncio, sys, threading, time, warnings
import aioqloop
from aioqloop import MainContext
BASE = sys.argv[1]

def in_thread(fn):
    t = threading.Thread(target=fn)
    t.start()
    t.join(5)
    assert not t.is_alive()

async def bounded(aw):
    return await asyncio.wait_for(aw, 5)

def from_worker(log):
    # idle_add, timeout_add and a BottomHalf from a worker, no context= anywhere.
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    def note(tag):
        log.append(tag)
        if len(log) == 3:
            done.set()
        return False
    def worker():
        aioqloop.idle_add(note, "idle")
        aioqloop.timeout_add(0.01, note, "timeout")
        aioqloop.BottomHalf(note, "bh").schedule()
    in_thread(worker)
    return done
"""


def run_script(body: str, base: str, engine: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, AIOQLOOP_ENGINE=engine, PYTHONWARNINGS="default")
    code = PRELUDE + textwrap.dedent(body)
    return subprocess.run(
        [sys.executable, "-c", code, base], env=env, capture_output=True, text=True,
        timeout=50,
    )


def ok(body: str, base: str, engine: str) -> str:
    """Run the scenario; it must exit 0 and report no unrun work.  Returns stdout."""
    proc = run_script(body, base, engine)
    assert proc.returncode == 0, proc.stderr
    assert "never run" not in proc.stderr, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("engine", ENGINES)
def test_module_level_timeout_fires_under_run(base: str, engine: str) -> None:
    out = ok("""
        fired = []
        t0 = time.monotonic()
        sid = aioqloop.timeout_add(0.05, lambda: fired.append(time.monotonic()) or False)

        async def main():
            ctx = MainContext.default()
            assert ctx.find_source_by_id(sid) is not None  # the same context, same id
            while not fired:
                await bounded(asyncio.sleep(0.01))
            return fired[0] - t0

        waited = aioqloop.run(main(), base=BASE)
        assert waited >= 0.05, waited  # the ready time kept its meaning on the new loop
        print("fired")
    """, base, engine)
    assert out.strip() == "fired"


@pytest.mark.parametrize("engine", ENGINES)
def test_module_level_timeout_on_a_virtual_clock_keeps_its_interval(engine: str) -> None:
    # The on-demand loop's clock is the monotonic one, the new loop's a VirtualClock at
    # 5000 s: the ready time is moved by the difference, so 10 s still means 10 s.
    ok("""
        hits = []
        aioqloop.timeout_add(10, lambda: hits.append(asyncio.get_running_loop().time()) or False)

        async def main():
            start = asyncio.get_running_loop().time()
            await asyncio.sleep(60)  # virtual: jumps at once
            return start

        start = aioqloop.run(main(), clock=aioqloop.VirtualClock(5000.0))
        assert len(hits) == 1 and 10 - 1 <= hits[0] - start <= 10, (hits, start)
    """, "asyncio", engine)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("entry", ["run", "runner", "asyncio.run", "policy"])
def test_worker_thread_work_runs_on_the_main_loop(base: str, engine: str, entry: str) -> None:
    if entry == "asyncio.run" and sys.version_info < (3, 12):
        pytest.skip("asyncio.run(loop_factory=) is 3.12+")
    if entry == "policy" and sys.version_info >= (3, 14):
        pytest.skip("event loop policies are deprecated from 3.14")
    out = ok(f"""
        import functools
        ENTRY = {entry!r}

        async def main():
            log = []
            await bounded(from_worker(log).wait())
            return sorted(log)

        factory = functools.partial(aioqloop.new_event_loop, base=BASE)
        if ENTRY == "run":
            got = aioqloop.run(main(), base=BASE)
        elif ENTRY == "runner":
            try:
                Runner = asyncio.Runner
            except AttributeError:  # 3.10: the backport aioqloop depends on there
                from backports.asyncio.runner import Runner
            with Runner(loop_factory=factory) as runner:
                got = runner.run(main())
        elif ENTRY == "asyncio.run":
            got = asyncio.run(main(), loop_factory=factory)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                asyncio.set_event_loop_policy(aioqloop.EventLoopPolicy(BASE))
            got = asyncio.run(main())
        print(got)
    """, base, engine)
    assert out.strip() == "['bh', 'idle', 'timeout']"


@pytest.mark.parametrize("engine", ENGINES)
def test_source_remove_from_a_worker_removes_the_running_loops_source(
    base: str, engine: str
) -> None:
    ok("""
        async def main():
            sid = aioqloop.timeout_add(3600, lambda: None)
            src = MainContext.default().find_source_by_id(sid)
            result = []
            in_thread(lambda: result.append(aioqloop.source_remove(sid)))
            assert result == [True], result
            await bounded(asyncio.sleep(0.01))  # the removal is applied by the loop
            assert src.is_destroyed

        aioqloop.run(main(), base=BASE)
    """, base, engine)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_second_main_thread_loop_gets_its_own_context(base: str, engine: str) -> None:
    ok("""
        first = aioqloop.new_event_loop(base=BASE)
        second = aioqloop.new_event_loop(base=BASE)
        ctx1, ctx2 = aioqloop.get_main_context(first), aioqloop.get_main_context(second)
        assert ctx1 is not ctx2
        assert MainContext.default() is ctx1  # no loop made on demand: the first holds it
        seen = []
        in_thread(lambda: seen.append(MainContext.default()))
        assert seen == [ctx1]
        log = []
        in_thread(lambda: aioqloop.idle_add(lambda: log.append("first") or False))
        second.run_until_complete(asyncio.sleep(0.02))
        assert log == []
        first.run_until_complete(bounded(asyncio.sleep(0.02)))
        assert log == ["first"]
        second.close()
        first.close()
    """, base, engine)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_loop_made_in_another_thread_never_takes_the_default(
    base: str, engine: str
) -> None:
    ok("""
        made = []
        def worker():
            loop = aioqloop.new_event_loop(base=BASE)
            made.append((loop, aioqloop.get_main_context(loop)))
        in_thread(worker)
        (other, other_ctx), = made

        async def main():
            log = []
            await bounded(from_worker(log).wait())
            assert MainContext.default() is not other_ctx
            return log

        assert sorted(aioqloop.run(main(), base=BASE)) == ["bh", "idle", "timeout"]
        assert aioqloop.get_main_context(other) is other_ctx and not other_ctx.closed
        other.close()
    """, base, engine)


@pytest.mark.parametrize("engine", ENGINES)
def test_after_close_the_next_loop_takes_the_default_again(base: str, engine: str) -> None:
    ok("""
        contexts = []

        async def main():
            contexts.append(MainContext.default())
            aioqloop.timeout_add(3600, lambda: None)  # ends with this loop
            log = []
            await bounded(from_worker(log).wait())
            return sorted(log)

        assert aioqloop.run(main(), base=BASE) == ["bh", "idle", "timeout"]
        ctx = MainContext.default()  # free again: a loop made on demand holds it now
        assert ctx is contexts[0] and not ctx.closed
        # The first loop's work ended with it; the bottom halves' carrier is the
        # context's own (a BottomHalf outlives the loop) and stays.
        assert [s.name for s in ctx.statistics().sources] == ["bottom halves"]
        hit = []
        aioqloop.timeout_add(0.01, lambda: hit.append(1) or False)  # between the runs
        assert aioqloop.run(main(), base=BASE) == ["bh", "idle", "timeout"]
        assert contexts[1] is contexts[0] and hit == [1]
    """, base, engine)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_bottom_half_outlives_the_loop_that_held_the_default(base: str, engine: str) -> None:
    # The default context outlives its loop, and so do its bottom halves: one made under
    # the first loop runs under the next.  What was scheduled and not run when the first
    # loop closed ended with it (unscheduled), so it can be scheduled again.
    ok("""
        log = []
        made = []

        async def first():
            made.append(aioqloop.BottomHalf(log.append, "a"))
            made.append(aioqloop.BottomHalf(log.append, "b"))

        loop = aioqloop.new_event_loop(base=BASE)
        loop.run_until_complete(first())
        a, b = made
        b.schedule()  # still scheduled when the loop closes
        loop.close()
        assert not b.scheduled and log == []
        a.schedule()  # between the loops: waits for the next one

        async def second():
            b.schedule()
            while len(log) < 2:
                await bounded(asyncio.sleep(0.001))
            return list(log)

        assert aioqloop.run(second(), base=BASE) == ["a", "b"]
    """, base, engine)


@pytest.mark.parametrize("engine", ENGINES)
def test_worker_work_before_run_waits_for_the_main_loop(base: str, engine: str) -> None:
    # GLib queues work for the default context until the main loop runs: no warning.
    ok("""
        log = []
        in_thread(lambda: aioqloop.idle_add(lambda: log.append("idle") or False))
        bh = []
        in_thread(lambda: bh.append(aioqloop.BottomHalf(lambda: log.append("bh"))))
        bh[0].schedule()

        async def main():
            while len(log) < 2:
                await bounded(asyncio.sleep(0.01))

        aioqloop.run(main(), base=BASE)
        assert sorted(log) == ["bh", "idle"]
    """, base, engine)


@pytest.mark.parametrize("engine", ENGINES)
def test_work_no_loop_ever_runs_is_reported_once_at_exit(engine: str) -> None:
    proc = run_script("""
        def lost_callback():
            return False
        def bh_callback():
            pass
        in_thread(lambda: aioqloop.idle_add(lost_callback))
        in_thread(lambda: aioqloop.BottomHalf(bh_callback, name="lost bh").schedule())
    """, "asyncio", engine)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("RuntimeWarning") == 1, proc.stderr
    assert "never run" in proc.stderr
    assert "lost_callback" in proc.stderr and "lost bh" in proc.stderr


@pytest.mark.parametrize("engine", ENGINES)
def test_work_added_after_the_main_loop_closed_is_reported_at_exit(engine: str) -> None:
    proc = run_script("""
        async def main():
            pass
        aioqloop.run(main())
        def after_the_run():
            return False
        in_thread(lambda: aioqloop.timeout_add(1, after_the_run))
    """, "asyncio", engine)
    assert proc.returncode == 0, proc.stderr
    assert "never run" in proc.stderr and "after_the_run" in proc.stderr


@pytest.mark.parametrize("engine", ENGINES)
def test_glib_default_context_is_the_main_loops(engine: str) -> None:
    ok("""
        from aioqloop import glib as GLib
        log = []
        GLib.timeout_add(10, lambda: log.append("module") or False)

        async def main():
            seen = []
            done = asyncio.Event()
            def worker():
                seen.append(GLib.MainContext.default())
                GLib.idle_add(lambda: (log.append("idle"), done.set()) and False)
            in_thread(worker)
            await bounded(done.wait())
            while len(log) < 2:
                await bounded(asyncio.sleep(0.01))
            assert seen == [GLib.MainContext.default()]

        aioqloop.run(main())
        assert sorted(log) == ["idle", "module"]
    """, "asyncio", engine)


@pytest.mark.parametrize("engine", ENGINES)
def test_the_loop_made_on_demand_takes_the_context_back_after_the_run(
    base: str, engine: str
) -> None:
    # The loop made on demand (the main thread's current loop) hands the context over to
    # run()'s loop and takes it back when that one closes: no second loop made on demand
    # leaves the first one unclosed.
    ok("""
        import gc
        r_fired = []
        on_demand = MainContext.default().loop
        assert asyncio.get_event_loop_policy().get_event_loop() is on_demand

        async def main():
            return MainContext.default()

        ctx = aioqloop.run(main(), base=BASE)
        assert MainContext.default() is ctx and ctx.loop is on_demand
        assert asyncio.get_event_loop_policy().get_event_loop() is on_demand
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            gc.collect()
        assert not [w for w in caught if "unclosed" in str(w.message)], caught
        aioqloop.idle_add(lambda: r_fired.append(1) or False)
        aioqloop.MainContext.default().iteration(False)
        assert r_fired == [1]
        on_demand.close()
    """, base, engine)


@pytest.mark.parametrize("engine", ENGINES)
def test_fds_watched_before_run_are_watched_by_the_main_loop(base: str, engine: str) -> None:
    # An fd source attached before run() sits in the on-demand loop's epoll set; the
    # main loop (either base) must watch it from its own.
    ok("""
        import os
        from aioqloop import IOCondition
        r, w = os.pipe()
        got = []
        aioqloop.fd_add(r, IOCondition.IN, lambda fd, cond: got.append(os.read(fd, 10)) or False)

        async def main():
            os.write(w, b"x")
            while not got:
                await bounded(asyncio.sleep(0.01))

        aioqloop.run(main(), base=BASE)
        assert got == [b"x"]
    """, base, engine)
