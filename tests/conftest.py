"""Shared fixtures for the core tests: stand-alone and virtual-clock contexts."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import aioqloop
from aioqloop import MainContext, _engine


def machine_settings(examples: int, steps: int = 40) -> Any:
    """Settings of the suite's state machines (`test_model`, `test_engine_parity`).

    By default ``examples`` programs of ``steps`` steps, derandomised so that every run
    tries the same ones.  ``AIOQLOOP_FUZZ=N`` asks for N fresh random programs of 60 steps
    instead: a longer hunt for a developer's machine, not for CI.
    """
    from hypothesis import HealthCheck, settings

    fuzz = os.environ.get("AIOQLOOP_FUZZ", "").strip()
    if fuzz:
        if not fuzz.isdigit() or int(fuzz) < 1:
            raise ValueError(f"AIOQLOOP_FUZZ must be a positive number of examples, not {fuzz!r}")
        return settings(max_examples=int(fuzz), stateful_step_count=60, deadline=None,
                        derandomize=False, suppress_health_check=list(HealthCheck))
    return settings(max_examples=examples, stateful_step_count=steps, deadline=None,
                    derandomize=True, suppress_health_check=[HealthCheck.too_slow])


#: The two asyncio loops aioqloop runs on: the stock selector loop and uvloop.  Tests take
#: them through the `base` fixture; this tuple is for what a fixture cannot reach
#: (hypothesis strategies, loops inside one test).
BASES = ("asyncio", "uvloop")


def pytest_report_header(config: pytest.Config) -> str:
    # Which engine this run tests: the compiled core or the pure-Python reference.
    return f"aioqloop engine: {_engine.engine_info()}"


@pytest.fixture(params=BASES)
def base(request: pytest.FixtureRequest) -> str:
    """The base loop under test: ``"asyncio"`` (stock) or ``"uvloop"`` (skipped, with the
    reason, when uvloop is not installed)."""
    name: str = request.param
    if name == "uvloop":
        pytest.importorskip("uvloop", reason="the uvloop base needs uvloop installed "
                            "(pip install 'aioqloop[uvloop]')")
    return name


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    """A fresh pipe ``(read_fd, write_fd)``, both ends closed at teardown.

    A test may close either end itself.  Teardown closes an end only while its number
    still names this pipe (same inode), so a number the test closed and something else
    reused since is left alone.
    """
    r, w = os.pipe()

    def ident(fd: int) -> tuple[int, int]:
        st = os.fstat(fd)
        return st.st_dev, st.st_ino

    mine = ident(r)
    yield r, w
    for fd in (r, w):
        try:
            if ident(fd) == mine:
                os.close(fd)
        except OSError:  # already closed by the test
            pass


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
