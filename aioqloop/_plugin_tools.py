"""The pytest plugin's test tools: stuck-loop failures and leaked-task warnings.

``aioqloop.pytest_plugin`` calls in here around each test phase (setup, call, teardown)
and when it makes a loop; this module is imported only once a test made an aioqloop loop
(the plugin itself must not import aioqloop in runs that never use it).

* Every loop the plugin makes records where its tasks are created (`_hang.record_origins`).
* **Leaked tasks**: tasks created during the test call and still pending when it returns
  are reported as an ``AioqloopLeakWarning``, each with where it was created and what it
  awaits.  Tasks that existed before the call (a wider-scoped fixture's) are not the
  test's.
* **Stuck loops**: on a `VirtualClock` loop, the clock's stuck hook fires when the loop
  is provably stuck (see `aioqloop._hang`); on a real clock, a `ProgressWatch` fires when
  the loop made no progress for ``hang_timeout`` seconds.  Either way the report (each
  pending task and what it awaits) is kept, the stuck tasks are cancelled so the loop
  returns, and the phase fails with the report instead of the ``CancelledError``.
"""

from __future__ import annotations

import asyncio
import math
import weakref
from typing import Any

import pytest

from . import _hang
from ._trace import DispatchTrace, first_difference
from .clock import VirtualClock

__all__ = ("arm", "begin", "end", "settings")

#: Real seconds a stuck virtual-clock loop waits for other threads, by default.
DEFAULT_STUCK_GRACE = 1.0


class _Tools:
    """Per-process state: the running test's settings, watches, reports."""

    def __init__(self) -> None:
        self.watches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop,
                                                _hang.ProgressWatch] = (
            weakref.WeakKeyDictionary())
        self.armed: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
        self.reports: list[str] = []
        #: Tasks pending when the test's setup began: a wider scope's, not cancelled.
        self.before_setup: set[int] = set()
        #: The running test's dispatch traces (seeded order, recording), by loop.
        self.traces: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop,
                                               DispatchTrace] = weakref.WeakKeyDictionary()
        self.trace_item: pytest.Item | None = None
        #: The running test's (hang_timeout, stuck_grace, seed), read once per test.
        self.settings_item: pytest.Item | None = None
        self.settings: tuple[float, float, int | None] = (0.0, 0.0, None)
        #: Loops already armed for the running test (settings_item).
        self.armed_for_item: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()


_tools = _Tools()


def _seconds(value: object, what: str) -> float:
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        seconds = math.nan
    if isinstance(value, bool) or not math.isfinite(seconds) or seconds < 0:
        raise pytest.UsageError(f"{what} must be a number of seconds >= 0, not {value!r}")
    return seconds


def settings(item: pytest.Item) -> tuple[float, float]:
    """(hang_timeout, stuck_grace) for ``item``, in real seconds; 0 = off.

    ``hang_timeout``: the marker's ``hang_timeout=``, else ``--aioqloop-hang-timeout``,
    else the ini's ``aioqloop_hang_timeout`` (default 0: off).  ``stuck_grace``:
    ``--aioqloop-stuck-grace``, else ini ``aioqloop_stuck_grace`` (default 1).
    """
    config = item.config
    marker = item.get_closest_marker("aioqloop")
    if marker is not None and "hang_timeout" in marker.kwargs:
        hang = _seconds(marker.kwargs["hang_timeout"],
                        f"{item.nodeid}: mark.aioqloop(hang_timeout=)")
    else:
        cli = config.getoption("aioqloop_hang_timeout", None)
        hang = _seconds(cli if cli is not None else config.getini("aioqloop_hang_timeout"),
                        "--aioqloop-hang-timeout / aioqloop_hang_timeout")
    cli = config.getoption("aioqloop_stuck_grace", None)
    grace = _seconds(cli if cli is not None else config.getini("aioqloop_stuck_grace"),
                     "--aioqloop-stuck-grace / aioqloop_stuck_grace")
    return hang, grace


def seed(item: pytest.Item) -> int | None:
    """The scheduling seed of ``item``: its ``--aioqloop-seeds`` parameter, else the
    marker's ``seed=``, else ``--aioqloop-seed``, else the ini's ``aioqloop_seed``."""
    callspec = getattr(item, "callspec", None)
    if callspec is not None and "_aioqloop_seed" in callspec.params:
        return int(callspec.params["_aioqloop_seed"])
    marker = item.get_closest_marker("aioqloop")
    if marker is not None and "seed" in marker.kwargs:
        value = marker.kwargs["seed"]
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise pytest.UsageError(f"{item.nodeid}: mark.aioqloop(seed=) takes an int or "
                                    f"None, not {value!r}")
        return value
    cli = item.config.getoption("aioqloop_seed", None)
    if cli is not None:
        return int(cli)
    text = str(item.config.getini("aioqloop_seed")).strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise pytest.UsageError(f"aioqloop_seed must be an integer, not {text!r}") from None


