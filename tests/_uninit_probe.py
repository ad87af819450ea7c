"""Child process of the half-made-object probe in ``test_faults.py`` (issue 20, item 3).

``python _uninit_probe.py KIND WHAT START PROGRESS`` runs a list of probe calls, each on
a fresh object, from call number ``START`` on:

* ``KIND`` = ``uninit``, ``WHAT`` = ``module:qualname`` of a class: instances whose
  ``__init__`` never ran (``T.__new__(T)``, and a subclass whose ``__init__`` does
  nothing when ``T`` can be subclassed); every attribute is read, set and deleted, and
  every method is called with a few argument shapes;
* ``KIND`` = ``broken``, ``WHAT`` = one of `FACTORIES`: a working object of the compiled
  core (a context, its drivers, a source, a bottom half) with one of its C fields
  deleted or replaced by a value of the wrong type, after which every method of the
  core type (and, for a source, every context method that takes one) is called.

Any Python exception is an acceptable answer; what the parent looks for is a process
that dies.  Before each call the child appends ``B <n> <label>`` to the file
``PROGRESS`` and ``E <n>`` after it, so the parent knows which call killed it and can
start a new child at the next one.  A call still running after `CALL_LIMIT` seconds is
interrupted (``H <n>``): a blocking call is not a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import operator
import os
import signal
import sys
from collections.abc import Callable, Iterator
from typing import Any, cast

#: Seconds one call may run before it is interrupted (a blocking call is no crash).
CALL_LIMIT = 0.1

#: Argument shapes: positional arguments and keyword arguments.
SHAPES: tuple[tuple[tuple[Any, ...], dict[str, Any]], ...] = (
    ((), {}),
    ((None,), {}),
    ((0,), {}),
    ((object(),), {}),
    ((None, None), {}),
    ((0, 0, 0), {}),
    ((None,), {"block": False, "dispatch": False}),
)
#: Values a field is set to (besides being deleted).
VALUES: tuple[Any, ...] = (None, 0, object())

#: A probe: a label, how to make a fresh object (and its clean-up), what to do with it.
Probe = tuple[str, Callable[[], tuple[Any, Callable[[], None]]], Callable[[Any], object]]


class _Hung(BaseException):
    pass


#: True while a probed call runs: the timer interrupts that call and nothing else.
_armed = [False]


def _alarm(_signum: int, _frame: object) -> None:
    if _armed[0]:
        _armed[0] = False
        raise _Hung


def resolve(target: str) -> type:
    module, _, qualname = target.partition(":")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    assert isinstance(obj, type), target
    return obj


def _nothing() -> None:
    pass


def names(cls: type) -> list[str]:
    return sorted(n for n in dir(cls) if not (n.startswith("__") and n.endswith("__")))


def is_data_descriptor(cls: type, name: str) -> bool:
    for klass in cls.__mro__:
        if name in vars(klass):
            return hasattr(type(vars(klass)[name]), "__set__")
    return False


def method_calls(cls: type) -> Iterator[tuple[str, Callable[[Any], object]]]:
    """Every method of ``cls`` called with every argument shape."""
    for name in names(cls):
        if callable(getattr(cls, name, None)) and not isinstance(getattr(cls, name), type):
            for args, kwargs in SHAPES:
                yield (f"call {name}(*{args!r}, **{kwargs!r})",
                       operator.methodcaller(name, *args, **kwargs))


def _init_nothing(self: object, *args: object, **kwargs: object) -> None:
    """The ``__init__`` of a subclass that leaves its base uninitialised."""


def _setter(name: str, value: object) -> Callable[[Any], object]:
    def action(obj: Any) -> object:
        setattr(obj, name, value)
        return getattr(obj, name)
    return action


def _deleter(name: str) -> Callable[[Any], object]:
    def action(obj: Any) -> object:
        delattr(obj, name)
        return None
    return action


def _context_call(name: str) -> Callable[[Any], object]:
    """``src._context.<name>(src)``: a context method given the source."""
    def action(src: Any) -> object:
        return getattr(src._context, name)(src)
    return action


def uninit_probes(target: str) -> Iterator[Probe]:
    cls = resolve(target)
    # The class's own __new__ (a C type's tp_new); typed as a plain `type`, mypy would
    # resolve it to type.__new__.
    new: Callable[[type], object] = cast(Any, cls).__new__
    makers: list[tuple[str, Callable[[], Any]]] = [("new", lambda: new(cls))]
    if cls.__flags__ & (1 << 10):  # Py_TPFLAGS_BASETYPE: it can be subclassed
        sub: type = type(f"Uninit{cls.__name__}", (cls,), {"__init__": _init_nothing})
        makers.append(("sub", sub))
    for mode, make in makers:
        def fresh(make: Callable[[], Any] = make) -> tuple[Any, Callable[[], None]]:
            return make(), _nothing

        yield f"[{mode}] repr", fresh, repr
        for name in names(cls):
            yield f"[{mode}] get {name}", fresh, operator.attrgetter(name)
            if is_data_descriptor(cls, name):
                for value in VALUES:
                    yield (f"[{mode}] set {name}={value!r}", fresh,
                           _setter(name, value))
                yield f"[{mode}] del {name}", fresh, _deleter(name)
        for label, action in method_calls(cls):
            yield f"[{mode}] {label}", fresh, action


# ------------------------------------------------------------------ broken objects
def _context() -> tuple[Any, Callable[[], None]]:
    """A stand-alone context with an idle, a timeout and an fd source attached."""
    import aioqloop

    ctx = aioqloop.MainContext(_driver="standalone")
    r, w = os.pipe()
    os.write(w, b"x")
    aioqloop.idle_add(lambda: True, context=ctx)
    aioqloop.timeout_add(0, lambda: True, context=ctx)
    aioqloop.fd_add(r, aioqloop.IOCondition.IN, lambda *a: True, context=ctx)

    def close() -> None:
        try:
            with contextlib.suppress(Exception):  # a broken context may not close
                ctx.close()
        finally:
            ctx._finalizer()  # its epoll set and wake-up fd, closed or not
            os.close(r)
            os.close(w)

    return ctx, close


def _source() -> tuple[Any, Callable[[], None]]:
    """An idle source attached to a stand-alone context (the probe also uses the context)."""
    import aioqloop

    ctx, close = _context()
    src = aioqloop.IdleSource()
    src.set_callback(lambda: True)
    src.attach(ctx)
    return src, close


def _plain() -> tuple[Any, Callable[[], None]]:
    """The plain driver of a context bound to a (not running) asyncio loop."""
    import aioqloop

    loop = asyncio.new_event_loop()
    ctx = aioqloop.MainContext(loop)
    aioqloop.idle_add(lambda: True, context=ctx)

    def close() -> None:
        try:
            with contextlib.suppress(Exception):
                ctx.close()
        finally:
            ctx._finalizer()
            loop.close()

    return ctx._driver, close


def _hook() -> tuple[Any, Callable[[], None]]:
    """The selector hook of a stock-base aioqloop loop."""
    import aioqloop

    loop = aioqloop.new_event_loop(base="asyncio")
    ctx = aioqloop.get_main_context(loop)
    aioqloop.idle_add(lambda: True, context=ctx)
    hook = loop._selector  # type: ignore[attr-defined]
    selector = hook._real

    def close() -> None:
        try:
            with contextlib.suppress(Exception):  # a broken hook may not let it close
                loop.close()
        finally:
            ctx._finalizer()
            selector.close()
            with contextlib.suppress(Exception):
                loop._close_self_pipe()  # type: ignore[attr-defined]

    return hook, close


def _bh() -> tuple[Any, Callable[[], None]]:
    import aioqloop

    ctx, close = _context()
    return aioqloop.BottomHalf(lambda: None, context=ctx), close


#: The context of the fd poller `_fds` made last (the poller has no reference to it).
_POLLER_CONTEXT: list[Any] = []


def _fds() -> tuple[Any, Callable[[], None]]:
    """The fd poller of a stand-alone context watching a readable pipe (the probe then
    drives the context)."""
    ctx, close = _context()
    _POLLER_CONTEXT[:] = [ctx]
    return ctx._fds, close


def _waker() -> tuple[Any, Callable[[], None]]:
    """The waker of a stand-alone context (the probe then drives the context)."""
    ctx, close = _context()
    _POLLER_CONTEXT[:] = [ctx]
    return ctx._waker, close


#: The bottom half `_carrier` scheduled last (the carrier holds it only while queued).
_CARRIER_BH: list[Any] = []


def _carrier() -> tuple[Any, Callable[[], None]]:
    """The bottom-half carrier of a stand-alone context with one bottom half scheduled
    (the probe then schedules again and drives the context)."""
    bh, close = _bh()
    bh.schedule()
    _POLLER_CONTEXT[:] = [bh.context]
    _CARRIER_BH[:] = [bh]
    return bh.context._bh, close


def _shared() -> tuple[Any, Callable[[], None]]:
    """The epoll set a stock-base loop's selector shares with its context, which watches
    a readable pipe (the probe then drives the selector hook)."""
    import aioqloop

    hook, close = _hook()
    r, w = os.pipe()
    os.write(w, b"x")
    aioqloop.fd_add(r, aioqloop.IOCondition.IN, lambda *a: True, context=hook._ctx)
    _POLLER_CONTEXT[:] = [hook]

    def close_all() -> None:
        try:
            close()
        finally:
            os.close(r)
            os.close(w)

    return hook.direct, close_all


FACTORIES: dict[str, Callable[[], tuple[Any, Callable[[], None]]]] = {
    "context": _context, "source": _source, "plain": _plain, "hook": _hook, "bh": _bh,
    "fds": _fds, "shared": _shared, "waker": _waker, "carrier": _carrier,
}


def _core_type(obj: Any) -> type:
    return next(c for c in type(obj).__mro__ if c.__module__ == "aioqloop._cengine")


def _source_actions(core: type) -> Iterator[tuple[str, Callable[[Any], object]]]:
    """A source is used by its context: every context method given it, and an iteration."""
    yield from method_calls(core)
    ctx_core = resolve("aioqloop._cengine:ContextCore")
    for name in names(ctx_core):
        if callable(getattr(ctx_core, name)):
            yield (f"ctx.{name}(src)",
                   _context_call(name))
    yield "ctx.iteration(False)", lambda src: src._context.iteration(False)
    yield "ctx._dispatch(src.priority)", lambda src: (src._context._mark_ready(src),
                                                     src._context._dispatch(src._priority))
    yield "src.destroy()", lambda src: src.destroy()


def _poller_actions() -> Iterator[tuple[str, Callable[[Any], object]]]:
    """A poller or waker is used by its context: every context method, and iterations."""
    ctx_core = resolve("aioqloop._cengine:ContextCore")
    def on_context(call: Callable[[Any], object]) -> Callable[[Any], object]:
        return lambda _fds: call(_POLLER_CONTEXT[0])

    for label, call in method_calls(ctx_core):
        yield f"ctx: {label}", on_context(call)
    yield "ctx.iteration(False)", lambda _fds: _POLLER_CONTEXT[0].iteration(False)
    yield "ctx.close()", lambda _fds: _POLLER_CONTEXT[0].close()


def _shared_actions() -> Iterator[tuple[str, Callable[[Any], object]]]:
    """The shared set is used by the selector hook: every hook method, and selects."""
    hook_core = resolve("aioqloop._cengine:HookCore")

    def on_hook(call: Callable[[Any], object]) -> Callable[[Any], object]:
        return lambda _shared: call(_POLLER_CONTEXT[0])

    for label, call in method_calls(hook_core):
        yield f"hook: {label}", on_hook(call)
    yield "hook.select(0)", lambda _shared: _POLLER_CONTEXT[0].select(0)
    yield "shared.select(0)", lambda shared: shared.select(0)


def broken_probes(what: str) -> Iterator[Probe]:
    factory = FACTORIES[what]
    sample, close = factory()
    core = _core_type(sample)
    close()
    fields = [n for n in names(core) if is_data_descriptor(core, n)]
    if what == "source":
        actions = list(_source_actions(core))
    elif what in ("fds", "waker"):
        actions = list(_poller_actions())
    elif what == "carrier":
        actions = [*_poller_actions(), ("bh.schedule()", lambda _c: _CARRIER_BH[0].schedule()),
                   ("bh.cancel()", lambda _c: _CARRIER_BH[0].cancel())]
    elif what == "shared":
        actions = list(_shared_actions())
    else:
        actions = [*method_calls(core), ("repr", repr)]
    for field in fields:
        for value in ("deleted", *VALUES):
            def fresh(field: str = field, value: Any = value) -> tuple[Any, Callable[[], None]]:
                obj, close = factory()
                try:
                    if value == "deleted":
                        delattr(obj, field)
                    else:
                        setattr(obj, field, value)
                except (AttributeError, TypeError):
                    pass  # a field that refuses it: the object as it is
                return obj, close

            for label, action in actions:
                yield f"{field}={value!r}: {label}", fresh, action


def main() -> None:
    kind, what, start, progress = sys.argv[1:5]
    probes = uninit_probes(what) if kind == "uninit" else broken_probes(what)
    fd = os.open(progress, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    # Out of reach of a probe given fd 0: the report must survive what it probes.
    out = os.dup2(fd, 250)
    os.close(fd)
    signal.signal(signal.SIGALRM, _alarm)
    for n, (label, fresh, action) in enumerate(probes):
        if n < int(start):
            continue
        os.write(out, f"B {n} {label}\n".encode())
        close = _nothing
        try:
            obj, close = fresh()
            _armed[0] = True
            signal.setitimer(signal.ITIMER_REAL, CALL_LIMIT)  # the call, not the making
            action(obj)
            _armed[0] = False
        except _Hung:
            os.write(out, f"H {n}\n".encode())
        except BaseException:  # any exception is a clean answer
            pass
        finally:
            _armed[0] = False
            signal.setitimer(signal.ITIMER_REAL, 0)
        try:
            close()
        except BaseException:  # a broken object may not close
            pass
        obj, close = None, _nothing  # drop the object (and its bound close) before collecting
        gc.collect(0)  # the object's deallocation is part of the probe
        os.write(out, f"E {n}\n".encode())
    os.write(out, b"DONE\n")


if __name__ == "__main__":
    main()
