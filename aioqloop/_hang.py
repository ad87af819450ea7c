"""Explaining stuck tests: where tasks were created, what they await, when a loop is stuck.

Used by the pytest plugin (``aioqloop.pytest_plugin``) on the loops it makes; nothing here
runs on a loop that was not given it.

* **Task origins**: `record_origins` wraps one loop's ``create_task`` so each task
  remembers the first frame outside asyncio, aioqloop and the test runners that created
  it (what asyncio's debug mode keeps as ``_source_traceback``, one frame only, without
  the debug mode's other costs).
* **What a task awaits**: `describe_task` follows a task's coroutine down its ``await``
  chain (``cr_await``) to the future at the bottom, naming each frame on the way; on
  Python 3.14 it uses asyncio's own call graph (``asyncio.format_call_graph``).
* **A stuck virtual-clock loop** (QEMU's qtest with nothing left to step): the
  `VirtualClock` calls its ``_on_stuck`` hook when the loop would jump but has no
  deadline to jump to, nothing is ready, no fd other than the loop's own is watched, no
  executor call is out, and nothing wakes its poll within a grace period (other threads'
  ``call_soon_threadsafe``, bottom halves, `advance`).  `foreign_fds` is the fd part.
* **No progress on a real clock**: `ProgressWatch`, a loop timer that samples the tasks'
  await points and the context's dispatch count, and calls back when neither moved for
  a given number of seconds.
"""

from __future__ import annotations

import asyncio
import os
import sys
import types
import weakref
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ("ProgressWatch", "describe_task", "foreign_fds", "hang_report", "origin",
           "record_origins", "roots", "runner_task")

_ORIGIN = "_aioq_origin"

# Frames in these directories are machinery, not the code that asked for a task.
_SKIP_DIRS = tuple(
    os.path.dirname(p) + os.sep
    for p in (asyncio.__file__, __file__)
)
_SKIP_PACKAGES = ("anyio", "pytest_asyncio", "_pytest", "pytest", "pluggy", "uvloop")


_skip_cache: dict[str, bool] = {}


def _skipped(filename: str) -> bool:
    known = _skip_cache.get(filename)
    if known is not None:
        return known
    parts = filename.replace("\\", "/").split("/")
    skip = (filename.startswith(("<frozen", *_SKIP_DIRS))  # runpy's frames too
            or any(p in _SKIP_PACKAGES for p in parts[-4:-1]))
    if len(_skip_cache) < 4096:  # bounded: exec'd code has made-up file names
        _skip_cache[filename] = skip
    return skip


def _caller(start: types.FrameType | None) -> str | None:
    frame = start
    while frame is not None:
        code = frame.f_code
        if not _skipped(code.co_filename):
            return f"{code.co_filename}:{frame.f_lineno} in {code.co_name}"
        frame = frame.f_back
    return None


def runner_task(task: asyncio.Task[Any]) -> bool:
    """Is ``task`` a test runner's own (anyio's runner task, pytest-asyncio's), whose
    coroutine is not the user's code?"""
    code = getattr(task.get_coro(), "cr_code", None)
    if code is None:
        return False
    parts = code.co_filename.replace("\\", "/").split("/")[-4:-1]
    if "pytest_asyncio" in parts or "_pytest" in parts:
        return True
    return "anyio" in parts and code.co_name == "_run_tests_and_fixtures"


