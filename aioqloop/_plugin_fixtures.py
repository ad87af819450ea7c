"""The pytest plugin's fixtures: ``main_context``, ``bql``, ``virtual_clock``, and the
private ones that run a marked test on its loop (the plain ``asyncio.Runner``, anyio's
runner on the marker's loop, the base and seed of a parametrized test).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from ._plugin_options import (
    _ANYIO_KEY,
    _ANYIO_RUNNER,
    _PLAIN_KEY,
    _PLAIN_RUNNER,
    _options,
    _pytest_asyncio_item,
    _too_old,
)
from ._plugin_runner import _factory_for, _state

if TYPE_CHECKING:
    from .biglock import BigLock
    from .clock import VirtualClock
    from .context import MainContext


# ----------------------------------------------------------------- plain path
@pytest.fixture
def _aioqloop_base(request: pytest.FixtureRequest) -> str:
    """The base chosen by parametrization (``base="both"``), else the test's only base."""
    param = getattr(request, "param", None)
    if param is not None:
        return str(param)
    return _options(request.config, request.node, request.fixturenames)[1][0]


@pytest.fixture
def _aioqloop_runner(
    request: pytest.FixtureRequest, _aioqloop_base: str
) -> Iterator[Any]:
    """The ``asyncio.Runner`` a plain-pytest aioqloop test runs in (``aioqloop.run``)."""
    _, _, options = _options(request.config, request.node, request.fixturenames)
    factory = _factory_for(options.for_base(_aioqloop_base))
    if sys.version_info >= (3, 11):
        runner_cls: Any = asyncio.Runner
    else:  # pragma: no cover - 3.10
        from backports.asyncio.runner import (  # type: ignore[import-not-found,unused-ignore]
            Runner as runner_cls,
        )
    with runner_cls(loop_factory=factory) as runner:
        runner.get_loop()  # create it now, so fixtures can reach it before the call
        yield runner


# ------------------------------------------------------------------ anyio path
@pytest.fixture
def _aioqloop_anyio_runner(request: pytest.FixtureRequest, _aioqloop_base: str) -> Iterator[Any]:
    """anyio's test runner for an ``aioqloop``-marked anyio test, on the marker's loop.

    Set up before the test's other function-scoped fixtures and held until teardown, so
    anyio's async fixtures and the test itself reuse it (anyio shares one runner).
    """
    from anyio.pytest_plugin import extract_backend_and_options, get_runner

    name, backend_options = extract_backend_and_options(request.getfixturevalue("anyio_backend"))
    if name != "asyncio":
        pytest.skip(f"aioqloop runs on anyio's asyncio backend, not {name!r}")
    _, _, options = _options(request.config, request.node, request.fixturenames)
    factory = _factory_for(options.for_base(_aioqloop_base))
    with get_runner(name, {**backend_options, "loop_factory": factory}) as lease:
        runner: Any = lease
        loop = runner.get_loop()
        if loop not in _state.loops:
            raise pytest.UsageError(
                f"{request.node.nodeid}: anyio's runner was already started by a wider-scoped "
                "async fixture on another loop; give anyio_backend the aioqloop loop_factory "
                "(aioqloop.pytest_plugin.loop_factory) instead of marking the test")
        yield runner


# ------------------------------------------------------------------ fixtures
def _test_loop(request: pytest.FixtureRequest) -> asyncio.AbstractEventLoop:
    """The event loop the current test runs on, created now if needed."""
    item: Any = request.node
    if item.stash.get(_PLAIN_KEY, False):
        runner = request.getfixturevalue(_PLAIN_RUNNER)
        return runner.get_loop()  # type: ignore[no-any-return]
    if item.stash.get(_ANYIO_KEY, False):
        runner = request.getfixturevalue(_ANYIO_RUNNER)
        return runner.get_loop()  # type: ignore[no-any-return]
    if _pytest_asyncio_item(item):
        scope = getattr(item, "_loop_scope", None)
        if scope is None:
            # pytest-asyncio 0.x: no per-scope runner to take the loop from.
            pytest.fail(f"{item.nodeid}: {_too_old(request.config) or 'unknown pytest-asyncio'}",
                        pytrace=False)
        # pytest-asyncio 1.0-1.3 have the runners but never call the factories hook: the
        # loop is theirs (main_context still works on it, bridged as on any loop).
        runner = request.getfixturevalue(f"_{scope}_scoped_runner")
        return runner.get_loop()  # type: ignore[no-any-return]
    if "anyio_backend" in request.fixturenames:
        from anyio.pytest_plugin import extract_backend_and_options, get_runner

        name, options = extract_backend_and_options(request.getfixturevalue("anyio_backend"))
        if name != "asyncio":
            pytest.skip(f"aioqloop fixtures need anyio's asyncio backend, not {name!r}")
        lease = get_runner(name, options)
        anyio_runner: Any = lease.__enter__()  # held until teardown: the test reuses it
        request.addfinalizer(lambda: lease.__exit__(None, None, None))
        return anyio_runner.get_loop()  # type: ignore[no-any-return]
    raise pytest.UsageError(
        f"{item.nodeid}: this fixture needs the test's event loop: make it an async test "
        "run by pytest-asyncio, anyio or @pytest.mark.aioqloop")


@pytest.fixture
def main_context(request: pytest.FixtureRequest) -> MainContext:
    """The `MainContext` of the loop the test runs on (``aioqloop.get_main_context()``).

    Usable from async tests under pytest-asyncio, anyio (asyncio backend) or the
    ``aioqloop`` marker.
    """
    from aioqloop.context import get_main_context

    return get_main_context(_test_loop(request))


@pytest.fixture
def bql() -> BigLock:
    """A fresh `BigLock` for this test (not the process-wide ``aioqloop.bql``); with
    ``bql=True`` (marker, ``--aioqloop-bql`` or ini) the test's loop holds this one."""
    return _state.test_bql()


@pytest.fixture
def virtual_clock(request: pytest.FixtureRequest) -> VirtualClock:
    """The `VirtualClock` of the test's loop.

    Requesting it makes an aioqloop test's loop use a fresh clock (starting at 0,
    autojump unless configured otherwise); a loop created elsewhere must have been given
    one (``clock=``).
    """
    from aioqloop.clock import VirtualClock

    loop = _test_loop(request)
    clock = getattr(loop, "_aioq_clock", None)
    too_old = _too_old(request.config)
    if not isinstance(clock, VirtualClock) and too_old is not None:
        pytest.fail(f"{request.node.nodeid}: {too_old}", pytrace=False)
    if not isinstance(clock, VirtualClock):
        raise pytest.UsageError(
            f"{request.node.nodeid}: the test's loop ({type(loop).__name__}) has no "
            "VirtualClock; mark the test @pytest.mark.aioqloop(virtual_clock=True) or give "
            "its loop factory clock=VirtualClock()")
    return clock


@pytest.fixture
def _aioqloop_seed(request: pytest.FixtureRequest) -> int | None:
    """The seed of a test run under ``--aioqloop-seeds`` (its parameter)."""
    param = getattr(request, "param", None)
    return int(param) if param is not None else None
