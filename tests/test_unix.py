"""Signal and child-watch sources (GLib's ``glib/tests/unix.c`` scenarios and more)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import aioqloop
from aioqloop import ChildWatchSource, MainContext, SignalSource, _signals, unix
from aioqloop.unix import child_watch_add, signal_add

USR1 = signal.SIGUSR1
USR2 = signal.SIGUSR2
LOOP_BASES = ("aioqloop", "uvloop", "asyncio")


@pytest.fixture(autouse=True)
def _signals_left_alone() -> Iterator[None]:
    """Every test must leave SIGUSR1/2 and the wakeup fd as it found them."""
    before = {sig: signal.getsignal(sig) for sig in (USR1, USR2)}
    yield
    after = {sig: signal.getsignal(sig) for sig in (USR1, USR2)}
    for sig, handler in before.items():
        signal.signal(sig, handler)
    wakeup = signal.set_wakeup_fd(-1)
    assert after == before
    assert wakeup == -1
    assert not any(entry.wakers for entry in _signals._entries.values())


def counter(log: list[Any], result: bool = True) -> Callable[..., bool]:
    def cb(*args: Any) -> bool:
        log.append(args)
        return result

    return cb


def drain(context: MainContext) -> int:
    """Non-blocking iterations until nothing is ready; how many dispatched."""
    n = 0
    while context.iteration(False):
        n += 1
    return n


def run_on(base: str, main: Callable[[], Any]) -> Any:
    if base == "asyncio":
        return asyncio.run(main())
    if base == "uvloop":
        return aioqloop.run(main(), base="uvloop")
    return aioqloop.run(main())


def context_on(base: str) -> MainContext:
    return MainContext() if base == "asyncio" else aioqloop.get_main_context()


# --------------------------------------------------------------------------
# Signals on a hand-iterated context
# --------------------------------------------------------------------------


def test_fires_once_per_delivery(ctx: MainContext) -> None:
    log: list[Any] = []
    sid = signal_add(USR1, counter(log), "a", context=ctx)
    assert drain(ctx) == 0
    os.kill(os.getpid(), USR1)
    assert drain(ctx) == 1
    assert log == [("a",)]
    os.kill(os.getpid(), USR1)
    assert drain(ctx) == 1
    assert log == [("a",), ("a",)]
    assert aioqloop.source_remove(sid, ctx)


def test_deliveries_before_dispatch_coalesce(ctx: MainContext) -> None:
    log: list[Any] = []
    src = SignalSource(USR1)
    src.set_callback(counter(log))
    src.attach(ctx)
    signal.raise_signal(USR1)
    signal.raise_signal(USR1)
    assert drain(ctx) == 1
    assert len(log) == 1
    src.destroy()


def test_two_sources_for_one_signal_both_fire(ctx: MainContext) -> None:
    log: list[Any] = []
    signal_add(USR1, counter(log), 1, context=ctx)
    signal_add(USR1, counter(log), 2, context=ctx)
    signal.raise_signal(USR1)
    drain(ctx)
    assert sorted(log) == [(1,), (2,)]
    ctx.close()
    assert signal.getsignal(USR1) is signal.SIG_DFL


def test_every_context_gets_the_signal(ctx: MainContext) -> None:
    other = MainContext(_driver="standalone")
    log: list[Any] = []
    signal_add(USR2, counter(log), "first", context=ctx)
    signal_add(USR2, counter(log), "second", context=other)
    signal.raise_signal(USR2)
    assert drain(ctx) == 1
    assert drain(other) == 1
    assert sorted(log) == [("first",), ("second",)]
    other.close()


@pytest.mark.timeout(10)
def test_context_run_by_another_thread_gets_the_signal() -> None:
    other = MainContext(_driver="standalone")
    log: list[Any] = []
    src = SignalSource(USR1)
    src.set_callback(counter(log))
    src.attach(other)
    started = threading.Event()

    def run() -> None:
        started.set()
        while not log:
            other.iteration(True)

    thread = threading.Thread(target=run)
    thread.start()
    started.wait()
    signal.raise_signal(USR1)
    thread.join()
    assert log == [()]
    # Woken by the wakeup pipe too, it stopped watching it: only the main thread drains
    # that pipe (a thread draining it could steal the main thread's wake-up).
    assert src._wake_tag is None
    other.close()


@pytest.mark.timeout(10)
def test_nested_iteration_of_another_context_reaches_both(ctx: MainContext) -> None:
    # GLib's sighup_nested: the signal is raised while a nested loop runs another context.
    inner = MainContext(_driver="standalone")
    log: list[Any] = []
    signal_add(USR1, counter(log), "inner", context=inner)
    signal_add(USR1, counter(log), "outer", context=ctx)

    def run_inner() -> bool:
        signal.raise_signal(USR1)
        while not log:
            inner.iteration(True)
        return False

    aioqloop.idle_add(run_inner, context=ctx)
    drain(ctx)
    assert sorted(log) == [("inner",), ("outer",)]
    inner.close()


def test_signal_raised_in_callback_gives_exactly_one_more_dispatch(ctx: MainContext) -> None:
    calls = []

    def cb() -> bool:
        calls.append(1)
        if len(calls) == 1:
            signal.raise_signal(USR1)
        return True

    signal_add(USR1, cb, context=ctx)
    signal.raise_signal(USR1)
    drain(ctx)
    assert len(calls) == 2


def test_callback_returning_false_removes_the_source(ctx: MainContext) -> None:
    log: list[Any] = []
    src = SignalSource(USR1)
    src.set_callback(counter(log, result=False))
    src.attach(ctx)
    signal.raise_signal(USR1)
    drain(ctx)
    assert src.is_destroyed
    assert log == [()]
    assert signal.getsignal(USR1) is signal.SIG_DFL


@pytest.mark.timeout(10)
def test_blocked_iteration_wakes_on_signal(ctx: MainContext) -> None:
    log: list[Any] = []
    signal_add(USR1, counter(log), context=ctx)
    # The timer only makes it likely that the iteration is already asleep; the assert
    # holds either way.
    timer = threading.Timer(0.05, os.kill, (os.getpid(), USR1))
    timer.start()
    while not log:
        ctx.iteration(True)
    timer.join()
    assert log == [()]


@pytest.mark.timeout(10)
def test_signal_taken_by_another_thread_wakes_the_main_thread(ctx: MainContext) -> None:
    # The main thread blocks the signal, so the kernel hands it to the helper thread; only
    # the wakeup fd (our pipe, watched by the source) can then wake the sleeping poll.
    log: list[Any] = []
    signal_add(USR1, counter(log), context=ctx)
    go = threading.Event()

    def helper() -> None:
        go.wait()
        os.kill(os.getpid(), USR1)

    thread = threading.Thread(target=helper)
    thread.start()
    signal.pthread_sigmask(signal.SIG_BLOCK, {USR1})
    try:
        go.set()
        while not log:
            ctx.iteration(True)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {USR1})
        thread.join()
    assert log == [()]


# --------------------------------------------------------------------------
# Dispositions and the wakeup fd
# --------------------------------------------------------------------------


@pytest.mark.parametrize("previous", ["callable", signal.SIG_IGN, signal.SIG_DFL])
def test_removing_the_last_source_restores_the_previous_disposition(
    ctx: MainContext, previous: Any
) -> None:
    hits: list[int] = []
    prev: Any = (lambda signum, frame: hits.append(signum)) if previous == "callable" else previous
    signal.signal(USR2, prev)
    try:
        a = signal_add(USR2, counter([]), context=ctx)
        b = signal_add(USR2, counter([]), context=ctx)
        assert signal.getsignal(USR2) is _signals._on_signal
        aioqloop.source_remove(a, ctx)
        assert signal.getsignal(USR2) is _signals._on_signal  # one source is left
        aioqloop.source_remove(b, ctx)
        assert signal.getsignal(USR2) is prev
        if previous == "callable":
            signal.raise_signal(USR2)
            assert hits == [USR2]
    finally:
        signal.signal(USR2, signal.SIG_DFL)


def test_unattached_source_installs_and_destroy_restores() -> None:
    src = SignalSource(USR1)
    assert signal.getsignal(USR1) is _signals._on_signal
    src.destroy()
    assert signal.getsignal(USR1) is signal.SIG_DFL


def test_someone_else_replacing_the_handler_is_not_undone(ctx: MainContext) -> None:
    sid = signal_add(USR1, counter([]), context=ctx)
    theirs = signal.signal(USR1, signal.SIG_IGN)
    assert theirs is _signals._on_signal
    aioqloop.source_remove(sid, ctx)
    assert signal.getsignal(USR1) is signal.SIG_IGN
    signal.signal(USR1, signal.SIG_DFL)


@pytest.mark.timeout(10)
def test_removal_outside_main_thread_restores_at_next_delivery(ctx: MainContext) -> None:
    hits: list[int] = []

    def prev(signum: int, frame: Any) -> None:
        hits.append(signum)

    signal.signal(USR1, prev)
    try:
        src = SignalSource(USR1)
        src.attach(ctx)
        thread = threading.Thread(target=src.destroy)
        thread.start()
        thread.join()
        # Python can only change handlers in the main thread: still ours for now...
        assert signal.getsignal(USR1) is _signals._on_signal
        signal.raise_signal(USR1)
        # ...and the delivery both restores the old handler and reaches it.
        assert hits == [USR1]
        assert signal.getsignal(USR1) is prev
        assert drain(ctx) == 0
    finally:
        signal.signal(USR1, signal.SIG_DFL)


@pytest.mark.timeout(10)
def test_removal_outside_main_thread_restored_by_next_main_thread_change() -> None:
    src = SignalSource(USR1)
    thread = threading.Thread(target=src.destroy)
    thread.start()
    thread.join()
    assert signal.getsignal(USR1) is _signals._on_signal
    SignalSource(USR2).destroy()
    assert signal.getsignal(USR1) is signal.SIG_DFL


@pytest.mark.timeout(10)
def test_first_watch_must_be_in_main_thread_later_ones_need_not(ctx: MainContext) -> None:
    errors: list[BaseException] = []
    made: list[SignalSource] = []

    def make() -> None:
        try:
            made.append(SignalSource(USR2))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=make)
    thread.start()
    thread.join()
    assert len(errors) == 1
    assert isinstance(errors[0], ValueError)
    assert "main thread" in str(errors[0])
    assert signal.getsignal(USR2) is signal.SIG_DFL

    first = SignalSource(USR2)
    thread = threading.Thread(target=make)
    thread.start()
    thread.join()
    assert len(made) == 1
    log: list[Any] = []
    made[0].set_callback(counter(log))
    made[0].attach(ctx)
    signal.raise_signal(USR2)
    drain(ctx)
    assert log == [()]
    made[0].destroy()
    first.destroy()


def test_wakeup_fd_is_taken_only_while_free_and_given_back() -> None:
    _rfd, wfd = _signals._get_wake_pipe()
    src = SignalSource(USR1)
    current = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(current, warn_on_full_buffer=False)
    assert current == wfd
    src.destroy()
    assert signal.set_wakeup_fd(-1) == -1


def test_someone_elses_wakeup_fd_is_kept_and_loses_nothing() -> None:
    theirs, peer = socket.socketpair()
    theirs.setblocking(False)
    peer.setblocking(False)
    try:
        signal.set_wakeup_fd(theirs.fileno())
        src = SignalSource(USR1)
        current = signal.set_wakeup_fd(theirs.fileno())
        assert current == theirs.fileno()
        src.set_callback(counter([]))
        signal.raise_signal(USR1)
        assert peer.recv(16) == bytes([USR1])
        src.destroy()
        assert signal.set_wakeup_fd(-1) == theirs.fileno()
    finally:
        signal.set_wakeup_fd(-1)
        theirs.close()
        peer.close()


# --------------------------------------------------------------------------
# Signals on running loops
# --------------------------------------------------------------------------


@pytest.mark.timeout(20)
@pytest.mark.parametrize("base", LOOP_BASES)
def test_signal_on_a_running_loop(base: str) -> None:
    async def main() -> list[Any]:
        loop = asyncio.get_running_loop()
        context = context_on(base)
        got: asyncio.Future[None] = loop.create_future()
        log: list[Any] = []

        def cb(tag: str) -> bool:
            log.append(tag)
            if not got.done():
                got.set_result(None)
            return True

        sid = signal_add(USR1, cb, "x", context=context)
        # From another thread, so the signal arrives while the loop sleeps.
        await loop.run_in_executor(None, os.kill, os.getpid(), USR1)
        await asyncio.wait_for(got, 10)
        assert context.find_source_by_id(sid) is not None
        aioqloop.source_remove(sid, context)
        if base == "asyncio":
            context.close()
        return log

    assert run_on(base, main) == ["x"]


@pytest.mark.timeout(20)
@pytest.mark.parametrize("base", LOOP_BASES)
def test_signal_callback_exception_reaches_the_loop_handler(base: str) -> None:
    async def main() -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        seen: list[dict[str, Any]] = []
        got: asyncio.Future[None] = loop.create_future()

        def handler(_loop: Any, context: dict[str, Any]) -> None:
            seen.append(context)
            got.set_result(None)

        loop.set_exception_handler(handler)
        context = context_on(base)
        src = SignalSource(USR2)
        src.set_callback(lambda: 1 / 0)
        src.attach(context)
        signal.raise_signal(USR2)
        await asyncio.wait_for(got, 10)
        assert src.is_destroyed
        assert signal.getsignal(USR2) is signal.SIG_DFL
        if base == "asyncio":
            context.close()
        return seen

    seen = run_on(base, main)
    assert isinstance(seen[0]["exception"], ZeroDivisionError)
    assert isinstance(seen[0]["source"], SignalSource)


# --------------------------------------------------------------------------
# Signal input checking and reprs
# --------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["SIGUSR1", 1.0, True, None])
def test_signum_type_is_checked(bad: Any) -> None:
    with pytest.raises(TypeError, match=r"^signum must be an int"):
        SignalSource(bad)


@pytest.mark.parametrize("bad", [signal.SIGKILL, signal.SIGSTOP])
def test_uncatchable_signals_are_refused(bad: int) -> None:
    with pytest.raises(ValueError, match=r"cannot be caught"):
        SignalSource(bad)


@pytest.mark.parametrize("bad", [0, -1, 10_000])
def test_invalid_signal_numbers_are_refused(bad: int) -> None:
    with pytest.raises(ValueError, match=r"^invalid signal number"):
        SignalSource(bad)


def test_signal_add_checks_callback_before_touching_the_handler(ctx: MainContext) -> None:
    with pytest.raises(TypeError, match=r"^callback must be callable"):
        signal_add(USR1, "nope", context=ctx)  # type: ignore[arg-type]
    assert signal.getsignal(USR1) is signal.SIG_DFL


def test_signal_add_bad_context_leaves_nothing_installed() -> None:
    with pytest.raises(TypeError, match=r"^context must be a MainContext"):
        signal_add(USR1, counter([]), context="ctx")  # type: ignore[arg-type]
    assert signal.getsignal(USR1) is signal.SIG_DFL


def test_signal_source_properties(ctx: MainContext) -> None:
    src = SignalSource(USR1, priority=aioqloop.PRIORITY_HIGH)
    assert src.signum == USR1
    assert src.priority == aioqloop.PRIORITY_HIGH
    assert src.name == "signal watch for SIGUSR1"
    assert "signum=SIGUSR1" in repr(src)
    assert SignalSource.__init__.__kwdefaults__["priority"] == aioqloop.PRIORITY_DEFAULT  # type: ignore[index]
    src.destroy()


# --------------------------------------------------------------------------
# Child watches
# --------------------------------------------------------------------------


def spawn(*argv: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(list(argv))


def wait_for(context: MainContext, log: list[Any]) -> None:
    while not log:
        context.iteration(True)


@pytest.fixture(params=["pidfd", "thread"])
def watcher(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a child-watch test with pidfds and with the helper-thread fallback."""
    if request.param == "thread":
        monkeypatch.setattr(unix, "_pidfd_open", None)
    return str(request.param)


