"""Shared fixtures for the core tests: stand-alone and virtual-clock contexts."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import aioqloop
from aioqloop import MainContext, _engine


def pytest_report_header(config: pytest.Config) -> str:
    # Which engine this run tests: the compiled core or the pure-Python reference.
    return f"aioqloop engine: {_engine.engine_info()}"


@pytest.fixture
def ctx() -> Iterator[MainContext]:
    """A stand-alone context (no asyncio loop), iterated by hand with ``iteration()``."""
    context = MainContext(_driver="standalone")
    assert context.loop is None
    yield context
    context.close()


class VirtualContext:
    """The context of a (not running) aioqloop loop on a `VirtualClock`, iterated by hand.

    Time moves only through `advance`, so timeout tests are exact and instant.
    """

    def __init__(self) -> None:
        self.clock = aioqloop.VirtualClock(1000.0, autojump=False)
        self.loop = aioqloop.new_event_loop(clock=self.clock)
        self.ctx = aioqloop.get_main_context(self.loop)

    def now(self) -> float:
        return self.loop.time()

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def close(self) -> None:
        self.loop.close()


@pytest.fixture
def default_held() -> Iterator[None]:
    """Loops the test makes on the main thread get contexts of their own: a loop made
    first holds the global default context meanwhile (a second loop never takes it)."""
    holder = aioqloop.new_event_loop()
    yield
    holder.close()


@pytest.fixture
def vctx() -> Iterator[VirtualContext]:
    """A hand-iterated context whose time is a manual `VirtualClock` (starts at 1000 s)."""
    v = VirtualContext()
    yield v
    v.close()


def iterate(context: MainContext, n: int) -> int:
    """Run ``n`` non-blocking iterations; return how many dispatched something."""
    return sum(context.iteration(False) for _ in range(n))


def recorder(log: list[Any], tag: Any, result: bool = True) -> Callable[..., bool]:
    """A callback that appends ``tag`` to ``log`` and returns ``result``."""

    def cb(*args: Any) -> bool:
        log.append(tag)
        return result

    return cb


#: The two ways a context runs inside a running loop: the plain asyncio loop (driven by
#: ``bridge.PlainDriver``) and aioqloop's stock-base loop (hooked into its selector).
LOOP_KINDS = ("asyncio", "aioqloop")


def run_in(kind: str, main: Callable[[], Any]) -> Any:
    """Run coroutine function ``main`` on a fresh loop of ``kind``; return its result."""
    if kind == "asyncio":
        return asyncio.run(main())
    assert kind == "aioqloop"
    return aioqloop.run(main())


def context_for(kind: str) -> MainContext:
    """Inside a coroutine: the context under test for ``kind``."""
    if kind == "asyncio":
        return MainContext()
    return aioqloop.get_main_context()


class HandlerLog:
    """Collects what reaches a loop's exception handler."""

    def __init__(self) -> None:
        self.contexts: list[dict[str, Any]] = []

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.set_exception_handler(lambda _loop, c: self.contexts.append(c))


@pytest.fixture
def default_sigint() -> Iterator[None]:
    """SIGINT at Python's default handler for the test (KeyboardInterrupt), then restored."""
    assert threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
