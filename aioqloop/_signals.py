"""The process-wide signal machinery behind `aioqloop.unix.SignalSource`
(GLib's ``gmain.c`` unix-signal handling: one handler per signal, a wake-up per source).

One process-wide registry keeps, per signal number, the sources that watch it and the
disposition that was there before the first one.  While a signal is watched, its Python
handler is aioqloop's: it runs in the main thread (Python runs signal handlers nowhere
else) and writes the private eventfd of every watching source.  That eventfd is an fd of
the source, so it sits in its context's epoll set: the source becomes ready through the
ordinary fd path, whichever driver runs the context (stock or uvloop base, a plain
asyncio loop, a hand-run `MainContext.iteration`), in whichever thread.  Every source
fires once per delivery; deliveries that come before the dispatch coalesce, as in GLib.
Removing the last source restores the previous disposition (``SIG_DFL``, ``SIG_IGN`` or a
Python callable) if aioqloop's handler is still the installed one.

The handler takes no lock that normal code may hold (it can interrupt the main thread
between any two bytecodes): it reads an immutable tuple of wakers, and a waker it cannot
lock at once is being closed, so skipping it is right.

Waking a main thread that sleeps.  A signal delivered to the main thread interrupts its
``epoll_wait`` (Python installs handlers without ``SA_RESTART``); Python then runs the
handler and retries the wait, which returns at once on the poked eventfd.  On uvloop,
libuv retries the wait itself, but uvloop points Python's *wakeup fd* at its own socket
while it runs, and runs the Python handlers when that socket is readable.  What is left
is a signal the kernel hands to another thread (the main thread blocks it, or it was sent
with ``pthread_kill``) while the main thread sleeps: only the C-level wakeup fd can reach
it.  So while any signal is watched and no one else owns the wakeup fd, aioqloop sets it
to a process-wide non-blocking pipe whose read end every `SignalSource` also watches
(one whose context turns out to run in another thread stops watching it, so that only
the main thread drains it); being woken lets the main thread run the Python handler.
There is one wakeup fd per process, so the rule is "take it only when it is free, give
it back only if it is still ours": probing swaps our pipe in for an instant and, if
someone else (asyncio's ``add_signal_handler``, a running uvloop) owned it, swaps theirs
back and forwards any byte that arrived meanwhile, so they lose nothing.  The pipe is
never closed (a closed fd number could be reused while some loop still holds it as its
saved wakeup fd).

Unlike GLib (HUP, INT, TERM, USR1, USR2 and WINCH only) any catchable signal may be
watched; SIGKILL and SIGSTOP cannot be.  The handler is installed with ``signal.signal``,
so the *first* source for a signal must be created in the main thread; later ones, and
removals, may happen in any thread (a removal outside the main thread restores the
disposition at the next delivery or the next main-thread watch change).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

__all__ = ("_Waker", "_check_signum", "_drain", "_get_wake_pipe", "_in_main_thread",
           "_release", "_signame", "_unwatch", "_watch")

if TYPE_CHECKING:
    from typing import TypeAlias

    _Handler: TypeAlias = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None

_UNCATCHABLE = frozenset({signal.SIGKILL, signal.SIGSTOP})


def _in_main_thread() -> bool:
    return threading.get_ident() == threading.main_thread().ident


def _check_signum(signum: object) -> int:
    if isinstance(signum, bool) or not isinstance(signum, int):
        raise TypeError(f"signum must be an int or signal.Signals, not {type(signum).__name__}")
    num = int(signum)
    if num in _UNCATCHABLE:
        raise ValueError(f"signal {_signame(num)} cannot be caught, so it cannot be watched")
    if num not in signal.valid_signals():
        raise ValueError(f"invalid signal number {num}")
    return num


def _signame(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)



# --------------------------------------------------------------------------
# Signals: the process-wide registry
# --------------------------------------------------------------------------


class _Waker:
    """The eventfd through which the signal handler makes one `SignalSource` ready."""

    __slots__ = ("fd", "lock")

    def __init__(self) -> None:
        self.fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        # Only close() and poke() take it; poke() never waits for it (see module doc).
        self.lock = threading.Lock()

    def poke(self) -> None:
        """Called from the signal handler (main thread)."""
        if not self.lock.acquire(blocking=False):
            return  # being closed right now
        try:
            if self.fd >= 0:
                with contextlib.suppress(OSError):
                    os.eventfd_write(self.fd, 1)
        finally:
            self.lock.release()

    def consume(self) -> bool:
        """Reset the counter; True if at least one delivery was pending."""
        fd = self.fd
        if fd < 0:
            return False
        try:
            os.eventfd_read(fd)
        except (BlockingIOError, OSError):
            return False
        return True

    def close(self) -> None:
        with self.lock:
            fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)


class _SignalEntry:
    """Per signal number: the watching sources' wakers and the disposition to restore."""

    __slots__ = ("prev", "wakers")

    def __init__(self) -> None:
        self.prev: _Handler = signal.SIG_DFL
        # Replaced, never mutated: the handler may read it between any two bytecodes.
        self.wakers: tuple[_Waker, ...] = ()


_entries: dict[int, _SignalEntry] = {}
# Serializes watch changes between threads.  The signal handler never takes it.
_registry_lock = threading.Lock()
# Read and write ends of the process-wide wakeup pipe (created once, never closed).
_wake_pipe: tuple[int, int] | None = None
_wakeup_ours = False


