"""The source set of a context: ids, attach order, source trees, priorities, fd watches.

These are the operations `Source` performs on its context (GLib's ``g_source_attach``,
``g_source_destroy``, ``g_source_set_priority``, ``g_source_add_unix_fd``...).  Each may be
called from any thread: on the owner thread (or an unowned context) it is applied at once;
from another thread it is posted to the context's `Waker` and applied by the owner at the
start of its next prepare or check.  Mixed into `MainContext`, whose ``__init__`` creates
the state declared here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from . import _engine

if TYPE_CHECKING:
    from ._fdpoll import FdPoller
    from ._index import PriorityIndex
    from ._waker import Waker
    from .bridge import Driver
    from .context import MainContext
    from .source import Source, _FdRecord

__all__ = ("SourceSet",)

_get_ident = threading.get_ident


class SourceSet:
    """Source bookkeeping of a `MainContext` (see the module docstring)."""

    _closed: bool
    _closing: bool
    _sources: dict[int, Source]
    _next_id: int
    _seq: int
    _prepare_hooks: PriorityIndex
    _check_hooks: PriorityIndex
    _waker: Waker
    _fds: FdPoller
    _fd_generation: int
    _owner: int | None
    _driver: Driver
    _now: float
    _in_iteration: int
    _in_hook: bool
    _clock: Callable[[], float]

    if TYPE_CHECKING:
        def _foreign(self) -> bool: ...
        def _follow_clock(self) -> None: ...
        def _mark_ready(self, src: Source) -> None: ...
        def _unmark_ready(self, src: Source) -> None: ...
        def _schedule_ready_time(self, src: Source) -> None: ...
        def _block(self, src: Source) -> None: ...
        def _insert(self, src: Source) -> None: ...
        def _remove_source(self, src: Source) -> None: ...
        def _drop_ready_time(self, src: Source) -> None: ...
        def _time(self) -> float: ...

    def _post_insert(self, src: Source) -> None:
        """Attach from a thread that does not own the context: the owner inserts it."""
        self._waker.post(lambda: self._insert(src))

    def _local_or_post(self, op: Callable[[], None]) -> None:
        owner = self._owner
        if owner is not None and owner != _get_ident():
            self._waker.post(op)
        else:
            op()
            if owner is None:
                # Unowned: another thread may be just starting a blocking iteration.
                self._waker.notify()

    def _attach_child(self, parent: Source, child: Source) -> None:
        child._context = cast("MainContext", self)
        self._give_ids(child)
        self._local_or_post(lambda: self._insert_child(parent, child))

    def _new_id(self) -> int:
        """The next free source id, 32 bits, never 0 (the caller holds the waker lock)."""
        sid = self._next_id
        while sid == 0 or sid in self._sources:
            sid = (sid + 1) & 0xFFFFFFFF
        self._next_id = (sid + 1) & 0xFFFFFFFF
        return sid

    def _give_ids(self, root: Source) -> None:
        """Ids for ``root`` (a child) or, for an attached parent, its descendants:
        g_source_attach attaches a source's children too, so each has an id of its own
        that ``find_source_by_id``/``source_remove`` know (any thread)."""
        stack = [root] if root._parent is not None else list(root._children)
        with self._waker.lock:
            while stack:
                src = stack.pop(0)
                if src._destroyed or src._id:
                    continue
                src._id = sid = self._new_id()
                self._sources[sid] = src
                stack[:0] = src._children

    def _insert_child(self, parent: Source, child: Source) -> None:
        if parent._destroyed:
            child.destroy()
            return
        child._order = (*parent._order[:-1], 0, self._next_seq(), 1)
        self._insert_tree(child)
        if parent._blocked:
            self._block(child)

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _insert_tree(self, src: Source) -> None:
        if src._destroyed:
            return
        if not src._order:
            self._seq = seq = self._seq + 1
            src._order = (seq, 1)
        self._follow_clock()  # a timeout's first expiry is computed from it
        src._attached(cast("MainContext", self))
        if src._has_prepare or src._has_check:
            prio = src._priority
            if src._has_prepare:
                self._prepare_hooks.add(prio, src)
            if src._has_check:
                self._check_hooks.add(prio, src)
            self._driver.prepare_needed()
        if src._fds:
            for rec in src._fds:
                self._fd_add_local(rec)
        if src._ready_time != -1:
            self._schedule_ready_time(src)
        if src._idle:
            self._mark_ready(src)
        if src._children:
            for child in src._children:
                child._context = cast("MainContext", self)
                child._order = (*src._order[:-1], 0, self._next_seq(), 1)
                self._insert_tree(child)

    def _destroy(self, src: Source) -> None:
        with self._waker.lock:
            if self._sources.get(src._id) is src:
                del self._sources[src._id]
        owner = self._owner
        if self._closed:
            self._remove_source(src)
        elif owner is not None and owner != _get_ident():
            self._waker.post(lambda: self._remove_source(src))
        else:
            self._remove_source(src)  # _local_or_post, inlined without a closure
            if owner is None:
                self._waker.notify()

    def _remove(self, src: Source) -> None:
        if src._children:
            for child in list(src._children):
                child.destroy()
        if src._ready or src._ready_by_time or src._ready_by_child:
            self._unmark_ready(src)
        parent = src._parent
        while parent is not None and parent._ready and parent._ready_by_child:
            if any(c._ready for c in parent._children if c is not src):
                break
            self._unmark_ready(parent)
            if parent._ready_time != -1 and not parent._in_heap:
                # Its own ready time may have passed while it was ready (so it left the
                # deadline heap): GLib derives READY from the ready time at every
                # prepare, so put it back in the heap for the next one to look at.
                self._schedule_ready_time(parent)
            parent = parent._parent
        if src._has_prepare or src._has_check:
            prio = src._priority
            if src._has_prepare:
                self._prepare_hooks.remove(prio, src)
            if src._has_check:
                self._check_hooks.remove(prio, src)
        if src._fds and not self._closed:
            for rec in src._fds:
                self._fd_remove_local(rec)
        if src._in_heap:
            self._drop_ready_time(src)
        src._maybe_finalize()

    def _change_priority(self, src: Source, prio: int) -> None:
        if self._foreign():
            raise RuntimeError("change a source's priority from the thread that runs its context")
        old = src._priority
        if old == prio:
            return
        was_ready = src._ready
        self._unmark_ready(src)
        if src._has_prepare:
            self._prepare_hooks.remove(old, src)
            self._prepare_hooks.add(prio, src)
        if src._has_check:
            self._check_hooks.remove(old, src)
            self._check_hooks.add(prio, src)
        src._priority = prio
        # GLib re-adds the source at the tail of its new priority's list (children still
        # just before their parent; the parent is renumbered first).
        parent = src._parent
        if parent is None:
            src._order = (self._next_seq(), 1)
        else:
            src._order = (*parent._order[:-1], 0, self._next_seq(), 1)
        if was_ready:
            self._mark_ready(src)

    def _ready_time_changed(self, src: Source) -> None:
        # Hot (every timeout re-arm): the owner test of _local_or_post, without a closure.
        owner = self._owner
        if owner is not None and owner != _get_ident():
            self._waker.post(lambda: self._schedule_ready_time(src))
            return
        self._schedule_ready_time(src)
        if owner is None:
            self._waker.notify()

    def _fd_add(self, rec: _FdRecord) -> None:
        self._local_or_post(lambda: self._fd_add_local(rec))

    def _fd_remove(self, rec: _FdRecord) -> None:
        self._local_or_post(lambda: self._fd_remove_local(rec))

    def _fd_changed(self, fd: int) -> None:
        self._local_or_post(lambda: self._fd_op(self._fds.sync, fd))

    def _fd_add_local(self, rec: _FdRecord) -> None:
        if not rec.source._destroyed and rec in rec.source._fds and not self._closed:
            self._fd_op(self._fds.add, rec)
            self._driver.prepare_needed()  # arms the NVAL audit under a plain driver

    def _fd_remove_local(self, rec: _FdRecord) -> None:
        if not self._closed:
            self._fd_op(self._fds.remove, rec)

    def _fd_op(self, op: Callable[[Any], None], arg: Any) -> None:
        op(arg)
        self._check_fd_generation()

    def _check_fd_generation(self) -> None:
        # The epoll set was opened or rebuilt: the driver renews its registration of it.
        if self._fds.generation != self._fd_generation:
            self._fd_generation = self._fds.generation
            self._driver.epoll_changed()


if _engine.core is not None:
    # The core's attach and destroy call these for a source it has no fast path for
    # (hooks, fds, a tree), and post an attach from another thread, without a lookup.
    _engine.core.configure(ctx_insert_tree=SourceSet._insert_tree,
                           ctx_remove=SourceSet._remove,
                           ctx_post_insert=SourceSet._post_insert)