def _trace_options(item: pytest.Item) -> tuple[str | None, str | None]:
    config = item.config
    return (config.getoption("aioqloop_trace_dir", None),
            config.getoption("aioqloop_trace_compare", None))


def _item_settings(item: pytest.Item) -> tuple[float, float, int | None]:
    """(hang_timeout, stuck_grace, seed) of ``item``, read once per test."""
    if _tools.settings_item is not item:
        hang, grace = settings(item)
        _tools.settings = (hang, grace, seed(item))
        _tools.settings_item = item
        _tools.armed_for_item = weakref.WeakSet()
    return _tools.settings


def _arm_trace(loop: asyncio.AbstractEventLoop, item: pytest.Item, n: int | None) -> None:
    """A seeded order and/or a recorded trace for ``item`` on ``loop`` (once per test)."""
    if _tools.trace_item is not item:
        _tools.trace_item = item
        _tools.traces = weakref.WeakKeyDictionary()
    if loop in _tools.traces:
        return
    save, compare = _trace_options(item)
    if n is None and save is None and compare is None:
        return
    _tools.traces[loop] = DispatchTrace(n, recording=bool(save or compare)).attach(loop)


def _pending(loop: asyncio.AbstractEventLoop) -> list[asyncio.Task[Any]]:
    if loop.is_closed():
        return []
    return [t for t in asyncio.all_tasks(loop) if not t.done()]


def arm(loop: asyncio.AbstractEventLoop, item: pytest.Item | None) -> None:
    """Give a loop the plugin made the settings of ``item``, the running test (on
    creation and at the start of each phase: a wider-scoped loop serves several tests)."""
    _hang.record_origins(loop)
    if item is None or loop.is_closed():
        return
    hang, grace, n = _item_settings(item)
    if loop in _tools.armed_for_item:
        return  # armed for this test already (an earlier phase)
    _tools.armed_for_item.add(loop)
    _arm_trace(loop, item, n)
    clock = getattr(loop, "_aioq_clock", None)
    if isinstance(clock, VirtualClock):
        clock._stuck_grace = grace
        clock._on_stuck = ((lambda: _stuck(loop, _virtual_why(clock))) if grace > 0
                           else None)
    elif hang > 0:
        watch = _tools.watches.get(loop)
        if watch is None or watch.seconds != hang:
            if watch is not None:
                watch.stop()
            _tools.watches[loop] = _hang.ProgressWatch(
                loop, hang, lambda: _stuck(loop, _real_why(hang)))
    _tools.armed.add(loop)


def _disarm() -> None:
    for loop in list(_tools.armed):
        clock = getattr(loop, "_aioq_clock", None)
        if isinstance(clock, VirtualClock):
            clock._on_stuck = None
    for watch in list(_tools.watches.values()):
        watch.stop()
    _tools.watches.clear()
    for trace in list(_tools.traces.values()):
        trace.detach()
    _tools.traces = weakref.WeakKeyDictionary()
    _tools.trace_item = None
    _tools.settings_item = None
    _tools.armed_for_item = weakref.WeakSet()
    _tools.armed = weakref.WeakSet()


def _virtual_why(clock: VirtualClock) -> str:
    return (f"the test's event loop is stuck (virtual time {clock.time():.6f} s): nothing is "
            "ready, no timer or source deadline is pending, no fd but the loop's own is "
            "watched, no executor call is out, and no other thread woke it within "
            f"{clock._stuck_grace:g} s")


def _real_why(seconds: float) -> str:
    return (f"the test's event loop made no progress for {seconds:g} s (hang_timeout): no "
            "task moved past its await and no source was dispatched")


def _stuck(loop: asyncio.AbstractEventLoop, why: str) -> None:
    """A loop is stuck: keep the report, cancel the stuck tasks so the loop returns.

    The second time in one phase (a task that swallowed its cancellation and waits
    again), or with no task to cancel, the loop is stopped instead: the
    ``run_until_complete`` running the test then raises, and the phase fails with the
    reports.
    """
    _tools.reports.append(_hang.hang_report(loop, why))
    pending = _pending(loop)
    mine = [t for t in pending if id(t) not in _tools.before_setup]
    targets = _hang.roots(mine or pending)
    if len(_tools.reports) > 1 or not targets:
        loop.stop()
        return
    for task in targets:
        task.cancel()


