"""Dispatch traces and seeded scheduling order (aioqloop._trace and the plugin's options)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import aioqloop
from aioqloop._tasks import QTask
from aioqloop._trace import DispatchTrace, first_difference

with contextlib.suppress(ImportError):
    import uvloop  # noqa: F401  (see tests/test_pytest_plugin.py)

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
RACE = ROOT / "examples" / "pytest_seeded_race.py"

INI = """
[pytest]
asyncio_default_fixture_loop_scope = function
"""


def _sources_run(base: str, seed: int | None) -> tuple[list[str], list[tuple[str, int]]]:
    """Six idle sources at the default priority and one high-priority idle: the order
    they ran in, and the trace's (name, priority) of each source dispatch."""
    clock = aioqloop.VirtualClock() if base == "asyncio" else None
    loop = aioqloop.new_event_loop(base=base, clock=clock)
    trace = DispatchTrace(seed).attach(loop)
    ran: list[str] = []

    async def main() -> None:
        done = asyncio.Event()

        def make(name: str) -> Callable[[], bool]:
            def cb() -> bool:
                ran.append(name)
                if len(ran) == 7:
                    done.set()
                return aioqloop.SOURCE_REMOVE
            return cb

        for i in range(6):
            src = aioqloop.IdleSource(priority=aioqloop.PRIORITY_DEFAULT)
            src.name = f"idle{i}"
            src.set_callback(make(f"idle{i}"))
            src.attach(aioqloop.get_main_context())
        urgent = aioqloop.IdleSource(priority=aioqloop.PRIORITY_HIGH)
        urgent.name = "urgent"
        urgent.set_callback(make("urgent"))
        urgent.attach(aioqloop.get_main_context())
        await done.wait()

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    return ran, [(name, prio) for kind, name, prio, _t in trace.entries if kind == "source"]


def test_without_a_seed_sources_run_fifo_and_are_traced(base: str) -> None:
    ran, traced = _sources_run(base, None)
    assert ran == ["urgent"] + [f"idle{i}" for i in range(6)]
    assert traced == [("urgent", aioqloop.PRIORITY_HIGH)] + [
        (f"idle{i}", aioqloop.PRIORITY_DEFAULT) for i in range(6)]


def test_a_seed_reorders_one_priority_only_and_replays(base: str) -> None:
    orders = {tuple(_sources_run(base, seed)[0]) for seed in range(8)}
    assert len(orders) > 1  # some seed changes the order within the priority
    for order in orders:
        assert order[0] == "urgent"  # strictly by priority between priorities
        assert sorted(order[1:]) == [f"idle{i}" for i in range(6)]
    assert _sources_run(base, 5) == _sources_run(base, 5)


def test_trace_records_callbacks_with_virtual_time() -> None:
    loop = aioqloop.new_event_loop(clock=aioqloop.VirtualClock())
    trace = DispatchTrace().attach(loop)

    async def worker() -> None:
        await asyncio.sleep(2)

    async def main() -> None:
        aioqloop.timeout_add(1, lambda: aioqloop.SOURCE_REMOVE)  # seconds
        await asyncio.create_task(worker())

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    lines = trace.lines()
    assert "0.000000 0 callback step test_trace_records_callbacks_with_virtual_time." \
        "<locals>.main" in lines
    assert any(line.startswith("1.000000 0 source TimeoutSource(") for line in lines)
    assert any(line.startswith("2.000000 0 callback") for line in lines)
    assert first_difference(lines, list(lines)) is None
    assert first_difference(lines, lines[:-1]) is not None


def test_detach_restores_fifo() -> None:
    loop = aioqloop.new_event_loop()
    trace = DispatchTrace(3).attach(loop)
    trace.detach()
    assert loop._aioqloop_context._tap is None
    assert type(loop._ready) is __import__("collections").deque  # type: ignore[attr-defined]
    loop.close()


# ----------------------------------------------------- the plugin, in subprocesses
def _race(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    pytester.makeini(INI)
    shutil.copy(RACE, pytester.path / "test_race.py")
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:looptime_plugin",
                                         "--timeout=20", *args)


def test_seeded_runs_find_the_check_then_act_race(pytester: pytest.Pytester) -> None:
    result = _race(pytester)
    result.assert_outcomes(passed=1)  # FIFO: the race never shows
    result = _race(pytester, "--aioqloop-seeds=8")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) >= 1 and outcomes.get("passed", 0) >= 1
    failing = [line.split("[seed")[1].split("]")[0]
               for line in result.outlines if line.startswith("FAILED")]
    seed = failing[0]
    result.stdout.fnmatch_lines([f"*scheduling seed {seed}: rerun with "
                                 f"--aioqloop-seed={seed}*"])
    # The printed seed replays the failure, every time.
    for _ in range(2):
        again = _race(pytester, f"--aioqloop-seed={seed}")
        again.assert_outcomes(failed=1)
        again.stdout.fnmatch_lines(["*assert -30 >= 0*"])


def test_same_seed_same_trace(pytester: pytest.Pytester) -> None:
    _race(pytester, "--aioqloop-seed=4", "--aioqloop-trace-dir=a")
    _race(pytester, "--aioqloop-seed=4", "--aioqloop-trace-dir=b")
    _race(pytester, "--aioqloop-seed=0", "--aioqloop-trace-dir=c")
    name = "test_race.py_test_balance_never_goes_negative.trace"
    a, b, c = ((pytester.path / d / name).read_text() for d in "abc")
    assert a == b and a != c
    assert " callback step test_balance_never_goes_negative.<locals>.buy_gadget" in a
    # A failing test gets the comparison as a report section.
    result = _race(pytester, "--aioqloop-seed=4", "--aioqloop-trace-compare=a")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*dispatch trace same as *"])


