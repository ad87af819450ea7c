"""The uvloop base (`aioqloop._uvloop`): its class, its driver, its limits."""

from __future__ import annotations

import asyncio
import builtins
import threading
from typing import Any

import pytest

import aioqloop
from aioqloop import _uvloop
from aioqloop.bridge import PlainDriver

uvloop = pytest.importorskip("uvloop")
pytestmark = pytest.mark.timeout(30)


@pytest.mark.usefixtures("default_held")
def test_the_class_is_a_uvloop_loop_with_a_plain_driver() -> None:
    loop = aioqloop.new_event_loop(base="uvloop")
    try:
        assert isinstance(loop, uvloop.Loop)
        assert type(loop) is _uvloop.uvloop_class()
        ctx = aioqloop.get_main_context(loop)
        assert isinstance(ctx._driver, PlainDriver)
        assert ctx._driver._fd == ctx._driver_fileno()  # one add_reader: the epoll fd
    finally:
        loop.close()
    assert aioqloop.get_main_context(loop).closed


def test_missing_uvloop_gives_the_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_uvloop(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "uvloop":
            raise ModuleNotFoundError("No module named 'uvloop'", name="uvloop")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(_uvloop, "_QUVLoop", None)
    monkeypatch.setattr(builtins, "__import__", no_uvloop)
    with pytest.raises(ModuleNotFoundError, match=r"aioqloop\[uvloop\]"):
        aioqloop.new_event_loop(base="uvloop")


def test_the_loop_thread_owns_the_context_while_it_runs() -> None:
    async def main() -> tuple[bool, bool]:
        ctx = aioqloop.get_main_context()
        seen: list[bool] = []
        t = threading.Thread(target=lambda: seen.append(ctx.is_owner()))
        t.start()
        t.join(5)
        return ctx.is_owner(), seen[0]

    assert aioqloop.run(main(), base="uvloop") == (True, False)


def test_bad_arguments_open_nothing() -> None:
    with pytest.raises(TypeError, match="bql"):
        aioqloop.new_event_loop(base="uvloop", bql=5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="clock"):
        aioqloop.new_event_loop(base="uvloop", clock=5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="VirtualClock"):
        aioqloop.new_event_loop(base="uvloop", clock=aioqloop.VirtualClock())


def test_a_prepare_timeout_wakes_the_context() -> None:
    # No pre-poll hook on uvloop: the driver turns prepare's timeout into a timer.
    class Later(aioqloop.Source):
        def __init__(self, when: float) -> None:
            super().__init__()
            self.when = when

        def prepare(self) -> tuple[bool, float | None]:
            now = self.time()
            return (now >= self.when, max(0.0, self.when - now))

    async def main() -> bool:
        loop = asyncio.get_running_loop()
        fired = loop.create_future()
        src = Later(loop.time() + 0.05)
        src.set_callback(lambda: fired.set_result(True) and False)
        src.attach(aioqloop.get_main_context())
        return await asyncio.wait_for(fired, 5)

    assert aioqloop.run(main(), base="uvloop") is True
