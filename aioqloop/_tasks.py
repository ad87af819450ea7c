"""Prioritized tasks (PyGObject's ``GLibTask``) and what both aioqloop bases share.

The public types live here: `EventLoop`, the base class of both aioqloop loops (the
stock base and the uvloop base), and `QTask` (``aioqloop.Task``), the task its
``create_task`` returns.  They let a type checker see ``loop.main_context`` and
``task.set_priority`` on what `aioqloop.new_event_loop` returns.

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
from collections.abc import Callable, Coroutine, Generator
from typing import TYPE_CHECKING, Any, TypeVar

from . import _registry
from ._checks import check_priority
from .constants import PRIORITY_DEFAULT

if TYPE_CHECKING:
    from contextvars import Context

    from .context import MainContext

__all__ = ("EventLoop", "QTask")

_T = TypeVar("_T")


class QTask(asyncio.Task[_T]):
    """A task whose steps run at a GLib priority (like PyGObject's ``GLibTask``).

    Public as ``aioqloop.Task``.  Created by aioqloop loops for every ``create_task``
    (and so for ``asyncio.create_task`` on such a loop).  The priority is read each time
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
        if isinstance(loop, EventLoop):
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
        if isinstance(loop, EventLoop):
            loop._aioq_priorities_in_use(-1)


def _run_handle(handle: asyncio.Handle) -> None:
    if not handle.cancelled():
        handle._run()


class EventLoop(asyncio.AbstractEventLoop):
    """The type of every aioqloop event loop (what `aioqloop.new_event_loop` returns).

    An ``asyncio.AbstractEventLoop`` with a GLib main context: `main_context` is the
    loop's own `MainContext`, and `create_task` makes a `QTask` (``aioqloop.Task``),
    whose ``set_priority`` runs its steps at a GLib priority.  Both bases derive from
    it: the stock base (an ``asyncio.SelectorEventLoop``) and the uvloop base (a
    ``uvloop.Loop``), so ``isinstance(asyncio.get_running_loop(), aioqloop.EventLoop)``
    tells an aioqloop loop apart and lets a type checker see these members.  It is not
    meant to be subclassed or instantiated on its own: make loops with
    `aioqloop.new_event_loop`.
    """

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

    if sys.version_info >= (3, 14):

        def create_task(
            self,
            coro: Coroutine[Any, Any, _T] | Generator[Any, None, _T],
            *,
            name: str | None = None,
            context: Context | None = None,
            eager_start: bool | None = None,
            **kwargs: Any,
        ) -> QTask[_T]:
            """Like asyncio 3.14's ``loop.create_task``; the task is a `QTask`.

            The keywords given (``name``, ``context``, ``eager_start`` and any other)
            go to the task factory, or without one to the task's constructor, which
            refuses what it does not know (`TypeError`), as asyncio does.  Under
            ``asyncio.eager_task_factory`` the task is an eagerly started `QTask`, so
            that its priority can still be set.  With another task factory installed
            the task is the factory's, as in asyncio, and has no ``set_priority`` unless
            the factory makes a `QTask`.
            """
            if name is not None:
                kwargs["name"] = name
            if context is not None:
                kwargs["context"] = context
            if eager_start is not None:
                kwargs["eager_start"] = eager_start
            if self.is_closed():
                raise RuntimeError("Event loop is closed")
            factory: Any = self.get_task_factory()
            if factory is asyncio.eager_task_factory:
                kwargs.setdefault("eager_start", True)
            elif factory is not None:
                # asyncio 3.14 hands the factory exactly the keywords given.
                return factory(self, coro, **kwargs)  # type: ignore[no-any-return]
            return self._aioq_task(coro, kwargs)

    else:

        def create_task(
            self,
            coro: Coroutine[Any, Any, _T] | Generator[Any, None, _T],
            *,
            name: str | None = None,
            context: Context | None = None,
        ) -> QTask[_T]:
            """Like ``loop.create_task``; the task is a `QTask` (it has ``set_priority``).

            The signature is the base loop's on this Python: the stock base takes
            ``context=`` from 3.11 on (as asyncio does), uvloop takes it on every
            version; ``eager_start=`` is asyncio 3.14's and refused before it, as asyncio
            refuses it.  Under ``asyncio.eager_task_factory`` (3.12+) the task is an
            eagerly started `QTask`, so that its priority can still be set.  With another
            task factory installed (``set_task_factory``) the task is the factory's, as in
            asyncio, and has no ``set_priority`` unless the factory makes a `QTask`.
            """
            factory: Any = self.get_task_factory()
            if factory is not None and factory is getattr(asyncio, "eager_task_factory", None):
                if self.is_closed():
                    raise RuntimeError("Event loop is closed")
                kw: dict[str, Any] = {"eager_start": True}
                if name is not None:
                    kw["name"] = name
                if context is not None:
                    kw["context"] = context
                return self._aioq_task(coro, kw)
            if (
                factory is not None
                and sys.version_info >= (3, 12)
                and not isinstance(self, asyncio.BaseEventLoop)
            ):
                # uvloop (0.21+) hands every factory asyncio 3.14's eager_start=, which
                # the factories of 3.12/3.13 (create_eager_task_factory's) refuse: call
                # it as this Python's asyncio does.
                if self.is_closed():
                    raise RuntimeError("Event loop is closed")
                if context is None:
                    made = factory(self, coro)
                else:
                    made = factory(self, coro, context=context)
                if name is not None:
                    made.set_name(name)
                return made  # type: ignore[no-any-return]
            if factory is not None:
                parent: Any = super().create_task
                # Pass context only when given: 3.10's BaseEventLoop.create_task has no
                # such parameter, and 3.11+ call a factory without it then (the legacy
                # form).
                if context is None:
                    return parent(coro, name=name)  # type: ignore[no-any-return]
                return parent(coro, name=name, context=context)  # type: ignore[no-any-return]
            return self._aioq_new_task(coro, name, context)

    def _aioq_task(self, coro: Any, kwargs: dict[str, Any]) -> QTask[Any]:
        """A `QTask` made with asyncio's own keywords (3.12+: ``eager_start`` too)."""
        task: Any = QTask(coro, loop=self, **kwargs)
        tb = getattr(task, "_source_traceback", None)
        if tb:
            del tb[-1]
        return task  # type: ignore[no-any-return]

    def _aioq_new_task(self, coro: Any, name: Any, context: Any) -> QTask[Any]:
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
            self._aioqloop_context._call_at_priority(task._aioq_priority, _run_handle, (handle,))
            return handle
        plain: Any = type(self).call_soon  # the class's, not the instance attribute
        return plain(self, callback, *args, context=context)  # type: ignore[no-any-return]

    def _aioq_priorities_in_use(self, delta: int) -> None:
        self._aioq_prio_tasks += delta
        if self._aioq_prio_tasks > 0:
            # On the instance only (see the module docstring): set through __dict__, as
            # it is taken back below, so checkers see no second type for call_soon.
            self.__dict__["call_soon"] = self._aioq_call_soon_prio
        else:
            self.__dict__.pop("call_soon", None)
