"""The pytest plugin's runners: the loops it makes and what it checks on them.

`_LoopFactory` builds a test's loop from its `_LoopOptions` (the ``loop_factory`` handed
to pytest-asyncio, anyio's runner or the plugin's own ``asyncio.Runner``) and registers
it: its exception handler records errors for the running test, its context is checked
for leaked sources and bottom halves (`_report_leaks`), and the test tools
(`aioqloop._plugin_tools`) watch it for stuck loops and leaked tasks.  Also the
``pytest_asyncio_loop_factories`` implementation (`_FactoriesHook`), registered on the
first opt-in.
"""

from __future__ import annotations

import asyncio
import sys
import traceback
import warnings
import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from ._plugin_options import (
    _BASES,
    _FACTORY_NAMES,
    AioqloopLeakWarning,
    _LoopOptions,
    _need_uvloop,
    _options,
    _run_opted_in,
    _wrapper,
)

if TYPE_CHECKING:
    from .biglock import BigLock
    from .context import MainContext


class _LoopFactory:
    """A zero-argument loop factory (``loop_factory=``) for one set of `_LoopOptions`.

    Each loop it makes is registered with the plugin: its exception handler records
    errors for the running test, and its context is checked for leaks.
    """

    def __init__(self, options: _LoopOptions) -> None:
        self.options = options
        self.base = options.base
        self.virtual_clock = options.virtual_clock
        self.__name__ = (_FACTORY_NAMES[options.base]
                         + ("+virtual-clock" if options.virtual_clock else "")
                         + ("+bql" if options.bql is not False else ""))

    def __call__(self) -> asyncio.AbstractEventLoop:
        from aioqloop.clock import VirtualClock
        from aioqloop.loop import new_event_loop

        opts = self.options
        if opts.base == "uvloop":
            _need_uvloop()
        clock = None
        if opts.virtual_clock:
            clock = opts.clock
            if clock is None:
                clock = VirtualClock(autojump=opts.autojump,
                                     autojump_threshold=opts.autojump_threshold)
        lock: BigLock | None = None
        if opts.bql is True:
            lock = _state.test_bql()
        elif opts.bql is not False:
            lock = opts.bql
        loop = new_event_loop(base=opts.base, clock=clock, bql=lock)
        _state.track(loop)
        return loop

    def __repr__(self) -> str:
        return f"<aioqloop loop factory {self.__name__}>"


_factories: dict[_LoopOptions, _LoopFactory] = {}


