"""The engine on a fake port: no asyncio loop at all, time moved by hand.

`MainContext` reaches a loop only through its port (`aioqloop.bridge`); with a fake one
the iteration rules can be checked alone, with exact times and a recorded handler.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from aioqloop import PRIORITY_HIGH, IdleSource, MainContext, Source, TimeoutSource
from aioqloop.bridge import StandalonePort


class FakePort(StandalonePort):
    def __init__(self) -> None:
        self.now = 100.0
        self.reports: list[dict[str, Any]] = []
        self.slow: float | None = None

    def time(self) -> float:
        return self.now

    def report(self, context: dict[str, Any]) -> None:
        self.reports.append(context)

    def slow_threshold(self) -> float | None:
        return self.slow


@pytest.fixture
def port() -> FakePort:
    return FakePort()


@pytest.fixture
def fctx(port: FakePort) -> Iterator[MainContext]:
    ctx = MainContext(_driver="none", _port=port)
    yield ctx
    ctx.close()


def test_timeouts_follow_the_ports_clock_exactly(fctx: MainContext, port: FakePort) -> None:
    fired: list[float] = []
    s = TimeoutSource(2.0)
    s.set_callback(lambda: fired.append(s.time()) or True)
    s.attach(fctx)
    assert fctx._next_deadline() == 102.0
    port.now = 101.999
    assert fctx.iteration(False) is False
    port.now = 102.0
    assert fctx.iteration(False) is True
    assert fired == [102.0]
    assert fctx._next_deadline() == 104.0
    port.now = 104.5  # late: rearms from the iteration time, no catch-up
    assert fctx.iteration(False) is True
    assert fctx._next_deadline() == 106.5


def test_errors_go_to_the_port_and_destroy_the_source(fctx: MainContext, port: FakePort) -> None:
    def bad() -> bool:
        raise ValueError("boom")

    s = IdleSource()
    s.set_callback(bad)
    s.attach(fctx)
    assert fctx.iteration(False) is True
    assert len(port.reports) == 1
    rep = port.reports[0]
    assert isinstance(rep["exception"], ValueError) and rep["source"] is s
    assert s.is_destroyed


def test_strict_priority_and_attach_order(fctx: MainContext) -> None:
    log: list[str] = []
    for name, prio in (("d1", 0), ("h1", PRIORITY_HIGH), ("d2", 0), ("h2", PRIORITY_HIGH)):
        s = IdleSource(priority=prio)
        s.set_callback(lambda n=name: log.append(n) and False)
        s.attach(fctx)
    fctx.iteration(False)
    assert log == ["h1", "h2"]
    fctx.iteration(False)
    assert log == ["h1", "h2", "d1", "d2"]


def test_prepare_timeout_and_cached_time(fctx: MainContext, port: FakePort) -> None:
    seen: list[float] = []

    class Hooked(Source):
        def prepare(self) -> tuple[bool, float | None]:
            return (port.now >= 101.0, 1.0)

        def dispatch(self, callback: Any, args: tuple[Any, ...]) -> bool:
            port.now += 5  # time moves while dispatching; the cached time does not
            seen.append(self.time())
            return False

    Hooked().attach(fctx)
    assert fctx.pending() is False
    port.now = 101.0
    assert fctx.iteration(False) is True
    assert seen == [101.0]


def test_slow_dispatch_is_logged_through_the_port_threshold(
    fctx: MainContext, port: FakePort, caplog: pytest.LogCaptureFixture
) -> None:
    import time

    port.slow = 0.001
    s = IdleSource(name="sleepy")
    s.set_callback(lambda: time.sleep(0.003) and False)
    s.attach(fctx)
    fctx.iteration(False)
    assert any("sleepy" in r.getMessage() and "took" in r.getMessage() for r in caplog.records)


def test_a_swapped_loop_class_rebinds_the_clock_once() -> None:
    # looptime swaps the loop's class after the context was made: the next iteration
    # asks the port to bind its clock again, once, and then follows the new clock.
    class Loop:
        pass

    class Swapped(Loop):
        pass

    class SwapPort(FakePort):
        def __init__(self) -> None:
            super().__init__()
            self.loop: Any = Loop()
            self.loop_class: type = Loop
            self.rebinds = 0

        def rebind(self) -> Any:
            self.rebinds += 1
            self.loop_class = type(self.loop)
            self.time = lambda: 500.0  # type: ignore[method-assign]
            return self.time

    port = SwapPort()
    ctx = MainContext(_driver="none", _port=port)
    try:
        assert ctx.iteration(False) is False
        assert port.rebinds == 0 and ctx._time() == 100.0
        port.loop.__class__ = Swapped
        assert ctx.iteration(False) is False
        assert ctx.iteration(False) is False
        assert port.rebinds == 1 and ctx._time() == 500.0
    finally:
        ctx.close()
