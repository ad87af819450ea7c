"""Test tools of the pytest plugin: leaked tasks, stuck loops (inner pytest runs)."""

from __future__ import annotations

import contextlib
import importlib.util
import re

import pytest

from aioqloop import _hang

with contextlib.suppress(ImportError):
    import uvloop  # noqa: F401  (see tests/test_pytest_plugin.py)

pytest_plugins = ["pytester"]

INI = """
[pytest]
asyncio_default_fixture_loop_scope = function
"""

@pytest.fixture(params=["asyncio", "uvloop"])
def base(request: pytest.FixtureRequest) -> str:
    if request.param == "uvloop":
        pytest.importorskip("uvloop")
    return str(request.param)


def run(pytester: pytest.Pytester, source: str, *args: str,
        subprocess: bool = False) -> pytest.RunResult:
    pytester.makeini(INI)
    pytester.makepyfile(test_inner=source)
    opts = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest",
            "-p", "no:looptime_plugin", "-W", "error", *args)
    if subprocess:
        # A deliberately stuck test: in a fresh process, bounded by pytest-timeout
        # (which would report a plain timeout, not the plugin's explanation).
        return pytester.runpytest_subprocess(*opts, "--timeout=20")
    return pytester.runpytest(*opts)


# ------------------------------------------------------------------ leaked tasks
LEAKS = """
import asyncio, pytest, pytest_asyncio

async def forever():
    await asyncio.Event().wait()

@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def server():
    task = asyncio.create_task(forever(), name="module-server")
    yield task
    task.cancel()

@pytest.mark.asyncio(loop_scope="module")
async def test_leaks(server):
    asyncio.create_task(forever(), name="left-behind")
    await asyncio.sleep(0)

@pytest.mark.asyncio(loop_scope="module")
async def test_cleans_up(server):
    task = asyncio.create_task(forever(), name="cancelled")
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.create_task(asyncio.sleep(0), name="awaited")
"""


def test_leaked_task_is_reported_with_its_origin(pytester: pytest.Pytester,
                                                 base: str) -> None:
    result = run(pytester, LEAKS, "--aioqloop", f"--aioqloop-base={base}",
                 "-W", "default::aioqloop.pytest_plugin.AioqloopLeakWarning")
    result.assert_outcomes(passed=2, warnings=1)
    result.stdout.fnmatch_lines([
        "*AioqloopLeakWarning: the test left 1 task(s) pending*",
        "*Task 'left-behind' (forever)*",
        "*created at *test_inner.py:14 in test_leaks*",
        "*test_inner.py:4 in forever*",
    ])
    # The module fixture's task is not the test's.
    assert "module-server" not in result.stdout.str()


def test_leaked_task_fails_under_w_error(pytester: pytest.Pytester) -> None:
    result = run(pytester, """
import asyncio, pytest

@pytest.mark.aioqloop
async def test_leaks():
    asyncio.get_running_loop().create_task(asyncio.Event().wait(), name="orphan")
""")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*AioqloopLeakWarning: the test left 1 task(s) pending*",
                                 "*Task 'orphan'*"])


def test_no_task_report_without_opting_in(pytester: pytest.Pytester) -> None:
    result = run(pytester, """
import asyncio, pytest

@pytest.mark.asyncio
async def test_leaks():
    asyncio.create_task(asyncio.Event().wait())
""")
    result.assert_outcomes(passed=1)


# ------------------------------------------------------------ stuck: virtual clock
DEADLOCK = """
import asyncio, pytest

async def consumer(queue, done):
    item = await queue.get()
    done.set()

@pytest.mark.aioqloop(virtual_clock=True)
async def test_deadlocked():
    queue = asyncio.Queue()
    done = asyncio.Event()
    asyncio.create_task(consumer(queue, done), name="consumer")
    await asyncio.sleep(5)  # virtual time moves; nobody ever puts anything
    await done.wait()

@pytest.mark.aioqloop(virtual_clock=True)
async def test_fine_afterwards():
    await asyncio.sleep(3600)
"""


def test_deadlock_on_virtual_clock_fails_with_a_report(pytester: pytest.Pytester) -> None:
    result = run(pytester, DEADLOCK, subprocess=True)
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines([
        "*test_deadlocked*",
        "*the test's event loop is stuck (virtual time 5.000000 s)*",
        "*2 pending task(s):",
        "Task 'Task-*' (test_deadlocked)",
        "*test_inner.py:13 in test_deadlocked",
        "*locks.py:* in wait",
        "Task 'consumer' (consumer)",
        "*created at *test_inner.py:11 in test_deadlocked",
        "*test_inner.py:4 in consumer",
        "*queues.py:* in get",
    ])
    assert "Timeout" not in result.stdout.str()


