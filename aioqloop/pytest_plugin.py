"""aioqloop's pytest plugin (entry point ``pytest11: aioqloop``): run async tests on aioqloop.

It does nothing unless asked.  Opt in for a whole run with ``--aioqloop`` (or the ini
option ``aioqloop = true``), or per test with ``@pytest.mark.aioqloop``::

    @pytest.mark.aioqloop(base="asyncio" | "uvloop" | "both", virtual_clock=False)

How tests get an aioqloop loop:

* **pytest-asyncio** (1.4+): through its ``pytest_asyncio_loop_factories`` hook.  Factory
  names are ``"aioqloop"`` (stock base) and ``"aioqloop-uvloop"``; ``base="both"`` (or
  ``--aioqloop-base=both``) parametrizes the test over the two.  A ``conftest.py`` that
  implements the hook itself wins (conftest hooks run first).  The hook is registered
  only once the run or some test opts in; from then on, tests that did not opt in get a
  factory that builds the loop exactly as pytest-asyncio would without the hook (from
  the current event loop policy).
* **plain pytest**: an ``async def`` test marked ``aioqloop`` that neither pytest-asyncio
  nor anyio claims runs on a fresh loop, as ``aioqloop.run`` would.
* **anyio**: its ``anyio_backend`` fixture returns
  ``("asyncio", {"loop_factory": aioqloop.new_event_loop})`` (or `loop_factory` from
  this module for a virtual clock).

On loops this plugin creates, an exception that reaches the loop's exception handler
during a test fails that test (in the phase it happened: setup, call or teardown), as
anyio's test runner does.  A source or bottom half the test body left attached or
scheduled on the loop's `MainContext` is reported as an `AioqloopLeakWarning` (an error
under ``-W error``); the context's own internal sources do not count.

Fixtures: ``main_context`` (the test loop's `MainContext`), ``bql`` (a fresh `BigLock`),
``virtual_clock`` (the test loop's `VirtualClock`; requesting it gives an opted-in test a
loop on a fresh virtual clock).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import inspect
import sys
import warnings
import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from aioqloop.biglock import BigLock
    from aioqloop.clock import VirtualClock
    from aioqloop.context import MainContext

# aioqloop itself is imported on first use only: this module is loaded in every pytest
# run of a project that installs aioqloop, opted in or not.

__all__ = ("AioqloopLeakWarning", "loop_factory")

_BASES = ("asyncio", "uvloop")
_FACTORY_NAMES = {"asyncio": "aioqloop", "uvloop": "aioqloop-uvloop"}
_PLAIN_RUNNER = "_aioqloop_runner"
_PLAIN_BASE = "_aioqloop_base"


class AioqloopLeakWarning(pytest.PytestWarning):
    """A test left a source attached or a bottom half scheduled on its loop's context."""


# --------------------------------------------------------------------- loops
class _LoopFactory:
    """A zero-argument loop factory (``loop_factory=``) for one base and clock choice.

    Each loop it makes is registered with the plugin: its exception handler records
    errors for the running test, and its context is checked for leaks.
    """

    def __init__(self, base: str, virtual_clock: bool) -> None:
        self.base = base
        self.virtual_clock = virtual_clock
        self.__name__ = _FACTORY_NAMES[base] + ("+virtual-clock" if virtual_clock else "")

    def __call__(self) -> asyncio.AbstractEventLoop:
        from aioqloop.clock import VirtualClock
        from aioqloop.loop import new_event_loop

        clock = _state.take_clock() if self.virtual_clock else None
        if self.virtual_clock and clock is None:
            clock = VirtualClock()
        loop = new_event_loop(base=self.base, clock=clock)
        _state.track(loop)
        return loop

    def __repr__(self) -> str:
        return f"<aioqloop loop factory {self.__name__}>"


_factories: dict[tuple[str, bool], _LoopFactory] = {}


