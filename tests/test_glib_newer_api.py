"""GLib's newer source API in `aioqloop.glib` (GLib 2.64-2.78), from GLib's documentation.

Debian's PyGObject (3.42 on GLib 2.74) does not expose the ``*_once`` functions,
``set_dispose_function`` or the context pusher, and its ``set_static_name`` keeps
GLib's pointer to a temporary copy of the Python string (the name then reads as
garbage), so there is nothing to compare against: each test states what GLib's
documentation promises.
"""

from __future__ import annotations

import asyncio
import gc
import sys
from pathlib import Path
from typing import Any

import pytest

import aioqloop
from aioqloop import glib as GLib
from aioqloop.glib import _sources as glib_sources

sys.path.insert(0, str(Path(__file__).parent))
import _glib_scenarios as scenarios


@pytest.fixture(autouse=True)
def _fresh_default_loop() -> Any:
    scenarios.reset_aioqloop_default()
    yield
    scenarios.reset_aioqloop_default()


def _drain(ctx: GLib.MainContext) -> None:
    while ctx.iteration(False):
        pass


# ------------------------------------------------------------ g_idle_add_once (2.74)
def test_idle_add_once_calls_once_ignoring_the_result() -> None:
    calls: list[tuple[Any, ...]] = []

    def cb(*args: Any) -> bool:
        calls.append(args)
        return True  # a GSourceFunc would be called again; a GSourceOnceFunc is not

    sid = GLib.idle_add_once(cb, "a", 2)
    ctx = GLib.MainContext.default()
    assert sid > 0
    src = ctx.find_source_by_id(sid)
    assert src is not None and src.get_priority() == GLib.PRIORITY_DEFAULT_IDLE
    _drain(ctx)
    assert calls == [("a", 2)]
    assert ctx.find_source_by_id(sid) is None


def test_idle_add_once_priority_and_order() -> None:
    order: list[str] = []
    GLib.idle_add_once(order.append, "idle")
    GLib.idle_add_once(order.append, "high", priority=GLib.PRIORITY_HIGH)
    _drain(GLib.MainContext.default())
    assert order == ["high", "idle"]


def test_idle_add_once_removed_before_it_runs_never_runs() -> None:
    calls: list[int] = []
    sid = GLib.idle_add_once(calls.append, 1)
    assert GLib.source_remove(sid)
    _drain(GLib.MainContext.default())
    assert calls == []


def test_once_callback_exception_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[BaseException] = []
    monkeypatch.setattr(sys, "excepthook", lambda t, v, tb: seen.append(v))

    def boom() -> None:
        raise ValueError("once")

    sid = GLib.idle_add_once(boom)
    ctx = GLib.MainContext.default()
    _drain(ctx)
    assert [str(e) for e in seen] == ["once"]
    assert ctx.find_source_by_id(sid) is None


def test_once_functions_refuse_bad_input_and_add_nothing() -> None:
    ctx = GLib.MainContext.default()
    with pytest.raises(TypeError):
        GLib.idle_add_once("not callable")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        GLib.idle_add_once(print, spam=1)
    with pytest.raises(ValueError):
        GLib.timeout_add_once(-1, print)
    with pytest.raises(ValueError):
        GLib.timeout_add_seconds_once(-1, print)
    assert not ctx.pending()


# --------------------------------------------------------- g_timeout_add_once (2.74)
def test_timeout_add_once_fires_once_after_the_interval() -> None:
    async def main() -> tuple[list[Any], int, bool]:
        done = asyncio.get_running_loop().create_future()
        fired: list[Any] = []
        start = GLib.get_monotonic_time()

        def cb(tag: str) -> bool:
            fired.append((tag, GLib.get_monotonic_time() - start))
            GLib.idle_add_once(lambda: done.set_result(None))
            return True

        sid = GLib.timeout_add_once(250, cb, "t")
        src = GLib.MainContext.default().find_source_by_id(sid)
        assert src is not None
        prio = src.get_priority()
        await done
        return fired, prio, GLib.MainContext.default().find_source_by_id(sid) is None

    fired, prio, gone = aioqloop.run(main(), clock=aioqloop.VirtualClock(start=10.0))
    assert fired == [("t", 250_000)]
    assert prio == GLib.PRIORITY_DEFAULT
    assert gone


