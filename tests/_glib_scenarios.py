"""Main-loop scenarios written once against PyGObject's ``GLib`` API.

Each ``scenario_*`` function takes a GLib-like module (``gi.repository.GLib`` or
``aioqloop.glib``), runs a small program and returns what it observed: dispatch order,
counts, return values, depths.  `tests/test_glib_differential.py` runs every scenario
on both and compares; `tests/test_glib.py` checks aioqloop against `EXPECTED`, the
results recorded from real GLib 2.74 / PyGObject 3.42.  Nothing here depends on timing
beyond order: a scenario that waits compares what happened, never how long it took.

Conventions that keep the scenarios valid on PyGObject 3.42: ``set_callback`` always
gets exactly one user-data argument (3.42 took one, newer versions take varargs);
custom sources define both ``prepare`` and ``check`` (3.42 calls them unconditionally);
Python source objects stay referenced until destroyed (PyGObject destroys a custom source
whose wrapper is collected); every scenario leaves the default context empty.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

Scenario = Callable[[Any], Any]
SCENARIOS: dict[str, Scenario] = {}


def scenario(fn: Scenario) -> Scenario:
    SCENARIOS[fn.__name__.removeprefix("scenario_")] = fn
    return fn


def _base(GLib: Any) -> Any:
    class Base(GLib.Source):
        def prepare(self) -> tuple[bool, int]:
            return (False, -1)

        def check(self) -> bool:
            return False

    return Base


def _tagged(GLib: Any, log: list[Any]) -> Any:
    """A custom source class whose sources log their tag on each dispatch and stay."""
    Base: Any = _base(GLib)

    class Tagged(Base):
        def __init__(self, tag: str) -> None:
            super().__init__()
            self.tag = tag

        def dispatch(self, callback: Any, args: Any) -> Any:
            log.append(self.tag)
            return True

    return Tagged


def _iterate(ctx: Any, n: int) -> list[bool]:
    return [bool(ctx.iteration(False)) for _ in range(n)]


@contextmanager
def _captured_reports() -> Iterator[list[str]]:
    """Collect callback exceptions however they are reported (excepthook or logging)."""
    seen: list[str] = []
    old_hook = sys.excepthook
    sys.excepthook = lambda t, v, tb: seen.append(f"{t.__name__}: {v}")

    class _Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            exc = record.exc_info[1] if record.exc_info else None
            seen.append(f"{type(exc).__name__}: {exc}" if exc else record.getMessage())

    log = logging.getLogger("aioqloop")
    handler = _Handler()
    old_propagate = log.propagate
    log.addHandler(handler)
    log.propagate = False
    try:
        yield seen
    finally:
        sys.excepthook = old_hook
        log.removeHandler(handler)
        log.propagate = old_propagate


# --------------------------------------------------------------------- ordering
@scenario
def scenario_idle_order(GLib: Any) -> Any:
    """Idles of one priority run round-robin in attach order; False removes them."""
    ctx = GLib.MainContext()
    log: list[str] = []

    def cb(name: str) -> bool:
        log.append(name)
        return log.count(name) < (3 if name != "b" else 2)

    srcs = []
    for name in "abc":
        s = GLib.Idle()
        s.set_callback(cb, name)
        s.attach(ctx)
        srcs.append(s)
    rets = _iterate(ctx, 5)
    destroyed = [s.is_destroyed() for s in srcs]
    return log, rets, destroyed


@scenario
def scenario_priorities(GLib: Any) -> Any:
    """Only the most urgent ready priority dispatches (glib mainloop/priorities)."""
    ctx = GLib.MainContext()
    log: list[str] = []
    a = GLib.Idle()
    a.priority = 1
    a.set_callback(lambda n: log.append(n) or True, "a")
    a.attach(ctx)
    b = GLib.Idle()
    b.priority = 0
    b.set_callback(lambda n: log.append(n) or True, "b")
    b.attach(ctx)
    rets = _iterate(ctx, 3)
    b.destroy()
    rets += _iterate(ctx, 2)
    a.destroy()
    rets.append(ctx.pending())
    rets.append(ctx.iteration(False))
    return log, rets


@scenario
def scenario_timeout_starves_idle(GLib: Any) -> Any:
    """A ready DEFAULT timeout starves idles; HIGH_IDLE runs before DEFAULT_IDLE."""
    ctx = GLib.MainContext()
    log: list[str] = []

    def cb(name: str) -> bool:
        log.append(name)
        return name == "t" and log.count("t") < 3

    t = GLib.Timeout(0)
    t.set_callback(cb, "t")
    i = GLib.Idle()
    i.set_callback(cb, "i")
    h = GLib.Idle(GLib.PRIORITY_HIGH_IDLE)
    h.set_callback(cb, "h")
    for s in (i, h, t):
        s.attach(ctx)
    rets = _iterate(ctx, 6)
    return log, rets


@scenario
def scenario_timeout_order(GLib: Any) -> Any:
    """Timeouts on the default context fire by expiry; MainLoop.run from sync code."""
    loop = GLib.MainLoop()
    log: list[Any] = []

    def cb(tag: str) -> bool:
        log.append((tag, GLib.main_depth(), loop.is_running()))
        if len(log) == 3:
            loop.quit()
        return False

    ids = [GLib.timeout_add(100, cb, "a"), GLib.timeout_add(0, cb, "b")]
    ids.append(GLib.timeout_add(50, cb, "c"))
    guard = GLib.timeout_add(5000, lambda _: loop.quit(), "guard")
    before = loop.is_running()
    loop.run()
    removed = GLib.source_remove(guard)
    ctx = GLib.MainContext.default()
    gone = [ctx.find_source_by_id(i) is None for i in ids]
    return log, before, loop.is_running(), removed, len(set(ids)), gone


@scenario
def scenario_user_data_and_priority(GLib: Any) -> Any:
    """``*_add`` varargs user data, keyword priority, dispatch order by priority."""
    loop = GLib.MainLoop()
    ctx = GLib.MainContext.default()
    log: list[Any] = []

    def cb(*args: Any) -> None:
        log.append(args)

    ids = [
        GLib.idle_add(cb),
        GLib.idle_add(cb, 1, "two"),
        GLib.timeout_add(0, cb, 3),
        GLib.timeout_add(0, cb, priority=GLib.PRIORITY_HIGH),
        GLib.idle_add(cb, "high-idle", priority=GLib.PRIORITY_HIGH_IDLE),
    ]
    prios = [ctx.find_source_by_id(i).priority for i in ids]
    GLib.idle_add(lambda: loop.quit(), priority=GLib.PRIORITY_LOW)
    loop.run()
    return log, prios, [ctx.find_source_by_id(i) is None for i in ids]


# ------------------------------------------------------------- return values
@scenario
def scenario_source_remove(GLib: Any) -> Any:
    """source_remove: True once, then False (GLib also complains about unknown ids)."""
    ctx = GLib.MainContext.default()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sid = GLib.idle_add(lambda: True)
        found = ctx.find_source_by_id(sid) is not None
        r1 = GLib.source_remove(sid)
        r2 = GLib.source_remove(sid)
        r3 = GLib.source_remove(2**32 - 1)
        r4 = GLib.source_remove(2**31 - 1)
        tid = GLib.timeout_add(0, lambda: False)
        while ctx.iteration(False):
            pass
        r5 = GLib.source_remove(tid)
    return sid > 0, found, r1, r2, r3, r4, r5, ctx.find_source_by_id(sid) is None


@scenario
def scenario_constants_and_properties(GLib: Any) -> Any:
    """Constants, Idle/Timeout constructor priorities (PyGObject quirks included)."""
    consts = [
        GLib.PRIORITY_HIGH,
        GLib.PRIORITY_DEFAULT,
        GLib.PRIORITY_HIGH_IDLE,
        GLib.PRIORITY_DEFAULT_IDLE,
        GLib.PRIORITY_LOW,
        GLib.SOURCE_CONTINUE,
        GLib.SOURCE_REMOVE,
        int(GLib.IOCondition.IN),
        int(GLib.IOCondition.OUT),
        int(GLib.IOCondition.PRI),
        int(GLib.IOCondition.ERR),
        int(GLib.IOCondition.HUP),
        int(GLib.IOCondition.NVAL),
        int(GLib.IO_IN | GLib.IO_HUP),
    ]
    s = GLib.Idle()
    s.priority = GLib.PRIORITY_HIGH
    src = GLib.Source()
    default_recurse = src.can_recurse
    src.can_recurse = True
    props = [
        GLib.Idle().priority,
        GLib.Idle(GLib.PRIORITY_DEFAULT).priority,  # PyGObject leaves DEFAULT_IDLE here
        GLib.Idle(GLib.PRIORITY_LOW).priority,
        GLib.Idle(priority=GLib.PRIORITY_HIGH).priority,
        GLib.Timeout(1).priority,
        GLib.Timeout(1, GLib.PRIORITY_LOW).priority,
        GLib.Source().priority,
        s.priority,
        default_recurse,
        src.can_recurse,
        src.get_id(),
        src.get_context() is None,
        src.get_ready_time(),
        src.is_destroyed(),
    ]
    src.destroy()
    props.append(src.is_destroyed())
    return consts, props


# ----------------------------------------------------------------- custom hooks
@scenario
def scenario_custom_hooks(GLib: Any) -> Any:
    """prepare/check/dispatch call sequence; check is skipped when prepare said ready."""
    ctx = GLib.MainContext()
    log: list[Any] = []

    class S(GLib.Source):
        def __init__(self) -> None:
            super().__init__()
            self.n = 0

        def prepare(self) -> tuple[bool, int]:
            self.n += 1
            log.append(("prepare", self.n))
            return (self.n >= 3, -1)

        def check(self) -> bool:
            log.append(("check", self.n))
            return self.n == 2

        def dispatch(self, callback: Any, args: Any) -> Any:
            log.append(("dispatch", self.n, callback(*args)))
            return self.n < 3

    s = S()
    s.set_callback(lambda x: x * 2, 21)
    sid = s.attach(ctx)
    rets = _iterate(ctx, 4)
    return log, rets, s.is_destroyed(), sid == s.get_id(), isinstance(s, GLib.Source)


@scenario
def scenario_prepare_timeout(GLib: Any) -> Any:
    """A prepare timeout (ms) bounds the poll, so a check-only source gets its turn:
    the third check (after two 10 ms polls) says ready, long before the 5 s guard.
    Counted, not timed, so that a loaded machine's late wake-ups change nothing."""
    ctx = GLib.MainContext()
    loop = GLib.MainLoop(ctx)
    log: list[str] = []

    class CustomTimeout(GLib.Source):
        def __init__(self) -> None:
            super().__init__()
            self.checks = 0

        def prepare(self) -> tuple[bool, int]:
            return (False, 10)

        def check(self) -> bool:
            self.checks += 1
            return self.checks >= 3

        def dispatch(self, callback: Any, args: Any) -> Any:
            log.append("dispatched")
            loop.quit()
            return False

    src = CustomTimeout()
    src.attach(ctx)
    guard = GLib.Timeout(5000)
    guard.set_callback(lambda _: log.append("guard") or loop.quit(), None)
    guard.attach(ctx)
    loop.run()
    guard.destroy()
    return log, src.checks, src.is_destroyed()


