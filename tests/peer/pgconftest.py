"""conftest.py of the tree that runs PyGObject's test files (copied in as ``conftest.py``).

Written for aioqloop, not taken from PyGObject.  It reproduces the two things PyGObject's
own conftest does that the main-loop tests rely on:

* an exception that reaches ``sys.excepthook`` during a test (a callback raising inside
  the main loop) fails that test, as it does in PyGObject's suite;
* ``PyGIDeprecationWarning`` is shown ("default" filter), since tests count warnings.

``AIOQLOOP_PEER_IMPL`` says which GLib runs: ``real`` (PyGObject) or ``aioqloop`` (the
``gi`` shim of ``tests/peer/gi_shim`` is first on ``sys.path``).  Per-test outcomes are
written as JSON to ``AIOQLOOP_PEER_RESULTS``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

IMPL = os.environ.get("AIOQLOOP_PEER_IMPL", "aioqloop")
os.environ["LC_MESSAGES"] = "C"

import gi  # noqa: E402

if IMPL == "real":
    gi.require_version("GLib", "2.0")
warnings.simplefilter("default", gi.PyGIDeprecationWarning)

from . import helper  # noqa: E402

if IMPL == "aioqloop":

    @contextlib.contextmanager
    def _capture_glib_warnings(
        allow_warnings: bool = False, allow_criticals: bool = False
    ) -> Iterator[list[Any]]:
        # GLib's criticals ("Source ID … was not found") are log records of the
        # aioqloop.glib logger here: record them instead of printing them.
        seen: list[Any] = []

        class _Keep(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                seen.append(record)

        log = logging.getLogger("aioqloop.glib")
        handler, old = _Keep(), log.propagate
        log.addHandler(handler)
        log.propagate = False
        try:
            with warnings.catch_warnings(record=True) as warn:
                yield warn
        finally:
            log.removeHandler(handler)
            log.propagate = old

    helper.capture_glib_warnings = _capture_glib_warnings


if IMPL == "aioqloop" and os.environ.get("AIOQLOOP_GLIB_EVENTS_BASE", "").startswith("uvloop"):
    # CPython's test helper closes a loop by reading the selector loop's private
    # ``_default_executor``, which uvloop does not have; close through public API.
    try:
        from test.test_asyncio import utils as _asyncio_test_utils
    except ImportError:
        pass
    else:

        def _close_loop(loop: Any) -> None:
            if not loop.is_closed():
                loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

        _asyncio_test_utils.TestCase.close_loop = staticmethod(_close_loop)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_call(item: Any) -> Iterator[None]:
    caught: list[tuple[Any, Any, Any]] = []
    old = sys.excepthook
    sys.excepthook = lambda t, v, tb: caught.append((t, v, tb))
    try:
        yield
    finally:
        sys.excepthook = old
        if caught:
            t, v, tb = caught[0]
            raise t(v).with_traceback(tb)


_outcomes: dict[str, str] = {}
_state: dict[str, Any] = {"running": None, "finished": False}


def _save() -> None:
    # Written after every test, so a run that crashes (real PyGObject segfaults on some
    # tests written for a newer release) still tells which test it died in.
    out = os.environ.get("AIOQLOOP_PEER_RESULTS")
    if out:
        with open(out + ".tmp", "w", encoding="utf-8") as f:
            json.dump({"outcomes": _outcomes, **_state}, f, indent=1, sort_keys=True)
        os.replace(out + ".tmp", out)


def pytest_runtest_logstart(nodeid: str, location: Any) -> None:
    _state["running"] = nodeid
    _save()


def pytest_runtest_logreport(report: Any) -> None:
    nodeid = report.nodeid
    if report.when == "call" or (report.when == "setup" and not report.passed):
        if hasattr(report, "wasxfail"):
            outcome = "xpassed" if report.passed else "xfailed"
        else:
            outcome = report.outcome
        _outcomes[nodeid] = outcome
    elif report.when == "teardown" and report.failed:
        _outcomes[nodeid] = "failed"
    if report.when == "teardown":
        _state["running"] = None
        _save()


def pytest_collectreport(report: Any) -> None:
    if report.failed:
        _outcomes[f"{report.nodeid}::<collection>"] = "error"


def pytest_sessionfinish(session: Any, exitstatus: int) -> None:
    _state["finished"] = True
    _save()