def loop_factory(base: str = "asyncio", *, virtual_clock: bool = False) -> Callable[
    [], asyncio.AbstractEventLoop
]:
    """A ``loop_factory`` for anyio's ``anyio_backend`` options or ``asyncio.Runner``.

    Loops it makes get the plugin's checks (exceptions fail the test, leaks warn);
    ``virtual_clock=True`` puts each on a fresh `VirtualClock` (stock base only).
    """
    if base not in _BASES:
        raise ValueError(f"base must be 'asyncio' or 'uvloop', not {base!r}")
    if virtual_clock and base != "asyncio":
        raise ValueError("a VirtualClock needs base='asyncio' (uvloop keeps its own clock)")
    key = (base, bool(virtual_clock))
    factory = _factories.get(key)
    if factory is None:
        factory = _factories[key] = _LoopFactory(base, bool(virtual_clock))
    return factory


def _policy_loop() -> asyncio.AbstractEventLoop:
    """A loop made the way ``asyncio.Runner`` makes one without a factory."""
    if sys.version_info >= (3, 16):  # pragma: no cover - no policies there
        return asyncio.new_event_loop()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return asyncio.get_event_loop_policy().new_event_loop()


_policy_loop.__name__ = "asyncio"


class _State:
    """Per-process bookkeeping: the loops made here, their errors, the test running."""

    def __init__(self) -> None:
        self.loops: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
        self.errors: list[dict[str, Any]] = []
        self.next_clock: VirtualClock | None = None

    def track(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loops.add(loop)
        loop.set_exception_handler(self._handler)

    def take_clock(self) -> VirtualClock | None:
        clock, self.next_clock = self.next_clock, None
        return clock

    def _handler(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, Exception):
            self.errors.append(context)
        else:  # a message only (or a BaseException): log it as asyncio would
            loop.default_exception_handler(context)

    def live_contexts(self) -> list[MainContext]:
        if not self.loops:
            return []  # nothing opted in: don't even import aioqloop
        from aioqloop.context import MainContext

        out = []
        for loop in list(self.loops):
            if not loop.is_closed():
                ctx = getattr(loop, "_aioqloop_context", None)
                if isinstance(ctx, MainContext) and not ctx._closed:
                    out.append(ctx)
        return out

    def raise_errors(self, phase: str) -> None:
        errors, self.errors = self.errors, []
        if not errors:
            return
        lines = [f"{len(errors)} exception(s) reached the event loop's exception handler "
                 f"during {phase}:"]
        for c in errors:
            exc = c["exception"]
            lines.append(f"  {c.get('message', 'error')}: {type(exc).__name__}: {exc}")
        first = errors[0]["exception"]
        raise pytest.fail.Exception("\n".join(lines), pytrace=False) from first


_state = _State()


def _internal_sources() -> tuple[type, ...]:
    from aioqloop.bottomhalf import _BHSource
    from aioqloop.context import _QueueSource

    return (_BHSource, _QueueSource)


def _attached_ids(ctx: MainContext) -> set[int]:
    internal = _internal_sources()
    return {sid for sid, src in list(ctx._sources.items())
            if not isinstance(src, internal) and not src._destroyed}


# ------------------------------------------------------------- configuration
def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("aioqloop", "aioqloop event loops")
    group.addoption("--aioqloop", action="store_true", default=None,
                    help="run async tests (pytest-asyncio) on aioqloop loops")
    group.addoption("--aioqloop-base", choices=("asyncio", "uvloop", "both"), default=None,
                    help="aioqloop base for opted-in tests: asyncio (default), uvloop, "
                         "or both (parametrized)")
    parser.addini("aioqloop", type="bool", default=False,
                  help="run async tests (pytest-asyncio) on aioqloop loops")
    parser.addini("aioqloop_base", default="asyncio",
                  help="default aioqloop base: asyncio, uvloop or both")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "aioqloop(base='asyncio', virtual_clock=False): run this async test on an aioqloop "
        "loop; base 'asyncio', 'uvloop' or 'both' (parametrized); virtual_clock=True puts "
        "the loop on a VirtualClock",
    )
    if _run_opted_in(config):
        _register_factories_hook(config)


def _run_opted_in(config: pytest.Config) -> bool:
    return bool(config.getoption("aioqloop") or config.getini("aioqloop"))


