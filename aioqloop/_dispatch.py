"""The dispatch phase of a context, and blocking of sources while they dispatch.

GLib's ``g_main_dispatch``: the ready sources of one priority run in attach order; READY
is cleared before a callback runs so it can re-arm itself; a non-recursive source (and
its children) is *blocked* while it dispatches, so a nested iteration neither dispatches
nor polls it; a destroyed source is finalized once its dispatch has returned; a nested
iteration that starts a new prepare takes over the rest of the outer batch.  A
KeyboardInterrupt or SystemExit from a callback leaves the loop; the source is destroyed,
as for any exception, and nothing else is lost (carriers keep their queues).

A part of `MainContext` (``ctx._dispatcher``), made by its ``__init__``.  The ready
queues, blocked lists and counters it works on are the context core's, as in
``GMainContext``: the compiled core dispatches in C from the same fields and calls only
`Dispatcher.block`, `Dispatcher.unblock` and `Dispatcher.count_waited` here; the pure
engine's core runs `Dispatcher.dispatch` itself.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from . import _engine
from ._registry import _tls
from .statistics import SourceStatistics

if TYPE_CHECKING:
    from .context import MainContext
    from .source import Source

__all__ = ("Dispatcher",)

logger = logging.getLogger("aioqloop")
_perf = time.perf_counter
# Debug mode warns about a dispatch slower than loop.slow_callback_duration (like
# asyncio's "Executing ... took"); below this floor nothing is looked up.
_SLOW_FLOOR = 0.001


def _warn_slow(src: Source, elapsed: float) -> None:
    logger.warning("Executing %r took %.3f seconds", src, elapsed)


def _slow_dispatch(ctx: MainContext, src: Source, elapsed: float) -> None:
    """A dispatch took ``elapsed`` seconds, at least `_SLOW_FLOOR`: warn if the port
    says it is slow (debug mode, ``loop.slow_callback_duration``)."""
    threshold = ctx._port.slow_threshold()
    if threshold is not None and elapsed >= threshold:
        _warn_slow(src, elapsed)


def _report_dispatch(ctx: MainContext, exc: BaseException, src: Source, callback: Any) -> None:
    """A dispatch raised ``exc`` (not SystemExit or KeyboardInterrupt): report it and
    destroy ``src`` (`MainContext._report`, which a context class may extend)."""
    ctx._report(exc, src, "dispatch", callback=callback)


def _dispatch_stack() -> list[Source]:
    """The calling thread's stack of dispatching sources (``g_main_current_source``)."""
    stack: list[Source] = _tls.current
    return stack