@pytest.mark.timeout(10)
def test_exit_status_is_delivered(ctx: MainContext, watcher: str) -> None:
    proc = spawn("sh", "-c", "exit 3")
    log: list[Any] = []
    sid = child_watch_add(proc.pid, lambda *a: log.append(a), "data", context=ctx)
    wait_for(ctx, log)
    pid, status, data = log[0]
    assert (pid, data) == (proc.pid, "data")
    assert os.WIFEXITED(status)
    assert os.WEXITSTATUS(status) == 3
    assert os.waitstatus_to_exitcode(status) == 3
    assert ctx.find_source_by_id(sid) is None  # a child watch fires once
    # The watch reaped the child, so Popen can only report 0 (subprocess's ECHILD rule).
    assert proc.wait() == 0
    with pytest.raises(ChildProcessError):
        os.waitpid(proc.pid, os.WNOHANG)


@pytest.mark.timeout(10)
def test_killed_child_reports_the_signal(ctx: MainContext, watcher: str) -> None:
    proc = spawn("sleep", "30")
    log: list[Any] = []
    child_watch_add(proc.pid, lambda *a: log.append(a), context=ctx)
    assert drain(ctx) == 0
    proc.kill()
    wait_for(ctx, log)
    status = log[0][1]
    assert os.WIFSIGNALED(status)
    assert os.WTERMSIG(status) == signal.SIGKILL
    assert os.waitstatus_to_exitcode(status) == -signal.SIGKILL
    proc.wait()


