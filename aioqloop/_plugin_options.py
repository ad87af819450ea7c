"""The pytest plugin's options: versions, command line, ini keys and the marker.

What `aioqloop.pytest_plugin` needs to run at all (pytest, pluggy and pytest-asyncio
versions), its ``--aioqloop*`` flags and ``aioqloop*`` ini keys, and how a test's loop
options are read (the ``aioqloop`` marker wins, then the command line, then the ini
file) into `_LoopOptions`; also which path runs a test (pytest-asyncio, anyio, or the
plugin's own plain runner).  Imports nothing of aioqloop at module level: the plugin is
loaded in every pytest run of a project that installs aioqloop, opted in or not.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import inspect
import math
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .biglock import BigLock
    from .clock import VirtualClock

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


# Documented and imported as aioqloop.pytest_plugin.AioqloopLeakWarning (-W filters,
# the API reference): named there.
AioqloopLeakWarning.__module__ = "aioqloop.pytest_plugin"


def _need_uvloop() -> None:
    """Skip the running test when uvloop is not installed."""
    if not _have_uvloop():
        pytest.skip(_UVLOOP_HINT)


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


# pytest.StashKey is new in pytest 7.0: with an older one the plugin is disabled anyway.
_PLAIN_KEY = pytest.StashKey[bool]() if _DISABLED is None else None
_ANYIO_KEY = pytest.StashKey[bool]() if _DISABLED is None else None
_TOO_OLD_KEY = pytest.StashKey[str | None]() if _DISABLED is None else None


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


def _configure(config: pytest.Config) -> str | None:
    """``pytest_configure``'s checks: the marker, a uvloop base without uvloop (a usage
    error), and why the active pytest-asyncio cannot run tests on aioqloop (kept in the
    config's stash; returned)."""
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
    return too_old


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