def _factory_for(options: _LoopOptions) -> _LoopFactory:
    factory = _factories.get(options)
    if factory is None:
        factory = _factories[options] = _LoopFactory(options)
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
        self.bql: BigLock | None = None

    def track(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loops.add(loop)
        loop.set_exception_handler(self._handler)
        _arm_tools(loop)  # stuck loops, task origins

    def test_bql(self) -> BigLock:
        """The running test's `BigLock`: the ``bql`` fixture's and a ``bql=True`` loop's."""
        if self.bql is None:
            from aioqloop.biglock import BigLock

            self.bql = BigLock()
        return self.bql

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
        # Each one's own traceback: for a source, the callback's frames (the test's
        # frames say nothing about where it went wrong).
        for c in errors:
            exc = c["exception"]
            lines.append("")
            lines.append("".join(traceback.format_exception(type(exc), exc,
                                                            exc.__traceback__)).rstrip())
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


class _FactoriesHook:
    """The ``pytest_asyncio_loop_factories`` implementation, registered on first opt-in."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    @pytest.hookimpl(optionalhook=True, trylast=True)  # conftests and plugins first
    def pytest_asyncio_loop_factories(
        self, config: pytest.Config, item: Any
    ) -> dict[str, Callable[[], asyncio.AbstractEventLoop]] | None:
        factories = _factories_for(config, item, getattr(item, "fixturenames", ()))
        if factories is not None:
            return factories
        # Not ours: defer to another implementation, else keep pytest-asyncio's default.
        others = [impl for impl in config.hook.pytest_asyncio_loop_factories.get_hookimpls()
                  if impl.plugin is not self]
        if others:
            return None
        return {"asyncio": _policy_loop}


def _named_bases(node: Any) -> tuple[str, ...]:
    """The bases whose factory names the test's ``mark.asyncio(loop_factories=[...])``
    picks (pytest-asyncio validates the rest of the marker itself)."""
    marker = node.get_closest_marker("asyncio")
    names = None if marker is None else marker.kwargs.get("loop_factories")
    if not isinstance(names, (list, tuple)):
        return ()
    return tuple(b for b in _BASES if _FACTORY_NAMES[b] in names)


def _factories_for(config: pytest.Config, node: Any, fixturenames: Any) -> dict[
        str, Callable[[], asyncio.AbstractEventLoop]] | None:
    """The loop factories aioqloop offers pytest-asyncio for a test, or None when the test
    did not ask for aioqloop (neither opted in nor naming one of its factories)."""
    opted, bases, options = _options(config, node, fixturenames)
    named = _named_bases(node)
    if named:
        # mark.asyncio(loop_factories=[...]) picks from this mapping by name; naming an
        # aioqloop factory asks for it, opted in or not.  "asyncio" is there too, so a
        # test can compare aioqloop with pytest-asyncio's own loop.
        if options.virtual_clock and "uvloop" in named:
            raise pytest.UsageError(
                f"{getattr(node, 'nodeid', 'aioqloop')}: a virtual clock needs the "
                f"{_FACTORY_NAMES['asyncio']!r} loop factory, not "
                f"{_FACTORY_NAMES['uvloop']!r} (uvloop's timers run on libuv's own clock)")
        factories: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
            _FACTORY_NAMES[b]: _factory_for(options.for_base(b)) for b in named}
        factories.setdefault("asyncio", _policy_loop)
        return factories
    if opted:
        return {_FACTORY_NAMES[b]: _factory_for(options.for_base(b)) for b in bases}
    return None


_HOOK_PLUGIN_NAME = "aioqloop-loop-factories"


def _register_factories_hook(config: pytest.Config) -> None:
    pm = config.pluginmanager
    if pm.get_plugin(_HOOK_PLUGIN_NAME) is None:
        pm.register(_FactoriesHook(config), _HOOK_PLUGIN_NAME)


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


# ------------------------------------------------ stuck loops, leaked tasks
class _ToolsHooks:
    """Each test phase under aioqloop._plugin_tools: a stuck loop fails the phase with a
    report; a call that leaves tasks pending warns.  Imports nothing until a test made
    an aioqloop loop (the plugin's loops import the tools module)."""

    #: The test whose phase is running (for loops made during it).
    item: pytest.Item | None = None

    @_wrapper(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Iterator[None]:
        return (yield from _tools_phase(item, "setup"))

    @_wrapper(tryfirst=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Iterator[None]:
        return (yield from _tools_phase(item, "call"))

    @_wrapper(tryfirst=True)
    def pytest_runtest_teardown(self, item: pytest.Item) -> Iterator[None]:
        return (yield from _tools_phase(item, "teardown"))


_SEED_PARAM = "_aioqloop_seed"


def _tools_seeds(metafunc: pytest.Metafunc) -> None:
    """``--aioqloop-seeds=K``: parametrize an opted-in test over K seeds."""
    config = metafunc.config
    count = config.getoption("aioqloop_seeds", None)
    if not count:
        return
    if count < 0:
        raise pytest.UsageError(f"--aioqloop-seeds must be >= 0, not {count}")
    if metafunc.definition.get_closest_marker("aioqloop") is None and not _run_opted_in(config):
        return
    first = config.getoption("aioqloop_seed", None) or 0
    seeds = list(range(first, first + count))
    metafunc.fixturenames.append(_SEED_PARAM)
    metafunc.parametrize(_SEED_PARAM, seeds, indirect=True, ids=[f"seed{n}" for n in seeds])


#: aioqloop._plugin_tools, once the plugin made a loop (it is not imported before).
_TOOLS: list[Any] = []


def _arm_tools(loop: asyncio.AbstractEventLoop) -> None:
    from . import _plugin_tools

    if not _TOOLS:
        _TOOLS.append(_plugin_tools)
    _TOOLS[0].arm(loop, _ToolsHooks.item)


def _tools_phase(item: pytest.Item, phase: str) -> Iterator[None]:
    # Until the tools module is loaded only the item is kept, so a loop made during
    # this phase gets its settings.
    _ToolsHooks.item = item
    tools: Any = _TOOLS[0] if _TOOLS else None
    loops = [lp for lp in list(_state.loops) if not lp.is_closed()]
    before = tools.begin(item, phase, loops) if tools is not None else set()
    try:
        result = yield
    except BaseException as exc:
        tools = _TOOLS[0] if _TOOLS else None
        if tools is not None:
            tools.end(item, phase, loops, before, exc)
        raise
    finally:
        if phase == "teardown":
            _ToolsHooks.item = None
    tools = _TOOLS[0] if _TOOLS else None
    if tools is not None:
        loops = [lp for lp in list(_state.loops) if not lp.is_closed()]
        tools.end(item, phase, loops, before, None)
    return result