@scenario
def scenario_no_callback(GLib: Any) -> Any:
    """dispatch gets (None, None) without set_callback; a falsy return removes."""
    ctx = GLib.MainContext()
    seen: list[Any] = []
    Base: Any = _base(GLib)

    class S(Base):
        def prepare(self) -> tuple[bool, int]:
            return (True, -1)

        def dispatch(self, callback: Any, args: Any) -> Any:
            seen.append((callback, args))
            return 0

    s = S()
    s.attach(ctx)
    rets = _iterate(ctx, 2)
    return seen, rets, s.is_destroyed()


@scenario
def scenario_ready_time(GLib: Any) -> Any:
    """set_ready_time (µs): 0 fires now and is not reset by dispatch; -1 never."""
    ctx = GLib.MainContext()
    Base: Any = _base(GLib)
    log: list[Any] = []

    class R(Base):
        def dispatch(self, callback: Any, args: Any) -> Any:
            if self is past:
                log.append(("past", self.get_ready_time() < GLib.get_monotonic_time()))
                return False
            log.append(("r", self.get_ready_time()))
            if len(log) == 3:
                self.set_ready_time(-1)
            return True

    r = R()
    initial = r.get_ready_time()
    r.attach(ctx)
    r.set_ready_time(0)
    after_set = r.get_ready_time()
    far = R()
    far.attach(ctx)
    far_t = GLib.get_monotonic_time() + 86_400 * 1_000_000
    far.set_ready_time(far_t)
    past = R()
    past.attach(ctx)
    past.set_ready_time(GLib.get_monotonic_time() - 1_000_000)
    rets = _iterate(ctx, 4)
    result = (initial, after_set, log, rets, far.get_ready_time() == far_t)
    for s in (r, far, past):
        s.destroy()
    return result


