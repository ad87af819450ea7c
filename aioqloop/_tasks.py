"""Prioritized tasks (PyGObject's ``GLibTask``) and what both aioqloop bases share.

A task of an aioqloop loop is a `QTask`: an ``asyncio.Task`` with ``set_priority``.  While
its priority is not `PRIORITY_DEFAULT`, each of its steps is queued in the loop's context
at that priority instead of asyncio's ready queue, so GLib's priority rules order it
against sources (PyGObject reads the priority when the step is scheduled; so do we).  The
routing ``call_soon`` is set on the loop instance only while some task has a non-default
priority: plain asyncio work then runs uvloop's or asyncio's own ``call_soon`` untouched
(a class-level override would put a Python frame under every ``call_soon`` of uvloop).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import _registry
from ._checks import check_priority
from .constants import PRIORITY_DEFAULT

if TYPE_CHECKING:
    from .context import MainContext

__all__ = ("QLoopMixin", "QTask")


class QTask(asyncio.Task):  # type: ignore[type-arg]
    """A task whose steps run at a GLib priority (like PyGObject's ``GLibTask``).

    Created by aioqloop loops for every ``create_task``.  The priority is read each time
    a step is scheduled, so a change applies from the next step on.  Its repr and log
    lines read ``<Task ...>``, as asyncio's do.
    """

    _aioq_priority = PRIORITY_DEFAULT

    def set_priority(self, priority: int) -> None:
        """Run this task's coming steps at ``priority`` (GLib numbers; lower is sooner)."""
        priority = check_priority(priority)
        old = self._aioq_priority
        if old == priority:
            return
        loop = self.get_loop()
        if isinstance(loop, QLoopMixin):
            if old == PRIORITY_DEFAULT:
                loop._aioq_priorities_in_use(+1)
                self.add_done_callback(_forget_priority)
            elif priority == PRIORITY_DEFAULT:
                loop._aioq_priorities_in_use(-1)
        self._aioq_priority = priority

    def get_priority(self) -> int:
        """The GLib priority its steps run at (`PRIORITY_DEFAULT` unless set)."""
        return self._aioq_priority


# asyncio's task repr and "Task was destroyed" logs use the class name.
QTask.__name__ = QTask.__qualname__ = "Task"


def _forget_priority(task: asyncio.Future[Any]) -> None:
    if isinstance(task, QTask) and task._aioq_priority != PRIORITY_DEFAULT:
        task._aioq_priority = PRIORITY_DEFAULT
        loop = task.get_loop()
        if isinstance(loop, QLoopMixin):
            loop._aioq_priorities_in_use(-1)


def _run_handle(handle: asyncio.Handle) -> None:
    if not handle.cancelled():
        handle._run()


if TYPE_CHECKING:
    _MixinBase = asyncio.AbstractEventLoop
else:
    _MixinBase = object


class QLoopMixin(_MixinBase):
    """What both bases share: the owned context, prioritized tasks, `create_task`."""

    _aioqloop_context: MainContext
    _aioq_prio_tasks = 0

    @property
    def main_context(self) -> MainContext:
        """The loop's own default `MainContext`."""
        return self._aioqloop_context

    def run_forever(self) -> None:
        """``run_forever``, with the running thread owning the loop's context (GLib's
        ``g_main_context_acquire`` for the length of the run)."""
        ctx = self._aioqloop_context
        if not ctx.acquire():
            raise RuntimeError("the loop's MainContext is owned by another thread")
        _registry.note_run(ctx)  # the global default context's report at exit
        try:
            super().run_forever()
        finally:
            ctx.release()

    def create_task(
        self, coro: Any, *, name: Any = None, context: Any = None
    ) -> asyncio.Task[Any]:
        """Like ``loop.create_task``; the task is a `QTask` (it has ``set_priority``).

        The signature is the base loop's on this Python: the stock base takes
        ``context=`` from 3.11 on (as asyncio does), uvloop takes it on every version.
        """
        if self.get_task_factory() is not None:
            parent: Any = super().create_task
            # Pass context only when given: 3.10's BaseEventLoop.create_task has no such
            # parameter, and 3.11+ call a factory without it then (the legacy form).
            if context is None:
                return parent(coro, name=name)  # type: ignore[no-any-return]
            return parent(coro, name=name, context=context)  # type: ignore[no-any-return]
        return self._aioq_new_task(coro, name, context)

    def _aioq_new_task(self, coro: Any, name: Any, context: Any) -> asyncio.Task[Any]:
        if self.is_closed():
            raise RuntimeError("Event loop is closed")
        task_cls: Any = QTask
        if context is None:
            task = task_cls(coro, loop=self, name=name)
        elif sys.version_info >= (3, 11):
            task = task_cls(coro, loop=self, name=name, context=context)
        else:  # uvloop base on 3.10: the task copies the context it is created in
            task = context.run(task_cls, coro, loop=self, name=name)
        tb = getattr(task, "_source_traceback", None)
        if tb:
            del tb[-1]
        return task  # type: ignore[no-any-return]

    def _aioq_call_soon_prio(
        self, callback: Callable[..., Any], *args: Any, context: Any = None
    ) -> asyncio.Handle:
        """``call_soon`` while some task has a non-default priority: route its steps."""
        task = getattr(callback, "__self__", None)
        if isinstance(task, QTask) and task._aioq_priority != PRIORITY_DEFAULT:
            if self.is_closed():
                raise RuntimeError("Event loop is closed")
            handle = asyncio.Handle(callback, args, self, context)
            self._aioqloop_context.call_at_priority(task._aioq_priority, _run_handle, (handle,))
            return handle
        plain: Any = type(self).call_soon  # the class's, not the instance attribute
        return plain(self, callback, *args, context=context)  # type: ignore[no-any-return]

    def _aioq_priorities_in_use(self, delta: int) -> None:
        self._aioq_prio_tasks += delta
        if self._aioq_prio_tasks > 0:
            self.call_soon = self._aioq_call_soon_prio  # type: ignore[method-assign,assignment]
        else:
            self.__dict__.pop("call_soon", None)