def _options(config: pytest.Config, node: Any, fixturenames: Any) -> tuple[bool, tuple[str, ...],
                                                                            bool]:
    """(opted in?, bases, virtual clock?) for a test function."""
    marker = node.get_closest_marker("aioqloop")
    opted = marker is not None or _run_opted_in(config)
    base = config.getoption("aioqloop_base") or config.getini("aioqloop_base") or "asyncio"
    virtual = "virtual_clock" in fixturenames
    if marker is not None:
        if marker.args:
            raise pytest.UsageError(
                f"{node.nodeid}: mark.aioqloop takes keyword arguments only (base=, "
                "virtual_clock=)")
        unknown = set(marker.kwargs) - {"base", "virtual_clock"}
        if unknown:
            raise pytest.UsageError(
                f"{node.nodeid}: mark.aioqloop got unknown arguments {sorted(unknown)}")
        base = marker.kwargs.get("base", base)
        virtual = bool(marker.kwargs.get("virtual_clock", False)) or virtual
    if base == "both":
        bases: tuple[str, ...] = _BASES
        if virtual or importlib.util.find_spec("uvloop") is None:
            bases = ("asyncio",)  # a virtual clock needs the stock base
    elif base in _BASES:
        bases = (base,)
    else:
        raise pytest.UsageError(
            f"{node.nodeid}: aioqloop base must be 'asyncio', 'uvloop' or 'both', not {base!r}")
    return opted, bases, virtual