@scenario
def scenario_source_time(GLib: Any) -> Any:
    """get_time (µs) is cached: equal within an iteration, larger in the next one."""
    ctx = GLib.MainContext()
    Base: Any = _base(GLib)
    times: list[tuple[str, int]] = []

    class T(Base):
        def __init__(self, tag: str) -> None:
            super().__init__()
            self.tag = tag

        def prepare(self) -> tuple[bool, int]:
            return (True, -1)

        def dispatch(self, callback: Any, args: Any) -> Any:
            first = self.get_time()
            # Let the clock move on, then look again: the cached time must not.
            target = GLib.get_monotonic_time() + 2_000
            while GLib.get_monotonic_time() < target:
                pass
            times.append((self.tag, first))
            return self.get_time() == first

    a, b = T("a"), T("b")
    a.attach(ctx)
    b.attach(ctx)
    rets = _iterate(ctx, 2)
    now = GLib.get_monotonic_time()
    a.destroy()
    b.destroy()
    (ta1, t1), (tb1, t2), (ta2, t3), _ = times
    close = abs(now - t3) < 5_000_000
    return [ta1, tb1, ta2], rets, t1 == t2, t3 > t1, close, a.is_destroyed()


@scenario
def scenario_child_sources(GLib: Any) -> Any:
    """Children take the parent's priority, dispatch first, ready it, die with it."""
    ctx = GLib.MainContext()
    log: list[str] = []

    S: Any = _tagged(GLib, log)

    parent = S("parent")
    parent.priority = 5
    c1 = S("c1")
    c1.set_ready_time(0)
    parent.add_child_source(c1)
    prio_child = c1.priority
    parent.attach(ctx)
    parent.priority = 7
    prio_after = c1.priority
    rets = _iterate(ctx, 2)
    c2 = S("c2")
    parent.add_child_source(c2)
    c2_ctx = c2.get_context() == ctx
    idle = GLib.Idle(GLib.PRIORITY_HIGH)
    idle.set_callback(lambda t: log.append(t) or False, "idle")
    idle.attach(ctx)
    rets += _iterate(ctx, 2)
    parent.destroy()
    destroyed = [c1.is_destroyed(), c2.is_destroyed()]
    rets += _iterate(ctx, 1)
    return log, prio_child, prio_after, rets, c2_ctx, destroyed


