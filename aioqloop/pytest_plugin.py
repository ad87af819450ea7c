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

import argparse
import asyncio
import contextlib
import dataclasses
import importlib.util
import inspect
import math
import re
import sys
import traceback
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
_ANYIO_RUNNER = "_aioqloop_anyio_runner"
# hang_timeout and seed: aioqloop._plugin_tools reads them.
_MARKER_ARGS: tuple[str, ...] = (
    "base", "virtual_clock", "autojump", "autojump_threshold", "bql", "hang_timeout", "seed")
_UVLOOP_HINT = "uvloop is not installed: pip install 'aioqloop[uvloop]' (or uvloop)"

#: What this plugin needs: new-style hook wrappers (``hookimpl(wrapper=True)``) came with
#: pluggy 1.2; pytest.Parser, pytest.StashKey and friends with pytest 7.0.
MIN_PYTEST = (7, 0)
MIN_PLUGGY = (1, 2)
#: pytest-asyncio hands a test its loop through the ``pytest_asyncio_loop_factories`` hook
#: (with ``mark.asyncio(loop_factories=...)`` and the ``_{scope}_scoped_runner`` fixtures
#: built on the hook's factories), all new in pytest-asyncio 1.4.0.  An older one never
#: calls the hook: its tests would run on its own loop whatever they asked for.
MIN_PYTEST_ASYNCIO = (1, 4)


def _version_tuple(text: str) -> tuple[int, ...]:
    """``"8.2.1"`` -> (8, 2, 1); stops at the first non-numeric part (``"1.0.0rc1"``)."""
    out = []
    for part in text.split("."):
        match = re.match(r"\d+", part)
        if match is None:
            break
        out.append(int(match.group()))
        if match.end() != len(part):
            break
    return tuple(out)


def _unsupported_reason(pytest_version: str, pluggy_version: str) -> str | None:
    """Why this plugin cannot run with these versions, or None if it can."""
    missing = []
    if _version_tuple(pytest_version) < MIN_PYTEST:
        missing.append(f"pytest >= {'.'.join(map(str, MIN_PYTEST))} (found {pytest_version})")
    if _version_tuple(pluggy_version) < MIN_PLUGGY:
        missing.append(f"pluggy >= {'.'.join(map(str, MIN_PLUGGY))} (found {pluggy_version})")
    if not missing:
        return None
    return ("aioqloop's pytest plugin is disabled: it needs " + " and ".join(missing)
            + "; upgrade (pip install 'pytest>=8' 'pluggy>=1.5') to use it. "
            "This run is otherwise unaffected.")


def _pytest_asyncio_reason(version: str) -> str | None:
    """Why pytest-asyncio ``version`` cannot run a test on aioqloop, or None if it can."""
    if _version_tuple(version) >= MIN_PYTEST_ASYNCIO:
        return None
    need = ".".join(map(str, MIN_PYTEST_ASYNCIO))
    return (f"aioqloop needs pytest-asyncio >= {need} (found {version}, which has no "
            "pytest_asyncio_loop_factories hook) to run pytest-asyncio tests on its loops: "
            f"pip install 'pytest-asyncio>={need}' (it needs pytest >= 8.4); in strict mode "
            "a test marked aioqloop but not asyncio runs on aioqloop without it")


def _pytest_asyncio_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("pytest-asyncio")
    except metadata.PackageNotFoundError:  # pragma: no cover - not installed as a dist
        import pytest_asyncio

        return str(getattr(pytest_asyncio, "__version__", "0"))


def _installed_versions() -> tuple[str, str]:
    from importlib import metadata

    try:
        pluggy_version = metadata.version("pluggy")
    except metadata.PackageNotFoundError:  # pragma: no cover - vendored somewhere
        import pluggy

        pluggy_version = str(getattr(pluggy, "__version__", "0"))
    return str(pytest.__version__), pluggy_version


_DISABLED = _unsupported_reason(*_installed_versions())


def _have_uvloop() -> bool:
    """Is uvloop importable (without importing it)?"""
    try:
        return importlib.util.find_spec("uvloop") is not None
    except (ImportError, ValueError):
        return False


def _wrapper(**kwargs: Any) -> Callable[[Any], Any]:
    """``pytest.hookimpl(wrapper=True, ...)``; a no-op when the plugin is disabled (the
    decorator itself raises TypeError on pluggy < 1.2, at import)."""
    if _DISABLED is not None:
        return lambda f: f
    return pytest.hookimpl(wrapper=True, **kwargs)  # type: ignore[no-any-return]


