"""The source set of a context: ids, attach order, source trees, priorities, fd watches.

These are the operations `Source` performs on its context (GLib's ``g_source_attach``,
``g_source_destroy``, ``g_source_set_priority``, ``g_source_add_unix_fd``...).  Each may be
called from any thread: on the owner thread (or an unowned context) it is applied at once;
from another thread it is posted to the context's `Waker` and applied by the owner at the
start of its next prepare or check.

A part of `MainContext` (``ctx._set``), made by its ``__init__``.  The data it works on
(the id table, the attach order, the hook indexes) is the context core's, as in
``GMainContext``: the compiled core reads it on every attach.  What is the set's alone is
the epoll generation its driver last saw.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import _engine
from ._contextcore import _unready_ancestors

if TYPE_CHECKING:
    from .context import MainContext
    from .source import Source, _FdRecord

__all__ = ("SourceSet",)

_get_ident = threading.get_ident


class SourceSet:
    """Source bookkeeping of one `MainContext` (see the module docstring)."""

    __slots__ = ("_ctx", "fd_generation")

    def __init__(self, ctx: MainContext) -> None:
        self._ctx = ctx
        #: The fd poller's generation the driver was last told of (`check_fd_generation`).
        self.fd_generation = 0

    def post_insert(self, src: Source) -> None:
        """Attach from a thread that does not own the context: the owner inserts it."""
        ctx = self._ctx
        ctx._waker.post(lambda: ctx._insert(src))

    def local_or_post(self, op: Callable[[], None]) -> None:
        ctx = self._ctx
        owner = ctx._owner
        if owner is not None and owner != _get_ident():
            ctx._waker.post(op)
        else:
            op()
            if owner is None:
                # Unowned: another thread may be just starting a blocking iteration.
                ctx._waker.notify()

    def attach_child(self, parent: Source, child: Source) -> None:
        child._context = self._ctx
        self.give_ids(child)
        self.local_or_post(lambda: self.insert_child(parent, child))

    def new_id(self) -> int:
        """The next free source id, 32 bits, never 0 (the caller holds the waker lock)."""
        ctx = self._ctx
        sid = ctx._next_id
        while sid == 0 or sid in ctx._sources:
            sid = (sid + 1) & 0xFFFFFFFF
        ctx._next_id = (sid + 1) & 0xFFFFFFFF
        return sid

    def give_ids(self, root: Source) -> None:
        """Ids for ``root`` (a child) or, for an attached parent, its descendants:
        g_source_attach attaches a source's children too, so each has an id of its own
        that ``find_source_by_id``/``source_remove`` know (any thread)."""
        ctx = self._ctx
        # Depth first, each source's children latest added first: gmain.c keeps a
        # source's children in a list it prepends to and attaches them in its order.
        stack = [root] if root._parent is not None else list(root._children[::-1])
        with ctx._waker.lock:
            while stack:
                src = stack.pop(0)
                if src._destroyed or src._id:
                    continue
                src._id = sid = self.new_id()
                ctx._sources[sid] = src
                stack[:0] = src._children[::-1]

    def insert_child(self, parent: Source, child: Source) -> None:
        if parent._destroyed:
            child.destroy()
            return
        child._order = (*parent._order[:-1], 0, self.next_seq(), 1)
        self.insert_tree(child)
        if parent._blocked:
            self._ctx._dispatcher.block(child)

    def next_seq(self) -> int:
        ctx = self._ctx
        ctx._seq += 1
        return ctx._seq

    def insert_tree(self, src: Source) -> None:
        """Insert an attached source and its children: hooks, fds, ready time, idle."""
        if src._destroyed:
            return
        ctx = self._ctx
        if not src._order:
            ctx._seq = seq = ctx._seq + 1
            src._order = (seq, 1)
        ctx._follow_clock()  # a timeout's first expiry is computed from it
        src._attached(ctx)
        if src._has_prepare or src._has_check:
            prio = src._priority
            if src._has_prepare:
                ctx._prepare_hooks.add(prio, src)
            if src._has_check:
                ctx._check_hooks.add(prio, src)
            ctx._driver.prepare_needed()
        if src._fds:
            for rec in src._fds:
                self.fd_add_local(rec)
        if src._ready_time != -1:
            ctx._schedule_ready_time(src)
        if src._idle:
            ctx._mark_ready(src)
        if src._children:
            # latest added first, each just before its parent (see give_ids)
            for child in src._children[::-1]:
                child._context = ctx
                child._order = (*src._order[:-1], 0, self.next_seq(), 1)
                self.insert_tree(child)

    def destroy(self, src: Source) -> None:
        """``g_source_destroy`` of an attached source (any thread)."""
        ctx = self._ctx
        with ctx._waker.lock:
            if ctx._sources.get(src._id) is src:
                del ctx._sources[src._id]
        owner = ctx._owner
        if ctx._closed:
            ctx._remove_source(src)
        elif owner is not None and owner != _get_ident():
            ctx._waker.post(lambda: ctx._remove_source(src))
        else:
            ctx._remove_source(src)  # local_or_post, inlined without a closure
            if owner is None:
                ctx._waker.notify()

    def remove(self, src: Source) -> None:
        """Take a destroyed source out of everything it is in (owner thread)."""
        ctx = self._ctx
        if src._children:
            for child in list(src._children):
                child.destroy()
        if src._ready or src._ready_by_time or src._ready_by_child:
            ctx._unmark_ready(src)
        _unready_ancestors(ctx, src)
        if src._has_prepare or src._has_check:
            prio = src._priority
            if src._has_prepare:
                ctx._prepare_hooks.remove(prio, src)
            if src._has_check:
                ctx._check_hooks.remove(prio, src)
        if src._fds and not ctx._closed:
            for rec in src._fds:
                self.fd_remove_local(rec)
        if src._in_heap:
            ctx._drop_ready_time(src)
        src._maybe_finalize()

    def change_priority(self, src: Source, prio: int) -> None:
        """``g_source_set_priority`` of an attached source (owner thread)."""
        ctx = self._ctx
        if ctx._foreign():
            raise RuntimeError("change a source's priority from the thread that runs its context")
        # No shortcut for the same priority: g_source_set_priority always takes the
        # source out and adds it back at the tail of its priority's list.
        old = src._priority
        # Why it is ready (its ready time, a child, or itself) survives the move: a ready
        # time moved away after this must still un-ready it (`_schedule_ready_time`).
        was_ready, by_time, by_child = src._ready, src._ready_by_time, src._ready_by_child
        ctx._unmark_ready(src)
        if src._has_prepare:
            ctx._prepare_hooks.remove(old, src)
            ctx._prepare_hooks.add(prio, src)
        if src._has_check:
            ctx._check_hooks.remove(old, src)
            ctx._check_hooks.add(prio, src)
        src._priority = prio
        # GLib re-adds the source at the tail of its new priority's list (children still
        # just before their parent; the parent is renumbered first).
        parent = src._parent
        if parent is None:
            src._order = (self.next_seq(), 1)
        else:
            src._order = (*parent._order[:-1], 0, self.next_seq(), 1)
        if was_ready:
            ctx._mark_ready(src)
            if src._ready:
                src._ready_by_time, src._ready_by_child = by_time, by_child

    def ready_time_changed(self, src: Source) -> None:
        # Hot (every timeout re-arm): the owner test of local_or_post, without a closure.
        ctx = self._ctx
        owner = ctx._owner
        if owner is not None and owner != _get_ident():
            ctx._waker.post(lambda: ctx._schedule_ready_time(src))
            return
        ctx._schedule_ready_time(src)
        if owner is None:
            ctx._waker.notify()

    def fd_add(self, rec: _FdRecord) -> None:
        self.local_or_post(lambda: self.fd_add_local(rec))

    def fd_remove(self, rec: _FdRecord) -> None:
        self.local_or_post(lambda: self.fd_remove_local(rec))

    def fd_changed(self, fd: int) -> None:
        self.local_or_post(lambda: self.fd_op(self._ctx._fds.sync, fd))

    def fd_add_local(self, rec: _FdRecord) -> None:
        ctx = self._ctx
        if not rec.source._destroyed and rec in rec.source._fds and not ctx._closed:
            self.fd_op(ctx._fds.add, rec)
            ctx._driver.prepare_needed()  # arms the NVAL audit under a plain driver

    def fd_remove_local(self, rec: _FdRecord) -> None:
        if not self._ctx._closed:
            self.fd_op(self._ctx._fds.remove, rec)

    def fd_op(self, op: Callable[[Any], None], arg: Any) -> None:
        op(arg)
        self.check_fd_generation()

    def check_fd_generation(self) -> None:
        """The epoll set was opened or rebuilt: the driver renews its registration."""
        ctx = self._ctx
        if ctx._fds.generation != self.fd_generation:
            self.fd_generation = ctx._fds.generation
            ctx._driver.epoll_changed()


# The core's attach and destroy call these for a source it has no fast path for (hooks,
# fds, a tree), and post an attach from another thread, without a name lookup.
def _insert_tree(ctx: MainContext, src: Source) -> None:
    ctx._set.insert_tree(src)


def _remove(ctx: MainContext, src: Source) -> None:
    ctx._set.remove(src)


def _post_insert(ctx: MainContext, src: Source) -> None:
    ctx._set.post_insert(src)


if _engine.core is not None:
    _engine.core.configure(ctx_insert_tree=_insert_tree, ctx_remove=_remove,
                           ctx_post_insert=_post_insert)