@scenario
def scenario_fd_pipe(GLib: Any) -> Any:
    """add_unix_fd + query_unix_fd on a pipe; HUP reported without asking for it."""
    r, w = os.pipe()
    ctx = GLib.MainContext()
    log: list[Any] = []

    class F(GLib.Source):
        def __init__(self) -> None:
            super().__init__()
            self.tag = self.add_unix_fd(r, GLib.IOCondition.IN)

        def prepare(self) -> tuple[bool, int]:
            return (False, -1)

        def check(self) -> bool:
            return False

        def dispatch(self, callback: Any, args: Any) -> Any:
            log.append((int(self.query_unix_fd(self.tag)), os.read(r, 100)))
            return True

    f = F()
    f.attach(ctx)
    try:
        rets = _iterate(ctx, 1)
        os.write(w, b"ab")
        rets += _iterate(ctx, 2)
        os.close(w)
        rets += _iterate(ctx, 1)
    finally:
        f.destroy()
        os.close(r)
    return log, rets


@scenario
def scenario_unix_fd_add_full(GLib: Any) -> Any:
    """unix_fd_add_full(priority, fd, cond, fn, *data) on the default context."""
    r, w = os.pipe()
    ctx = GLib.MainContext.default()
    log: list[Any] = []

    def cb(fd: int, cond: Any, *data: Any) -> bool:
        log.append((fd == r, int(cond), os.read(fd, 10), data))
        return len(log) < 2

    try:
        sid = GLib.unix_fd_add_full(GLib.PRIORITY_DEFAULT, r, GLib.IOCondition.IN, cb, "d", 2)
        prio = ctx.find_source_by_id(sid).priority
        rets = [ctx.iteration(False)]
        os.write(w, b"x")
        rets.append(ctx.iteration(False))
        os.write(w, b"yz")
        rets.append(ctx.iteration(False))
        os.write(w, b"!")
        rets.append(ctx.iteration(False))
        gone = ctx.find_source_by_id(sid) is None
    finally:
        os.close(r)
        os.close(w)
    return log, prio, rets, gone


# ------------------------------------------------------------- nesting, threads
@scenario
def scenario_nested_loop(GLib: Any) -> Any:
    """MainLoop.run from a callback: depth 2 inside, 1 after, 0 at top level."""
    ctx = GLib.MainContext()
    loop = GLib.MainLoop(ctx)
    log: list[Any] = []

    def inner(tag: str) -> bool:
        log.append(("inner", GLib.main_depth(), loop.is_running()))
        loop.quit()
        return False

    def outer(tag: str) -> bool:
        log.append(("outer", GLib.main_depth(), loop.is_running()))
        s = GLib.Idle()
        s.set_callback(inner, "x")
        s.attach(ctx)
        loop.run()
        log.append(("outer-after", GLib.main_depth(), loop.is_running()))
        return False

    a = GLib.Idle()
    a.set_callback(outer, "y")
    a.attach(ctx)
    ret = ctx.iteration(False)
    log.append(("top", GLib.main_depth()))
    return log, ret, loop.get_context() == ctx


@scenario
def scenario_current_source(GLib: Any) -> Any:
    """main_current_source is the dispatching source (by id), None outside."""
    ctx = GLib.MainContext()
    Base: Any = _base(GLib)
    log: list[Any] = [("top", GLib.main_current_source() is None)]
    ids: dict[str, int] = {}

    def cb(tag: str) -> bool:
        cur = GLib.main_current_source()
        log.append((tag, cur is not None and cur.get_id() == ids[tag], GLib.main_depth()))
        return False

    for tag in "ab":
        s = GLib.Idle()
        s.set_callback(cb, tag)
        ids[tag] = s.attach(ctx)

    class S(Base):
        def prepare(self) -> tuple[bool, int]:
            return (True, -1)

        def dispatch(self, callback: Any, args: Any) -> Any:
            cur = GLib.main_current_source()
            log.append(("custom", cur.get_id() == self.get_id(), GLib.main_depth()))
            return False

    custom = S()
    custom.attach(ctx)
    rets = _iterate(ctx, 3)
    log.append(("end", GLib.main_current_source() is None))
    return log, rets