@pytest.mark.timeout(10)
def test_watch_removed_before_it_fires_leaves_the_child_to_waitpid(
    ctx: MainContext, watcher: str
) -> None:
    proc = spawn("sleep", "30")
    log: list[Any] = []
    src = ChildWatchSource(proc.pid)
    src.set_callback(lambda *a: log.append(a))
    src.attach(ctx)
    src.destroy()
    proc.kill()
    pid, status = os.waitpid(proc.pid, 0)
    assert pid == proc.pid
    assert os.WTERMSIG(status) == signal.SIGKILL
    assert drain(ctx) == 0
    assert log == []
    proc.wait()


@pytest.mark.timeout(10)
def test_exited_child_not_yet_dispatched_is_not_reaped_by_a_removed_watch(
    ctx: MainContext, watcher: str
) -> None:
    proc = spawn("sh", "-c", "exit 5")
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # exited, still a zombie
    src = ChildWatchSource(proc.pid)
    src.set_callback(lambda *a: None)
    src.attach(ctx)
    src.destroy()
    assert drain(ctx) == 0
    assert proc.wait() == 5


@pytest.mark.timeout(10)
def test_popen_reaping_first_still_fires_with_code_255(
    ctx: MainContext, caplog: pytest.LogCaptureFixture
) -> None:
    proc = spawn("sh", "-c", "exit 7")
    log: list[Any] = []
    child_watch_add(proc.pid, lambda *a: log.append(a), context=ctx)
    assert proc.wait() == 7
    with caplog.at_level(logging.WARNING, logger="aioqloop"):
        wait_for(ctx, log)
    assert os.WEXITSTATUS(log[0][1]) == 255
    assert "reaped by someone else" in caplog.text