def test_stuck_grace_zero_turns_detection_off() -> None:
    from aioqloop.clock import VirtualClock

    clock = VirtualClock()
    assert clock._on_stuck is None  # a clock outside the plugin never reports


def test_executor_work_and_fds_are_not_stuck(pytester: pytest.Pytester) -> None:
    result = run(pytester, """
import asyncio, socket, threading, time, pytest

@pytest.mark.aioqloop(virtual_clock=True)
async def test_slow_thread():
    # Longer than the grace: executor work outstanding is not a stuck loop.
    await asyncio.to_thread(time.sleep, 0.6)

@pytest.mark.aioqloop(virtual_clock=True)
async def test_thread_wakes_through_a_socket():
    a, b = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=a)
    def later():
        time.sleep(0.6)
        b.send(b"x")
    thread = threading.Thread(target=later)
    thread.start()
    assert await reader.read(1) == b"x"  # a watched fd: the loop is not stuck
    thread.join()
    writer.close()
    b.close()
""", "--aioqloop-stuck-grace=0.2")
    result.assert_outcomes(passed=2)


def test_thread_safe_wakeup_within_the_grace(pytester: pytest.Pytester) -> None:
    result = run(pytester, """
import asyncio, threading, pytest

@pytest.mark.aioqloop(virtual_clock=True)
async def test_woken_from_a_thread():
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    started = threading.Event()
    def post():
        started.wait()
        loop.call_soon_threadsafe(fut.set_result, 7)
    thread = threading.Thread(target=post)
    thread.start()
    loop.call_soon(started.set)
    assert await fut == 7
    thread.join()
""")
    result.assert_outcomes(passed=1)


def test_failing_stuck_hook_is_reported_once() -> None:
    from aioqloop import new_event_loop
    from aioqloop.clock import VirtualClock

    clock = VirtualClock()
    loop = new_event_loop(clock=clock)
    seen: list[dict[str, object]] = []
    calls: list[int] = []

    def hook() -> None:
        calls.append(1)
        raise ValueError("broken hook")

    clock._on_stuck = hook
    clock._stuck_grace = 0.0
    try:
        fut = loop.create_future()

        def handler(_loop: object, context: dict[str, object]) -> None:
            seen.append(context)
            fut.set_result(None)  # the loop goes on after the report

        loop.set_exception_handler(handler)
        loop.run_until_complete(fut)
    finally:
        loop.close()
    assert calls == [1]
    assert clock._on_stuck is None
    assert len(seen) == 1 and isinstance(seen[0]["exception"], ValueError)
    assert "stuck hook" in str(seen[0]["message"])


# ---------------------------------------------------------------- stuck: real clock
def test_hang_timeout_on_a_real_clock(pytester: pytest.Pytester, base: str) -> None:
    result = run(pytester, """
import asyncio, pytest

@pytest.mark.aioqloop(hang_timeout=0.3)
async def test_stuck():
    lock = asyncio.Lock()
    await lock.acquire()
    await lock.acquire()

@pytest.mark.aioqloop
async def test_not_watched_without_the_option():
    await asyncio.sleep(0.5)
""", f"--aioqloop-base={base}", subprocess=True)
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines([
        "*made no progress for 0.3 s (hang_timeout)*",
        "Task 'Task-*' (test_stuck)",
        "*test_inner.py:7 in test_stuck",
        "*locks.py:* in acquire",
    ])


def test_hang_timeout_from_the_command_line_and_ini(pytester: pytest.Pytester) -> None:
    source = """
import asyncio, pytest

@pytest.mark.aioqloop
async def test_stuck():
    await asyncio.get_running_loop().create_future()
"""
    result = run(pytester, source, "--aioqloop-hang-timeout=0.3", subprocess=True)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*made no progress for 0.3 s*"])
    pytester.makeini(INI + "aioqloop_hang_timeout = 0.3\n")
    opts = ("-p", "no:cacheprovider", "-p", "no:looptime_plugin", "--timeout=20")
    result = pytester.runpytest_subprocess(*opts)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*made no progress for 0.3 s*"])


def test_hang_timeout_usage_error(pytester: pytest.Pytester) -> None:
    result = run(pytester, """
import pytest

@pytest.mark.aioqloop(hang_timeout="soon")
async def test_x():
    pass
""")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*hang_timeout=) must be a number of seconds*"])
    # Refused at collection, before a loop exists: none is left open (an open loop made
    # on the main thread would hold the global default context for the tests after).
    from aioqloop import loop as core_loop

    holder = core_loop._holder()
    assert holder is None or holder.is_closed() or core_loop._default_on_demand