# ------------------------------------------------------------ pytest-asyncio
class _FactoriesHook:
    """The ``pytest_asyncio_loop_factories`` implementation, registered on first opt-in."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    @pytest.hookimpl(optionalhook=True, trylast=True)  # conftests and plugins first
    def pytest_asyncio_loop_factories(
        self, config: pytest.Config, item: Any
    ) -> dict[str, Callable[[], asyncio.AbstractEventLoop]] | None:
        opted, bases, virtual = _options(config, item, getattr(item, "fixturenames", ()))
        if opted:
            return {_FACTORY_NAMES[b]: loop_factory(b, virtual_clock=virtual) for b in bases}
        # Not ours: defer to another implementation, else keep pytest-asyncio's default.
        others = [impl for impl in config.hook.pytest_asyncio_loop_factories.get_hookimpls()
                  if impl.plugin is not self]
        if others:
            return None
        return {"asyncio": _policy_loop}


_HOOK_PLUGIN_NAME = "aioqloop-loop-factories"


def _register_factories_hook(config: pytest.Config) -> None:
    pm = config.pluginmanager
    if pm.get_plugin(_HOOK_PLUGIN_NAME) is None:
        pm.register(_FactoriesHook(config), _HOOK_PLUGIN_NAME)


def _asyncio_mode(config: pytest.Config) -> str | None:
    if not config.pluginmanager.hasplugin("asyncio"):
        return None
    with contextlib.suppress(ValueError):
        mode = config.getoption("asyncio_mode", None) or config.getini("asyncio_mode")
        return str(mode)
    return None


def _pytest_asyncio_item(item: Any) -> bool:
    """Is ``item`` run by pytest-asyncio?"""
    try:
        from pytest_asyncio.plugin import is_async_test
    except ImportError:
        return False
    return bool(is_async_test(item))


@pytest.hookimpl(wrapper=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> Iterator[None]:
    definition = metafunc.definition
    if definition.get_closest_marker("aioqloop") is not None:
        _register_factories_hook(metafunc.config)  # before pytest-asyncio asks for it
    if _plain_candidate(metafunc.config, definition, metafunc.function):
        _, bases, _ = _options(metafunc.config, definition, metafunc.fixturenames)
        if len(bases) > 1:
            metafunc.fixturenames.append(_PLAIN_BASE)
            metafunc.parametrize(_PLAIN_BASE, bases, indirect=True,
                                 ids=[_FACTORY_NAMES[b] for b in bases])
    return (yield)


def _plain_candidate(config: pytest.Config, node: Any, function: Any) -> bool:
    """An ``async def`` test marked aioqloop that pytest-asyncio and anyio leave alone."""
    if node.get_closest_marker("aioqloop") is None:
        return False
    if not inspect.iscoroutinefunction(function):
        return False
    if node.get_closest_marker("asyncio") is not None or _pytest_asyncio_item(node):
        return False
    if node.get_closest_marker("anyio") is not None:
        return False
    return _asyncio_mode(config) != "auto"


_PLAIN_KEY = pytest.StashKey[bool]()


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
    _, _, virtual = _options(request.config, request.node, request.fixturenames)
    factory = loop_factory(_aioqloop_base, virtual_clock=virtual)
    if sys.version_info >= (3, 11):
        runner_cls: Any = asyncio.Runner
    else:  # pragma: no cover - 3.10
        from backports.asyncio.runner import (  # type: ignore[import-not-found,unused-ignore]
            Runner as runner_cls,
        )
    with runner_cls(loop_factory=factory) as runner:
        runner.get_loop()  # create it now, so fixtures can reach it before the call
        yield runner


@pytest.hookimpl
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    runner: Any = pyfuncitem.funcargs.get(_PLAIN_RUNNER)
    if runner is None or not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    funcargs = pyfuncitem.funcargs
    testargs = {arg: funcargs[arg] for arg in pyfuncitem._fixtureinfo.argnames}
    runner.run(pyfuncitem.obj(**testargs))
    return True


# -------------------------------------------------- errors and leaks per test
@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    _state.errors.clear()
    _state.next_clock = None
    function = getattr(item, "obj", None)
    if isinstance(item, pytest.Function) and _plain_candidate(item.config, item, function):
        # Like pytest-asyncio's runner: requested at setup, so it survives the pruning
        # of the fixture closure that parametrization does.
        item.stash[_PLAIN_KEY] = True
        if _PLAIN_RUNNER not in item.fixturenames:
            item.fixturenames.append(_PLAIN_RUNNER)
    result = yield
    _state.raise_errors("setup")
    return result


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    before = {ctx: _attached_ids(ctx) for ctx in _state.live_contexts()}
    result = yield
    _state.raise_errors("the test")
    _report_leaks(item, before)
    return result


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    result = yield
    _state.raise_errors("teardown")
    _state.next_clock = None
    return result


def _report_leaks(item: pytest.Item, before: dict[MainContext, set[int]]) -> None:
    found = []
    for ctx in _state.live_contexts():
        old = before.get(ctx, set())
        for sid in sorted(_attached_ids(ctx) - old):
            src = ctx._sources.get(sid)
            if src is not None:
                found.append(repr(src))
        carrier = ctx._bh
        if carrier is not None and carrier.pending > 0:
            found.append(f"{carrier.pending} bottom half(s) still scheduled")
    if found:
        item.warn(AioqloopLeakWarning(
            "the test left on its loop's MainContext: " + ", ".join(found)
            + " (destroy sources and cancel bottom halves before the test ends)"))


# ------------------------------------------------------------------ fixtures
def _test_loop(request: pytest.FixtureRequest) -> asyncio.AbstractEventLoop:
    """The event loop the current test runs on, created now if needed."""
    item: Any = request.node
    if item.stash.get(_PLAIN_KEY, False):
        runner = request.getfixturevalue(_PLAIN_RUNNER)
        return runner.get_loop()  # type: ignore[no-any-return]
    if _pytest_asyncio_item(item):
        runner = request.getfixturevalue(f"_{item._loop_scope}_scoped_runner")
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
    """A fresh `BigLock` for this test (not the process-wide ``aioqloop.bql``)."""
    from aioqloop.biglock import BigLock

    return BigLock()


@pytest.fixture
def virtual_clock(request: pytest.FixtureRequest) -> VirtualClock:
    """The `VirtualClock` of the test's loop.

    Requesting it makes an aioqloop test's loop use a fresh clock (starting at 0,
    autojump); a loop created elsewhere must have been given one (``clock=``).
    """
    from aioqloop.clock import VirtualClock

    _state.next_clock = VirtualClock()
    try:
        loop = _test_loop(request)
    finally:
        _state.next_clock = None
    clock = getattr(loop, "_aioq_clock", None)
    if not isinstance(clock, VirtualClock):
        raise pytest.UsageError(
            f"{request.node.nodeid}: the test's loop ({type(loop).__name__}) has no "
            "VirtualClock; mark the test @pytest.mark.aioqloop(virtual_clock=True) or give "
            "its loop factory clock=VirtualClock()")
    return clock