@pytest.mark.timeout(10)
def test_child_callback_exception_reaps_and_reports(watcher: str) -> None:
    async def main() -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        seen: list[dict[str, Any]] = []
        got: asyncio.Future[None] = loop.create_future()

        def handler(_loop: Any, context: dict[str, Any]) -> None:
            seen.append(context)
            got.set_result(None)

        loop.set_exception_handler(handler)
        proc = spawn("sh", "-c", "exit 0")

        def boom(pid: int, status: int) -> None:
            raise RuntimeError("boom")

        child_watch_add(proc.pid, boom)
        await asyncio.wait_for(got, 10)
        with pytest.raises(ChildProcessError):
            os.waitpid(proc.pid, os.WNOHANG)  # reaped before the callback ran
        proc.wait()
        return seen

    seen = aioqloop.run(main())
    assert isinstance(seen[0]["exception"], RuntimeError)
    assert isinstance(seen[0]["source"], ChildWatchSource)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("base", LOOP_BASES)
def test_child_watch_on_a_running_loop(base: str) -> None:
    async def main() -> int:
        loop = asyncio.get_running_loop()
        context = context_on(base)
        got: asyncio.Future[int] = loop.create_future()
        proc = spawn("sh", "-c", "exit 9")
        child_watch_add(proc.pid, lambda pid, status: got.set_result(status), context=context)
        status = await asyncio.wait_for(got, 10)
        proc.wait()
        if base == "asyncio":
            context.close()
        return status

    assert os.WEXITSTATUS(run_on(base, main)) == 9