@scenario
def scenario_recursion(GLib: Any) -> Any:
    """A nested iteration re-runs a source only if can_recurse (counts 1 and 2)."""
    counts = []
    for recurse in (False, True):
        ctx = GLib.MainContext()
        count = [0]

        def cb(tag: str, ctx: Any = ctx, count: list[int] = count) -> bool:
            count[0] += 1
            if count[0] == 1:
                ctx.iteration(False)
            return True

        s = GLib.Idle()
        s.can_recurse = recurse
        s.set_callback(cb, "x")
        s.attach(ctx)
        ctx.iteration(False)
        s.destroy()
        counts.append(count[0])
    return counts


@scenario
def scenario_nested_takeover(GLib: Any) -> Any:
    """A nested iteration takes over what the outer one had left to dispatch."""
    ctx = GLib.MainContext()
    log: list[Any] = []

    def first(tag: str) -> bool:
        log.append((tag, GLib.main_depth()))
        log.append(("nested-ret", ctx.iteration(False)))
        log.append((tag + "-end", GLib.main_depth()))
        return False

    def other(tag: str) -> bool:
        log.append((tag, GLib.main_depth()))
        return False

    for tag, fn in (("first", first), ("b", other), ("c", other)):
        s = GLib.Idle()
        s.set_callback(fn, tag)
        s.attach(ctx)
    rets = _iterate(ctx, 2)
    return log, rets


@scenario
def scenario_destroy_in_callback(GLib: Any) -> Any:
    """A source destroyed earlier in the iteration is skipped; self-destroy + True."""
    ctx = GLib.MainContext()
    log: list[str] = []
    srcs: dict[str, Any] = {}

    def a(tag: str) -> bool:
        log.append(tag)
        srcs["b"].destroy()
        return True

    def b(tag: str) -> bool:
        log.append(tag)
        return True

    def c(tag: str) -> bool:
        log.append(tag)
        srcs["c"].destroy()
        return True

    for name, fn in (("a", a), ("b", b), ("c", c)):
        s = GLib.Idle()
        s.set_callback(fn, name)
        s.attach(ctx)
        srcs[name] = s
    rets = _iterate(ctx, 3)
    destroyed = {k: v.is_destroyed() for k, v in srcs.items()}
    srcs["a"].destroy()
    return log, rets, destroyed


@scenario
def scenario_pending_sources_dispatch_unless_destroyed(GLib: Any) -> Any:
    """g_main_dispatch runs every source the check found ready unless it was destroyed
    since: not one whose ready time an earlier callback moved away, nor a parent whose
    only ready child went, nor a parent due by its own ready time whose child went."""
    ctx = GLib.MainContext()
    log: list[str] = []
    srcs: dict[str, Any] = {}

    class S(_tagged(GLib, log)):  # type: ignore[misc]  # a class made at run time
        def dispatch(self, callback: Any, args: Any) -> Any:
            if self.tag == "a":
                srcs["b"].set_ready_time(-1)  # b was found ready: it still runs now
            return super().dispatch(callback, args)

    def gone(tag: str) -> bool:
        log.append(tag)
        return False

    for tag in ("a", "b"):
        srcs[tag] = S(tag)
        srcs[tag].attach(ctx)
        srcs[tag].set_ready_time(0)
    rets = _iterate(ctx, 2)  # a, b; then a alone (b's ready time is -1 now)
    for tag in ("a", "b"):
        srcs[tag].destroy()
    for tag, due in (("p", False), ("q", True)):
        parent = srcs[tag] = S(tag)
        child = GLib.Idle()
        child.set_callback(gone, tag + "-child")
        parent.add_child_source(child)
        parent.attach(ctx)
        if due:
            parent.set_ready_time(0)
        rets += _iterate(ctx, 2)
        parent.destroy()
    return log, rets


@scenario
def scenario_priority_change_keeps_why_ready(GLib: Any) -> Any:
    """A source ready by its ready time, then moved to another priority, is no longer
    ready once its ready time goes to -1 (a timeout of 0 ms and a custom source)."""
    ctx = GLib.MainContext()
    Base: Any = _base(GLib)
    log: list[str] = []

    class S(Base):
        def dispatch(self, callback: Any, args: Any) -> Any:
            log.append("custom")
            return True

    custom = S()
    custom.attach(ctx)
    custom.set_ready_time(0)  # stays ready: dispatch does not reset a ready time
    timeout = GLib.Timeout(0)
    timeout.set_callback(lambda tag: log.append(tag) or True, "timeout")
    timeout.attach(ctx)
    rets = _iterate(ctx, 1)
    for src in (custom, timeout):
        src.set_priority(GLib.PRIORITY_HIGH)
        src.set_ready_time(-1)
    rets += _iterate(ctx, 2)
    custom.destroy()
    timeout.destroy()
    return log, rets


