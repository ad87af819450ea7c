"""CPython's event loop conformance suite, run against aioqloop's loops on both bases.

CPython tests its own loops with mixins from ``test.test_asyncio`` (``EPollEventLoopTests``
in ``test_events.py``, the child-watcher classes in ``test_subprocess.py``); PyGObject runs
the same mixins against its GLib loop.  Here ``create_event_loop`` returns an aioqloop
loop.  The rule: aioqloop fails no test that its plain base loop passes.  On the uvloop
base, the tests that plain ``uvloop.new_event_loop()`` itself fails or hangs with this
harness (measured by running the same mixins against it) are skipped, each with the
uvloop limitation as the reason; nothing else is skipped.
"""

from __future__ import annotations

import asyncio
import sys
import unittest
import warnings
from typing import Any

import pytest

pytest.importorskip("test.test_asyncio.utils", reason="CPython's test package is not installed")

from test.test_asyncio import test_events, test_subprocess
from test.test_asyncio import utils as test_utils

import aioqloop
from tests.peer.asyncio_armed import close_loop

pytestmark = pytest.mark.skipif(
    not hasattr(test_events, "UnixEventLoopTestsMixin"), reason="Unix only"
)


class _CloseLoop:
    """``TestCase.close_loop`` reads ``loop._default_executor``, which uvloop hides."""

    close_loop = staticmethod(close_loop)


def _skip(tests: dict[str, str]) -> dict[str, Any]:
    """Class attributes replacing each named test with a skip carrying its reason."""

    def make(reason: str) -> Any:
        @unittest.skip(reason)
        def skipped(self: Any) -> None:  # pragma: no cover - never runs
            pass

        return skipped

    return {name: make(reason) for name, reason in tests.items()}


# --------------------------------------------------------------- stock base
class QSelectorEventLoopTests(
    _CloseLoop,
    test_events.UnixEventLoopTestsMixin,
    test_events.SubprocessTestsMixin,
    test_utils.TestCase,
):
    """As CPython's ``EPollEventLoopTests``, on ``new_event_loop(base="asyncio")``."""

    def create_event_loop(self) -> asyncio.AbstractEventLoop:
        return aioqloop.new_event_loop(base="asyncio")


class _ThreadedWatcher:
    """As CPython's ``SubprocessThreadedWatcherTests``, with our loop in place of the policy's."""

    loop: asyncio.AbstractEventLoop

    def create_event_loop(self) -> asyncio.AbstractEventLoop:
        raise NotImplementedError

    def setUp(self) -> None:
        super().setUp()  # type: ignore[misc]
        self.loop = self.create_event_loop()
        self.set_event_loop(self.loop)  # type: ignore[attr-defined]
        if sys.version_info < (3, 14) and self.uses_child_watcher:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: deprecated
                watcher = asyncio.ThreadedChildWatcher()
                watcher.attach_loop(self.loop)
                asyncio.get_event_loop_policy().set_child_watcher(watcher)

    def tearDown(self) -> None:
        super().tearDown()  # type: ignore[misc]
        if sys.version_info < (3, 14) and self.uses_child_watcher:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                policy = asyncio.get_event_loop_policy()
                watcher = policy.get_child_watcher()
                policy.set_child_watcher(None)  # type: ignore[arg-type]  # typeshed: no None
                watcher.attach_loop(None)
                watcher.close()

    uses_child_watcher = True


class QSelectorSubprocessTests(
    _ThreadedWatcher, _CloseLoop, test_subprocess.SubprocessMixin, test_utils.TestCase
):
    """CPython's subprocess suite on ``new_event_loop(base="asyncio")``."""

    def create_event_loop(self) -> asyncio.AbstractEventLoop:
        return aioqloop.new_event_loop(base="asyncio")


