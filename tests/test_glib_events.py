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
            out.append(GLib.MainContext.get_thread_default() is loop._context)
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