class AioqloopLeakWarning(pytest.PytestWarning):
    """A test left a source attached or a bottom half scheduled on its loop's context."""


# --------------------------------------------------------------------- loops
@dataclasses.dataclass(frozen=True)
class _LoopOptions:
    """How to build a test's loop (the marker's, command line's and ini's options)."""

    base: str = "asyncio"
    virtual_clock: bool = False
    clock: VirtualClock | None = None  # an instance given through the marker: used as is
    autojump: bool = True
    autojump_threshold: float = 0.0
    bql: BigLock | bool = False  # True: the test's own BigLock (the bql fixture's)

    def for_base(self, base: str) -> _LoopOptions:
        return dataclasses.replace(self, base=base)


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
        if opts.base == "uvloop" and not _have_uvloop():
            pytest.skip(_UVLOOP_HINT)
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


# pytest.StashKey is new in pytest 7.0: with an older one the plugin is disabled anyway.
_PLAIN_KEY = pytest.StashKey[bool]() if _DISABLED is None else None
_ANYIO_KEY = pytest.StashKey[bool]() if _DISABLED is None else None
_TOO_OLD_KEY = pytest.StashKey[str | None]() if _DISABLED is None else None


# ------------------------------------------------------------- configuration
def _add_flag(group: Any, name: str, help_on: str, help_off: str) -> None:
    """An on/off option as a pair of flags, ``--NAME`` and ``--no-NAME`` (default None:
    the ini key decides), as looptime's ``--looptime`` / ``--no-looptime``."""
    dest = name.replace("-", "_")
    group.addoption(f"--{name}", dest=dest, action="store_const", const=True, default=None,
                    help=help_on)
    group.addoption(f"--no-{name}", dest=dest, action="store_const", const=False,
                    help=help_off)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("aioqloop", "aioqloop event loops")
    _add_flag(group, "aioqloop",
              "run async tests (pytest-asyncio) on aioqloop loops",
              "leave unmarked tests on pytest-asyncio's own loops, whatever the ini key "
              "aioqloop says (tests marked aioqloop still run on aioqloop)")
    group.addoption("--aioqloop-base", choices=("asyncio", "uvloop", "both"), default=None,
                    help="aioqloop base for opted-in tests: asyncio (default), uvloop, "
                         "or both (parametrized)")
    _add_flag(group, "aioqloop-virtual-clock",
              "put opted-in tests' loops on a VirtualClock",
              "real time for opted-in tests' loops, whatever the ini key "
              "aioqloop_virtual_clock says")
    _add_flag(group, "aioqloop-autojump",
              "VirtualClock autojump (the default; overrides the ini key)",
              "no VirtualClock autojump: time moves only by advance()")
    # The older spelling, --aioqloop-autojump=true|false, kept working: argparse matches
    # a whole argument against the option strings before it splits at "=", so these two
    # exact strings are options of their own (hidden from --help).
    for value in ("true", "false"):
        group.addoption(f"--aioqloop-autojump={value}", dest="aioqloop_autojump",
                        action="store_const", const=value == "true",
                        help=argparse.SUPPRESS)
    group.addoption("--aioqloop-autojump-threshold", type=float, default=None,
                    metavar="SECONDS",
                    help="VirtualClock autojump_threshold, in real seconds")
    _add_flag(group, "aioqloop-bql",
              "give opted-in tests' loops the test's BigLock (the bql fixture)",
              "no BigLock for opted-in tests' loops, whatever the ini key aioqloop_bql "
              "says")
    parser.addini("aioqloop", type="bool", default=False,
                  help="run async tests (pytest-asyncio) on aioqloop loops")
    parser.addini("aioqloop_base", default="asyncio",
                  help="default aioqloop base: asyncio, uvloop or both")
    parser.addini("aioqloop_virtual_clock", type="bool", default=False,
                  help="put opted-in tests' loops on a VirtualClock")
    parser.addini("aioqloop_autojump", type="bool", default=True,
                  help="VirtualClock autojump (false: time moves only by advance())")
    parser.addini("aioqloop_autojump_threshold", default="0",
                  help="VirtualClock autojump_threshold, in real seconds")
    parser.addini("aioqloop_bql", type="bool", default=False,
                  help="give opted-in tests' loops the test's BigLock (the bql fixture)")
    _add_tools_options(parser, group)