# ---------------------------------------------------------------- uvloop base
#: Tests that plain ``uvloop.new_event_loop()`` fails (or hangs in) with CPython's
#: harness; measured with uvloop 0.23 on CPython 3.11.  Reasons name the limitation.
_NOT_TRANSPORT = "uvloop: its transports are not asyncio.Transport subclasses"
_HANGS = "uvloop: hangs on plain uvloop.new_event_loop() too"
UVLOOP_EVENTS_LIMITS: dict[str, str] = {
    "test_add_signal_handler": (
        "uvloop: a signal sent while the loop is not running is not delivered to the "
        "handler by run_briefly() (plain uvloop times out after 30 s)"
    ),
    "test_bidirectional_pty": _HANGS + " (pty read/write pipes)",
    "test_create_connection": _NOT_TRANSPORT,
    "test_create_unix_connection": _NOT_TRANSPORT,
    "test_create_ssl_connection": _NOT_TRANSPORT,
    "test_create_ssl_unix_connection": _NOT_TRANSPORT,
    "test_create_connection_local_addr_in_use": (
        "uvloop: its bind error message does not name the address"
    ),
    "test_create_datagram_endpoint": _HANGS + " (UDP echo)",
    "test_create_datagram_endpoint_ipv6": _HANGS + " (UDP echo)",
    "test_create_datagram_endpoint_sock": _HANGS + " (UDP echo)",
    "test_create_server_multiple_hosts_ipv4": (
        "uvloop: binds with libuv, not through the mocked socket module"
    ),
    "test_create_server_multiple_hosts_ipv6": (
        "uvloop: binds with libuv, not through the mocked socket module"
    ),
    "test_prompt_cancellation": "uvloop: no _stop_serving() (a selector-loop internal)",
    "test_run_until_complete_nesting": (
        "uvloop: nested run_until_complete() gives no 'never awaited' RuntimeWarning"
    ),
    "test_subprocess_shell": (
        "uvloop: may deliver a pipe's connection_lost after process_exited (protocol "
        "already CLOSED); intermittent on plain uvloop too (1 run in 12 on 3.10 and on 3.11)"
    ),
    "test_subprocess_shell_invalid_args": (
        "uvloop: subprocess_shell() with a list raises TypeError, not ValueError"
    ),
    "test_timeout_rounding": "uvloop: no _run_once() for the test to count iterations",
    "test_unclosed_pipe_transport": _HANGS + " (pipe transports left open at close())",
    "test_writer_callback": "uvloop: remove_writer() returns None, not True",
}

UVLOOP_SUBPROCESS_LIMITS: dict[str, str] = {
    "test_close_dont_kill_finished": _HANGS,
    "test_close_kill_running": _HANGS,
    "test_devstdin_input": "uvloop: a child reading /dev/stdin gets no data (b'' != b'3')",
    "test_kill_issue43884": (
        "uvloop: close() fails with EBUSY while a pipe transport is still open"
    ),
    "test_pause_reading": "uvloop: its Cython transport methods cannot be mocked",
    "test_popen_error": "uvloop: spawns with libuv, not the mocked subprocess.Popen",
    "test_popen_error_with_stdin_pipe": (
        "uvloop: spawns with libuv, not the mocked subprocess.Popen"
    ),
}


# Tests that exist, or take their racy form, on one Python only; measured the same way
# (plain uvloop 0.23 fails each, with the same error, on that Python).
if sys.version_info >= (3, 12):
    UVLOOP_EVENTS_LIMITS["test_create_server_trsock"] = (
        "uvloop: Server.sockets are uvloop PseudoSocket objects, not "
        "asyncio.trsock.TransportSocket"
    )
if sys.version_info < (3, 11):
    UVLOOP_SUBPROCESS_LIMITS["test_stdin_broken_pipe"] = (
        "uvloop: 3.10's form writes 0.5 s after the child exited; uvloop has closed the "
        "stdin pipe transport by then, so write() raises RuntimeError, not BrokenPipeError"
    )


class _NoChildWatcher:
    """uvloop reaps its children itself and warns when asyncio installs a watcher."""

    def setUp(self) -> None:
        test_events.EventLoopTestsMixin.setUp(self)

    def tearDown(self) -> None:
        test_events.EventLoopTestsMixin.tearDown(self)


class QUVLoopTests(
    _NoChildWatcher,
    _CloseLoop,
    test_events.UnixEventLoopTestsMixin,
    test_events.SubprocessTestsMixin,
    test_utils.TestCase,
):
    """The same suite on ``new_event_loop(base="uvloop")``."""

    def create_event_loop(self) -> asyncio.AbstractEventLoop:
        return aioqloop.new_event_loop(base="uvloop")

    locals().update(_skip(UVLOOP_EVENTS_LIMITS))


class QUVLoopSubprocessTests(
    _ThreadedWatcher, _CloseLoop, test_subprocess.SubprocessMixin, test_utils.TestCase
):
    """CPython's subprocess suite on ``new_event_loop(base="uvloop")``."""

    uses_child_watcher = False

    def create_event_loop(self) -> asyncio.AbstractEventLoop:
        return aioqloop.new_event_loop(base="uvloop")

    locals().update(_skip(UVLOOP_SUBPROCESS_LIMITS))