@scenario
def scenario_child_order_and_priority_moves(GLib: Any) -> Any:
    """gmain.c keeps a source's children latest added first: children added before the
    parent is attached are attached (ids, dispatch order) in that order, each just before
    its parent; added to an attached parent, each goes just before it; a priority set,
    even to the same value, moves a source (children latest added first) to the tail."""
    ctx = GLib.MainContext()
    log: list[str] = []

    S: Any = _tagged(GLib, log)

    def tree(prefix: str, attach_first: bool) -> tuple[Any, list[Any]]:
        parent = S(prefix)
        kids = [S(f"{prefix}{i}") for i in range(3)]
        grandkids = [S(f"{prefix}0.{i}") for i in range(2)]
        if attach_first:
            parent.attach(ctx)
        for kid in kids:
            parent.add_child_source(kid)
        for grandkid in grandkids:
            kids[0].add_child_source(grandkid)
        if not attach_first:
            parent.attach(ctx)
        everyone = [parent, *kids, *grandkids]
        for src in everyone:
            src.set_ready_time(0)
        return parent, everyone

    p, ps = tree("p", attach_first=False)
    q, qs = tree("q", attach_first=True)
    ids = [[src.get_id() - tree_[0].get_id() for src in tree_[1:]] for tree_ in (ps, qs)]
    rets = _iterate(ctx, 1)
    q.set_priority(GLib.PRIORITY_DEFAULT)  # the same priority: q's tree goes to the tail
    rets += _iterate(ctx, 1)
    p.set_priority(GLib.PRIORITY_DEFAULT)
    rets += _iterate(ctx, 1)
    p.destroy()
    q.destroy()
    return ids, log, rets


@scenario
def scenario_invoke_full(GLib: Any) -> Any:
    """invoke_full: queued on an unowned context, direct on the default or the owner."""
    ctx = GLib.MainContext()
    log: list[Any] = []

    def f(tag: str) -> bool:
        log.append((tag, GLib.main_depth()))
        return False

    ctx.invoke_full(GLib.PRIORITY_DEFAULT, f, "queued")
    log.append("after-queue")
    count = [0]

    def rep(tag: str) -> bool:
        count[0] += 1
        log.append((tag, count[0], GLib.main_depth()))
        return count[0] < 3

    GLib.MainContext.default().invoke_full(GLib.PRIORITY_DEFAULT, rep, "default")

    def from_dispatch(tag: str) -> bool:
        ctx.invoke_full(GLib.PRIORITY_DEFAULT, f, "nested")
        log.append("after-nested")
        return False

    s = GLib.Idle()
    s.set_callback(from_dispatch, "z")
    s.attach(ctx)
    rets = _iterate(ctx, 3)
    return log, rets


@scenario
def scenario_context_by_hand(GLib: Any) -> Any:
    """A fresh MainContext: pending/iteration/find_source_by_id/get_context."""
    ctx = GLib.MainContext()
    r: list[Any] = [ctx.pending(), ctx.iteration(False)]
    s = GLib.Idle()
    s.set_callback(lambda t: True, "x")
    r.append(s.get_context() is None)
    sid = s.attach(ctx)
    r += [
        sid > 0,
        sid == s.get_id(),
        s.get_context() == ctx,
        ctx.find_source_by_id(sid) is not None,
        ctx.pending(),
        ctx.iteration(False),
        ctx.find_source_by_id(sid + 1000) is None,
        ctx != GLib.MainContext.default(),
        GLib.MainContext.default() == GLib.MainContext.default(),
    ]
    s.destroy()
    r += [ctx.find_source_by_id(sid) is None, s.get_context() == ctx, s.is_destroyed()]
    r += [ctx.pending(), ctx.iteration(False)]
    return r


@scenario
def scenario_quit_before_run(GLib: Any) -> Any:
    """A quit() before run() is lost; run returns after a later quit."""
    ctx = GLib.MainContext()
    loop = GLib.MainLoop(ctx)
    log: list[Any] = []
    loop.quit()

    def cb(tag: str) -> bool:
        log.append((tag, loop.is_running()))
        loop.quit()
        return False

    s = GLib.Idle()
    s.set_callback(cb, "idle")
    s.attach(ctx)
    loop.run()
    return log, loop.is_running()


@scenario
def scenario_callback_exception(GLib: Any) -> Any:
    """A raising callback is reported and removed; the other sources keep running."""
    ctx = GLib.MainContext()
    log: list[str] = []

    def bad(tag: str) -> bool:
        log.append(tag)
        raise ValueError("boom")

    def good(tag: str) -> bool:
        log.append(tag)
        return True

    b = GLib.Idle()
    b.set_callback(bad, "bad")
    b.attach(ctx)
    g = GLib.Idle()
    g.set_callback(good, "good")
    g.attach(ctx)
    with _captured_reports() as seen:
        rets = _iterate(ctx, 2)
    g.destroy()
    return log, rets, b.is_destroyed(), len(seen), any("boom" in s for s in seen)


