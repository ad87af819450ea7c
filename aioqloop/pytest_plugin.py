"""aioqloop's pytest plugin (entry point ``pytest11: aioqloop``): run async tests on aioqloop.

It does nothing unless asked.  Opt in for a whole run with ``--aioqloop`` (or the ini
option ``aioqloop = true``; ``--no-aioqloop`` turns that off again), per test with
``@pytest.mark.aioqloop``, or per test with pytest-asyncio's
``@pytest.mark.asyncio(loop_factories=["aioqloop"])``::

    @pytest.mark.aioqloop(base="asyncio" | "uvloop" | "both", virtual_clock=False,
                          autojump=True, autojump_threshold=0.0, bql=False)

Every option also has an ini key and a command-line flag (the marker wins, then the
command line, then the ini file): ``aioqloop_base`` / ``--aioqloop-base``,
``aioqloop_virtual_clock`` / ``--[no-]aioqloop-virtual-clock``, ``aioqloop_autojump`` /
``--[no-]aioqloop-autojump``, ``aioqloop_autojump_threshold`` /
``--aioqloop-autojump-threshold=SECONDS``, ``aioqloop_bql`` / ``--[no-]aioqloop-bql``.
Every on/off option is a pair of flags, ``--X`` and ``--no-X``; the older spelling
``--aioqloop-autojump=true|false`` still works.
``virtual_clock`` may be a `VirtualClock` instance (used as given); ``autojump=False`` or
an ``autojump_threshold`` in the marker implies a virtual clock; ``bql=True`` gives the
loop the test's `BigLock` (the ``bql`` fixture's), ``bql=<BigLock>`` that lock.

Needs pytest >= 7.0 and pluggy >= 1.2 (new-style hook wrappers).  With older versions
(e.g. Debian bookworm's pytest 7.2 / pluggy 1.0) it disables itself with one warning
and leaves the run alone.  pytest-asyncio tests need pytest-asyncio >= 1.4 (its
``pytest_asyncio_loop_factories`` hook): with an older one, a run that does not ask for
aioqloop is untouched, and a pytest-asyncio test that asks for it fails with a message
naming the version it needs instead of running on another loop.

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
  this module for a virtual clock); or mark the anyio test ``aioqloop``: its runner then
  gets the marker's loop (asyncio backend; other backends are skipped).

On loops this plugin creates, an exception that reaches the loop's exception handler
during a test fails that test (in the phase it happened: setup, call or teardown), as
anyio's test runner does.  A source or bottom half the test body left attached or
scheduled on the loop's `MainContext` is reported as an `AioqloopLeakWarning` (an error
under ``-W error``); the context's own internal sources do not count.

Test tools (aioqloop._plugin_tools, docs/tutorial/testing.md): a task the test left
pending warns like a leaked source; a stuck `VirtualClock` loop fails the test within
``--aioqloop-stuck-grace`` (1 s) with what each task awaits, and so does a real-clock
loop without progress for ``hang_timeout`` seconds; ``--aioqloop-seed`` /
``--aioqloop-seeds`` draw the order of same-priority ready work from a seed;
``--aioqloop-trace-dir`` / ``--aioqloop-trace-compare`` save and compare dispatch traces.

Fixtures: ``main_context`` (the test loop's `MainContext`), ``bql`` (a fresh `BigLock`),
``virtual_clock`` (the test loop's `VirtualClock`; requesting it gives an opted-in test a
loop on a fresh virtual clock).
"""

from __future__ import annotations

import asyncio
import inspect
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

# The hooks are implemented here, their parts in three private modules (as anyio's
# plugin has its runner apart): the options (_plugin_options), the loops and the checks
# on them (_plugin_runner), the fixtures (_plugin_fixtures).  pytest finds the hooks and
# fixtures by name on this module, the entry point.
from . import _plugin_fixtures
from ._plugin_options import (
    _ANYIO_KEY,
    _ANYIO_RUNNER,
    _BASES,
    _DISABLED,
    _FACTORY_NAMES,
    _PLAIN_BASE,
    _PLAIN_KEY,
    _PLAIN_RUNNER,
    AioqloopLeakWarning,
    _anyio_candidate,
    _configure,
    _LoopOptions,
    _options,
    _plain_candidate,
    _pytest_asyncio_item,
    _run_opted_in,
    _too_old,
    _wrapper,
    pytest_addoption,  # noqa: F401 - found here by pytest
)
from ._plugin_runner import (
    _SEED_PARAM,
    _attached_ids,
    _factories_for,
    _factory_for,
    _named_bases,
    _register_factories_hook,
    _report_leaks,
    _state,
    _tools_seeds,
    _ToolsHooks,
)

if TYPE_CHECKING:
    from .biglock import BigLock
    from .clock import VirtualClock

# aioqloop itself is imported on first use only: this module is loaded in every pytest
# run of a project that installs aioqloop, opted in or not.

__all__ = ("AioqloopLeakWarning", "loop_factory")


def loop_factory(
    base: str = "asyncio",
    *,
    virtual_clock: bool | VirtualClock = False,
    autojump: bool = True,
    autojump_threshold: float = 0.0,
    bql: bool | BigLock = False,
) -> Callable[[], asyncio.AbstractEventLoop]:
    """A ``loop_factory`` for anyio's ``anyio_backend`` options or ``asyncio.Runner``.

    Loops it makes get the plugin's checks (exceptions fail the test, leaks warn).
    ``virtual_clock=True`` puts each on a fresh `VirtualClock` (stock base only) with
    ``autojump`` and ``autojump_threshold`` (real seconds); a `VirtualClock` instance is
    used as given.  ``bql=True`` gives each loop the running test's `BigLock` (the
    ``bql`` fixture's); a `BigLock` instance is used as given.
    """
    from aioqloop.clock import VirtualClock

    if base not in _BASES:
        raise ValueError(f"base must be 'asyncio' or 'uvloop', not {base!r}")
    clock = virtual_clock if isinstance(virtual_clock, VirtualClock) else None
    virtual = clock is not None or bool(virtual_clock)
    if virtual and base != "asyncio":
        raise ValueError("a VirtualClock needs base='asyncio' (uvloop keeps its own clock)")
    return _factory_for(_LoopOptions(base, virtual, clock, bool(autojump),
                                     float(autojump_threshold), bql))