def _on_signal(signum: int, frame: FrameType | None) -> None:
    """aioqloop's Python-level handler (main thread): poke every watching source."""
    entry = _entries.get(signum)
    if entry is None:
        return
    wakers = entry.wakers
    if wakers:
        for waker in wakers:
            waker.poke()
        return
    # The last watch went away outside the main thread: restore the old disposition now
    # and give it this delivery, as if it had been restored at once.
    prev = entry.prev
    if _registry_lock.acquire(blocking=False):
        try:
            _sweep_unlocked()
            _sync_wakeup_fd_unlocked()
        finally:
            _registry_lock.release()
    elif signal.getsignal(signum) is _on_signal:
        # A watch change is under way (maybe in the code this handler interrupted):
        # restore just this disposition; that change will tidy the rest.
        signal.signal(signum, _restorable(prev))
    if entry.wakers:  # a watch came back meanwhile (another thread)
        for waker in entry.wakers:
            waker.poke()
        return
    if prev is signal.SIG_DFL:
        signal.raise_signal(signum)
    elif callable(prev):
        prev(signum, frame)


def _get_wake_pipe() -> tuple[int, int]:
    global _wake_pipe
    pipe = _wake_pipe
    if pipe is None:
        with _registry_lock:
            pipe = _wake_pipe
            if pipe is None:
                pipe = _wake_pipe = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    return pipe


def _drain(fd: int) -> bytes:
    data = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except (BlockingIOError, InterruptedError):
            break
        if not chunk:
            break
        data += chunk
    return data


def _sync_wakeup_fd_unlocked() -> None:
    """Own Python's wakeup fd while signals are watched and it is free (main thread).

    Caller holds ``_registry_lock``.
    """
    global _wakeup_ours
    want = any(entry.wakers for entry in _entries.values())
    if not want and not _wakeup_ours:
        return
    pipe = _wake_pipe
    if pipe is None:  # pragma: no cover - created by the first SignalSource
        return
    rfd, wfd = pipe
    _drain(rfd)  # stale wake-ups: they have done their job
    try:
        current = signal.set_wakeup_fd(wfd, warn_on_full_buffer=False)
    except ValueError:  # pragma: no cover - only possible outside the main thread
        return
    if current in (-1, wfd):
        if not want:
            signal.set_wakeup_fd(-1)
        _wakeup_ours = want
        return
    # Someone else's: put it back and hand over what was written during the swap.
    signal.set_wakeup_fd(current, warn_on_full_buffer=False)
    missed = _drain(rfd)
    if missed:
        with contextlib.suppress(OSError):
            os.write(current, missed)
    _wakeup_ours = False


def _restorable(prev: _Handler) -> _Handler:
    """The disposition to put back: ``prev``, unless it is the SIGINT handler of an
    ``asyncio.Runner`` whose run is over (the runner restores Python's default handler
    only if it finds its own installed; a watch that outlived the run must do it)."""
    func = getattr(prev, "func", None)
    keywords = getattr(prev, "keywords", None)
    if getattr(func, "__name__", "") != "_on_sigint" or not isinstance(keywords, dict):
        return prev
    main_task = keywords.get("main_task")
    done = getattr(main_task, "done", None)
    if done is not None and done():
        return signal.default_int_handler
    return prev


def _sweep_unlocked() -> None:
    """Restore dispositions left installed by removals outside the main thread.

    Caller holds ``_registry_lock``; main thread only.
    """
    for signum, entry in list(_entries.items()):
        if not entry.wakers:
            if signal.getsignal(signum) is _on_signal:
                signal.signal(signum, _restorable(entry.prev))
            del _entries[signum]


def _watch(signum: int, waker: _Waker) -> None:
    """Register ``waker`` for ``signum``; install the handler if needed (main thread)."""
    main = _in_main_thread()
    with _registry_lock:
        entry = _entries.get(signum)
        if entry is None:
            entry = _entries[signum] = _SignalEntry()
        # Publish first: from here on a delivery pokes the new source.
        entry.wakers = (*entry.wakers, waker)
        current = signal.getsignal(signum)
        if current is not _on_signal:
            problem = None
            if not main:
                problem = (
                    f"the first watch of {_signame(signum)} must be created in the main "
                    "thread: Python installs signal handlers there only"
                )
            elif current is None:
                problem = (
                    f"{_signame(signum)} has a handler that was not installed from "
                    "Python; it cannot be saved and restored"
                )
            if problem is not None:
                entry.wakers = tuple(w for w in entry.wakers if w is not waker)
                if not entry.wakers and main:
                    del _entries[signum]
                raise ValueError(problem)
            entry.prev = current
            signal.signal(signum, _on_signal)
        if main:
            _sweep_unlocked()
            _sync_wakeup_fd_unlocked()


def _unwatch(signum: int, waker: _Waker) -> None:
    """Unregister ``waker``; the last one restores the old disposition (main thread)."""
    with _registry_lock:
        entry = _entries.get(signum)
        if entry is not None and waker in entry.wakers:
            entry.wakers = tuple(w for w in entry.wakers if w is not waker)
        if _in_main_thread():
            _sweep_unlocked()
            _sync_wakeup_fd_unlocked()


def _release(signum: int, waker: _Waker) -> None:
    _unwatch(signum, waker)
    waker.close()