@scenario
def scenario_seconds_phase(GLib: Any) -> Any:
    """timeout_add_seconds expiries are coalesced to the session's sub-second phase."""
    ctx = GLib.MainContext.default()
    now = GLib.get_monotonic_time()
    ids = [GLib.timeout_add_seconds(n, lambda: False) for n in (1, 2, 5)]
    ready = [ctx.find_source_by_id(i).get_ready_time() for i in ids]
    for i in ids:
        GLib.source_remove(i)
    phases = {rt % 1_000_000 for rt in ready}
    in_window = [
        (n - 0.25) * 1e6 - 5_000 <= rt - now < (n + 0.75) * 1e6 + 5_000
        for n, rt in zip((1, 2, 5), ready)
    ]
    return len(phases), sorted(phases)[0], in_window


# Results recorded from GLib 2.74.6 / PyGObject 3.42.2 (Debian 12).  Scenarios whose
# result depends on the environment (the seconds phase) are only compared in the
# differential test.
# ---------------------------------------------------------- real-world programs
def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@scenario
def scenario_program_tcp_server_on_io_add_watch(GLib: Any) -> Any:
    """An upper-casing TCP server on io_add_watch serving 200 connections one after the
    other.  Client sockets are never closed explicitly: each goes away with its watch
    (SOURCE_REMOVE at EOF), so the fd count stays flat without the cyclic GC."""
    import gc
    import socket
    import threading

    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    srv.setblocking(False)
    port = srv.getsockname()[1]
    ml = GLib.MainLoop()
    served = [0]
    replies: list[bytes] = []

    def on_client(conn: Any, cond: Any) -> bool:
        data = conn.recv(64)
        if data:
            conn.sendall(data.upper())
            return True
        served[0] += 1
        if served[0] == 200:
            ml.quit()
        return False  # the watch goes, and with it the last reference to conn

    def on_accept(s: Any, cond: Any) -> bool:
        conn, _ = s.accept()
        conn.setblocking(False)
        GLib.io_add_watch(conn, GLib.PRIORITY_DEFAULT, GLib.IO_IN, on_client)
        return True

    def clients() -> None:
        for i in range(200):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
                c.sendall(b"hello %d" % i)
                replies.append(c.recv(64))

    gc.collect()
    gc.disable()
    try:
        before = _open_fds()
        sid = GLib.io_add_watch(srv, GLib.PRIORITY_DEFAULT, GLib.IO_IN, on_accept)
        t = threading.Thread(target=clients)
        t.start()
        ml.run()
        t.join(30)
        GLib.source_remove(sid)
        after = _open_fds()
    finally:
        gc.enable()
        srv.close()
    flat = after - before <= 2  # at most a pipe or two of the loop made on the way
    return (served[0], len(replies), replies[:2], replies[-1], flat)


@scenario
def scenario_program_iochannel_line_reader(GLib: Any) -> Any:
    """Read a pipe line by line through an IOChannel watch until the writer hangs up;
    record each line and the conditions the callback saw."""
    r, w = os.pipe()
    os.write(w, "first\nsecond ♥\nthird".encode())
    os.close(w)
    ch = GLib.IOChannel(filedes=r)
    ml = GLib.MainLoop()
    seen: list[tuple[str, int]] = []

    def on_line(channel: Any, cond: Any) -> bool:
        line = channel.readline() if cond & GLib.IO_IN else ""
        seen.append((line, int(cond)))
        if line:
            return True
        ml.quit()
        return False

    GLib.io_add_watch(ch, GLib.PRIORITY_DEFAULT, GLib.IO_IN | GLib.IO_HUP, on_line)
    ml.run()
    ch.shutdown(False)
    return seen


@scenario
def scenario_program_signal_and_child_supervisor(GLib: Any) -> Any:
    """A supervisor: a child signals its parent (SIGUSR1) and exits 3; the parent's
    unix_signal_add and child_watch_add sources see both, then it stops."""
    import signal

    ml = GLib.MainLoop()
    events: list[str] = []

    def maybe_quit() -> None:
        if len(events) == 2:
            ml.quit()

    def on_usr1() -> bool:
        events.append("SIGUSR1")
        maybe_quit()
        return False

    def on_exit(pid: int, status: int) -> None:
        events.append(f"exit {os.waitstatus_to_exitcode(status)}")
        maybe_quit()

    sig_id = GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGUSR1, on_usr1)
    code = "import os, signal; os.kill(os.getppid(), signal.SIGUSR1); os._exit(3)"
    pid = os.posix_spawn(sys.executable, [sys.executable, "-c", code], os.environ)
    GLib.child_watch_add(GLib.PRIORITY_DEFAULT, pid, on_exit)
    GLib.timeout_add(20_000, ml.quit)
    ml.run()
    assert GLib.MainContext.default().find_source_by_id(sig_id) is None  # returned False
    return sorted(events)