def test_trace_compare_fails_a_passing_test_whose_order_changed(
        pytester: pytest.Pytester) -> None:
    _race(pytester, "--aioqloop-trace-dir=fifo").assert_outcomes(passed=1)
    _race(pytester, "--aioqloop-trace-compare=fifo").assert_outcomes(passed=1)
    result = _race(pytester, "--aioqloop-seed=1", "--aioqloop-trace-compare=fifo")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*the dispatch trace differs from *: dispatch *"])
    result = _race(pytester, "--aioqloop-trace-compare=missing")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*no saved dispatch trace for this test*"])


def test_marker_and_ini_seed(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI + "aioqloop_seed = 4\n")
    source = RACE.read_text()
    pytester.makepyfile(test_race=source)
    opts = ("-p", "no:cacheprovider", "-p", "no:looptime_plugin", "--timeout=20")
    pytester.runpytest_subprocess(*opts).assert_outcomes(failed=1)
    pytester.makepyfile(test_race=source.replace(
        "@pytest.mark.aioqloop(virtual_clock=True)",
        "@pytest.mark.aioqloop(virtual_clock=True, seed=None)"))
    pytester.runpytest_subprocess(*opts).assert_outcomes(passed=1)
    pytester.makepyfile(test_race=source.replace(
        "@pytest.mark.aioqloop(virtual_clock=True)",
        "@pytest.mark.aioqloop(virtual_clock=True, seed='x')"))
    result = pytester.runpytest_subprocess(*opts)
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*mark.aioqloop(seed=) takes an int or None*"])


def _prioritized_steps(seed: int | None) -> tuple[list[str], list[str]]:
    """Four tasks at PRIORITY_HIGH wake together: the order their steps ran in, and the
    trace's queued calls."""
    loop = aioqloop.new_event_loop(clock=aioqloop.VirtualClock())
    trace = DispatchTrace(seed).attach(loop)
    ran: list[str] = []

    async def step(name: str, go: asyncio.Event) -> None:
        task = asyncio.current_task()
        assert isinstance(task, QTask)
        task.set_priority(aioqloop.PRIORITY_HIGH)
        await go.wait()
        ran.append(name)

    async def main() -> None:
        go = asyncio.Event()
        tasks = [asyncio.create_task(step(f"t{i}", go)) for i in range(4)]
        await asyncio.sleep(1)
        go.set()
        await asyncio.gather(*tasks)

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    calls = [name for kind, name, prio, _t in trace.entries
             if kind == "call" and prio == aioqloop.PRIORITY_HIGH]
    return ran, calls


def test_prioritized_task_steps_are_seeded_and_traced() -> None:
    fifo, calls = _prioritized_steps(None)
    assert fifo == ["t0", "t1", "t2", "t3"]
    assert "step _prioritized_steps.<locals>.step" in calls
    orders = {tuple(_prioritized_steps(seed)[0]) for seed in range(8)}
    assert len(orders) > 1
    assert _prioritized_steps(3) == _prioritized_steps(3)


def test_a_trace_stays_with_its_loop_when_the_default_context_moves(base: str) -> None:
    # A seeded trace left attached to a closed main-thread loop must not reorder the
    # next loop's dispatches: the global default context moves on without the trace.
    first = aioqloop.new_event_loop(base=base)
    ctx = aioqloop.get_main_context(first)
    DispatchTrace(5).attach(first)
    assert ctx._tap is not None
    first.close()
    second = aioqloop.new_event_loop(base=base)
    try:
        assert aioqloop.get_main_context(second) is ctx  # the default context moved
        assert ctx._tap is None
    finally:
        second.close()
    assert _sources_run(base, None)[0] == ["urgent"] + [f"idle{i}" for i in range(6)]


def test_a_trace_attached_and_detached_while_a_thread_posts_loses_nothing() -> None:
    # Attaching or detaching a trace replaces the loop's ready queue; a callback another
    # thread posts at that moment must land in one queue or the other, once, in order.
    posts = 1000

    async def main() -> tuple[list[int], int]:
        loop = asyncio.get_running_loop()
        ran: list[int] = []
        all_ran = asyncio.Event()

        def posted(i: int) -> None:
            ran.append(i)
            if len(ran) == posts:
                all_ran.set()

        def poster() -> None:
            for i in range(posts):
                loop.call_soon_threadsafe(posted, i)
                time.sleep(0.00001)  # land each post at another point of the loop's turn

        thread = threading.Thread(target=poster, name="poster")
        interval = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)  # switch threads as often as CPython allows
        swaps = 0
        try:
            thread.start()
            while thread.is_alive():
                for _ in range(10):
                    DispatchTrace(recording=False).attach(loop).detach()
                    swaps += 1
                await asyncio.sleep(0)
            try:
                await asyncio.wait_for(all_ran.wait(), 10)
            except asyncio.TimeoutError:
                pytest.fail(f"{posts - len(ran)} of {posts} posted callbacks were lost")
        finally:
            sys.setswitchinterval(interval)
            thread.join(10)
        return ran, swaps

    ran, swaps = aioqloop.run(main(), base="asyncio")
    assert ran == list(range(posts))  # each once, in the order posted
    assert swaps > 0
