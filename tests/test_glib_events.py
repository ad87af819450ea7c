"""`aioqloop.glib.events`: gi.events' loops and policy, and GLib's raw iteration under them."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest

from aioqloop import glib as GLib
from aioqloop.glib import events


def raw_iteration(ctx: GLib.MainContext, may_block: bool = False) -> bool:
    # What PyGObject code reaches by bypassing the override.
    return super(GLib.MainContext, ctx).iteration(may_block)


def run_inside(loop: Any, inside: Callable[[], None]) -> None:
    """Run ``inside`` as an idle callback on ``loop``'s context, then one more loop
    turn, and close the loop; an exception from ``inside`` fails the test."""
    done = loop.create_future()
    errors: list[BaseException] = []

    def callback() -> bool:
        try:
            inside()
        except BaseException as exc:
            errors.append(exc)
        done.set_result(None)
        return GLib.SOURCE_REMOVE

    src = GLib.Idle()
    src.set_callback(callback)
    src.attach(loop._context)
    try:
        loop.run_until_complete(asyncio.wait_for(done, 5))
        loop.run_until_complete(asyncio.sleep(0))
    finally:
        loop.close()
    if errors:
        raise errors[0]


def test_set_event_loop_on_the_main_thread_is_refused_before_the_default_exists() -> None:
    # gi.events: the main thread always has GLib's default context, so no other loop
    # can be attached to it.  Here the default is made on demand: check a fresh process,
    # where it does not exist yet (PyGObject's test_new_event_loop run on its own).
    code = (
        "from aioqloop import glib as GLib\n"
        "from aioqloop.glib import events\n"
        "assert GLib._default_core_if_made() is None\n"
        "policy = events.GLibEventLoopPolicy()\n"
        "loop = policy.new_event_loop()\n"
        "loop.close()\n"
        "try:\n"
        "    policy.set_event_loop(loop)\n"
        "except RuntimeError as exc:\n"
        "    print('refused:', exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert "refused: Thread 'MainThread' already has a main context" in out.stdout


def test_set_event_loop_in_a_thread_pushes_the_loops_context() -> None:
    policy = events.GLibEventLoopPolicy()
    out: list[object] = []

    def thread() -> None:
        loop = policy.new_event_loop()
        try:
            policy.set_event_loop(loop)
            out.append(policy.get_event_loop() is loop)
            out.append(GLib.MainContext.get_thread_default() is loop._context)  # type: ignore[attr-defined]
            with pytest.raises(RuntimeError):
                policy.set_event_loop(policy.new_event_loop())
            policy.set_event_loop(None)
            out.append(GLib.MainContext.get_thread_default())
        finally:
            loop.close()

    t = threading.Thread(target=thread)
    t.start()
    t.join(10)
    assert not t.is_alive()
    assert out == [True, True, None]


def test_raw_iteration_from_a_source_runs_queued_asyncio_callbacks_once() -> None:
    # PyGObject's test_inside_context_iteration: the override leaves asyncio's callbacks
    # to the loop, GLib's own iteration runs them (each once), later ones still wait.
    loop = events.GLibEventLoop()
    log: list[str] = []

    def inside() -> None:
        loop.call_soon(log.append, "a")
        loop.call_soon(log.append, "b")
        while loop._context.iteration(False):
            pass
        log.append("after override")
        assert raw_iteration(loop._context)
        log.append("after raw")
        assert not raw_iteration(loop._context)  # nothing queued any more
        loop.call_soon(log.append, "c")

    run_inside(loop, inside)
    assert log == ["after override", "a", "b", "after raw", "c"]


def test_raw_iteration_inside_a_default_priority_dispatch_keeps_asyncio_counting() -> None:
    # Nested inside asyncio's own run of its ready queue (a default-priority source is
    # one handle there): the queue keeps its length, nothing runs twice or is skipped.
    loop = events.GLibEventLoop()
    log: list[str] = []

    def default_source() -> bool:
        loop.call_soon(log.append, "x")
        raw_iteration(loop._context)
        log.append("source")
        return GLib.SOURCE_REMOVE

    async def main() -> None:
        loop.call_soon(log.append, "first")
        GLib.idle_add(default_source, priority=GLib.PRIORITY_DEFAULT)
        loop.call_soon(log.append, "second")
        for _ in range(5):
            await asyncio.sleep(0)

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    assert sorted(log) == sorted(["first", "second", "x", "source"])
    assert log.count("x") == 1 and log.index("x") < log.index("source")


def test_raw_iteration_inside_a_coroutine_runs_no_asyncio_callback() -> None:
    # Another task's step inside a task would be refused by asyncio (and lost).
    loop = events.GLibEventLoop()
    log: list[str] = []

    async def main() -> list[str]:
        loop.call_soon(log.append, "asyncio")
        GLib.idle_add(lambda: log.append("idle") and False)
        while raw_iteration(loop._context):
            pass
        during = list(log)
        await asyncio.sleep(0)
        return during

    try:
        during = loop.run_until_complete(main())
    finally:
        loop.close()
    assert during == ["idle"]
    assert log == ["idle", "asyncio"]


def test_raw_iteration_on_the_uvloop_base_dispatches_sources_only() -> None:
    pytest.importorskip("uvloop")
    loop = events._uv()()
    log: list[str] = []

    def inside() -> None:
        loop.call_soon(log.append, "asyncio")
        GLib.idle_add(lambda: log.append("idle") and False, priority=GLib.PRIORITY_HIGH)
        while raw_iteration(loop._context):
            pass
        log.append("after raw")

    run_inside(loop, inside)
    assert log == ["idle", "after raw", "asyncio"]


def test_raw_pending_counts_queued_asyncio_callbacks() -> None:
    loop = events.GLibEventLoop()
    seen: list[tuple[bool, bool]] = []

    def inside() -> None:
        before = super(GLib.MainContext, loop._context).pending()
        loop.call_soon(lambda: None)
        seen.append((before, super(GLib.MainContext, loop._context).pending()))
        seen.append((loop._context.pending(), False))

    run_inside(loop, inside)
    assert seen == [(False, True), (False, False)]


def test_raw_pending_while_a_thread_posts_counts_without_failing() -> None:
    # pending() counts asyncio's queued callbacks; another thread appending to that
    # queue meanwhile (call_soon_threadsafe) made the count raise "deque mutated during
    # iteration" in PyGObject code that polls pending().
    loop = events.GLibEventLoop()
    posts = 2000
    ran: list[int] = []
    seen: list[bool] = []

    def poster() -> None:
        for number in range(posts):
            loop.call_soon_threadsafe(ran.append, number)

    def inside() -> None:
        thread = threading.Thread(target=poster)
        interval = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)  # switch threads as often as CPython allows
        try:
            thread.start()
            while thread.is_alive():
                seen.append(super(GLib.MainContext, loop._context).pending())
            thread.join()
        finally:
            sys.setswitchinterval(interval)
        seen.append(super(GLib.MainContext, loop._context).pending())

    run_inside(loop, inside)
    assert seen[-1] is True  # the posts are queued and counted
    assert ran == list(range(posts))  # then each runs once, in order


# ------------------------------------------- gi.events 3.56+: no policy needed
def _fresh(base: str, body: str) -> None:
    """Run ``body`` in a fresh process (GLib's default context and the policy's class
    registry are process-wide), with ``Loop`` the base's GLibEventLoop class."""
    code = (
        "import asyncio, sys, threading, warnings\n"
        "from aioqloop import glib as GLib\n"
        "from aioqloop.glib import events\n"
        "from aioqloop.glib.events import GLibEventLoopPolicy as Policy\n"
        f"Loop = events.GLibEventLoop if {base!r} == 'asyncio' else events.GLibUVEventLoop\n"
        "class BasePolicy(Policy):\n"
        f"    _base = {base!r}\n"
        + body
        + "\nprint('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr


def test_a_loop_takes_the_default_after_a_loop_that_made_a_bottom_half(base: str) -> None:
    # The bottom halves' carrier stays with the default context when its loop closes
    # (a BottomHalf outlives the loop); with nothing scheduled it is not work, so a
    # GLibEventLoop still takes GLib's default context.
    _fresh(base, """
import aioqloop
async def first():
    aioqloop.BottomHalf(print)
aioqloop.run(first())
main_loop = GLib.MainLoop()  # GLib's default context, run by hand once
GLib.timeout_add(1, lambda: main_loop.quit() or False)
main_loop.run()
loop = Loop()
with loop:
    assert hash(loop._context) == hash(GLib.MainContext.default())
    assert loop.run_until_complete(asyncio.sleep(0, "ran")) == "ran"
loop.close()
""")


def test_loop_without_a_context_takes_the_threads(base: str) -> None:
    _fresh(base, """
# Main thread, no thread default: GLib's default context (made by this loop).
main = Loop()
assert GLib.MainContext.get_thread_default() is None
assert hash(main._context) == hash(GLib.MainContext.default())
# A pushed thread default is taken as is.
ctx = GLib.MainContext()
ctx.push_thread_default()
pushed = Loop()
assert hash(pushed._context) == hash(ctx)
ctx.pop_thread_default()
# Another thread without one: a new context of its own.
seen = []
def worker():
    loop = Loop()
    seen.append(hash(loop._context))
    loop.close()
t = threading.Thread(target=worker); t.start(); t.join()
assert seen and seen[0] not in (hash(main._context), hash(ctx))
pushed.close(); main.close()
""")


def test_loop_as_context_manager_pushes_registers_and_counts(base: str) -> None:
    _fresh(base, """
loop = Loop(GLib.MainContext())
assert Policy._get_event_loop() is None
with loop:
    assert GLib.MainContext.get_thread_default() is loop._context
    assert Policy._get_event_loop() is loop
    assert Policy._get_event_loop_for_context(loop._context) is loop
    with loop:  # nested: counted
        pass
    assert GLib.MainContext.get_thread_default() is loop._context
    # A second loop for the same context (the thread default now) is refused.
    same = Loop()
    assert hash(same._context) == hash(loop._context)
    try:
        with same:
            raise AssertionError("entered")
    except RuntimeError:
        pass
    future = same.create_future(); future.set_result(1)
    try:
        same.run_until_complete(future)
        raise AssertionError("ran")
    except RuntimeError:
        pass
    assert GLib.MainContext.get_thread_default() is loop._context
assert GLib.MainContext.get_thread_default() is None
assert Policy._get_event_loop() is None
# Once the first is out, the second may run, on the shared context.  (The refused
# run left asyncio's stop callback of the done future queued, as asyncio does: a run
# with a done future takes it.)
future = same.create_future(); future.set_result(2)
assert same.run_until_complete(future) == 2
hits = []
with same:
    idle = GLib.Idle()
    idle.set_callback(lambda: hits.append("idle") or False)
    idle.attach(GLib.MainContext.get_thread_default())
got = same.create_future()
same.call_later(0.001, got.set_result, 3)
assert same.run_until_complete(got) == 3
assert hits == ["idle"], hits
same.close(); loop.close()
""")


@pytest.mark.skipif(sys.version_info < (3, 12), reason="asyncio.run(loop_factory=) is 3.12+")
def test_asyncio_run_with_the_loop_as_factory_needs_no_policy(base: str) -> None:
    _fresh(base, """
async def main():
    loop = asyncio.get_running_loop()
    assert isinstance(loop, Loop)
    assert Policy._get_event_loop() is loop
    got = loop.create_future()
    GLib.timeout_add(1, lambda: got.set_result("glib") or False)
    return await got
assert not isinstance(asyncio.get_event_loop_policy(), Policy)
for _ in range(2):  # the first loop is unregistered (and closed): again works
    assert asyncio.run(main(), loop_factory=Loop) == "glib"
    assert Policy._get_event_loop() is None
""")


def test_policy_registry_is_on_the_class(base: str) -> None:
    _fresh(base, """
# Not installed: the class-level look-ups answer None rather than create.
assert Policy._get_event_loop() is None
assert Policy._get_event_loop_for_context(GLib.MainContext()) is None
loop = BasePolicy().get_event_loop()
assert isinstance(loop, Loop)
assert Policy._get_event_loop() is loop
assert BasePolicy().get_event_loop() is loop  # any instance: one registry
ctx = GLib.MainContext()
other = BasePolicy().get_event_loop_for_context(ctx)
assert hash(other._context) == hash(ctx) and other is not loop
assert Policy._get_event_loop_for_context(ctx) is other
# Installed (as a context manager): the class look-ups create, and the loops it
# knows are closed at the end.
with BasePolicy() as policy:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert asyncio.get_event_loop_policy() is policy
    fresh = GLib.MainContext()
    made = Policy._get_event_loop_for_context(fresh)
    assert made is not None and hash(made._context) == hash(fresh)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    assert not isinstance(asyncio.get_event_loop_policy(), Policy)
assert loop.is_closed() and other.is_closed() and made.is_closed()
""")


def test_paused_and_running(base: str) -> None:
    _fresh(base, """
loop = Loop(GLib.MainContext())
calls = []
async def main():
    with loop.paused():
        pass
    return "done"
assert loop.run_until_complete(main()) == "done"
# running(quit): stop() also quits the GLib main loop run inside the block.
quits = []
with loop.running(lambda: quits.append("quit")):
    loop.stop()
assert quits == ["quit"]
loop.run_forever()  # a stop() before the run: one iteration, as asyncio does
loop.close()
""")


def test_paused_keeps_raw_iteration_from_running_asyncio_callbacks() -> None:
    loop = events.GLibEventLoop(GLib.MainContext())
    called: list[str] = []

    def inside() -> None:
        loop.call_soon(called.append, "cb")
        with loop.paused():
            while raw_iteration(loop._context):
                pass
        assert called == []
        while raw_iteration(loop._context):
            pass
        assert called == ["cb"]

    run_inside(loop, inside)
