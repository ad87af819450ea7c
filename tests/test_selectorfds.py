"""`SelectorFds`: a context's fds in the epoll object of asyncio's own selector.

One ``epoll_wait`` serves both: asyncio gets the ``(key, events)`` list its
``EpollSelector`` would have built (only the bits its registration could produce), the
context gets the raw revents; an fd both watch is registered once with the union of
their masks; a number closed under a live ``dup`` is handled by rebuilding the set in
place.  (On the compiled engine the loop's hook runs the same rules in C; the loops'
tests cover that path, these the rules themselves.)
"""

from __future__ import annotations

import os
import select
import selectors
import socket
from collections.abc import Iterator

import pytest

from aioqloop._selectorfds import SelectorFds, eligible

IN, OUT, PRI = select.EPOLLIN, select.EPOLLOUT, select.EPOLLPRI
READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE


@pytest.fixture
def shared() -> Iterator[tuple[selectors.EpollSelector, SelectorFds]]:
    selector = selectors.EpollSelector()
    yield selector, SelectorFds(selector)
    selector.close()


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def test_only_a_stock_epoll_selector_is_shared() -> None:
    class Custom(selectors.EpollSelector):
        pass

    stock, custom, wrapped = selectors.EpollSelector(), Custom(), selectors.EpollSelector()
    wrapped.select = lambda timeout=None: []  # type: ignore[method-assign]  # a tool's wrapper
    try:
        assert eligible(stock)
        assert not eligible(custom)
        assert not eligible(wrapped)
        assert not eligible(selectors.PollSelector())
    finally:
        for s in (stock, custom, wrapped):
            s.close()


def test_asyncio_sees_only_what_its_registration_asked(
    shared: tuple[selectors.EpollSelector, SelectorFds],
    pair: tuple[socket.socket, socket.socket],
) -> None:
    _selector, fds = shared
    a, b = pair
    key = fds.register(a, READ, "reader")
    fds.set(a.fileno(), OUT)  # the context watches the same fd for writing
    # Writable, not readable: the context's OUT is no event for asyncio's reader.
    assert fds.select(0) == []
    assert fds.take_raw() == [(a.fileno(), OUT)]
    b.send(b"x")
    assert fds.select(0) == [(key, READ)]
    assert fds.take_raw() == [(a.fileno(), IN | OUT)]
    assert fds.take_raw() == []  # taken


def test_a_context_only_fd_reaches_the_raw_list_alone(
    shared: tuple[selectors.EpollSelector, SelectorFds],
    pipe: tuple[int, int],
) -> None:
    _selector, fds = shared
    r, w = pipe
    fds.set(r, IN)
    os.write(w, b"x")
    assert fds.select(0) == []
    assert fds.take_raw() == [(r, IN)]
    fds.set(r, 0)  # the context no longer watches it
    assert fds.select(0) == [] and fds.take_raw() == []


def test_asyncio_unregistering_leaves_the_contexts_watch(
    shared: tuple[selectors.EpollSelector, SelectorFds],
    pair: tuple[socket.socket, socket.socket],
) -> None:
    _selector, fds = shared
    a, b = pair
    fds.set(a.fileno(), IN)
    fds.register(a, READ)  # registered after the context: still one entry, the union
    fds.unregister(a)
    b.send(b"x")
    assert fds.select(0) == []
    assert fds.take_raw() == [(a.fileno(), IN)]


def test_the_context_withdrawing_keeps_asyncios_registrations(
    shared: tuple[selectors.EpollSelector, SelectorFds],
    pair: tuple[socket.socket, socket.socket],
    pipe: tuple[int, int],
) -> None:
    _selector, fds = shared
    a, b = pair
    r, w = pipe
    key = fds.register(a, READ)
    fds.set(a.fileno(), OUT)
    fds.set(r, IN)
    fds.withdraw()
    fds.set(r, IN)  # closed: ignored
    b.send(b"x")
    os.write(w, b"x")
    assert fds.select(0) == [(key, READ)]
    assert fds.take_raw() == []  # none of the fds is the context's any more


def test_a_number_closed_under_a_live_dup_is_rebuilt_away(
    shared: tuple[selectors.EpollSelector, SelectorFds],
    pair: tuple[socket.socket, socket.socket],
) -> None:
    # epoll keys an entry by (number, open file): the old file, kept open by a dup and
    # readable, would go on reporting under the number unless the set is rebuilt.
    selector, fds = shared
    a, b = pair
    key = fds.register(a, READ)
    r, w = os.pipe()
    keep = os.dup(r)
    try:
        os.write(w, b"x")
        fds.set(r, IN)
        os.close(r)  # behind the context's back
        fds.set(r, 0)  # the removal by number fails: the entry lingers
        stale = fds.stale  # (a local: mypy would keep an assert's narrowing of fds.stale)
        assert stale
        epoll_fd = selector._selector.fileno()  # type: ignore[attr-defined]
        b.send(b"x")
        assert fds.select(0) == [(key, READ)]  # rebuilt first; asyncio's key survives
        assert fds.rebuilds == 1 and not fds.stale
        assert fds.take_raw() == []  # nothing of the closed number
        # Rebuilt in place: the epoll object asyncio holds is the same, and works.
        assert selector._selector.fileno() == epoll_fd  # type: ignore[attr-defined]
        assert selector.select(0) == [(key, READ)]
        # The number's next owner, an empty pipe, watched: the old readable file must
        # not report under it.
        r2, w2 = os.pipe()
        if r2 != r:
            os.dup2(r2, r)
            os.close(r2)
        fds.set(r, IN)
        assert fds.select(0) == [(key, READ)]
        assert fds.take_raw() == []
        fds.set(r, 0)
        os.close(r)
        os.close(w2)
    finally:
        os.close(keep)
        os.close(w)