# ------------------------------------------- no false positives (seen on test_asyncio)
def test_a_new_await_at_the_same_line_is_progress() -> None:
    """A task that awaits one future after another at the same line moves each time,
    though the freed coroutine's address is often reused for the next one (CPython's
    ``test_read_stdout_after_process_exit`` polls ``await asyncio.sleep(0.3)`` and was
    reported as making no progress for 1 s)."""
    import asyncio

    import aioqloop

    async def inner(fut: asyncio.Future[None]) -> None:
        await fut

    async def worker(futs: list[asyncio.Future[None]]) -> None:
        for fut in futs:
            await inner(fut)

    async def main() -> int:
        loop = asyncio.get_running_loop()
        futs = [loop.create_future() for _ in range(50)]
        task = asyncio.create_task(worker(futs))
        await asyncio.sleep(0)
        same = 0
        last = _hang._fingerprint(loop)
        for fut in futs:
            fut.set_result(None)
            await asyncio.sleep(0)  # the worker resumes and awaits the next inner()
            await asyncio.sleep(0)
            mark = _hang._fingerprint(loop)
            same += mark == last
            last = mark
        await task
        return same

    assert aioqloop.run(main()) == 0


def test_time_the_loop_does_not_run_is_not_a_hang() -> None:
    """Between two ``run_until_complete`` calls the loop is not running: however long
    the test works without it, the watch does not count that time (CPython's tests
    run a loop in short bursts from synchronous code)."""
    import asyncio

    import aioqloop

    clock = aioqloop.VirtualClock()
    loop = aioqloop.new_event_loop(clock=clock)
    fired: list[float] = []
    try:
        watch = _hang.ProgressWatch(loop, 1.0, lambda: fired.append(loop.time()))

        def burst() -> None:
            fut = loop.create_future()
            loop.call_later(0.3, fut.set_result, None)  # one sample (at 0.25 s) in it
            loop.run_until_complete(fut)

        burst()
        clock.advance(5.0)  # the loop is not running: time moves at once
        burst()
        assert fired == []
        # The watch still works once the loop waits again: nothing moves for 1 s.
        loop.run_until_complete(asyncio.sleep(2.0))
        assert len(fired) == 1
        watch.stop()
    finally:
        loop.close()


# ---------------------------------------------------------------- the helpers
def test_roots_and_description() -> None:
    import asyncio

    async def main() -> None:
        async def leaf() -> None:
            await asyncio.Event().wait()

        child = asyncio.create_task(leaf(), name="child")
        parent = asyncio.create_task(asyncio.wait_for(child, None), name="parent")
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        me = asyncio.current_task()
        assert me is not None
        assert _hang.roots([child, parent]) == [parent]
        text = _hang.describe_task(child)
        assert "Task 'child' (" in text and "in leaf" in text
        parent.cancel()
        child.cancel()
        await asyncio.gather(parent, child, return_exceptions=True)

    asyncio.run(main())


def test_foreign_fds_and_signal_handlers() -> None:
    import signal
    import socket

    import aioqloop
    from aioqloop import new_event_loop

    loop = new_event_loop()
    try:
        assert _hang.foreign_fds(loop) == []  # the loop's own fds do not count
        a, b = socket.socketpair()
        loop.add_reader(a.fileno(), lambda: None)
        assert _hang.foreign_fds(loop) == [a.fileno()]
        loop.remove_reader(a.fileno())

        async def fd_source() -> list[int]:
            sid = aioqloop.fd_add(b.fileno(), aioqloop.IOCondition.IN, lambda *_: True)
            try:
                return _hang.foreign_fds(loop)
            finally:
                aioqloop.source_remove(sid)

        assert loop.run_until_complete(fd_source()) == [b.fileno()]
        assert _hang.foreign_fds(loop) == []
        loop.add_signal_handler(signal.SIGUSR1, lambda: None)
        assert _hang.foreign_fds(loop) == [-1]
        loop.remove_signal_handler(signal.SIGUSR1)
        a.close()
        b.close()
    finally:
        loop.close()


def test_a_task_that_swallows_the_cancellation_still_fails(pytester: pytest.Pytester) -> None:
    result = run(pytester, """
import asyncio, pytest

@pytest.mark.aioqloop(virtual_clock=True)
async def test_stubborn():
    while True:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            pass  # swallows every cancellation
""", "--aioqloop-stuck-grace=0.1", "-W", "ignore::pytest.PytestUnraisableExceptionWarning",
               subprocess=True)
    # Stuck, cancelled, stuck again: the loop is stopped and the test fails (and so does
    # the runner's teardown, whose cancellation the task swallows too).
    result.assert_outcomes(failed=1, errors=1)
    result.stdout.fnmatch_lines(["*the test's event loop is stuck*",
                                 "*test_inner.py:7 in test_stubborn*"])