class Dispatcher:
    """The dispatch phase of one `MainContext` (see the module docstring)."""

    __slots__ = ("_ctx",)

    def __init__(self, ctx: MainContext) -> None:
        self._ctx = ctx

    def dispatch(self, priority: float) -> None:
        """Dispatch the ready sources of ``priority`` in attach order.  Owner thread.

        This is the only place where source callbacks are called.
        """
        ctx = self._ctx
        ready = ctx._readyq
        # g_main_dispatch's pending dispatches: the queue as it is now, in order
        pending = ready.ordered(priority)
        if not pending:
            self.dispatch_postponed()  # gone since the check: nothing to hold the lock for
            return
        ctx._iterations += 1
        for src in pending:
            # GLib's READY stays set on each until it is dispatched: a ready time moved
            # away, or a ready child gone, does not take it back (nor in a nested
            # iteration that takes over the rest of the batch).
            src._latched = True
        tap = ctx._tap
        if tap is not None and len(pending) > 1:
            pending = tap.order(priority, pending)
        if len(ready) > 1:
            self.count_waited(priority)
        gate = ctx._gate
        if gate is not None and not gate.enter():
            return
        serial = ctx._serial
        # QEMU's rule: the loop that took the lock (or was handed it) for this batch
        # dispatches first; waiters get the lock between two dispatches, never before
        # the first, or a loop handed the lock while others queue would hand it straight
        # on and its ready sources would starve.
        first = True
        # One clock read per dispatch: each dispatch's end is the next one's start.
        t = t_start = _perf()
        try:
            for src in pending:
                if ctx._serial != serial:
                    break  # a nested iteration took over the rest, as in gmain.c
                if src._destroyed:
                    # g_main_dispatch skips only a destroyed source: one that is no
                    # longer READY since the check (its ready time moved, its only
                    # ready child went) still dispatches in this batch.
                    continue
                if first:
                    first = False
                elif gate is not None and not gate.between():
                    gate = None  # deferred: the rest waits for the lock
                    break
                t = self.dispatch_one(src, t)
        finally:
            ctx._dispatch_time += t - t_start
            if gate is not None:
                gate.leave()

    def dispatch_postponed(self) -> None:
        """The driver does not dispatch what the check found ready, not now (owner thread).

        A big lock handed over to the loop for that dispatch goes back at once: kept, it
        would be held through the next poll, and QEMU's loop never polls holding it.  The
        next dispatch takes it again.
        """
        gate = self._ctx._gate
        if gate is not None:
            gate.give_back()

    def count_waited(self, priority: float) -> None:
        """Statistics: each source ready at a less urgent priority waited once more."""
        ctx = self._ctx
        for p in ctx._ready_priorities():
            if p > priority:
                for src in ctx._ready_sources(p):
                    st = src._stats
                    if st is None:
                        st = src._stats = SourceStatistics()
                    st.waited += 1

    def dispatch_one(self, src: Source, t0: float) -> float:
        """Dispatch ``src``; ``t0`` is when the dispatch started, the result when it ended."""
        ctx = self._ctx
        if ctx._tap is not None:
            ctx._tap.dispatched(src)
        # READY is cleared before the callback runs (gmain.c), so it can re-arm itself.
        src._latched = False
        if src._ready:  # _unmark_ready, inlined on the hot path
            src._ready = src._ready_by_time = src._ready_by_child = False
            ctx._readyq.remove(src)
        blocked = not src._can_recurse
        premarked = not blocked and (
            src._idle or (0 <= src._ready_time <= ctx._now and not src._in_heap))
        if premarked:
            # GLib prepares a recursive source again in a nested iteration, and an idle
            # or a passed ready time makes it ready there.
            ctx._mark_ready(src)
        leaf = not (src._children or src._fds)
        if blocked:
            if leaf:  # the common case, inlined: a leaf source blocked for its dispatch
                src._blocked = True
                ctx._blocked.append(src)
            else:
                self.block(src)
        current = _tls.current
        current.append(src)
        ctx._in_iteration += 1
        src._dispatching += 1
        keep = escaped = False
        try:
            # The result's truth is taken inside the guard: a __bool__ that raises is a
            # fault of this dispatch, reported and destroying the source like any other.
            keep = bool(src.dispatch(src._callback, src._args))
        except (SystemExit, KeyboardInterrupt):
            # Leaves the loop as in asyncio.  The callback had its run: the source is
            # destroyed as for any exception (PyGObject), unless it is an internal
            # carrier (bottom halves, task steps) that keeps its own queue intact.
            escaped = True
            raise
        except BaseException as exc:
            _report_dispatch(ctx, exc, src, src._callback)
        finally:
            t1 = _perf()
            ctx._in_iteration -= 1
            current.pop()
            self.end_dispatch(src, blocked, leaf, t1 - t0)
            if escaped:
                self.rearm(src, src._survives_escape, premarked)
        if keep and src._idle and not src._fds and not src._destroyed:
            ctx._mark_ready(src)  # a repeating idle, the common case of rearm
        else:
            self.rearm(src, keep, premarked)
        return t1

    def end_dispatch(self, src: Source, blocked: bool, leaf: bool, elapsed: float) -> None:
        src._dispatching -= 1
        if blocked:
            stack = self._ctx._blocked
            if (leaf and not src._ready_while_blocked and not self._ctx._blocked_due
                    and not src._dispatching):
                src._blocked = False
                if stack and stack[-1] is src:
                    stack.pop()
                else:
                    self.unblock(src)
            else:
                self.unblock(src)
        st = src._stats
        if st is None:
            st = src._stats = SourceStatistics()
        st.dispatches += 1
        st.dispatch_time += elapsed
        if elapsed > st.max_dispatch_time:  # noqa: PLR1730 (hot path: no call)
            st.max_dispatch_time = elapsed
        if src._destroyed:
            # Here, not later: a source destroyed in its callback must be finalized even
            # if KeyboardInterrupt or SystemExit escapes it.
            src._maybe_finalize()
        if elapsed >= _SLOW_FLOOR:
            _slow_dispatch(self._ctx, src, elapsed)

    def rearm(self, src: Source, keep: object, premarked: bool) -> None:
        """After a dispatch: clear revents, and re-arm, keep or destroy ``src``."""
        if src._fds:
            for rec in src._fds:
                rec.revents = 0
        ctx = self._ctx
        now = ctx._now
        if ((premarked or src._ready_by_time) and src._ready and not src._idle
                and not 0 <= src._ready_time <= now):
            ctx._unmark_ready(src)  # it re-armed itself for later (e.g. a timeout)
        if src._destroyed:
            return
        if not keep:
            src.destroy()
        elif src._idle:
            ctx._mark_ready(src)
        elif src._ready_time != -1 and not src._in_heap:
            if src._ready_time <= now:
                if not src._ready:
                    ctx._mark_ready(src)
                    src._ready_by_time = src._ready
                elif src._ready_by_child:
                    # due itself: ready in its own right, not only through a child
                    src._ready_by_time, src._ready_by_child = True, False
            else:
                ctx._schedule_ready_time(src)

    # ------------------------------------------------------------- blocking
    def block(self, src: Source) -> None:
        """Block ``src`` and its children while it dispatches (non-recursive sources)."""
        ctx = self._ctx
        src._blocked = True
        if src._ready:
            # Why it is ready decides what unblocking does.  Its ready time: that time
            # decides again, as GLib's next prepare would (it may be -1 by then).  A
            # child: the children, blocked with it, make it ready again if they still
            # are.  Anything else (itself; GLib's READY from the running batch): it is.
            latched = src._latched
            by_time = src._ready_by_time and not latched
            by_child = src._ready_by_child and not latched
            ctx._unmark_ready(src)
            if by_time:
                due = ctx._blocked_due
                if not any(s is src for s in due):
                    due.append(src)
            elif not by_child:
                src._ready_while_blocked = True
        ctx._blocked.append(src)
        for child in src._children:
            self.block(child)

    def unblock(self, src: Source) -> None:
        """Unblock ``src`` and its children; what became ready or due meanwhile is so now."""
        ctx = self._ctx
        src._blocked = False
        blocked = ctx._blocked
        if blocked and blocked[-1] is src:
            blocked.pop()
        elif src in blocked:
            blocked.remove(src)
        for child in src._children:
            self.unblock(child)
        if src._fds and ctx._fds.unpolled:
            ctx._fds.repoll(src)
        if ctx._blocked_due and any(s is src for s in ctx._blocked_due):
            ctx._blocked_due = [s for s in ctx._blocked_due if s is not src]
            ctx._schedule_ready_time(src)
        if src._ready_while_blocked:
            src._ready_while_blocked = False
            ctx._mark_ready(src)
        elif src._dispatching and not src._ready and not src._destroyed:
            # Unblocked while its own dispatch still runs: a parent's dispatch in a nested
            # iteration ended (GLib's block is a flag, not a count).  GLib's next prepare
            # looks at it like any other source, so an idle or a passed ready time makes
            # it ready there, and it may dispatch again inside its own dispatch.
            self.rearm_early(src)

    def rearm_early(self, src: Source) -> None:
        """`unblock` of a source whose dispatch still runs: ready as a prepare finds it."""
        ctx = self._ctx
        if src._idle:
            ctx._mark_ready(src)
        elif src._ready_time != -1 and not src._in_heap:
            if src._ready_time <= ctx._now:
                ctx._mark_ready(src)
                src._ready_by_time = src._ready
            else:
                ctx._schedule_ready_time(src)


# The core's upcalls of the dispatch phase, called without a name lookup (see common.h's
# configuration table): they take the context, whose dispatcher does the work.
def _block(ctx: MainContext, src: Source) -> None:
    ctx._dispatcher.block(src)


def _unblock(ctx: MainContext, src: Source) -> None:
    ctx._dispatcher.unblock(src)


def _count_waited(ctx: MainContext, priority: float) -> None:
    ctx._dispatcher.count_waited(priority)


if _engine.core is not None:
    _engine.core.configure(
        slow_floor=_SLOW_FLOOR, slow_dispatch=_slow_dispatch, report_dispatch=_report_dispatch,
        dispatch_stack=_dispatch_stack, block=_block, unblock=_unblock,
        count_waited=_count_waited)