# ------------------------------------------------ g_timeout_add_seconds_once (2.78)
def test_timeout_add_seconds_once_fires_once_on_the_phase(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(glib_sources, "_perturb_us", 300_000)

    async def main() -> list[int]:
        done = asyncio.get_running_loop().create_future()
        fired: list[int] = []

        def cb() -> bool:
            fired.append(GLib.get_monotonic_time())
            GLib.timeout_add_seconds_once(5, lambda: done.set_result(None))
            return True

        GLib.timeout_add_seconds_once(2, cb)
        await done
        return fired

    fired = aioqloop.run(main(), clock=aioqloop.VirtualClock(start=100.9))
    # Coalesced as timeout_add_seconds: 100.9 + 2 s rounds to 103 s + the 0.3 s phase.
    assert fired == [103_300_000]


# ----------------------------------------------------- g_source_set_static_name (2.70)
def test_set_static_name_names_the_source() -> None:
    idle = GLib.Idle()
    idle.set_static_name("static")
    assert idle.get_name() == "static"
    ctx = GLib.MainContext()
    sid = idle.attach(ctx)
    found = ctx.find_source_by_id(sid)
    assert found is not None and found.get_name() == "static"
    idle.set_name("renamed")
    assert idle.get_name() == "renamed"
    idle.destroy()


# ------------------------------------------------ g_source_set_dispose_function (2.64)
def test_dispose_runs_once_when_an_attached_source_is_done() -> None:
    log: list[Any] = []
    ctx = GLib.MainContext()
    src = GLib.Idle()
    src.set_callback(lambda: log.append("cb") or False)
    identity = id(src)
    src.set_dispose_function(lambda s: log.append(("dispose", id(s) == identity)))
    src.attach(ctx)
    _drain(ctx)  # the callback returns False: GLib drops the context's reference
    assert log == ["cb", ("dispose", True)]
    src.destroy()
    del src
    gc.collect()
    assert log == ["cb", ("dispose", True)]


def test_dispose_comes_before_finalize_of_a_custom_source() -> None:
    log: list[str] = []

    class Custom(GLib.Source):
        def prepare(self) -> tuple[bool, int]:
            return (True, 0)

        def dispatch(self, callback: Any, args: Any) -> bool:
            log.append("dispatch")
            return True

        def finalize(self) -> None:
            log.append("finalize")

    ctx = GLib.MainContext()
    src = Custom()
    src.set_dispose_function(lambda s: log.append(f"dispose {type(s).__name__}"))
    src.attach(ctx)
    assert ctx.iteration(False)
    del src
    gc.collect()
    assert log == ["dispatch", "dispose Custom", "finalize"]


def test_dispose_of_a_source_never_attached_runs_with_its_wrapper() -> None:
    log: list[str] = []
    src = GLib.Timeout(10)
    src.set_dispose_function(lambda s: log.append(type(s).__name__))
    assert log == []
    del src
    gc.collect()
    assert log == ["Timeout"]


def test_dispose_function_is_set_once(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[BaseException] = []
    monkeypatch.setattr(sys, "excepthook", lambda t, v, tb: seen.append(v))
    src = GLib.Idle()

    def bad(s: GLib.Source) -> None:
        raise KeyError("dispose")

    src.set_dispose_function(bad)
    with pytest.raises(RuntimeError):
        src.set_dispose_function(print)
    with pytest.raises(TypeError):
        GLib.Idle().set_dispose_function(42)  # type: ignore[arg-type]
    src.destroy()  # never attached: destroyed is done
    assert [type(e) for e in seen] == [KeyError]
    with pytest.raises(RuntimeError):
        src.set_dispose_function(print)


# -------------------------------------------- g_main_context_pusher_new/free (2.64)
def test_pusher_pushes_for_the_block_and_pops_after() -> None:
    ctx, inner = GLib.MainContext(), GLib.MainContext()
    assert GLib.MainContext.get_thread_default() is None
    with ctx.pusher() as entered:
        assert entered is ctx
        assert GLib.MainContext.get_thread_default() is ctx
        assert GLib.MainContext.ref_thread_default() is ctx
        with inner.pusher():
            assert GLib.MainContext.get_thread_default() is inner
        assert GLib.MainContext.get_thread_default() is ctx
    assert GLib.MainContext.get_thread_default() is None


def test_pusher_pops_when_the_block_raises() -> None:
    ctx = GLib.MainContext()
    with pytest.raises(ZeroDivisionError), ctx.pusher():
        1 / 0
    assert GLib.MainContext.get_thread_default() is None


def test_pusher_is_used_once() -> None:
    ctx = GLib.MainContext()
    pusher = ctx.pusher()
    assert "new" in repr(pusher)
    with pusher:
        pass
    with pytest.raises(RuntimeError), pusher:
        pass
    assert GLib.MainContext.get_thread_default() is None


# ------------------------------------ what current PyGObject (3.52+) returns differently
def test_main_context_query_hands_out_the_poll_fd() -> None:
    import select

    ctx = GLib.MainContext()
    assert ctx.acquire()
    try:
        timeout_ms, fds = ctx.query(GLib.PRIORITY_DEFAULT)
        assert timeout_ms <= 0
        assert len(fds) == 1 and fds[0].events == GLib.IO_IN
        poller = select.poll()
        poller.register(fds[0].fd, select.POLLIN)
        assert poller.poll(0) == []
        ctx.wakeup()  # GLib's wake-up fd is among what query hands out
        assert [fd for fd, _ in poller.poll(0)] == [fds[0].fd]
        assert ctx.query(GLib.PRIORITY_DEFAULT)[0] == -1
        GLib.Idle().attach(ctx)
        assert ctx.query(GLib.PRIORITY_DEFAULT)[0] == 0
    finally:
        ctx.release()


def test_iochannel_read_chars_returns_bytes(tmp_path: Path) -> None:
    path = tmp_path / "data"
    path.write_bytes(b"hello world")
    ch = GLib.IOChannel(filename=str(path))
    assert ch.read_chars() == b"hello world"
    ch = GLib.IOChannel(filename=str(path))
    assert ch.read_chars(5) == b"hello"
    assert ch.read_chars(-1) == b" world"
    assert ch.read_chars() == b""
