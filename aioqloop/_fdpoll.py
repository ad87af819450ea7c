"""`FdPoller`: the fds a context watches, in one private epoll set (GLib's poll records).

GLib hands ``poll(2)`` one record per watched fd on every iteration.  Here each fd is
registered once in an epoll set private to the context, with the OR of the events its
watchers want (GLib merges records of one fd the same way), so the cost of a wake-up is
O(ready fds), never O(watched fds).  epoll reports exactly poll(2)'s revents
(IN/OUT/PRI/ERR/HUP), and:

* **Always-ready files.**  epoll refuses regular files and ``/dev/null``-like files, which
  poll(2) reports always readable and writable: they are kept aside and reported ready at
  every prepare.
* **Blocked sources.**  A nested iteration must not see the fds of a source that is
  dispatching (GLib removes its poll records while it is blocked): they are unpolled for
  the nested poll and polled again when the source is unblocked.
* **Closed fds.**  A watched fd closed behind the context's back silently vanishes from
  epoll.  An audit with one ``poll()`` over the watched fds, at most every
  ``interval`` seconds when the context is about to sleep, reports NVAL for them.
* **Reused fd numbers.**  epoll keys its entries by (number, open file), and an entry
  cannot be removed by number once the number names another file: a watched fd closed
  while a ``dup`` keeps its file open stays in the set and would report its events under
  the number's next owner.  Each registration remembers the file's identity (device,
  inode); when a number is found reused, or an unregistration fails because the number
  was closed first, the set is rebuilt from the live registrations (rare, O(watched fds)).
  The new set takes over the old one's fd number (``dup2``), so only the loop's own
  registration of that number needs renewing (`rebuilds` counts them for the driver).

The wake-up eventfd of the context's `Waker` is part of the set; `poll` says whether it
fired.  Loop thread only.

**Opened on first use.**  ``FdPoller(opener=...)`` has no epoll set (`epoll` is None)
until the first fd is watched or a poll needs it (`ensure_open`); ``opener`` then gives
the wake-up fd to put in it.  `generation` changes whenever the set is opened or rebuilt,
so the driver knows to (re)register its fd.

**Mirror.**  A driver that polls its own epoll object (the stock base, see
`aioqloop._selectorfds`) sets `mirror`: every change of an fd's merged epoll mask (0 = not
polled) is also handed to it, so the driver's epoll holds the same registrations and one
``epoll_wait`` serves both; the private set stays complete for hand-run and nested
iterations.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import select
from collections.abc import Callable
from typing import TYPE_CHECKING

from . import _engine
from .constants import IOCondition

if TYPE_CHECKING:
    from .source import Source, _FdRecord

__all__ = ("MAX_WAIT", "FdPoller", "clamp_wait")

#: The longest single wait handed to a poll, in seconds.  epoll and select take their
#: timeout in 32-bit milliseconds (24.8 days); a longer wait is several shorter ones.
MAX_WAIT = 86400.0

_ALWAYS_EVENTS = int(IOCondition.ERR | IOCondition.HUP | IOCondition.NVAL)
_EPOLL_MASK = int(IOCondition.IN | IOCondition.OUT | IOCondition.PRI)
_IN_OUT = int(IOCondition.IN | IOCondition.OUT)
_NVAL = int(IOCondition.NVAL)


def clamp_wait(timeout: float | None) -> float | None:
    """A poll timeout in seconds that any poll accepts: ``None`` stays "forever"."""
    if timeout is None:
        return None
    if timeout > MAX_WAIT:
        return MAX_WAIT
    if timeout > 0.0:
        return timeout
    return 0.0


_SLOTS = ("_audit_poll", "_closed", "_ident", "_opener", "_wake_fd", "always", "epoll",
          "generation", "last_audit", "masks", "mirror", "opened", "rebuilds", "records",
          "unpolled")

if TYPE_CHECKING or _engine.core is None:  # the branch mypy sees
    _PollerBase = object
else:
    # The compiled core keeps the fields its poll reads as C fields of the same names
    # (aioqloop/_csrc/fdpoll.h) and polls the set and applies the results in C.
    _PollerBase = _engine.core.FdPollerCore
    _SLOTS = tuple(name for name in _SLOTS if not hasattr(_PollerBase, name))


class FdPoller(_PollerBase):
    """The private epoll set of a context (see the module docstring)."""

    __slots__ = _SLOTS

    def __init__(
        self, wake_fd: int | None = None, *, opener: Callable[[], int] | None = None
    ) -> None:
        # No reference back to the context: a context's finalizer holds `opened`.
        #: The epoll object once open (its fd number never changes across a rebuild).
        self.epoll: select.epoll | None = None
        #: The epoll objects opened (one; a list, for a finalizer that must not hold us).
        self.opened: list[select.epoll] = []
        #: How many times the set was rebuilt because of a closed or reused fd number.
        self.rebuilds = 0
        #: Changes when the set is opened or rebuilt (the driver renews its registration).
        self.generation = 0
        self._ident: dict[int, tuple[int, int]] = {}
        self._wake_fd = -1
        self._opener = opener
        self._closed = False
        #: fd -> the records (one per watcher) of that fd.
        self.records: dict[int, list[_FdRecord]] = {}
        #: fd -> the epoll mask registered for it (read-only outside this class).
        self.masks: dict[int, int] = {}
        #: Watched fds epoll refuses (regular files): poll(2) reports them always ready.
        self.always: set[int] = set()
        #: fds not polled while all their watchers are blocked (a nested iteration).
        self.unpolled: set[int] = set()
        self._audit_poll: select.poll | None = None
        self.last_audit = 0.0
        #: Called with (fd, merged epoll mask) on every change, 0 = no longer polled.
        self.mirror: Callable[[int, int], None] | None = None
        if wake_fd is not None:
            self._open(wake_fd)

    def ensure_open(self) -> select.epoll:
        """The epoll set, opened now (with the opener's wake-up fd) if it is not yet."""
        ep = self.epoll
        if ep is not None:
            return ep
        if self._closed or self._opener is None:
            raise RuntimeError("the MainContext is closed")
        return self._open(self._opener())

    def _open(self, wake_fd: int) -> select.epoll:
        ep = select.epoll()
        ep.register(wake_fd, select.EPOLLIN)
        self._wake_fd = wake_fd
        self.epoll = ep
        self.opened.append(ep)
        self.generation += 1
        return ep

    @property
    def watching(self) -> bool:
        """True if any fd is watched."""
        return bool(self.masks)

    def close(self) -> None:
        self._closed = True
        if self.epoll is not None:
            self.epoll.close()
            self.epoll = None
        self.opened.clear()
        self.records.clear()
        self.masks.clear()
        self.always.clear()

    # ----------------------------------------------------------- records
    def add(self, rec: _FdRecord) -> None:
        """Watch ``rec.fd`` for ``rec.events`` on behalf of ``rec.source``."""
        if not rec.source._blocked:
            # An fd unpolled for a nested iteration is polled again for a new watcher
            # that is not blocked.
            self.unpolled.discard(rec.fd)
        self.ensure_open()
        fd = rec.fd
        self.records.setdefault(fd, []).append(rec)
        known = self._ident.get(fd)
        if rec.ident is not None:
            self._ident[fd] = rec.ident
        if known is not None and rec.ident is not None and known != rec.ident:
            # The number now names another file; the old file may live on in the set.
            self.rebuild()
            return
        # Re-register even if the mask looks unchanged: the number may have been closed
        # and reused while an old watch lingered, and epoll forgot the old file.
        self.masks.pop(fd, None)
        self.sync(fd)

    def remove(self, rec: _FdRecord) -> None:
        """Stop watching for ``rec``."""
        records = self.records.get(rec.fd)
        if records is None or rec not in records:
            return
        records.remove(rec)
        if not records:
            del self.records[rec.fd]
            # Forget an unpolled mark too, or a later watch of the same number would
            # never be polled.
            self.unpolled.discard(rec.fd)
        self.sync(rec.fd)

    def sync(self, fd: int) -> None:
        """Make the epoll registration of ``fd`` match the OR of its records' events."""
        records = self.records.get(fd)
        mask = 0
        if records and fd not in self.unpolled:
            for rec in records:
                mask |= int(rec.events) & _EPOLL_MASK
            mask |= select.EPOLLERR | select.EPOLLHUP
        old = self.masks.get(fd)
        if old == mask:
            return
        if not mask:
            self._forget(fd, old)
            return
        if fd not in self.always:
            self._register(fd, mask, old)
            if self.mirror is not None and fd not in self.always:
                self.mirror(fd, mask)
        self.masks[fd] = mask
        if self._audit_poll is not None:
            self._audit_poll.register(fd, select.POLLIN)

    def _forget(self, fd: int, old: int | None) -> None:
        self.masks.pop(fd, None)
        if fd not in self.records:
            self._ident.pop(fd, None)
        always = fd in self.always
        self.always.discard(fd)
        if self._audit_poll is not None:
            with contextlib.suppress(KeyError):
                self._audit_poll.unregister(fd)
        if old is not None and not always:
            if self.mirror is not None:
                self.mirror(fd, 0)
            try:
                self.ensure_open().unregister(fd)
            except OSError:
                # Closed (or closed and reused) before its watch was removed: a dup may
                # keep the old file, and its entry, alive in the set.
                self.rebuild()

    def mirrored(self) -> list[tuple[int, int]]:
        """(fd, merged epoll mask) of every fd polled through epoll now (for a new mirror)."""
        return [(fd, m) for fd, m in self.masks.items() if fd not in self.always]

    def rebuild(self) -> None:
        """Replace the epoll set by a fresh one holding only the live registrations."""
        ep = self.ensure_open()
        fresh = select.epoll()
        fresh.register(self._wake_fd, select.EPOLLIN)
        # The fresh set takes over the old set's number; the old set (and its stale
        # entries) goes with its last fd.
        os.dup2(fresh.fileno(), ep.fileno())
        fresh.close()
        self.masks.clear()
        self.always.clear()
        self._audit_poll = None
        self.rebuilds += 1
        self.generation += 1
        for fd in list(self.records):
            try:
                self.sync(fd)
            except OSError:
                # Closed: keep it in the mask so the audit reports NVAL to its watchers.
                self.masks[fd] = select.EPOLLERR | select.EPOLLHUP

    def _register(self, fd: int, mask: int, old: int | None) -> None:
        ep = self.ensure_open()
        try:
            if old is None:
                ep.register(fd, mask)
            else:
                ep.modify(fd, mask)
        except FileExistsError:
            ep.modify(fd, mask)
        except FileNotFoundError:
            try:
                ep.register(fd, mask)
            except OSError as exc:
                if old is None or exc.errno != errno.EBADF:
                    raise
                # Closed behind our back: keep the mask so the audit reports NVAL.
        except PermissionError:
            self.always.add(fd)  # epoll refuses regular files; poll(2): always ready
        except OSError as exc:
            if old is None or exc.errno != errno.EBADF:
                raise
            # Closed behind our back: keep the mask so the audit reports NVAL.

    # ---------------------------------------------------------- blocking
    def unpoll_blocked(self, blocked: list[Source]) -> None:
        """Before a nested poll: stop polling fds whose every watcher is blocked."""
        for src in blocked:
            for rec in src._fds:
                fd = rec.fd
                if fd in self.unpolled or fd not in self.masks:
                    continue
                if all(r.source._blocked for r in self.records.get(fd, ())):
                    self.unpolled.add(fd)
                    self.sync(fd)

    def repoll(self, src: Source) -> None:
        """``src`` was unblocked: poll its fds again."""
        unpolled = self.unpolled
        if unpolled:
            for rec in src._fds:
                if rec.fd in unpolled:
                    unpolled.discard(rec.fd)
                    self.sync(rec.fd)

    # ------------------------------------------------------------ polling
    def poll(self, timeout: float | None, on_ready: Callable[[Source], None]) -> int:
        """Wait up to ``timeout`` seconds (None = forever) and record what is ready.

        Returns how many fds were reported, -1 if the wake-up eventfd was among them (the
        caller drains it).
        """
        wait = clamp_wait(timeout)
        if wait is None:
            wait = -1.0
        elif 0.0 < wait < 0.001:
            wait = 0.001  # epoll counts in ms; never return early and spin
        ep = self.epoll
        if ep is None:
            if wait == 0.0:
                return 0  # nothing watched yet, and a look needs no set
            ep = self.ensure_open()
        try:
            events = ep.poll(wait)
        except InterruptedError:
            return 0
        return self.apply(events, on_ready) if events else 0

    def apply(self, events: list[tuple[int, int]], on_ready: Callable[[Source], None]) -> int:
        """Record poll results: each record's revents, and READY on its source.

        A record keeps its revents until its source has been dispatched (so
        ``query_unix_fd`` sees what made it ready), or until the next report.
        """
        woken = False
        records = self.records
        for fd, ev in events:
            if fd == self._wake_fd:
                woken = True
                continue
            for rec in records.get(fd, ()):
                revents = ev & (int(rec.events) | _ALWAYS_EVENTS)
                rec.revents = revents
                if revents and not rec.source._blocked:
                    on_ready(rec.source)
        return -1 if woken else len(events)

    def report_always_ready(self, on_ready: Callable[[Source], None]) -> None:
        """Mark the watchers of always-ready files ready (poll(2) would report them)."""
        for fd in self.always:
            for rec in self.records.get(fd, ()):
                revents = int(rec.events) & _IN_OUT
                if revents and not rec.source._blocked:
                    rec.revents = revents
                    on_ready(rec.source)

    def always_ready_pending(self) -> bool:
        """Would `report_always_ready` mark anything?"""
        return any(
            int(rec.events) & _IN_OUT and not rec.source._blocked
            for fd in self.always
            for rec in self.records.get(fd, ())
        )

    # -------------------------------------------------------------- audit
    def audit_wait(
        self, now: float, interval: float, on_ready: Callable[[Source], None]
    ) -> float:
        """Audit if ``interval`` has passed; return how long the caller may sleep before
        the next audit is due (``inf`` if nothing is watched)."""
        if not self.masks:
            return math.inf
        if now - self.last_audit >= interval:
            self.audit(now, on_ready)
        return max(0.0, self.last_audit + interval - now)

    def audit(self, now: float, on_ready: Callable[[Source], None]) -> None:
        """Report NVAL for watched fds that were closed without removing the watch."""
        self.last_audit = now
        poller = self._audit_poll
        if poller is None:
            poller = self._audit_poll = select.poll()
            for fd in self.masks:
                poller.register(fd, select.POLLIN)
        for fd, ev in poller.poll(0):
            if ev & select.POLLNVAL:
                for rec in self.records.get(fd, ()):
                    rec.revents = _NVAL
                    on_ready(rec.source)
