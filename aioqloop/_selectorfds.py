"""`SelectorFds`: a context's fds straight in the epoll object of asyncio's selector.

On the stock base the context's private epoll set (`aioqloop._fdpoll`) would itself be
an fd in asyncio's ``selectors.EpollSelector``: every wake-up of an fd source then costs
two ``epoll_wait`` calls (the loop's, then the private set's).  Instead the context's fds
are registered in the selector's own ``select.epoll`` object, next to asyncio's, and the
loop's poll is one ``epoll_wait`` whose raw results serve both:

* **asyncio's registrations** get the ``(key, events)`` list ``EpollSelector.select``
  would build: only the bits its own registration could have produced (its IN/OUT, plus
  ERR/HUP, which epoll always reports) count, mapped to ``EVENT_READ``/``EVENT_WRITE``
  and masked with the key's events; an fd reported only for the context's sake is left
  out.
* **the context** gets the raw revents (poll(2)'s IN/OUT/PRI/ERR/HUP), which it masks
  per watcher (GLib's poll records; NVAL comes from the context's audit).
* **one registration per fd number**: an fd both asyncio and the context watch is
  registered once, with the union of both masks (epoll refuses a second registration of
  one fd); asyncio's ``register``/``modify``/``unregister`` go through this class so the
  union is kept.
* **reused fd numbers**: epoll keys its entries by (number, open file), so an entry
  whose number was closed while a ``dup`` keeps the file open cannot be removed by number
  and would report under the number's next owner.  When a removal fails, or the context
  rebuilds its private set for the same reason, the loop's set is rebuilt: a fresh epoll
  holding asyncio's keys and the context's live masks takes over the old one's fd number
  (``dup2``), so the ``select.epoll`` object asyncio holds stays valid.

Only for a selector whose type is exactly ``selectors.EpollSelector`` with its own
``select`` (`eligible`); anything else (a custom selector, a tool that wrapped
``select``) keeps the private-epoll path, where the private set is one fd in the selector.
Loop thread only.  Reads two private attributes of CPython's selectors, here only:
``_selector`` (the ``select.epoll``) and ``_fd_to_key``.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import select
import selectors
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from . import _engine

__all__ = ("SelectorFds", "eligible")

_IN = select.EPOLLIN
_OUT = select.EPOLLOUT
_ALWAYS = select.EPOLLERR | select.EPOLLHUP
_READ = selectors.EVENT_READ
_WRITE = selectors.EVENT_WRITE


#: asyncio's key events (EVENT_READ | EVENT_WRITE) -> the epoll bits its own
#: registration can report (ERR and HUP always).
_REPORTABLE = (_ALWAYS, _IN | _ALWAYS, _OUT | _ALWAYS, _IN | _OUT | _ALWAYS)


def eligible(selector: object) -> bool:
    """Is ``selector`` a stock ``EpollSelector`` whose epoll object we may share?"""
    return (
        type(selector) is selectors.EpollSelector
        and "select" not in vars(selector)
        and isinstance(getattr(selector, "_selector", None), select.epoll)
        and isinstance(getattr(selector, "_fd_to_key", None), dict)
    )


def _asyncio_mask(events: int) -> int:
    return (_IN if events & _READ else 0) | (_OUT if events & _WRITE else 0)


def _fd_of(fileobj: Any) -> int:
    return fileobj if isinstance(fileobj, int) else int(fileobj.fileno())


_SLOTS = ("_ctx_mask", "_ep", "_fd_to_key", "_real", "closed", "raw", "rebuilds", "stale")

if TYPE_CHECKING or _engine.core is None:  # the branch mypy sees
    _SharedBase = object
else:
    # The compiled core keeps the fields its select reads as C fields of the same
    # names (aioqloop/_csrc/fdpoll.h) and polls the shared set in C (hook.h).
    _SharedBase = _engine.core.SharedFdsCore
    _SLOTS = tuple(name for name in _SLOTS if not hasattr(_SharedBase, name))


class SelectorFds(_SharedBase):
    """The loop selector's epoll object shared by asyncio and one context (module doc)."""

    __slots__ = _SLOTS

    def __init__(self, selector: selectors.EpollSelector) -> None:
        self._real = selector
        self._ep: select.epoll = selector._selector  # type: ignore[attr-defined]
        self._fd_to_key: Mapping[int, selectors.SelectorKey] = (
            selector._fd_to_key)  # type: ignore[attr-defined]
        #: fd -> the context's merged epoll mask.
        self._ctx_mask: dict[int, int] = {}
        #: Raw (fd, revents) of the last poll, for the context (the caller takes it).
        self.raw: list[tuple[int, int]] = []
        #: True when an entry could not be removed by number: rebuild before the next poll.
        self.stale = False
        self.closed = False
        #: How many times the loop's epoll set was rebuilt.
        self.rebuilds = 0

    # ----------------------------------------------------------- the context's side
    def set(self, fd: int, mask: int) -> None:
        """The context now wants ``mask`` (epoll bits, 0 = nothing) for ``fd``."""
        if self.closed or self._ep.closed:
            return
        old = self._ctx_mask.get(fd)
        if mask:
            self._ctx_mask[fd] = mask
        else:
            self._ctx_mask.pop(fd, None)
        key = self._fd_to_key.get(fd)
        own = _asyncio_mask(key.events) if key is not None else 0
        try:
            if mask or own:
                self._put(fd, mask | own, registered=old is not None or bool(own))
            elif old is not None:
                self._ep.unregister(fd)
        except OSError as exc:
            if exc.errno == errno.EBADF:
                # Closed behind the context's back: the audit reports NVAL.  An entry of
                # the old file may live on if a dup keeps it open.
                self.stale = self.stale or old is not None
            elif mask == 0 and exc.errno == errno.ENOENT:
                self.stale = True  # closed and reused: the old entry may linger
            elif exc.errno != errno.EPERM:  # regular files: the context reports them
                raise

    def _put(self, fd: int, mask: int, *, registered: bool) -> None:
        ep = self._ep
        try:
            if registered:
                ep.modify(fd, mask)
            else:
                ep.register(fd, mask)
        except FileNotFoundError:
            ep.register(fd, mask)
        except FileExistsError:
            ep.modify(fd, mask)

    def withdraw(self) -> None:
        """The context closes: remove its fds, keep asyncio's registrations as they were."""
        for fd in list(self._ctx_mask):
            self.set(fd, 0)
        self.closed = True
        if self.stale:
            self.rebuild()

    # -------------------------------------------------- asyncio's selector calls
    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        """``selector.register`` keeping the union with the context's mask."""
        fd = _fd_of(fileobj)
        ctx = self._ctx_mask.get(fd)
        if ctx is None:
            return self._real.register(fileobj, events, data)
        with contextlib.suppress(OSError):
            self._ep.unregister(fd)
        try:
            key = self._real.register(fileobj, events, data)
        except BaseException:
            with contextlib.suppress(OSError):
                self._put(fd, ctx, registered=False)
            raise
        self._ep.modify(fd, _asyncio_mask(key.events) | ctx)
        return key

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        """``selector.modify`` keeping the union with the context's mask."""
        key = self._real.modify(fileobj, events, data)
        ctx = self._ctx_mask.get(key.fd)
        if ctx is not None:
            self._put(key.fd, _asyncio_mask(key.events) | ctx, registered=True)
        return key

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        """``selector.unregister``; the context's mask stays registered."""
        key = self._real.unregister(fileobj)
        ctx = self._ctx_mask.get(key.fd)
        if ctx is not None:
            try:
                self._put(key.fd, ctx, registered=False)
            except OSError:
                pass  # closed: the context's audit reports NVAL
        return key

    # ----------------------------------------------------------------- polling
    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        """One ``epoll_wait``: asyncio's ``(key, events)`` list, the raw list in `raw`.

        ``timeout`` in seconds (None = forever), rounded up to epoll's milliseconds as
        ``EpollSelector.select`` does.  Raw results accumulate in `raw` until taken.
        """
        if self.stale:
            self.rebuild()
        if timeout is None:
            wait = -1.0
        elif timeout <= 0:
            wait = 0.0
        else:
            wait = math.ceil(timeout * 1e3) * 1e-3
        try:
            raw = self._ep.poll(wait)
        except InterruptedError:
            return []
        ready: list[tuple[selectors.SelectorKey, int]] = []
        if not raw:
            return ready
        fd_to_key = self._fd_to_key
        ctx_mask = self._ctx_mask
        hit = False
        for fd, ev in raw:
            if fd in ctx_mask:
                hit = True
            key = fd_to_key.get(fd)
            if key is None:
                continue
            # Only what asyncio's own registration could have reported.
            mine = ev & _REPORTABLE[key.events]
            if mine:
                events = 0
                if mine & ~_IN:
                    events |= _WRITE
                if mine & ~_OUT:
                    events |= _READ
                ready.append((key, events & key.events))
        if hit:  # the raw list matters to the context only if one of its fds is in it
            if self.raw:
                self.raw.extend(raw)
            else:
                self.raw = raw
        return ready

    def take_raw(self) -> list[tuple[int, int]]:
        """The raw results polled since the last call (and forget them)."""
        raw, self.raw = self.raw, []
        return raw

    def rebuild(self) -> None:
        """Replace the loop's epoll set by a fresh one with only live registrations."""
        self.stale = False
        fresh = select.epoll()
        try:
            masks = dict(self._ctx_mask)
            for fd, key in self._fd_to_key.items():
                masks[fd] = masks.get(fd, 0) | _asyncio_mask(key.events)
            for fd, mask in masks.items():
                try:
                    fresh.register(fd, mask)
                except OSError:
                    pass  # closed, or a regular file: nothing epoll could report
            os.dup2(fresh.fileno(), self._ep.fileno())
        finally:
            fresh.close()
        self.rebuilds += 1


if _engine.core is not None:
    # The stock base's hook runs this select in C (same rules, see _cengine.c).
    _engine.core.configure(shared_select=SelectorFds.select, shared_rebuild=SelectorFds.rebuild,
                           reportable=_REPORTABLE)