def begin(item: pytest.Item, phase: str, loops: list[asyncio.AbstractEventLoop]
          ) -> set[asyncio.Task[Any]]:
    """A phase starts: arm the live loops; the tasks pending now (for `end`)."""
    _tools.reports.clear()
    pending: set[asyncio.Task[Any]] = set()
    for loop in loops:
        if not loop.is_closed():
            arm(loop, item)
            if phase != "teardown":  # what setup and call compare against
                pending.update(_pending(loop))
    if phase == "setup":
        _tools.before_setup = {id(t) for t in pending}
    return pending


def failed(exc: BaseException | None, item: pytest.Item | None = None,
           phase: str = "call") -> None:
    """Raise the stuck-loop failure of this phase, if there is one (from ``exc``)."""
    reports, _tools.reports = _tools.reports, []
    if reports:
        text = "\n\n".join(reports)
        if item is not None and _records_its_own_outcome(item):
            # A unittest case reports the error it recorded itself (the CancelledError
            # that stopped the stuck task), whatever this phase raises: the report goes
            # beside it, so it is never lost.
            item.add_report_section(phase, "aioqloop stuck loop", text)
        raise pytest.fail.Exception(text, pytrace=False) from None


def _records_its_own_outcome(item: pytest.Item) -> bool:
    """Whether pytest reports ``item``'s outcome from what the test recorded rather than
    from what its call phase raised (unittest.TestCase methods)."""
    try:
        from _pytest.unittest import TestCaseFunction
    except ImportError:  # pragma: no cover - a pytest without it: assume so
        return True
    return isinstance(item, TestCaseFunction)


def end(item: pytest.Item, phase: str, loops: list[asyncio.AbstractEventLoop],
        before: set[asyncio.Task[Any]], exc: BaseException | None) -> None:
    """A phase ended (``exc``: with that exception): fail it with the report if a loop
    got stuck; after a call that passed, warn about the tasks the test left pending."""
    try:
        failed(exc, item, phase)
    finally:
        if phase == "teardown":
            _disarm()
    if phase != "call":
        return
    n = _item_settings(item)[2]
    if exc is not None and n is not None:
        item.add_report_section("call", "aioqloop", (
            f"scheduling seed {n}: rerun with --aioqloop-seed={n} (or "
            f"@pytest.mark.aioqloop(seed={n})) for the same dispatch order"))
    _save_or_compare(item, failed=exc is not None)
    leaked: list[asyncio.Task[Any]] = []
    for loop in loops:
        leaked.extend(t for t in _pending(loop)
                      if t not in before and not _hang.runner_task(t))
    if leaked:
        from ._plugin_options import AioqloopLeakWarning

        described = "\n".join(_hang.describe_task(t) for t in
                              sorted(leaked, key=lambda t: t.get_name()))
        item.warn(AioqloopLeakWarning(
            f"the test left {len(leaked)} task(s) pending on its loop (await or cancel them "
            f"before the test ends):\n{described}"))


def _trace_file(directory: str, item: pytest.Item) -> str:
    import os
    import re

    name = re.sub(r"[^A-Za-z0-9_.\[\]-]+", "_", item.nodeid)
    return os.path.join(directory, name + ".trace")


def _save_or_compare(item: pytest.Item, *, failed: bool) -> None:
    """After the call: save the test's trace, and/or compare it with the saved one (a
    test that failed anyway gets the comparison as a report section)."""
    save, compare = _trace_options(item)
    if save is None and compare is None:
        return
    lines: list[str] = []
    for trace in _tools.traces.values():
        lines.extend(trace.lines())
    if save is not None:
        import os

        os.makedirs(save, exist_ok=True)
        with open(_trace_file(save, item), "w", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in lines))
    if compare is not None:
        path = _trace_file(compare, item)
        try:
            with open(path, encoding="utf-8") as f:
                saved = f.read().splitlines()
        except FileNotFoundError:
            raise pytest.fail.Exception(f"no saved dispatch trace for this test: {path}",
                                        pytrace=False) from None
        diff = first_difference(saved, lines)
        if failed:
            item.add_report_section("call", "aioqloop trace", (
                f"dispatch trace differs from {path}: {diff}" if diff is not None
                else f"dispatch trace same as {path}"))
        elif diff is not None:
            raise pytest.fail.Exception(
                f"the dispatch trace differs from {path}: {diff}", pytrace=False)