# ------------------------------------------------- CPython's test_asyncio, armed
#: Two of CPython's test_asyncio modules that run on aioqloop loops (through
#: IsolatedAsyncioTestCase): task groups, one of which polls ``await asyncio.sleep(0.1)``
#: for 2 s, and ``to_thread`` (executor threads, which a virtual clock waits for); on the
#: stock base with a real clock also the subprocess test that polls a pipe with
#: ``await asyncio.sleep(0.3)`` (on a virtual clock it times out at once; through
#: CPython's harness it does not fit uvloop).  Each passes unarmed on its configuration.
#: The whole package, on both bases and engines: .ci/asyncio-hang-check.sh.
def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # CPython's test package itself is missing
        return False


ASYNCIO_MODULES = tuple(m for m in ("test.test_asyncio.test_taskgroups",  # 3.11+
                                     "test.test_asyncio.test_threads") if _installed(m))
ASYNCIO_SUBPROCESS = ("test.test_asyncio.test_subprocess::SubprocessThreadedWatcherTests"
                      "::test_read_stdout_after_process_exit")
#: A test that is stuck for real, run with them: the harness does arm the loops.
ASYNCIO_CONTROL = """
import asyncio, unittest

class Control(unittest.IsolatedAsyncioTestCase):
    async def test_stuck(self):
        await asyncio.get_running_loop().create_future()
"""


@pytest.mark.timeout(300)
@pytest.mark.parametrize("config", ["asyncio", "uvloop", "virtual"])
def test_cpython_test_asyncio_armed_has_no_false_positive(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, config: str) -> None:
    """Classes of CPython's test_asyncio on aioqloop loops with the detectors armed (a
    1 s hang timeout on a real clock; the stuck detector on a `VirtualClock`): each
    passes and no detector fires, while a stuck control test next to them is reported."""
    import json
    import os

    pytest.importorskip("test.test_asyncio.utils", reason="CPython's test package is not "
                        "installed")
    if config == "uvloop":
        pytest.importorskip("uvloop")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    monkeypatch.setenv("PYTHONPATH", root)  # tests.peer.asyncio_armed, the harness
    pytester.makepyfile(test_control=ASYNCIO_CONTROL)
    results = pytester.path / "results.jsonl"
    armed = (["--asyncio-armed-base=asyncio", "--asyncio-armed-virtual-clock"]
             if config == "virtual" else
             [f"--asyncio-armed-base={config}", "--aioqloop-hang-timeout=1"])
    outcome = pytester.runpytest_subprocess(
        "-c", os.path.join(root, "tests", "peer", "asyncio_armed.ini"),
        "--rootdir", str(pytester.path), "--timeout=60", "--pyargs", *ASYNCIO_MODULES,
        *([ASYNCIO_SUBPROCESS] if config == "asyncio" else []),
        "test_control.py", *armed, f"--asyncio-armed-results={results}", timeout=280)
    entries = {}
    for line in results.read_text().splitlines():
        entry = json.loads(line)
        entries[entry.pop("test")] = entry
    control = entries.pop("test_control::Control::test_stuck")
    assert control["outcome"] == "failed" and control["hang"], outcome.stdout.str()
    # the stuck frame is named (3.10 runs the method inside unittest's runner task)
    assert re.search(r"test_control\.py:\d+ in test_stuck", control["reports"][0])
    assert len(entries) >= 5  # the modules were collected and run (6 on 3.10, 40+ after)
    bad = {test: e for test, e in entries.items()
           if e["hang"] or e["outcome"] not in ("passed", "skipped")}
    assert not bad, outcome.stdout.str()
    assert sum(1 for e in entries.values() if e["loops"]) >= 5  # on aioqloop loops


def test_a_stuck_unittest_case_keeps_its_report(pytester: pytest.Pytester) -> None:
    # pytest reports a unittest case's own recorded error (the CancelledError that
    # stopped its stuck task), not what the phase raised: the report goes beside it.
    result = run(pytester, """
import asyncio, unittest
import aioqloop.pytest_plugin as plugin

class Policy(asyncio.DefaultEventLoopPolicy):
    def new_event_loop(self):
        return plugin.loop_factory(virtual_clock=True)()

asyncio.set_event_loop_policy(Policy())

class Case(unittest.IsolatedAsyncioTestCase):
    async def test_stuck(self):
        await asyncio.get_running_loop().create_future()
""", "-W", "ignore::DeprecationWarning", subprocess=True)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*Captured aioqloop stuck loop call*",
                                 "*the test's event loop is stuck*",
                                 "*test_inner.py:*in test_stuck"])