def record_origins(loop: asyncio.AbstractEventLoop) -> None:
    """Make ``loop`` remember where each task it creates was created (see `origin`).

    Installed on the loop instance (``asyncio.create_task``, task groups and
    ``loop.create_task`` all go through it); idempotent.
    """
    if _ORIGIN in vars(loop):
        return
    create_task = loop.create_task  # the class's bound method

    def create_task_recorded(coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        task = create_task(coro, **kwargs)
        where = _caller(sys._getframe(1))
        if where is not None:
            try:
                setattr(task, _ORIGIN, where)
            except AttributeError:  # a task factory's class without a __dict__
                pass
        return task

    create_task_recorded.__doc__ = create_task.__doc__
    loop.create_task = create_task_recorded  # type: ignore[method-assign]
    vars(loop)[_ORIGIN] = True


def origin(task: asyncio.Future[Any]) -> str | None:
    """``"file:line in function"`` where ``task`` was created, if its loop recorded it."""
    where = getattr(task, _ORIGIN, None)
    return where if isinstance(where, str) else None


def _await_chain(task: asyncio.Task[Any]) -> tuple[list[str], Any]:
    """The frames a task is suspended in (outermost first) and the object at the bottom."""
    frames: list[str] = []
    obj: Any = task.get_coro()
    for _ in range(200):  # a chain is finite; a bound keeps a broken one from looping
        frame = getattr(obj, "cr_frame", None) or getattr(obj, "gi_frame", None) \
            or getattr(obj, "ag_frame", None)
        if frame is not None:
            code = frame.f_code
            frames.append(f"{code.co_filename}:{frame.f_lineno} in {code.co_name}")
        nxt = (getattr(obj, "cr_await", None) or getattr(obj, "gi_yieldfrom", None)
               or getattr(obj, "ag_await", None))
        if nxt is None:
            break
        obj = nxt
    else:
        obj = None
    if obj is task.get_coro() or not isinstance(obj, asyncio.Future):
        obj = getattr(task, "_fut_waiter", None) or obj
    return frames, obj


def _awaited(task: asyncio.Task[Any]) -> asyncio.Future[Any] | None:
    fut = getattr(task, "_fut_waiter", None)
    if isinstance(fut, asyncio.Future):
        return fut
    _frames, obj = _await_chain(task)
    return obj if isinstance(obj, asyncio.Future) else None


def _name(task: asyncio.Future[Any]) -> str:
    if isinstance(task, asyncio.Task):
        coro = task.get_coro()
        qual = getattr(coro, "__qualname__", None) or type(coro).__name__
        return f"Task {task.get_name()!r} ({qual})"
    return repr(task)


def describe_task(task: asyncio.Task[Any]) -> str:
    """A few lines: the task, where it was created, and what it awaits, frame by frame."""
    lines = [_name(task)]
    where = origin(task)
    if where is not None:
        lines.append(f"  created at {where}")
    graph = getattr(asyncio, "format_call_graph", None)
    if graph is not None:  # Python 3.14+: asyncio's own call graph
        try:
            text = graph(task)
        except Exception:  # fall back to our own walk
            text = ""
        if text:
            lines.extend("  " + line for line in str(text).rstrip().splitlines())
            return "\n".join(lines)
    frames, bottom = _await_chain(task)
    if frames:
        lines.append("  suspended in:")
        lines.extend(f"    {f}" for f in frames)
    if isinstance(bottom, asyncio.Task):
        lines.append(f"  awaits {_name(bottom)}")
    elif isinstance(bottom, asyncio.Future):
        children = getattr(bottom, "_children", None)
        if children:
            lines.append("  awaits gather() of " + ", ".join(_name(c) for c in children))
        else:
            lines.append(f"  awaits {bottom!r}")
    elif bottom is not None and not frames:
        lines.append(f"  awaits {bottom!r}")
    return "\n".join(lines)


def roots(tasks: Iterable[asyncio.Task[Any]]) -> list[asyncio.Task[Any]]:
    """The tasks no other task of ``tasks`` awaits (directly or through gather())."""
    tasks = list(tasks)
    awaited: set[int] = set()
    for task in tasks:
        fut = _awaited(task)
        if fut is None:
            continue
        awaited.add(id(fut))
        for child in getattr(fut, "_children", None) or ():
            awaited.add(id(child))
    return [t for t in tasks if id(t) not in awaited]


def hang_report(loop: asyncio.AbstractEventLoop, why: str) -> str:
    """The text of a stuck loop's failure: ``why``, then each pending task."""
    pending = sorted((t for t in asyncio.all_tasks(loop) if not t.done()),
                     key=lambda t: t.get_name())
    lines = [why]
    if not pending:
        lines.append("no task is pending (a callback or a source waits on nothing that can "
                     "happen)")
    else:
        lines.append(f"{len(pending)} pending task(s):")
        for task in pending:
            lines.append(describe_task(task))
    return "\n".join(lines)


def foreign_fds(loop: Any) -> list[int]:
    """The fds ``loop`` (stock base) watches other than its own wake-up and epoll fds:
    asyncio's readers and writers and the context's fd sources.  A signal handler
    (``loop.add_signal_handler``) wakes the loop through its own self-pipe: it counts
    as a watched fd, reported as -1."""
    hook: Any = getattr(loop, "_selector", None)
    own = {getattr(hook, "_epfd", -1), getattr(hook, "_wake_fd", -1)}
    ssock = getattr(loop, "_ssock", None)
    if ssock is not None:
        own.add(ssock.fileno())
    found: set[int] = set()
    try:
        found.update(key.fd for key in hook.get_map().values())
    except (AttributeError, RuntimeError):
        pass
    ctx = getattr(loop, "_aioqloop_context", None)
    fds = getattr(ctx, "_fds", None)
    found.update(getattr(fds, "masks", None) or ())
    found.update(getattr(fds, "always", None) or ())
    found -= own
    if getattr(loop, "_signal_handlers", None):
        found.add(-1)
    return sorted(found)


def _identity(obj: Any) -> Any:
    """A key equal to another only for the same live object: a weak reference where the
    type has them, else the id.  An id alone is not enough: once a coroutine or future is
    freed its address is reused, often by the next one awaited at the same line (a task
    polling ``await asyncio.sleep(0.3)`` in a loop would look as if it never moved).  A
    weak reference to a dead object equals only itself, and holding it keeps nothing
    alive."""
    try:
        ref = weakref.ref(obj)
        hash(ref)  # now, while alive (a dead reference cannot hash); unhashable: the id
    except TypeError:
        return id(obj)
    return ref


def _fingerprint(loop: asyncio.AbstractEventLoop) -> tuple[Any, ...]:
    """What changes when a loop makes progress: each task's await point (each object of
    its await chain, by identity, and the line each frame is suspended at), and how many
    source dispatches its context made."""
    points = []
    for task in asyncio.all_tasks(loop):
        obj: Any = task.get_coro()
        here: list[tuple[Any, int]] = []
        for _ in range(200):
            frame = getattr(obj, "cr_frame", None) or getattr(obj, "gi_frame", None)
            here.append((_identity(obj), frame.f_lasti if frame is not None else -1))
            obj = getattr(obj, "cr_await", None) or getattr(obj, "gi_yieldfrom", None)
            if obj is None:
                break
        points.append((_identity(task), tuple(here)))
    ctx: Any = getattr(loop, "_aioqloop_context", None)
    dispatches = 0
    if ctx is not None:
        try:
            dispatches = ctx.statistics().iterations
        except Exception:  # statistics are optional here
            dispatches = 0
    return (frozenset(points), dispatches)


class ProgressWatch:
    """Calls ``on_stuck`` when ``loop`` makes no progress for ``seconds`` of loop time.

    A loop timer every quarter of ``seconds`` compares the loop's fingerprint (each
    task's await point, the context's dispatching iterations) with the last one; when it
    has not changed for ``seconds``, ``on_stuck()`` runs (in the loop thread) and the
    watch starts over.  Only time the loop spends waiting counts: a sample that comes
    late (the loop was not running, or a callback held it) starts the count again, since
    a loop that does not poll cannot be the one that hangs.  `stop` cancels the timer.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, seconds: float,
                 on_stuck: Callable[[], None]) -> None:
        self._loop = loop
        self.seconds = seconds
        self._on_stuck = on_stuck
        self._last: tuple[Any, ...] | None = None
        self._since = self._sampled = loop.time()
        self._handle: asyncio.TimerHandle | None = None
        self._schedule()

    def _schedule(self) -> None:
        if not self._loop.is_closed():
            self._handle = self._loop.call_later(self.seconds / 4, self._sample)

    def _sample(self) -> None:
        now = self._loop.time()
        mark = _fingerprint(self._loop)
        # Due a quarter of ``seconds`` after the last one; later than half means the
        # loop was not polling in between (run_until_complete returned and the test
        # went on without it, or a callback blocked): that time is not a hang.
        late = now - self._sampled > self.seconds / 2
        self._sampled = now
        if mark != self._last or late:
            self._last, self._since = mark, now
        elif now - self._since >= self.seconds:
            self._last, self._since = None, now
            self._on_stuck()
        self._schedule()

    def stop(self) -> None:
        """Cancel the watch's timer."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