@pytest.mark.parametrize("bad", ["1", 1.5, True, None])
def test_pid_type_is_checked(bad: Any) -> None:
    with pytest.raises(TypeError, match=r"^pid must be an int"):
        ChildWatchSource(bad)


@pytest.mark.parametrize("bad", [0, -1, -os.getpid()])
def test_pid_must_be_positive(bad: int) -> None:
    with pytest.raises(ValueError, match=r"^pid must be > 0"):
        ChildWatchSource(bad)


@pytest.mark.timeout(10)
def test_pid_that_is_not_our_child_is_refused(watcher: str) -> None:
    with pytest.raises(ChildProcessError):
        ChildWatchSource(os.getppid())


@pytest.mark.timeout(10)
def test_pid_that_does_not_exist_is_refused() -> None:
    proc = spawn("sh", "-c", "exit 0")
    proc.wait()  # reaped: the pid is gone
    with pytest.raises((ProcessLookupError, ChildProcessError)):
        ChildWatchSource(proc.pid)


@pytest.mark.timeout(10)
def test_child_watch_add_checks_callback(ctx: MainContext) -> None:
    proc = spawn("sh", "-c", "exit 0")
    with pytest.raises(TypeError, match=r"^callback must be callable"):
        child_watch_add(proc.pid, 42, context=ctx)  # type: ignore[arg-type]
    assert proc.wait() == 0  # nothing reaped it


@pytest.mark.timeout(10)
def test_child_watch_source_properties() -> None:
    proc = spawn("sh", "-c", "exit 0")
    src = ChildWatchSource(proc.pid)
    assert src.pid == proc.pid
    assert src.priority == aioqloop.PRIORITY_DEFAULT
    assert src.name == f"child watch for pid {proc.pid}"
    assert f"pid={proc.pid}" in repr(src)
    src.destroy()
    assert proc.wait() == 0