EXPECTED: dict[str, Any] = {
    "idle_order": (
        ["a", "b", "c", "a", "b", "c", "a", "c"],
        [True, True, True, False, False],
        [True, True, True],
    ),
    "priorities": (["b", "b", "b", "a", "a"], [True, True, True, True, True, False, False]),
    "timeout_starves_idle": (["t", "t", "t", "h", "i"], [True, True, True, True, True, False]),
    "timeout_order": (
        [("b", 1, True), ("c", 1, True), ("a", 1, True)],
        False,
        False,
        True,
        3,
        [True, True, True],
    ),
    "user_data_and_priority": (
        [(), (3,), ("high-idle",), (), (1, "two")],
        [200, 200, 0, -100, 100],
        [True, True, True, True, True],
    ),
    "source_remove": (True, True, True, False, False, False, False, True),
    "constants_and_properties": (
        [-100, 0, 100, 200, 300, True, False, 1, 4, 2, 8, 16, 32, 17],
        [200, 200, 300, -100, 0, 300, 0, -100, False, True, 0, True, -1, False, True],
    ),
    "custom_hooks": (
        [
            ("prepare", 1),
            ("check", 1),
            ("prepare", 2),
            ("check", 2),
            ("dispatch", 2, 42),
            ("prepare", 3),
            ("dispatch", 3, 42),
        ],
        [False, True, True, False],
        True,
        True,
        True,
    ),
    "prepare_timeout": (["dispatched"], 3, True),
    "no_callback": ([(None, None)], [True, False], True),
    "ready_time": (-1, 0, [("r", 0), ("past", True), ("r", 0)], [True, True, False, False], True),
    "source_time": (["a", "b", "a"], [True, True], True, True, True, True),
    "child_sources": (
        ["c1", "parent", "c1", "parent", "idle", "c1", "parent"],
        5,
        7,
        [True, True, True, True, False],
        True,
        [True, True],
    ),
    "fd_pipe": ([(1, b"ab"), (16, b"")], [False, True, False, True]),
    "unix_fd_add_full": (
        [(True, 1, b"x", ("d", 2)), (True, 1, b"yz", ("d", 2))],
        0,
        [False, True, True, False],
        True,
    ),
    "nested_loop": (
        [("outer", 1, False), ("inner", 2, True), ("outer-after", 1, False), ("top", 0)],
        True,
        True,
    ),
    "current_source": (
        [("top", True), ("custom", True, 1), ("a", True, 1), ("b", True, 1), ("end", True)],
        [True, True, False],
    ),
    "recursion": [1, 2],
    "nested_takeover": (
        [("first", 1), ("b", 2), ("c", 2), ("nested-ret", True), ("first-end", 1)],
        [True, False],
    ),
    "destroy_in_callback": (
        ["a", "c", "a", "a"],
        [True, True, True],
        {"a": False, "b": True, "c": True},
    ),
    "child_order_and_priority_moves": (
        [[3, 2, 1, 5, 4], [1, 2, 3, 4, 5]],
        ["p2", "p1", "p0.1", "p0.0", "p0", "p", "q0.0", "q0.1", "q0", "q1", "q2", "q",
         "p2", "p1", "p0.1", "p0.0", "p0", "p", "q2", "q1", "q0.1", "q0.0", "q0", "q",
         "q2", "q1", "q0.1", "q0.0", "q0", "q", "p2", "p1", "p0.1", "p0.0", "p0", "p"],
        [True, True, True],
    ),
    "priority_change_keeps_why_ready": (["custom", "timeout"], [True, False, False]),
    "pending_sources_dispatch_unless_destroyed": (
        ["a", "b", "a", "p-child", "p", "q-child", "q", "q"],
        [True, True, True, False, True, True],
    ),
    "invoke_full": (
        [
            "after-queue",
            ("default", 1, 0),
            ("default", 2, 0),
            ("default", 3, 0),
            ("queued", 1),
            ("nested", 1),
            "after-nested",
        ],
        [True, True, False],
    ),
    "context_by_hand": [
        False,
        False,
        True,
        True,
        True,
        True,
        True,
        True,
        True,
        True,
        True,
        True,
        True,
        True,
        True,
        False,
        False,
    ],
    "quit_before_run": ([("idle", True)], False),
    "callback_exception": (["bad", "good", "good"], [True, True], True, 1, True),
}


def reset_aioqloop_default() -> None:
    """Close the global default aioqloop loop so the next test starts clean."""
    import asyncio

    from aioqloop import loop as core_loop

    core_loop._forget_default_loop()
    asyncio.set_event_loop(None)