def _add_tools_options(parser: pytest.Parser, group: Any) -> None:
    """Options of aioqloop._plugin_tools: stuck loops."""
    group.addoption("--aioqloop-hang-timeout", type=float, default=None, metavar="SECONDS",
                    help="fail an aioqloop test whose loop (real clock) makes no progress "
                         "for SECONDS, with a report of what each task awaits (0: off)")
    group.addoption("--aioqloop-stuck-grace", type=float, default=None, metavar="SECONDS",
                    help="real seconds a stuck virtual-clock loop waits for other threads "
                         "before the test fails with a report (default 1; 0: off)")
    parser.addini("aioqloop_hang_timeout", default="0",
                  help="--aioqloop-hang-timeout, in seconds (0: off)")
    parser.addini("aioqloop_stuck_grace", default="1",
                  help="--aioqloop-stuck-grace, in real seconds (0: off)")
    group.addoption("--aioqloop-seed", type=int, default=None, metavar="N",
                    help="run ready work of one priority in an order drawn from seed N "
                         "(FIFO without a seed)")
    group.addoption("--aioqloop-seeds", type=int, default=None, metavar="K",
                    help="run each opted-in test under K seeds (from --aioqloop-seed, "
                         "else 0, on)")
    group.addoption("--aioqloop-trace-dir", default=None, metavar="DIR",
                    help="save each opted-in test's dispatch trace in DIR")
    group.addoption("--aioqloop-trace-compare", default=None, metavar="DIR",
                    help="fail an opted-in test whose dispatch trace differs from the one "
                         "saved in DIR")
    parser.addini("aioqloop_seed", default="",
                  help="--aioqloop-seed (empty: FIFO)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "aioqloop(base='asyncio', virtual_clock=False, autojump=True, autojump_threshold=0, "
        "bql=False, hang_timeout=None, seed=None): run this async test on an aioqloop loop; "
        "base 'asyncio', 'uvloop' or 'both' (parametrized); virtual_clock=True (or a "
        "VirtualClock) puts the loop on a virtual clock; bql=True (or a BigLock) gives it "
        "the big lock; hang_timeout=S fails it after S real seconds without progress; "
        "seed=N runs ready work of one priority in an order drawn from N",
    )
    if (config.getoption("aioqloop_base") in ("uvloop", "both")
            and not _have_uvloop()):
        raise pytest.UsageError(f"--aioqloop-base={config.getoption('aioqloop_base')}: "
                                + _UVLOOP_HINT)
    too_old = None
    if config.pluginmanager.hasplugin("asyncio"):
        too_old = _pytest_asyncio_reason(_pytest_asyncio_version())
    config.stash[_TOO_OLD_KEY] = too_old  # type: ignore[index]
    if _run_opted_in(config):
        if too_old is not None:
            # --aioqloop asks for every pytest-asyncio test to run on aioqloop.
            raise pytest.UsageError(f"--aioqloop / aioqloop = true: {too_old}")
        _register_factories_hook(config)
    config.pluginmanager.register(_ToolsHooks(), "aioqloop-tools")


def _too_old(config: pytest.Config) -> str | None:
    """Why the active pytest-asyncio cannot run tests on aioqloop (None: it can, or it is
    not active)."""
    return config.stash.get(_TOO_OLD_KEY, None)  # type: ignore[arg-type]


def _flag(config: pytest.Config, name: str) -> bool:
    """An on/off option: ``--NAME`` or ``--no-NAME`` if given, else the ini key."""
    value = config.getoption(name)
    if value is None:
        value = config.getini(name)
    return bool(value)


def _run_opted_in(config: pytest.Config) -> bool:
    return _flag(config, "aioqloop")


def _seconds(value: object, where: str) -> float:
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        seconds = math.nan
    if isinstance(value, bool) or not math.isfinite(seconds) or seconds < 0:
        raise pytest.UsageError(f"{where}: autojump_threshold must be a number of seconds "
                                f">= 0, not {value!r}")
    return seconds


def _options(config: pytest.Config, node: Any, fixturenames: Any) -> tuple[
        bool, tuple[str, ...], _LoopOptions]:
    """(opted in?, bases, loop options) for a test function: marker, then command line,
    then ini."""
    from aioqloop.biglock import BigLock
    from aioqloop.clock import VirtualClock

    where = getattr(node, "nodeid", "aioqloop")
    marker = node.get_closest_marker("aioqloop")
    opted = marker is not None or _run_opted_in(config)
    base = config.getoption("aioqloop_base") or config.getini("aioqloop_base") or "asyncio"
    virtual = _flag(config, "aioqloop_virtual_clock") or "virtual_clock" in fixturenames
    autojump = _flag(config, "aioqloop_autojump")
    cli_threshold = config.getoption("aioqloop_autojump_threshold")
    threshold = _seconds(cli_threshold if cli_threshold is not None
                         else config.getini("aioqloop_autojump_threshold"),
                         "--aioqloop-autojump-threshold / aioqloop_autojump_threshold")
    lock: Any = _flag(config, "aioqloop_bql")
    clock: VirtualClock | None = None
    if marker is not None:
        if marker.args:
            raise pytest.UsageError(
                f"{where}: mark.aioqloop takes keyword arguments only "
                f"({', '.join(a + '=' for a in _MARKER_ARGS)})")
        kw = marker.kwargs
        unknown = set(kw) - set(_MARKER_ARGS)
        if unknown:
            raise pytest.UsageError(
                f"{where}: mark.aioqloop got unknown arguments {sorted(unknown)}; it takes "
                f"{', '.join(_MARKER_ARGS)}")
        base = kw.get("base", base)
        if "virtual_clock" in kw:
            value = kw["virtual_clock"]
            if isinstance(value, VirtualClock):
                clock = value
                if "autojump" in kw or "autojump_threshold" in kw:
                    raise pytest.UsageError(
                        f"{where}: mark.aioqloop got a VirtualClock and autojump options; "
                        "set them on the clock itself")
            elif not isinstance(value, bool):
                raise pytest.UsageError(
                    f"{where}: mark.aioqloop(virtual_clock=) takes True, False or a "
                    f"VirtualClock, not {type(value).__name__}")
            virtual = virtual or bool(value) or clock is not None
        if "autojump" in kw:
            if not isinstance(kw["autojump"], bool):
                raise pytest.UsageError(f"{where}: mark.aioqloop(autojump=) takes True or "
                                        f"False, not {kw['autojump']!r}")
            autojump = kw["autojump"]
            virtual = True  # asking for a clock's mode asks for the clock
        if "autojump_threshold" in kw:
            threshold = _seconds(kw["autojump_threshold"], where)
            virtual = True
        if "bql" in kw:
            lock = kw["bql"]
            if not isinstance(lock, (bool, BigLock)):
                raise pytest.UsageError(f"{where}: mark.aioqloop(bql=) takes True, False or "
                                        f"a BigLock, not {type(lock).__name__}")
    if base == "both":
        bases: tuple[str, ...] = _BASES
        if virtual:
            bases = ("asyncio",)  # a virtual clock needs the stock base
    elif base in _BASES:
        bases = (base,)
        if virtual and base == "uvloop":
            raise pytest.UsageError(
                f"{where}: a virtual clock needs base='asyncio' (uvloop's timers run on "
                "libuv's own clock)")
    else:
        raise pytest.UsageError(
            f"{where}: aioqloop base must be 'asyncio', 'uvloop' or 'both', not {base!r}")
    return opted, bases, _LoopOptions(bases[0], virtual, clock, autojump, threshold, lock)


# ------------------------------------------------------------ pytest-asyncio
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
            from aioqloop import _plugin_tools

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


def _anyio_candidate(node: Any, function: Any, fixturenames: Any) -> bool:
    """An ``async def`` test marked aioqloop that anyio's plugin runs."""
    if node.get_closest_marker("aioqloop") is None:
        return False
    if not inspect.iscoroutinefunction(function):
        return False
    if _pytest_asyncio_item(node):
        return False
    return node.get_closest_marker("anyio") is not None or "anyio_backend" in fixturenames




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


@pytest.hookimpl
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    runner: Any = pyfuncitem.funcargs.get(_PLAIN_RUNNER)
    if runner is None or not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    funcargs = pyfuncitem.funcargs
    testargs = {arg: funcargs[arg] for arg in pyfuncitem._fixtureinfo.argnames}
    runner.run(pyfuncitem.obj(**testargs))
    return True


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


@pytest.fixture
def _aioqloop_seed(request: pytest.FixtureRequest) -> int | None:
    """The seed of a test run under ``--aioqloop-seeds`` (its parameter)."""
    param = getattr(request, "param", None)
    return int(param) if param is not None else None


#: aioqloop._plugin_tools, once the plugin made a loop (it is not imported before).
_TOOLS: list[Any] = []


def _arm_tools(loop: asyncio.AbstractEventLoop) -> None:
    from aioqloop import _plugin_tools

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
