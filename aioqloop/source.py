"""`Source`: one event source of a `MainContext`, like GLib's ``GSource``.

A source is described by four hooks (``prepare``, ``check``, ``dispatch``, ``finalize``)
and by state the context can index without calling Python code: a priority, an absolute
ready time (like ``g_source_set_ready_time``), unix fds with the events wanted, and child
sources.  Built-in sources need no ``prepare``/``check`` at all: a timeout is a ready time,
an fd watch is an fd record, an idle is "ready time 0".  The context only calls the hooks
of subclasses that override them, which is what keeps an iteration O(ready).

Units: times are seconds on the owning loop's clock (``loop.time()``); ``-1`` means never.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from . import _engine, _registry
from ._checks import (
    FileLike as _FileLike,
)
from ._checks import (
    check_events,
    check_name,
    check_priority,
    check_when,
    fd_of,
)
from .constants import PRIORITY_DEFAULT, IOCondition
from .statistics import SourceStatistics

if TYPE_CHECKING:
    from .context import MainContext

__all__ = ("Source",)

# Kept under their old names for the modules that import them from here.
_fd_of = fd_of
_check_priority = check_priority

# IntFlag construction costs about a microsecond; a dispatch needs it on every fd event.
_CONDITIONS = tuple(IOCondition(bits) for bits in range(64))


if TYPE_CHECKING or _engine.core is None:  # the branch mypy sees
    _FdRecordBase = object
    _FD_SLOTS: tuple[str, ...] = ("events", "fd", "ident", "revents", "source")
else:
    # The compiled core reads and writes the tag's fields directly when it applies poll
    # results (aioqloop/_csrc/fdpoll.h): the same names, as C fields.
    _FdRecordBase = _engine.core.FdTagCore
    _FD_SLOTS = ()


class _FdRecord(_FdRecordBase):
    """One ``add_unix_fd`` registration; the opaque tag handed to the user."""

    __slots__ = _FD_SLOTS

    def __init__(
        self, source: Source, fd: int, events: IOCondition,
        ident: tuple[int, int] | None = None,
    ) -> None:
        self.source: Source = source
        self.fd: int = fd
        self.events: IOCondition = events
        self.revents: int = 0
        #: (device, inode) of the file when the watch was added: tells a reused fd number.
        self.ident: tuple[int, int] | None = ident

    def __repr__(self) -> str:
        return f"<fd tag fd={self.fd} events={self.events!r} revents={IOCondition(self.revents)!r}>"


#: The bits of `Source._core_flags`, as the compiled core defines them.
_CLASS_IDLE, _CLASS_SURVIVES, _CLASS_HOOKS = (
    (1, 2, 4) if _engine.core is None
    else (_engine.core.CLASS_IDLE, _engine.core.CLASS_SURVIVES, _engine.core.CLASS_HOOKS))


class _SourceState:
    """The per-source state of the pure-Python engine, as class defaults.

    Creating a source (100k timers) then costs a few attribute writes.  The compiled
    core replaces this base with C fields of the same names (`aioqloop._cengine`).
    Context bookkeeping is owned by MainContext; see context.py for the invariants.
    """

    _id = 0
    _context: MainContext | None = None
    _callback: Callable[..., Any] | None = None
    _args: tuple[Any, ...] = ()
    _can_recurse = False
    _destroyed = False
    _finalized = False
    _ready_time = -1.0
    _parent: Source | None = None
    _order: tuple[int, ...] = ()
    _ready = False
    _ready_by_time = False  # READY came from a passed ready time only
    _ready_by_child = False  # READY came from a ready child only
    _blocked = False
    _ready_while_blocked = False
    # In a dispatch batch, not dispatched yet (GLib's READY as the check left it).
    _latched = False
    _in_heap = False
    _heap_seq = 0
    _dispatching = 0
    _stats: SourceStatistics | None = None  # created at the first dispatch

    # A source without fds or children (nearly all) allocates no lists: these stay the
    # shared empty tuple until the first add (and a GC pass has two objects fewer).
    _fds: list[_FdRecord] | tuple[()] = ()
    _children: list[Source] | tuple[()] = ()
    _priority: int
    _name: str | None


if TYPE_CHECKING or _engine.core is None:  # noqa: SIM108 (the branch mypy sees)
    _SourceBase = _SourceState
else:
    _SourceBase = _engine.core.SourceCore


class Source(_SourceBase):
    """An event source, like GLib's ``GSource``: subclass it and override the hooks.

    ``priority`` follows GLib (lower is more urgent, ``PRIORITY_DEFAULT`` = 0).  A source
    is attached to one `MainContext` with `attach`, dispatched when ready, and destroyed
    when its callback returns ``SOURCE_REMOVE`` or `destroy` is called; a destroyed source
    cannot be attached again.  Times are seconds on the context's loop clock.

    Thread safety: `attach`, `destroy` and `set_ready_time` may be called from any thread
    (like GLib); the rest belongs to the thread that runs the context.
    """

    # Built-in idles are "always ready" without a prepare hook (see context.py).
    _idle = False
    # Whether the class overrides prepare/check: computed once per class, so the context
    # calls the hooks of only those sources (see __init_subclass__).
    _has_prepare = False
    _has_check = False
    # An internal carrier (bottom halves, task steps) stays attached when a callback it
    # runs lets KeyboardInterrupt/SystemExit out; it keeps the rest of its queue.
    _survives_escape = False
    # The flags above as one number, which the compiled core reads once per class
    # (aioqloop/_csrc/source.h); its bits are the core's (unused by the pure engine).
    _core_flags = 0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._has_prepare = cls.prepare is not Source.prepare
        cls._has_check = cls.check is not Source.check
        cls._core_flags = ((_CLASS_IDLE if cls._idle else 0)
                           | (_CLASS_SURVIVES if cls._survives_escape else 0)
                           | (_CLASS_HOOKS if cls._has_prepare or cls._has_check else 0))

    def __init__(self, *, priority: int = PRIORITY_DEFAULT, name: str | None = None) -> None:
        if name is not None:
            check_name(name)
        if type(priority) is not int or not -0x80000000 <= priority <= 0x7FFFFFFF:
            priority = check_priority(priority)
        self._priority = priority
        self._name = name

    # ----------------------------------------------------------------- hooks
    def prepare(self) -> tuple[bool, float | None]:
        """Called before the poll: return (ready now?, longest wait in seconds or None).

        Like ``GSourceFuncs.prepare``; only called for subclasses that override it.
        """
        return (False, None)

    def check(self) -> bool:
        """Called after the poll: return True if the source is ready (``GSourceFuncs.check``)."""
        return False

    def dispatch(self, callback: Callable[..., Any] | None, args: tuple[Any, ...]) -> bool:
        """Run the source's work; return True to keep it (``SOURCE_CONTINUE``).

        The default calls ``callback(*args)`` and returns its truth.
        """
        if callback is None:
            warnings.warn(
                f"{self!r} was dispatched with no callback; it is destroyed (call "
                "set_callback() before attaching)",
                RuntimeWarning,
                stacklevel=2,
            )
            return False
        return bool(callback(*args))

    def finalize(self) -> None:
        """Called once after the source is destroyed and no dispatch of it is running."""

    def _attached(self, context: MainContext) -> None:
        """Internal hook: the source is being inserted into ``context`` (loop thread)."""

    # ------------------------------------------------------------ properties
    @property
    def priority(self) -> int:
        """The GLib priority (lower is more urgent); settable while attached."""
        return self._priority

    @priority.setter
    def priority(self, priority: int) -> None:
        priority = check_priority(priority)
        self._check_not_destroyed("setting priority on")
        if self._parent is not None:
            raise RuntimeError("a child source follows its parent's priority; set the parent's")
        self._set_priority_tree(priority)

    def _set_priority_tree(self, priority: int) -> None:
        ctx = self._context
        if ctx is not None and not self._destroyed:
            ctx._set.change_priority(self, priority)
        else:
            self._priority = priority
        # g_source_set_priority re-adds the children latest added first, each just
        # before this source (gmain.c prepends to a source's list of children).
        for child in self._children[::-1]:
            child._set_priority_tree(priority)

    @property
    def name(self) -> str | None:
        """A name for reprs, statistics and warnings (``g_source_set_name``)."""
        return self._name

    @name.setter
    def name(self, name: str | None) -> None:
        self._name = check_name(name)

    @property
    def id(self) -> int:
        """The id in its context (> 0), or 0 before `attach`."""
        return self._id

    @property
    def context(self) -> MainContext | None:
        """The context it is attached to (still set after `destroy`, like GLib)."""
        return self._context

    @property
    def can_recurse(self) -> bool:
        """If False (the default) the source is blocked while it dispatches."""
        return self._can_recurse

    @can_recurse.setter
    def can_recurse(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise TypeError(f"can_recurse must be a bool, not {type(value).__name__}")
        self._can_recurse = value

    @property
    def is_destroyed(self) -> bool:
        """True after `destroy` or after the callback returned ``SOURCE_REMOVE``."""
        return self._destroyed

    @property
    def ready_time(self) -> float:
        """Absolute ``loop.time()`` seconds at which the source becomes ready; -1 = never."""
        return self._ready_time

    # --------------------------------------------------------------- methods
    def set_callback(self, callback: Callable[..., Any] | None, *args: Any) -> None:
        """Set the callback passed to `dispatch` with ``args`` (``g_source_set_callback``)."""
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable, not {type(callback).__name__}")
        self._check_not_destroyed("set_callback")
        self._callback = callback
        self._args = args

    def attach(self, context: MainContext | None = None) -> int:
        """Attach to ``context`` (default: `MainContext.default`) and return the id (> 0).

        Raises `RuntimeError` if the source is attached already, destroyed, or a child.
        """
        if context is None:
            context = _registry.default_context()
        elif not _registry.is_context(context):
            raise TypeError(f"context must be a MainContext, not {type(context).__name__}")
        if self._destroyed:
            raise RuntimeError(f"{self!r} is destroyed; a destroyed source cannot be attached")
        if self._context is not None:
            raise RuntimeError(f"{self!r} is already attached to a context")
        if self._parent is not None:
            raise RuntimeError("a child source is attached through its parent")
        sid = context._attach(self)
        if self._children:
            context._set.give_ids(self)  # GLib attaches the children with their parent
        return sid

    def destroy(self) -> None:
        """Remove the source from its context; idempotent (``g_source_destroy``).

        Its fds stop being watched and its children are destroyed too.  A dispatch of it
        already running finishes; `finalize` runs after that.
        """
        if self._destroyed:
            return
        self._destroyed = True
        ctx = self._context
        if ctx is not None:
            ctx._set.destroy(self)
        else:
            for child in list(self._children):
                child.destroy()
            self._maybe_finalize()

    def _maybe_finalize(self) -> None:
        if self._finalized or self._dispatching:
            return
        self._finalized = True
        self._callback = None
        self._args = ()
        ctx = self._context
        try:
            self.finalize()
        except (Exception, GeneratorExit) as exc:
            if ctx is not None:
                ctx._report(exc, self, "finalize")
            else:
                raise

    def set_ready_time(self, when: float) -> None:
        """Make the source ready at ``when`` (absolute ``loop.time()`` seconds).

        Like ``g_source_set_ready_time``: ``-1`` means never, 0 or a past time means now.
        Dispatch does not reset it.  Callable from any thread; wakes the loop.
        """
        if type(when) is not float or when != when:  # noqa: PLR0124 (NaN test)
            when = check_when(when)
        if self._destroyed:
            self._check_not_destroyed("set_ready_time")
        if when == self._ready_time:
            return
        ctx = self._context
        if ctx is not None:
            ctx._check_loop_open()  # before the change: a refused call changes nothing
        self._ready_time = when
        if ctx is not None:
            ctx._set.ready_time_changed(self)

    def add_unix_fd(
        self, fd_or_fileobj: int | _FileLike, events: IOCondition | int
    ) -> _FdRecord:
        """Watch an fd (or an object with ``fileno()``) for ``events``; return a tag.

        ``events`` are poll(2) bits (`IOCondition`).

        Like ``g_source_add_unix_fd``: after the poll, `query_unix_fd` gives the revents,
        and a source with revents is ready even if its `check` says no.  Raises `OSError`
        if the fd is not open.
        """
        fdnum = fd_of(fd_or_fileobj)
        cond = check_events(events)
        self._check_not_destroyed("add_unix_fd")
        if self._context is not None:
            self._context._check_loop_open()
        st = os.fstat(fdnum)  # EBADF here, at the call, not later inside the loop
        record = _FdRecord(self, fdnum, cond, (st.st_dev, st.st_ino))
        fds = self._fds
        if not isinstance(fds, list):
            fds = self._fds = []
        fds.append(record)
        if self._context is not None:
            self._context._set.fd_add(record)
        return record

    def modify_unix_fd(self, tag: _FdRecord, events: IOCondition | int) -> None:
        """Change the events watched for ``tag`` (``g_source_modify_unix_fd``)."""
        record = self._record(tag)
        record.events = check_events(events)
        if self._context is not None and not self._destroyed:
            self._context._set.fd_changed(record.fd)

    def remove_unix_fd(self, tag: _FdRecord) -> None:
        """Stop watching the fd of ``tag`` (``g_source_remove_unix_fd``)."""
        record = self._record(tag)
        cast("list[_FdRecord]", self._fds).remove(record)  # _record found it: a list
        if self._context is not None and not self._destroyed:
            self._context._set.fd_remove(record)

    def query_unix_fd(self, tag: _FdRecord) -> IOCondition:
        """The events that were ready for ``tag`` at the last poll (``g_source_query_unix_fd``).

        They stay readable until the end of the source's dispatch.
        """
        return _CONDITIONS[self._record(tag).revents & 0x3F]

    def _record(self, tag: object) -> _FdRecord:
        if not isinstance(tag, _FdRecord):
            raise TypeError(f"expected a tag from add_unix_fd(), not {type(tag).__name__}")
        if tag.source is not self or tag not in self._fds:
            raise ValueError(f"{tag!r} is not an fd tag of {self!r}")
        return tag

    def add_child_source(self, child: Source) -> None:
        """Add ``child`` (``g_source_add_child_source``).

        The child takes this source's priority, is dispatched before it, makes it ready
        when ready itself, and is destroyed with it.
        """
        if not isinstance(child, Source):
            raise TypeError(f"child must be a Source, not {type(child).__name__}")
        self._check_not_destroyed("add_child_source")
        if child._destroyed:
            raise RuntimeError(f"{child!r} is destroyed")
        if child._context is not None or child._parent is not None:
            raise RuntimeError(f"{child!r} is already attached or has a parent")
        if child is self or self._is_descendant_of(child):
            raise RuntimeError("a source cannot be its own ancestor")
        if self._context is not None:
            self._context._check_loop_open()
        child._parent = self
        child._priority = self._priority
        children = self._children
        if not isinstance(children, list):
            children = self._children = []
        children.append(child)
        if self._context is not None:
            self._context._set.attach_child(self, child)

    def _is_descendant_of(self, other: Source) -> bool:
        node = self._parent
        while node is not None:
            if node is other:
                return True
            node = node._parent
        return False

    def remove_child_source(self, child: Source) -> None:
        """Detach and destroy ``child`` (``g_source_remove_child_source``)."""
        if child not in self._children:
            raise ValueError(f"{child!r} is not a child of {self!r}")
        cast("list[Source]", self._children).remove(child)  # a child: in a list
        child.destroy()
        child._parent = None
        ctx = self._context
        if child._blocked and ctx is not None:
            # Blocked with this (dispatching) parent: the parent's unblock walks its
            # children and no longer finds this one, so unblock it now or the context's
            # blocked list keeps it for good.
            ctx._dispatcher.unblock(child)

    def time(self) -> float:
        """The context's cached time for this iteration (``g_source_get_time``), in seconds."""
        ctx = self._context
        if ctx is None:
            raise RuntimeError(f"{self!r} is not attached to a context")
        return ctx._time()

    # --------------------------------------------------------------- helpers
    def _check_not_destroyed(self, what: str) -> None:
        if self._destroyed:
            raise RuntimeError(f"{what}() on destroyed {self!r}")

    def __repr__(self) -> str:
        parts = [type(self).__name__]
        if self._name:
            parts.append(repr(self._name))
        if self._id:
            parts.append(f"id={self._id}")
        parts.append(f"priority={self._priority}")
        if self._destroyed:
            parts.append("destroyed")
        elif self._ready:
            parts.append("ready")
        if self._ready_time != -1:
            parts.append(f"ready_time={self._ready_time:.6f}")
        return f"<{' '.join(parts)}>"


if _engine.core is not None:
    # The core runs a source whose class keeps this dispatch without a Python frame.
    _engine.core.configure(default_dispatch=Source.dispatch, conditions=_CONDITIONS,
                           default_attached=Source._attached, default_finalize=Source.finalize,
                           default_maybe_finalize=Source._maybe_finalize,
                           default_destroy=Source.destroy,
                           default_set_ready_time=Source.set_ready_time)