def pytest_configure(config: pytest.Config) -> None:
    too_old = _configure(config)
    if _run_opted_in(config):
        if too_old is not None:
            # --aioqloop asks for every pytest-asyncio test to run on aioqloop.
            raise pytest.UsageError(f"--aioqloop / aioqloop = true: {too_old}")
        _register_factories_hook(config)
    config.pluginmanager.register(_ToolsHooks(), "aioqloop-tools")


@_wrapper()
def pytest_generate_tests(metafunc: pytest.Metafunc) -> Iterator[None]:
    definition = metafunc.definition
    config = metafunc.config
    asks = (definition.get_closest_marker("aioqloop") is not None
            or bool(_named_bases(definition)))
    if asks or _run_opted_in(config):
        # A bad marker argument or option value is a usage error: said here, at
        # collection, as the message alone (not as a traceback through pluggy and
        # pytest-asyncio's hooks, which would raise it later).
        try:
            _factories_for(config, definition, metafunc.fixturenames)
            # The test tools' settings too, before a loop exists that an error later
            # would leave open (holding the global default context).
            from . import _plugin_tools

            _plugin_tools.settings(definition)
            _plugin_tools.seed(definition)
            problem = None
        except pytest.UsageError as exc:
            problem = str(exc)
        if problem is not None:  # raised outside the except: no "during handling" chain
            pytest.fail(problem, pytrace=False)
    _tools_seeds(metafunc)
    if asks:
        _register_factories_hook(config)  # before pytest-asyncio asks for it
    if (_plain_candidate(config, definition, metafunc.function)
            or _anyio_candidate(definition, metafunc.function, metafunc.fixturenames)):
        _, bases, _ = _options(config, definition, metafunc.fixturenames)
        if len(bases) > 1:
            metafunc.fixturenames.append(_PLAIN_BASE)
            metafunc.parametrize(_PLAIN_BASE, bases, indirect=True,
                                 ids=[_FACTORY_NAMES[b] for b in bases])
    return (yield)


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
@_wrapper(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    _state.errors.clear()
    _state.bql = None
    function = getattr(item, "obj", None)
    if isinstance(item, pytest.Function) and _plain_candidate(item.config, item, function):
        # Like pytest-asyncio's runner: requested at setup, so it survives the pruning
        # of the fixture closure that parametrization does.
        item.stash[_PLAIN_KEY] = True  # type: ignore[index]
        if _PLAIN_RUNNER not in item.fixturenames:
            item.fixturenames.append(_PLAIN_RUNNER)
    elif isinstance(item, pytest.Function) and _anyio_candidate(item, function,
                                                                item.fixturenames):
        # First, so anyio's runner exists on our loop before any async fixture asks.
        item.stash[_ANYIO_KEY] = True  # type: ignore[index]
        if _ANYIO_RUNNER not in item.fixturenames:
            item.fixturenames.insert(0, _ANYIO_RUNNER)
    result = yield
    _state.raise_errors("setup")
    too_old = _too_old(item.config)
    if (too_old is not None and item.get_closest_marker("aioqloop") is not None
            and _pytest_asyncio_item(item)):
        # This pytest-asyncio would run the test on its own loop: refuse, loudly.  After
        # the other setup hooks, so that their teardown finds what their setup left.
        pytest.fail(f"{item.nodeid}: {too_old}", pytrace=False)
    return result


@_wrapper(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    before = {ctx: _attached_ids(ctx) for ctx in _state.live_contexts()}
    result = yield
    _state.raise_errors("the test")
    _report_leaks(item, before)
    return result


@_wrapper(tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    result = yield
    _state.raise_errors("teardown")
    _state.bql = None
    return result


# --------------------------------------------------------------- fixtures
# pytest finds fixtures by name on the plugin module: those of _plugin_fixtures, here.
_aioqloop_base = _plugin_fixtures._aioqloop_base
_aioqloop_runner = _plugin_fixtures._aioqloop_runner
_aioqloop_anyio_runner = _plugin_fixtures._aioqloop_anyio_runner
_aioqloop_seed = _plugin_fixtures._aioqloop_seed
main_context = _plugin_fixtures.main_context
bql = _plugin_fixtures.bql
virtual_clock = _plugin_fixtures.virtual_clock


# ------------------------------------------------- too old pytest / pluggy
if _DISABLED is not None:  # pragma: no cover - exercised in a venv with old versions
    # Register nothing but the warning: no hooks, options, markers or fixtures.
    for _name in [n for n in list(globals()) if n.startswith("pytest_")] + [
            "_aioqloop_base", "_aioqloop_runner", _ANYIO_RUNNER, "main_context", "bql",
            "virtual_clock", _SEED_PARAM]:
        globals().pop(_name, None)

    def pytest_configure(config: pytest.Config) -> None:
        message = str(_DISABLED)
        try:
            config.issue_config_time_warning(pytest.PytestConfigWarning(message), stacklevel=2)
        except Warning:
            # -W error must not turn an unused plugin into a dead run: say it once.
            sys.stderr.write(f"warning: {message}\n")
