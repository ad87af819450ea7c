"""Unix signal and child-process sources: GLib's ``g_unix_signal_source_new`` and
``g_child_watch_source_new``.

Signals
-------
A `SignalSource` owns a private eventfd in its context's epoll set; aioqloop's handler
for the signal writes it, so the source becomes ready through the ordinary fd path,
whichever driver runs the context.  Every source fires once per delivery; deliveries
that come before the dispatch coalesce, as in GLib.  The process-wide part (the
per-signal registry, the handler, the previous dispositions, Python's wakeup fd) lives in
`aioqloop._signals`.  Any catchable signal may be watched (GLib: HUP, INT, TERM, USR1,
USR2 and WINCH only); the *first* source for a signal must be created in the main thread.

Child processes
---------------
A `ChildWatchSource` opens a pidfd (Linux ≥ 5.3) and watches it in its context's epoll
set; when it is readable the source reaps the child with ``waitid(P_PIDFD)``, which cannot
hit a recycled pid, and passes a raw ``waitpid``-style status.  Without pidfds a helper
thread waits for the exit *without reaping* (``waitid(WNOWAIT)``) and makes the source
ready; the dispatch reaps.  Either way a watch removed before it fires leaves the zombie
for the caller's own ``waitpid``.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._signals import (
    _check_signum,
    _drain,
    _get_wake_pipe,
    _in_main_thread,
    _release,
    _signame,
    _unwatch,
    _Waker,
    _watch,
)
from .constants import PRIORITY_DEFAULT, IOCondition
from .source import Source, _FdRecord
from .sources import _attach

if TYPE_CHECKING:
    from .context import MainContext

__all__ = ("ChildWatchSource", "SignalSource", "child_watch_add", "signal_add")

logger: logging.Logger = logging.getLogger("aioqloop")


def _check_callback(callback: object) -> None:
    if not callable(callback):
        raise TypeError(f"callback must be callable, not {type(callback).__name__}")


class SignalSource(Source):
    """Ready when the process receives ``signum``, like GLib's ``g_unix_signal_source_new``.

    The callback gets ``(*args)`` and returns True to keep watching.  Several sources for
    one signal, on one or several contexts (any threads), all fire once per delivery;
    deliveries before the dispatch coalesce into one.  While a source exists the signal's
    previous disposition is replaced; destroying the last source restores it.  The
    default priority is `PRIORITY_DEFAULT`, as for ``g_unix_signal_add``.

    Any catchable signal is accepted (GLib takes only HUP, INT, TERM, USR1, USR2 and
    WINCH); SIGKILL and SIGSTOP raise `ValueError`.  The first source for a signal must
    be created in the main thread (`ValueError` otherwise), because Python installs
    signal handlers only there.  Watching SIGINT replaces ``KeyboardInterrupt``.
    """

    def __init__(
        self, signum: int, *, priority: int = PRIORITY_DEFAULT, name: str | None = None
    ) -> None:
        num = _check_signum(signum)
        super().__init__(priority=priority, name=name)
        if name is None:
            self._name = f"signal watch for {_signame(num)}"
        self._signum = num
        waker = _Waker()
        try:
            self._tag = self.add_unix_fd(waker.fd, IOCondition.IN)
            self._wake_tag: _FdRecord | None = self.add_unix_fd(
                _get_wake_pipe()[0], IOCondition.IN
            )
            _watch(num, waker)
        except BaseException:
            waker.close()
            raise
        self._waker = waker
        # Installed at creation like GLib; a source dropped without destroy() lets go too.
        self._releaser = weakref.finalize(self, _release, num, waker)

    @property
    def signum(self) -> int:
        """The watched signal number."""
        return self._signum

    def dispatch(self, callback: Callable[..., Any] | None, args: tuple[Any, ...]) -> bool:
        tag = self._wake_tag
        if tag is not None and self.query_unix_fd(tag):
            if _in_main_thread():
                # Python's wakeup fd woke us: the main thread has run the handler by
                # now, which poked the wakers that the delivery concerns.
                _drain(tag.fd)
            else:
                # This context runs elsewhere: only the main thread must be woken (to
                # run the handler), and draining here could steal its wake-up.
                self.remove_unix_fd(tag)
                self._wake_tag = None
        if not self._waker.consume():
            return True
        return super().dispatch(callback, args)

    def destroy(self) -> None:
        """Like `Source.destroy`; the last source for the signal restores its disposition."""
        super().destroy()
        _unwatch(self._signum, self._waker)

    def finalize(self) -> None:
        self._releaser()

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f" signum={_signame(self._signum)}>"


def signal_add(
    signum: int,
    callback: Callable[..., Any],
    *args: Any,
    priority: int = PRIORITY_DEFAULT,
    context: MainContext | None = None,
) -> int:
    """Call ``callback(*args)`` on each delivery of ``signum`` while it returns True.

    Like ``g_unix_signal_add``; returns the source id.  See `SignalSource`.
    """
    _check_callback(callback)  # before the source takes a disposition or a pidfd
    return _attach(SignalSource(signum, priority=priority), callback, args, context)


# --------------------------------------------------------------------------
# Child processes
# --------------------------------------------------------------------------

_pidfd_open: Callable[[int], int] | None = getattr(os, "pidfd_open", None)
#: The status reported when someone else reaped the child first (as asyncio does).
_LOST_STATUS = 255 << 8


def _status_from_siginfo(info: os.waitid_result) -> int:
    """Turn a ``waitid`` result back into a ``waitpid`` status (``W_EXITCODE`` & co)."""
    code = info.si_code
    if code == os.CLD_EXITED:
        return (info.si_status & 0xFF) << 8
    if code == os.CLD_KILLED:
        return info.si_status & 0x7F
    if code == os.CLD_DUMPED:
        return (info.si_status & 0x7F) | 0x80
    return ((info.si_status & 0xFF) << 8) | 0x7F  # stopped/trapped (not asked for)


def _wait_for_exit(pid: int, ref: weakref.ref[ChildWatchSource]) -> None:
    """Fallback watcher thread: wait for the exit without reaping, then wake the source."""
    with contextlib.suppress(ChildProcessError):
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    src = ref()
    if src is None:
        return
    with contextlib.suppress(RuntimeError):  # destroyed meanwhile
        src.set_ready_time(0)
        ctx = src.context
        if ctx is not None:
            # set_ready_time() from a thread skips the wake-up when the context has no
            # owner at that instant, which can race a hand-run iteration just starting.
            ctx.wakeup()


class ChildWatchSource(Source):
    """Ready when child process ``pid`` exits, like GLib's ``g_child_watch_source_new``.

    The callback gets ``(pid, wait_status, *args)``; its return value is ignored and the
    source is destroyed after it (a child exits once).  ``wait_status`` is the raw status
    of ``os.waitpid``: use ``os.WIFEXITED``/``os.WEXITSTATUS``, ``os.WIFSIGNALED``/
    ``os.WTERMSIG`` or ``os.waitstatus_to_exitcode``.  The source reaps only its own child,
    and only when it dispatches: destroyed before that, it leaves the child to the
    caller's ``os.waitpid``.

    Raises `ValueError` for a pid ≤ 0, `ProcessLookupError` if there is no such process
    and `ChildProcessError` if it is not a child of this process.

    Reaping races: whoever waits first gets the status.  If ``Popen.wait``/``poll`` (or
    asyncio's child watcher) reaps first, the callback still runs, with the status of exit
    code 255 (as asyncio reports it) and a warning logged; if the source reaps first,
    ``Popen.wait()`` returns 0 (``subprocess``'s rule for a child it cannot wait for).
    Uses a pidfd (Linux ≥ 5.3); elsewhere a helper thread per watch.
    """

    def __init__(
        self, pid: int, *, priority: int = PRIORITY_DEFAULT, name: str | None = None
    ) -> None:
        if isinstance(pid, bool) or not isinstance(pid, int):
            raise TypeError(f"pid must be an int, not {type(pid).__name__}")
        if pid <= 0:
            raise ValueError(f"pid must be > 0, not {pid}")
        super().__init__(priority=priority, name=name)
        if name is None:
            self._name = f"child watch for pid {pid}"
        self._pid = pid
        self._pidfd = -1
        pidfd = -1
        if _pidfd_open is not None:
            try:
                pidfd = _pidfd_open(pid)
            except OSError as exc:
                if exc.errno not in (errno.ENOSYS, errno.EPERM, errno.EACCES):
                    raise  # ProcessLookupError and friends belong to the caller
                pidfd = -1
        try:
            if pidfd >= 0:
                # Not our child?  ECHILD here, at the call.
                os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            else:
                os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except BaseException:
            if pidfd >= 0:
                os.close(pidfd)
            raise
        if pidfd >= 0:
            self._pidfd = pidfd
            self._close_pidfd = weakref.finalize(self, os.close, pidfd)
            self.add_unix_fd(pidfd, IOCondition.IN)
        else:
            thread = threading.Thread(
                target=_wait_for_exit,
                args=(pid, weakref.ref(self)),
                name=f"aioqloop child watch {pid}",
                daemon=True,
            )
            thread.start()

    @property
    def pid(self) -> int:
        """The watched child's process id."""
        return self._pid

    def _reap(self) -> int | None:
        """The child's wait status if it has exited (reaping it), else None."""
        try:
            if self._pidfd >= 0:
                info = os.waitid(os.P_PIDFD, self._pidfd, os.WEXITED | os.WNOHANG)
                return None if info is None else _status_from_siginfo(info)
            pid, status = os.waitpid(self._pid, os.WNOHANG)
            return None if pid == 0 else status
        except ChildProcessError:
            logger.warning(
                "child process %d was reaped by someone else; reporting exit code 255",
                self._pid,
            )
            return _LOST_STATUS

    def dispatch(self, callback: Callable[..., Any] | None, args: tuple[Any, ...]) -> bool:
        status = self._reap()
        if status is None:  # spurious: not exited yet
            if self._pidfd < 0:
                self.set_ready_time(-1)
            return True
        if callback is None:
            return super().dispatch(None, args)
        try:
            callback(self._pid, status, *args)
        finally:
            # Reaped: the watch is over even if KeyboardInterrupt or SystemExit escapes
            # the callback (it must not be called again with a made-up status).
            self.destroy()
        return False

    def finalize(self) -> None:
        if self._pidfd >= 0:
            self._close_pidfd()

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f" pid={self._pid}>"


def child_watch_add(
    pid: int,
    callback: Callable[..., Any],
    *args: Any,
    priority: int = PRIORITY_DEFAULT,
    context: MainContext | None = None,
) -> int:
    """Call ``callback(pid, wait_status, *args)`` once when child ``pid`` exits.

    Like ``g_child_watch_add``; returns the source id.  See `ChildWatchSource`.
    """
    _check_callback(callback)  # before the source takes a disposition or a pidfd
    return _attach(ChildWatchSource(pid, priority=priority), callback, args, context)
