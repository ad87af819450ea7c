"""Faults and bad input: no crash, no hang, nothing lost (issue 12).

Two parts, both through the public API only:

* a fault-injection harness that makes any hook of a random mix of sources (``prepare``,
  ``check``, ``dispatch``, ``finalize``, a source callback, a bottom-half callback)
  raise ``Exception``, ``GeneratorExit``, ``KeyboardInterrupt`` or ``SystemExit`` at a
  chosen point, driven by hypothesis: after the loop runs again, every scheduled
  callback has run exactly once, every destroyed source is finalized once, the context
  still dispatches, and no fd or thread is left behind;
* one small test per defect of the adversarial pass that the public API can show,
  named after its item number.

``Exception`` and ``GeneratorExit`` are reported to the loop's exception handler, as
asyncio does for any non-exit ``BaseException`` of a callback; ``KeyboardInterrupt`` and
``SystemExit`` leave ``run_until_complete`` as in asyncio, and the loop, run again,
finishes the work.  A source whose callback or hook raised is not half-dispatched: it
is destroyed and finalized once (as PyGObject does for an exception; an interrupt is no
"keep me" answer either), or, for an interrupt before its callback ran, it may still
dispatch once later.  Its callback is never called twice.

Many of these tests fail on v0.1.0; the engine rebuild (issue 11) makes them pass.

The last section is the second pass (issue 20): results whose truth raises, and objects
of the compiled core whose ``__init__`` never ran or whose fields were broken since.
"""

from __future__ import annotations

import asyncio
import gc
import math
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from conftest import BASES
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import aioqloop
from aioqloop import (
    PRIORITY_DEFAULT,
    PRIORITY_DEFAULT_IDLE,
    PRIORITY_HIGH,
    PRIORITY_HIGH_IDLE,
    PRIORITY_LOW,
    BottomHalf,
    FdSource,
    IdleSource,
    IOCondition,
    MainContext,
    SignalSource,
    Source,
    TimeoutSource,
)

# Every wait on a condition is bounded, so a defect fails the test instead of hanging.
DEADLINE = 5.0
PRIORITIES = (PRIORITY_HIGH, PRIORITY_DEFAULT, PRIORITY_HIGH_IDLE, PRIORITY_DEFAULT_IDLE,
              PRIORITY_LOW)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# --------------------------------------------------------------------------- #
# The fault-injection harness
# --------------------------------------------------------------------------- #

#: Exception types a hook is made to raise.  The first two are reported to the loop's
#: exception handler; the last two leave run_until_complete().
FAULTS: tuple[type[BaseException], ...] = (RuntimeError, GeneratorExit, KeyboardInterrupt,
                                           SystemExit)
ESCAPING = (KeyboardInterrupt, SystemExit)

SOURCE_HOOKS = ("prepare", "check", "dispatch", "callback", "finalize")
KINDS = ("idle", "timeout", "fd", "custom", "bh")


class Injector:
    """Raises ``exc_type`` from hook ``hook`` of source number ``victim``, once.

    ``at`` chooses the call: 0 is the first time that hook of that source is called.
    """

    def __init__(self, victim: int, hook: str, exc_type: type[BaseException], at: int) -> None:
        self.victim = victim
        self.hook = hook
        self.exc_type = exc_type
        self.at = at
        self.calls = 0
        self.fired = 0

    def __repr__(self) -> str:
        return (f"Injector(victim={self.victim}, hook={self.hook!r}, "
                f"exc_type={self.exc_type.__name__}, at={self.at})")

    def point(self, index: int, hook: str) -> None:
        """A fault point: called by every hook of every source of the mix."""
        if index != self.victim or hook != self.hook or self.fired:
            return
        self.calls += 1
        if self.calls > self.at:
            self.fired += 1
            raise self.exc_type(f"injected into {hook} of source {index}")


@dataclass
class Tally:
    """What each source of the mix did."""

    runs: list[int]
    finals: list[int]
    reports: list[dict[str, Any]] = field(default_factory=list)


class _Faulty:
    """Mixin routing each hook of a source class through the injector."""

    index: int
    injector: Injector
    tally: Tally

    def prepare(self) -> tuple[bool, float | None]:
        self.injector.point(self.index, "prepare")
        return super().prepare()  # type: ignore[misc, no-any-return]

    def check(self) -> bool:
        self.injector.point(self.index, "check")
        return super().check()  # type: ignore[misc, no-any-return]

    def dispatch(self, callback: Callable[..., Any] | None, args: tuple[Any, ...]) -> bool:
        self.injector.point(self.index, "dispatch")
        return super().dispatch(callback, args)  # type: ignore[misc, no-any-return]

    def finalize(self) -> None:
        self.tally.finals[self.index] += 1
        self.injector.point(self.index, "finalize")
        super().finalize()  # type: ignore[misc]


class FaultyIdle(_Faulty, IdleSource):
    pass


class FaultyTimeout(_Faulty, TimeoutSource):
    pass


class FaultyFd(_Faulty, FdSource):
    pass


class Ready(Source):
    """A custom source that is ready at once (prepare and check both say so)."""

    def prepare(self) -> tuple[bool, float | None]:
        return (True, None)

    def check(self) -> bool:
        return True


class FaultyCustom(_Faulty, Ready):
    pass


@dataclass(frozen=True)
class Spec:
    kind: str
    priority: int


specs = st.builds(Spec, st.sampled_from(KINDS), st.sampled_from(PRIORITIES))


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[Spec], Injector, str]:
    mix = draw(st.lists(specs, min_size=1, max_size=8))
    victim = draw(st.integers(0, len(mix) - 1))
    hook = "bh" if mix[victim].kind == "bh" else draw(st.sampled_from(SOURCE_HOOKS))
    exc_type = draw(st.sampled_from(FAULTS))
    at = draw(st.integers(0, 1)) if hook in ("prepare", "check") else 0
    base = draw(st.sampled_from(BASES))
    return mix, Injector(victim, hook, exc_type, at), base


class Mix:
    """A mix of one-shot sources and bottom halves on one loop, each counting its call."""

    def __init__(self, mix: list[Spec], injector: Injector, loop: asyncio.AbstractEventLoop):
        self.specs = mix
        self.injector = injector
        self.loop = loop
        self.ctx = aioqloop.get_main_context(loop)
        self.tally = Tally([0] * len(mix), [0] * len(mix))
        self.sources: list[Source | None] = []
        self.bhs: list[BottomHalf | None] = []
        self.pipes: list[tuple[int, int]] = []
        for index, spec in enumerate(mix):
            self._add(index, spec)

    def _callback(self, index: int) -> Callable[..., bool]:
        def callback(*args: Any) -> bool:
            self.tally.runs[index] += 1
            if args and isinstance(args[0], int):  # an fd source: consume the byte
                os.read(args[0], 1)
            self.injector.point(index, "callback" if self.specs[index].kind != "bh" else "bh")
            return False  # SOURCE_REMOVE: one call each

        return callback

    def _add(self, index: int, spec: Spec) -> None:
        if spec.kind == "bh":
            bh = BottomHalf(self._callback(index), context=self.ctx)
            bh.schedule()
            self.sources.append(None)
            self.bhs.append(bh)
            return
        src: _Faulty
        if spec.kind == "idle":
            src = FaultyIdle(priority=spec.priority)
        elif spec.kind == "timeout":
            src = FaultyTimeout(0.001 * (index + 1), priority=spec.priority)
        elif spec.kind == "fd":
            r, w = os.pipe()
            self.pipes.append((r, w))
            os.write(w, b"x")
            src = FaultyFd(r, IOCondition.IN)
            src.priority = spec.priority
        else:
            src = FaultyCustom(priority=spec.priority)
        src.index, src.injector, src.tally = index, self.injector, self.tally
        assert isinstance(src, Source)
        src.set_callback(self._callback(index))
        src.attach(self.ctx)
        self.sources.append(src)
        self.bhs.append(None)

    def victim_settled(self) -> bool:
        i = self.injector.victim
        src = self.sources[i]
        if not self.injector.fired:
            # The fault point may never be reached: GLib calls no prepare() for a source
            # that is ready already, and a one-shot source has no second dispatch.
            return self.tally.runs[i] == 1 and (
                src is None or (src.is_destroyed and self.tally.finals[i] == 1)
            )
        if src is None:  # a bottom half: its (raising) call was its run
            return True
        return src.is_destroyed and self.tally.finals[i] >= 1

    def settled(self) -> bool:
        for i, src in enumerate(self.sources):
            if i == self.injector.victim:
                continue
            if self.tally.runs[i] < 1:
                return False
            if src is not None and (not src.is_destroyed or self.tally.finals[i] < 1):
                return False
        return self.victim_settled()

    def close(self) -> None:
        for r, w in self.pipes:
            os.close(r)
            os.close(w)


#: How long a mix may take to settle: a few milliseconds when nothing is lost.
SETTLE = 2.0


async def settle(mix: Mix) -> None:
    give_up = time.monotonic() + SETTLE
    while not mix.settled():
        assert time.monotonic() < give_up, (
            f"never settled: runs={mix.tally.runs} finals={mix.tally.finals}"
        )
        await asyncio.sleep(0.001)
    # A few more iterations, so a source or bottom half run twice would show.
    for _ in range(3):
        await asyncio.sleep(0)
    await asyncio.sleep(0.005)


def check_outcome(mix: Mix, escapes: list[BaseException]) -> None:
    inj = mix.injector
    victim = inj.victim
    tally = mix.tally
    assert inj.fired in (0, 1)
    if not inj.fired:  # the fault point was never reached: an ordinary run
        assert inj.hook in ("prepare", "check"), "callbacks and finalize always run"
        assert escapes == [] and tally.reports == []
    for i, src in enumerate(mix.sources):
        if i == victim and inj.fired:
            continue
        assert tally.runs[i] == 1, f"source {i} ({mix.specs[i]}) ran {tally.runs[i]} times"
        if src is not None:
            assert src.is_destroyed and tally.finals[i] == 1, f"source {i} finalized wrongly"
    # The victim: a raising callback counts as its one run; a raising prepare/check/
    # dispatch may cost the run (the source is destroyed) but never double it.
    vsrc = mix.sources[victim]
    if not inj.fired:
        return
    if inj.hook in ("callback", "bh", "finalize"):
        assert tally.runs[victim] == 1
    else:
        assert tally.runs[victim] in (0, 1)
        if inj.exc_type not in ESCAPING:
            assert tally.runs[victim] == 0  # reported: destroyed as PyGObject does
    if vsrc is not None:
        assert vsrc.is_destroyed
        assert tally.finals[victim] == 1, "the victim must be finalized exactly once"
    for bh in mix.bhs:
        if bh is not None:
            assert not bh.scheduled
    # How the fault came out.
    if inj.exc_type in ESCAPING:
        assert [type(e) for e in escapes] == [inj.exc_type]
        assert mix.tally.reports == []
    else:
        assert escapes == []
        assert len(mix.tally.reports) == 1, mix.tally.reports
        report = mix.tally.reports[0]
        assert type(report.get("exception")) is inj.exc_type
        if vsrc is not None:
            assert report.get("source") is vsrc


def check_still_dispatches(mix: Mix) -> None:
    """The context dispatches afresh: a new idle source and every old bottom half run."""
    calls: list[str] = []
    src = IdleSource()
    src.set_callback(lambda: bool(calls.append("idle")))
    src.attach(mix.ctx)
    bhs = [i for i, bh in enumerate(mix.bhs) if bh is not None]
    for i in bhs:
        bh = mix.bhs[i]
        assert bh is not None
        bh.schedule()  # a bottom half left marked "scheduled" would ignore this

    def done() -> bool:
        return bool(calls) and all(mix.tally.runs[i] == 2 for i in bhs)

    async def wait() -> None:
        give_up = time.monotonic() + DEADLINE
        while not done():
            assert time.monotonic() < give_up, (
                f"the context stopped dispatching: {calls} {mix.tally.runs}"
            )
            await asyncio.sleep(0.001)

    mix.loop.run_until_complete(wait())
    assert calls == ["idle"]


def run_scenario(mix_specs: list[Spec], injector: Injector, base: str) -> None:
    loop = aioqloop.new_event_loop(base=base)
    mix = Mix(mix_specs, injector, loop)
    loop.set_exception_handler(lambda _loop, context: mix.tally.reports.append(context))
    escapes: list[BaseException] = []
    try:
        task = loop.create_task(settle(mix))
        for _ in range(3):
            try:
                loop.run_until_complete(task)
                break
            except ESCAPING as exc:
                assert str(exc).startswith("injected"), exc
                escapes.append(exc)
        assert task.done()
        check_outcome(mix, escapes)
        check_still_dispatches(mix)
    finally:
        loop.close()
        mix.close()


_warmed: list[bool] = []


def warm_up_bases() -> None:
    """libuv opens a process-wide signal pipe the first time any uvloop loop runs: do it
    before counting fds, so that pipe is not taken for a leak."""
    if not _warmed:
        for base in ("asyncio", "uvloop"):
            loop = aioqloop.new_event_loop(base=base)
            loop.run_until_complete(asyncio.sleep(0))
            loop.close()
        _warmed.append(True)


@pytest.mark.timeout(300)
@settings(
    max_examples=150,
    deadline=None,
    # No shrinking: a failing mix waits SETTLE seconds, and the named cases of
    # test_fault_in_one_hook_of_a_small_mix are the short reproducers.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(scenarios())
def test_a_fault_in_any_hook_loses_nothing(scenario: tuple[list[Spec], Injector, str]) -> None:
    mix_specs, injector, base = scenario
    warm_up_bases()
    fds, threads = open_fds(), threading.active_count()
    run_scenario(mix_specs, injector, base)
    gc.collect()
    # At most as many: an earlier test's leftovers (a finished worker, a collected
    # file) may go away meanwhile.
    assert open_fds() <= fds, "an fd leaked"
    assert threading.active_count() <= threads, "a thread leaked"


# One fixed, readable case per fault type and hook, on the stock base, so a failure of
# the random test above has a short named twin.
@pytest.mark.timeout(30)
@pytest.mark.parametrize("exc_type", FAULTS, ids=lambda t: t.__name__)
@pytest.mark.parametrize("hook", [*SOURCE_HOOKS, "bh"])
def test_fault_in_one_hook_of_a_small_mix(
    base: str, hook: str, exc_type: type[BaseException]
) -> None:
    mix_specs = [Spec("idle", PRIORITY_DEFAULT_IDLE), Spec("bh", PRIORITY_DEFAULT),
                 Spec("bh", PRIORITY_DEFAULT), Spec("timeout", PRIORITY_HIGH)]
    victim = 1 if hook == "bh" else 0
    if hook == "bh":
        mix_specs.append(Spec("bh", PRIORITY_DEFAULT))  # one behind it in the batch
    run_scenario(mix_specs, Injector(victim, hook, exc_type, 0), base)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("exc_type", [SystemExit, KeyboardInterrupt], ids=lambda t: t.__name__)
def test_escape_from_the_only_prepare_hook_leaves_the_next_run_iterating(
    base: str, exc_type: type[BaseException]
) -> None:
    # Found by the random test above: a prepare hook of an idle-priority custom source is
    # the only thing asking for a look; it lets SystemExit out of the first iteration.
    # The uvloop base's driver had no wait from that iteration, so it never iterated
    # again: the source stayed undispatched and unfinalized when the loop ran again.
    mix_specs = [Spec("custom", 300), Spec("idle", 0), Spec("custom", -100), Spec("idle", 0)]
    run_scenario(mix_specs, Injector(0, "prepare", exc_type, 0), base)


# --------------------------------------------------------------------------- #
# Helpers for the per-item tests
# --------------------------------------------------------------------------- #


class Unraisables:
    """Collects what reaches sys.unraisablehook ("Exception ignored in ...")."""

    def __init__(self) -> None:
        self.seen: list[Any] = []

    def __call__(self, unraisable: Any) -> None:
        self.seen.append(unraisable)

    def messages(self) -> list[str]:
        return [f"{u.err_msg}: {u.exc_value!r}" for u in self.seen]


@pytest.fixture
def unraisables(monkeypatch: pytest.MonkeyPatch) -> Unraisables:
    hook = Unraisables()
    monkeypatch.setattr(sys, "unraisablehook", hook)
    return hook


def in_thread(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` in a fresh worker thread (bounded) and return its result."""
    result: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            result.append(fn())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(DEADLINE)
    assert not thread.is_alive()
    if errors:
        raise errors[0]
    return result[0]


@pytest.fixture
def main_default() -> Iterator[MainContext]:
    """The main thread's default context (its loop not running), closed afterwards."""
    assert threading.current_thread() is threading.main_thread()
    ctx = MainContext.default()
    yield ctx
    loop = ctx.loop
    if loop is not None and not loop.is_closed():
        loop.close()
    asyncio.set_event_loop(None)


# --------------------------------------------------------------------------- #
# 1. Far-future deadlines: any finite horizon works
# --------------------------------------------------------------------------- #

DAY = 86400.0
HORIZONS = {
    "25 days": 25 * DAY,
    "30 days": 30 * DAY,
    "10 years": 10 * 365 * DAY,
    "MAXUINT32 ms": (2**32 - 1) / 1000,
}


class FarPrepare(Source):
    """A source whose prepare() asks for a wait of ``seconds``."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def prepare(self) -> tuple[bool, float | None]:
        return (False, self.seconds)


def far_sources(how: str, seconds: float, ctx: MainContext) -> None:
    """Attach a source that makes the context's next wait ``seconds`` long."""
    if how == "timeout_add":
        aioqloop.timeout_add(seconds, lambda: False, context=ctx)
    elif how == "set_ready_time":
        src = Source()
        src.set_callback(lambda: False)
        src.attach(ctx)
        assert ctx.loop is not None
        src.set_ready_time(ctx.loop.time() + seconds)
    else:
        src = FarPrepare(seconds)
        src.attach(ctx)


def wake_later(wake: Callable[[], object]) -> threading.Timer:
    """Call ``wake`` from another thread once the loop has had time to go to sleep.

    Nothing can be awaited to learn that a loop sleeps; if the wake-up came first the
    test would pass without testing, never fail wrongly.
    """
    timer = threading.Timer(0.05, wake)
    timer.start()
    return timer


@pytest.mark.timeout(20)
@pytest.mark.parametrize("how", ["timeout_add", "set_ready_time", "prepare"])
@pytest.mark.parametrize("horizon", HORIZONS.values(), ids=HORIZONS.keys())
def test_item_1_far_future_deadline_does_not_crash_run(base: str, horizon: float, how: str) -> None:
    loop = aioqloop.new_event_loop(base=base)
    far_sources(how, horizon, aioqloop.get_main_context(loop))
    woken: asyncio.Future[None] = loop.create_future()
    # No asyncio timer and nothing ready: the loop sleeps on the far deadline.
    timer = wake_later(lambda: loop.call_soon_threadsafe(woken.set_result, None))
    try:
        loop.run_until_complete(woken)
    finally:
        timer.join(DEADLINE)
        loop.close()


@pytest.mark.timeout(20)
@pytest.mark.parametrize("how", ["timeout_add", "set_ready_time", "prepare"])
@pytest.mark.parametrize("horizon", HORIZONS.values(), ids=HORIZONS.keys())
def test_item_1_far_future_deadline_hand_run_iteration(horizon: float, how: str) -> None:
    loop = aioqloop.new_event_loop()
    try:
        ctx = aioqloop.get_main_context(loop)
        far_sources(how, horizon, ctx)
        ran: list[int] = []
        bh = BottomHalf(lambda: ran.append(1), context=ctx)
        timer = wake_later(bh.schedule)
        try:
            give_up = time.monotonic() + DEADLINE
            while not ran:
                assert time.monotonic() < give_up
                ctx.iteration(True)
        finally:
            timer.join(DEADLINE)
        assert ran == [1]
    finally:
        loop.close()


@pytest.mark.timeout(20)
def test_item_1_glib_far_timeouts_do_not_crash_mainloop_run(main_default: MainContext) -> None:
    from aioqloop import glib as GLib

    GLib.timeout_add(GLib.MAXUINT32, lambda: False)
    GLib.timeout_add_seconds(int(30 * DAY), lambda: False)
    main_loop = GLib.MainLoop()
    timer = wake_later(main_loop.quit)
    try:
        main_loop.run()  # plain synchronous code, no asyncio loop running
    finally:
        timer.join(DEADLINE)


# --------------------------------------------------------------------------- #
# 3. uvloop base: a closed fd under an FdSource is reported as NVAL
# --------------------------------------------------------------------------- #


@pytest.mark.timeout(20)
def test_item_3_closed_fd_under_an_fd_source_is_reported_nval(base: str) -> None:
    async def main() -> IOCondition:
        r, w = os.pipe()
        got: asyncio.Future[IOCondition] = asyncio.get_running_loop().create_future()

        def on_event(fd: int, condition: IOCondition) -> bool:
            if not got.done():
                got.set_result(condition)
            return False

        aioqloop.fd_add(r, IOCondition.IN, on_event)
        await asyncio.sleep(0)
        os.close(r)  # nothing else drives the context from here on
        try:
            return await asyncio.wait_for(got, DEADLINE)
        finally:
            os.close(w)

    condition = aioqloop.run(main(), base=base)
    assert condition & IOCondition.NVAL


# --------------------------------------------------------------------------- #
# 4. Worker threads without context= use the global default context
# --------------------------------------------------------------------------- #


@pytest.mark.timeout(20)
def test_item_4_worker_default_context_is_the_global_one(main_default: MainContext) -> None:
    assert in_thread(MainContext.default) is main_default
    assert in_thread(MainContext.default) is main_default  # not one per thread


@pytest.mark.timeout(20)
def test_item_4_worker_idle_add_attaches_to_the_global_default(
    main_default: MainContext,
) -> None:
    ran: list[threading.Thread] = []
    fds = open_fds()
    ids = [in_thread(lambda: aioqloop.idle_add(lambda: ran.append(threading.current_thread())))
           for _ in range(3)]
    assert open_fds() <= fds, "a worker created a loop of its own"
    assert all(main_default.find_source_by_id(i) is not None for i in ids)
    bh = in_thread(lambda: BottomHalf(lambda: ran.append(threading.current_thread())))
    assert bh.context is main_default
    for _ in range(3):
        main_default.iteration(False)
    assert ran[:3] == [threading.main_thread()] * 3


@pytest.mark.timeout(20)
def test_item_4_worker_source_remove_acts_on_the_global_default(
    main_default: MainContext,
) -> None:
    main_id = aioqloop.idle_add(lambda: True, context=main_default)
    # Without the fix the worker's own fresh context also hands out this id.
    worker_id = in_thread(lambda: aioqloop.idle_add(lambda: True))
    assert worker_id != main_id
    assert in_thread(lambda: aioqloop.source_remove(main_id)) is True
    assert main_default.find_source_by_id(main_id) is None
    assert main_default.find_source_by_id(worker_id) is not None


# --------------------------------------------------------------------------- #
# 5. invoke() from a worker runs on the context's thread
# --------------------------------------------------------------------------- #


@pytest.mark.timeout(20)
def test_item_5_invoke_from_a_worker_before_the_loop_runs() -> None:
    loop = aioqloop.new_event_loop()
    try:
        ctx = aioqloop.get_main_context(loop)
        ran: list[threading.Thread] = []
        in_thread(lambda: ctx.invoke(lambda: ran.append(threading.current_thread())))
        assert ran == []  # not on the worker

        async def wait() -> None:
            give_up = time.monotonic() + DEADLINE
            while not ran:
                assert time.monotonic() < give_up
                await asyncio.sleep(0.001)

        loop.run_until_complete(wait())
        assert ran == [threading.main_thread()]
    finally:
        loop.close()


# --------------------------------------------------------------------------- #
# 6. Signal disposition after run()
# --------------------------------------------------------------------------- #


@pytest.mark.timeout(20)
@pytest.mark.usefixtures("default_sigint")
def test_item_6_sigint_source_left_attached_restores_the_default_handler() -> None:
    async def main() -> None:
        aioqloop.signal_add(signal.SIGINT, lambda: True)
        await asyncio.sleep(0)

    aioqloop.run(main())
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

    async def handler_in_place() -> object:
        return signal.getsignal(signal.SIGINT)

    # A later runner installs its graceful SIGINT handler again.
    installed = aioqloop.run(handler_in_place())
    assert installed is not signal.default_int_handler


# --------------------------------------------------------------------------- #
# 7. Leaks: dropped uvloop loops; attach from finalize() during close()
# --------------------------------------------------------------------------- #


def fds_kept_by_dropped_loop(
    make: Callable[[], asyncio.AbstractEventLoop], run: bool = False,
    check: Callable[[], None] | None = None,
) -> tuple[int, bool]:
    """(fds still open after dropping an unclosed loop and collecting, loop collected?)

    With ``run``, the loop runs briefly first.
    """
    gc.collect()
    before = open_fds()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        loop = make()
        if run:
            loop.run_until_complete(asyncio.sleep(0.001))
        ref = weakref.ref(loop)
        del loop
        gc.collect()
        gc.collect()
    result = open_fds() - before, ref() is None
    survivor = ref()
    try:
        if check is not None:
            check()
    finally:
        if survivor is not None and not survivor.is_closed():
            survivor.close()  # measured: now give back what it holds, for later tests
    return result


@pytest.mark.timeout(20)
@pytest.mark.parametrize("run", [False, True], ids=["never run", "run"])
@pytest.mark.usefixtures("default_held")
def test_item_7_dropped_uvloop_loop_keeps_no_more_fds_than_plain_uvloop(run: bool) -> None:
    # A uvloop loop that ran is not collected when dropped unclosed (uvloop's own
    # limit, 5 fds): aioqloop must add nothing to what it keeps, so the context opens
    # its epoll set and eventfd only when an fd is watched or it is iterated by hand.
    uvloop = pytest.importorskip("uvloop")

    def aioq() -> asyncio.AbstractEventLoop:
        loop = aioqloop.new_event_loop(base="uvloop")
        aioqloop.get_main_context(loop)
        return loop

    plain_kept, plain_collected = fds_kept_by_dropped_loop(uvloop.new_event_loop, run)
    kept, collected = fds_kept_by_dropped_loop(aioq, run)
    assert kept <= plain_kept
    assert collected or not plain_collected


@pytest.mark.timeout(20)
@pytest.mark.usefixtures("default_held")
def test_item_7_dropped_uvloop_loop_restores_signal_disposition() -> None:
    # When a dropped uvloop loop dies (one that never ran: uvloop keeps a loop that ran
    # alive until close(), as docs/tutorial/uvloop.md says), its SignalSource gives the disposition
    # back.
    pytest.importorskip("uvloop")
    before = signal.getsignal(signal.SIGUSR1)

    def make() -> asyncio.AbstractEventLoop:
        loop = aioqloop.new_event_loop(base="uvloop")
        SignalSource(signal.SIGUSR1).attach(aioqloop.get_main_context(loop))
        assert signal.getsignal(signal.SIGUSR1) != before
        return loop

    def check() -> None:
        assert signal.getsignal(signal.SIGUSR1) == before

    try:
        _kept, collected = fds_kept_by_dropped_loop(make, run=False, check=check)
        assert collected
    finally:
        signal.signal(signal.SIGUSR1, before)


@pytest.mark.timeout(20)
@pytest.mark.usefixtures("default_held")
def test_item_7_uvloop_context_opens_its_fds_only_when_needed() -> None:
    # No fd of aioqloop's on a uvloop loop until an fd is watched or the context is
    # iterated by hand; cross-thread wake-ups go through uvloop's own async handle.
    pytest.importorskip("uvloop")
    loop = aioqloop.new_event_loop(base="uvloop")
    ctx = aioqloop.get_main_context(loop)
    try:
        assert ctx._driver_fileno() is None
        out: list[str] = []

        async def main() -> None:
            done = asyncio.Event()

            def worker() -> None:
                bh = aioqloop.BottomHalf(lambda: (out.append("bh"), done.set()), context=ctx)
                bh.schedule()

            threading.Thread(target=worker).start()
            await asyncio.wait_for(done.wait(), 5)

        loop.run_until_complete(main())
        assert out == ["bh"] and ctx._driver_fileno() is None
        assert ctx.statistics().wakeup_writes >= 1
        r, w = os.pipe()
        try:
            src = FdSource(r, IOCondition.IN)
            src.set_callback(lambda fd, cond: (out.append("fd"), False)[1])
            src.attach(ctx)
            assert ctx._driver_fileno() is not None
            os.write(w, b"x")
            loop.run_until_complete(asyncio.sleep(0.05))
            assert out == ["bh", "fd"]
        finally:
            os.close(r)
            os.close(w)
    finally:
        loop.close()


@pytest.mark.timeout(20)
@pytest.mark.usefixtures("default_held")
def test_item_7_finalize_cannot_attach_to_a_closing_context(base: str) -> None:
    loop = aioqloop.new_event_loop(base=base)
    ctx = aioqloop.get_main_context(loop)
    outcome: list[object] = []
    late = IdleSource()

    class AttachesInFinalize(Source):
        def finalize(self) -> None:
            try:
                outcome.append(late.attach(ctx))
            except RuntimeError as exc:
                outcome.append(exc)

    AttachesInFinalize().attach(ctx)
    loop.close()
    assert len(outcome) == 1
    assert isinstance(outcome[0], RuntimeError), f"attach during close returned {outcome}"
    assert late.context is None or late.is_destroyed


# --------------------------------------------------------------------------- #
# 8. Fd-number reuse
# --------------------------------------------------------------------------- #


@pytest.mark.timeout(20)
def test_item_8_reused_fd_number_gets_no_spurious_events(base: str) -> None:
    async def main() -> tuple[int, int]:
        r1, w1 = os.pipe()
        keep = os.dup(r1)  # keeps the first pipe's file open after r1 is closed
        os.write(w1, b"unread")  # the first pipe stays readable
        first = FdSource(r1, IOCondition.IN)
        first.set_callback(lambda fd, cond: True)
        first.attach()
        await asyncio.sleep(0)
        os.close(r1)  # under the attached source
        r2, w2 = os.pipe()
        try:
            if r2 != r1:
                pytest.skip("the new pipe did not get the closed number")
            os.set_blocking(r2, False)
            spurious: list[IOCondition] = []
            real: list[bytes] = []

            def on_event(fd: int, condition: IOCondition) -> bool:
                try:
                    real.append(os.read(fd, 1))
                except BlockingIOError:  # reported readable, but empty
                    spurious.append(condition)
                return True

            second = FdSource(r2, IOCondition.IN)
            second.set_callback(on_event)
            second.attach()
            await asyncio.sleep(0.1)  # an empty pipe: nothing may dispatch meanwhile
            os.write(w2, b"x")
            give_up = time.monotonic() + DEADLINE
            while not real:
                assert time.monotonic() < give_up, "the reused number is not watched"
                await asyncio.sleep(0.001)
            await asyncio.sleep(0.01)
            second.destroy()
            first.destroy()
            return len(spurious), len(real)
        finally:
            for fd in (keep, w1, r2, w2):
                os.close(fd)

    spurious, real = aioqloop.run(main(), base=base)
    assert spurious == 0
    assert real == 1


# --------------------------------------------------------------------------- #
# 10-13. Clear errors at the call, naming the argument
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("argument", ["clock", "bql"])
def test_item_10_new_event_loop_checks_clock_and_bql(
    base: str, argument: str, unraisables: Unraisables
) -> None:
    with pytest.raises(TypeError, match=argument):
        aioqloop.new_event_loop(base=base, **{argument: 5})  # type: ignore[arg-type]
    gc.collect()
    assert unraisables.messages() == []


@pytest.mark.parametrize("bad", ["x", 5, object()])
def test_item_11_get_main_context_checks_its_argument(bad: object) -> None:
    with pytest.raises(TypeError, match=r"loop"):
        aioqloop.get_main_context(bad)


OUT_OF_INT32 = [2**31, -(2**31) - 1, 2**100, -(2**100)]


@pytest.mark.parametrize("priority", OUT_OF_INT32)
def test_item_12_priorities_outside_int32_are_refused(priority: int) -> None:
    loop = aioqloop.new_event_loop()
    try:
        ctx = aioqloop.get_main_context(loop)
        with pytest.raises(ValueError, match=r"priority"):
            Source(priority=priority)
        src = Source()
        with pytest.raises(ValueError, match=r"priority"):
            src.priority = priority
        assert src.priority == PRIORITY_DEFAULT
        with pytest.raises(ValueError, match=r"priority"):
            aioqloop.timeout_add(1, lambda: False, priority=priority, context=ctx)
        with pytest.raises(ValueError, match=r"priority"):
            aioqloop.idle_add(lambda: False, priority=priority, context=ctx)
    finally:
        loop.close()


def test_item_12_int32_bounds_are_accepted() -> None:
    assert Source(priority=2**31 - 1).priority == 2**31 - 1
    assert Source(priority=-(2**31)).priority == -(2**31)


@pytest.mark.parametrize("priority", OUT_OF_INT32)
def test_item_12_task_set_priority_outside_int32_is_refused(priority: int) -> None:
    async def main() -> int:
        task = asyncio.current_task()
        assert task is not None
        with pytest.raises(ValueError, match=r"priority"):
            task.set_priority(priority)  # type: ignore[attr-defined]
        return task.get_priority()  # type: ignore[attr-defined,no-any-return]

    assert aioqloop.run(main()) == PRIORITY_DEFAULT


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_item_13_can_recurse_must_be_a_bool(value: object) -> None:
    src = Source()
    with pytest.raises(TypeError, match=r"can_recurse"):
        src.can_recurse = value  # type: ignore[assignment]
    assert src.can_recurse is False


def test_item_13_big_lock_name_must_be_a_str() -> None:
    with pytest.raises(TypeError, match=r"name"):
        aioqloop.BigLock(name=5)  # type: ignore[arg-type]


def test_item_13_priority_of_a_destroyed_source_cannot_be_set() -> None:
    loop = aioqloop.new_event_loop()
    try:
        src = IdleSource()
        src.attach(aioqloop.get_main_context(loop))
        src.destroy()
        with pytest.raises(RuntimeError, match=r"destroyed"):
            src.priority = PRIORITY_HIGH
    finally:
        loop.close()


# --------------------------------------------------------------------------- #
# 15. An unclosed stock loop with a SignalSource, collected, prints nothing
# --------------------------------------------------------------------------- #


@pytest.mark.timeout(20)
def test_item_15_collected_unclosed_loop_with_signal_source_is_quiet(
    unraisables: Unraisables,
) -> None:
    before = signal.getsignal(signal.SIGUSR2)

    def make() -> asyncio.AbstractEventLoop:
        loop = aioqloop.new_event_loop()
        SignalSource(signal.SIGUSR2).attach(aioqloop.get_main_context(loop))
        return loop

    try:
        fds_kept_by_dropped_loop(make)
        messages = [m for m in unraisables.messages() if "ResourceWarning" not in m]
        assert messages == []
    finally:
        signal.signal(signal.SIGUSR2, before)



# --------------------------------------------------------------------------- #
# Found by the harness above (no fault needed)
# --------------------------------------------------------------------------- #


@pytest.mark.timeout(20)
def test_source_ready_from_prepare_at_low_priority_runs_after_a_bottom_half(base: str) -> None:
    # On the uvloop base the custom source below is never dispatched.
    loop = aioqloop.new_event_loop(base=base)
    try:
        ctx = aioqloop.get_main_context(loop)
        runs: list[str] = []
        BottomHalf(lambda: runs.append("bh"), context=ctx).schedule()
        aioqloop.idle_add(lambda: bool(runs.append("idle")), priority=PRIORITY_HIGH,
                          context=ctx)
        ready = Ready(priority=PRIORITY_LOW)
        ready.set_callback(lambda: bool(runs.append("ready")))
        ready.attach(ctx)

        async def wait() -> None:
            give_up = time.monotonic() + DEADLINE
            while len(runs) < 3:
                assert time.monotonic() < give_up, f"only {runs} ran"
                await asyncio.sleep(0.001)

        loop.run_until_complete(wait())
        assert runs == ["idle", "bh", "ready"]
    finally:
        loop.close()


# =========================================================================== #
# Second pass (issue 20)
# =========================================================================== #

# --------------------------------------------------------------------------- #
# 1. A hook's or a callback's result whose truth raises is a fault of that source
# --------------------------------------------------------------------------- #


class TruthFails:
    """A hook result whose ``__bool__`` raises."""

    def __bool__(self) -> bool:
        raise ZeroDivisionError("no truth")


class CheckTruthFails(Source):
    def check(self) -> Any:
        return TruthFails()


class DispatchTruthFails(Ready):
    def dispatch(self, callback: Any, args: tuple[Any, ...]) -> Any:
        return TruthFails()


class BadPrepare(Source):
    """``prepare()`` returns ``self.result``: a bad shape, a bad timeout, a bad truth."""

    def __init__(self, result: object) -> None:
        super().__init__()
        self.result = result

    def prepare(self) -> Any:
        return self.result


BAD_PREPARE_RESULTS = ((TruthFails(), None), (False, math.nan), (False, "1"), 5, (True,))


def attach_faulty_mix(ctx: MainContext, pipe_r: int) -> list[Source]:
    """One of each source whose hook or callback returns a bad result, at one priority."""

    def bad_callback(*_args: Any) -> Any:
        return TruthFails()

    faulty: list[Source] = [CheckTruthFails(), DispatchTruthFails()]
    faulty += [BadPrepare(result) for result in BAD_PREPARE_RESULTS]
    faulty += [IdleSource(priority=PRIORITY_DEFAULT), TimeoutSource(0.0),
               FdSource(pipe_r, IOCondition.IN)]
    for src in faulty:
        src.set_callback(bad_callback)
        src.attach(ctx)
    return faulty


def assert_each_reported_once(faulty: list[Source], reports: list[dict[str, Any]]) -> None:
    assert all(src.is_destroyed for src in faulty), [s for s in faulty if not s.is_destroyed]
    assert sorted(id(r["source"]) for r in reports) == sorted(id(s) for s in faulty)
    for report in reports:
        assert f"{type(report['source']).__name__} id={report['source'].id} " in report["message"]


class _FaultyScene:
    """An aioqloop loop of ``base`` whose exception handler collects reports, with the
    mix of faulty sources (`attach_faulty_mix`) attached to its context."""

    def __init__(self, base: str) -> None:
        self.loop = aioqloop.new_event_loop(base=base)
        self.r, self.w = os.pipe()
        self.ctx = aioqloop.get_main_context(self.loop)
        self.reports: list[dict[str, Any]] = []
        self.loop.set_exception_handler(lambda _loop, c: self.reports.append(c))
        os.write(self.w, b"x")
        self.faulty = attach_faulty_mix(self.ctx, self.r)

    def close(self) -> None:
        self.loop.close()
        os.close(self.r)
        os.close(self.w)


@pytest.fixture
def faulty_scene(base: str) -> Iterator[_FaultyScene]:
    scene = _FaultyScene(base)
    try:
        yield scene
    finally:
        scene.close()


@pytest.mark.timeout(20)
def test_pass2_item_1_result_whose_truth_raises_is_reported_once(
    faulty_scene: _FaultyScene,
) -> None:
    # Before: a check() result's truth escaped run() on the stock base (the loop died)
    # and was reported on every iteration on the uvloop base, the source never destroyed;
    # a dispatch() result's the same, without the source ever being destroyed.
    loop, ctx, reports = faulty_scene.loop, faulty_scene.ctx, faulty_scene.reports
    # A well-behaved source at the same priority: nothing lost for it.
    runs: list[int] = []
    done = loop.create_future()

    def good() -> bool:
        runs.append(1)
        if len(runs) < 5:
            return True
        done.set_result(None)
        return False

    aioqloop.idle_add(good, priority=PRIORITY_DEFAULT, context=ctx)
    loop.run_until_complete(asyncio.wait_for(done, DEADLINE))
    loop.run_until_complete(asyncio.sleep(0.01))  # a few more turns: no second report
    assert runs == [1] * 5
    assert_each_reported_once(faulty_scene.faulty, reports)
    assert all(isinstance(r["exception"], (ZeroDivisionError, TypeError)) for r in reports)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("how", ["iteration", "pending"])
def test_pass2_item_1_hand_run_iteration_reports_a_truth_that_raises(
    faulty_scene: _FaultyScene, how: str,
) -> None:
    # Before: iteration() and pending() raised the check() result's error, every time.
    ctx = faulty_scene.ctx
    for _ in range(5):
        if how == "pending":
            ctx.pending()
        ctx.iteration(False)
    assert_each_reported_once(faulty_scene.faulty, faulty_scene.reports)


# --------------------------------------------------------------------------- #
# 3. Objects whose __init__ never ran, or whose core fields were broken since,
#    raise instead of crashing (the compiled core)
# --------------------------------------------------------------------------- #

PROBE = os.path.join(os.path.dirname(__file__), "_uninit_probe.py")
CORE = "aioqloop._cengine:"
#: Every type of the compiled core, and every class built on one or on the public API.
UNINIT_TARGETS = (
    *(CORE + name for name in ("SourceStatistics", "SourceCore", "ContextCore", "HookCore",
                               "PlainCore", "BHCore", "FdTagCore", "FdPollerCore",
                               "SharedFdsCore", "WakerCore", "BHCarrierCore",
                               "WakerLock")),
    CORE + "GateCore", "aioqloop._gate:LockGate",  # iteration and dispatch
    "aioqloop._waker:Waker", "aioqloop.bottomhalf:_BHCarrier",
    "aioqloop._selectorfds:SelectorFds",
    "aioqloop._fdpoll:FdPoller", "aioqloop.source:_FdRecord",
    "aioqloop.context:MainContext", "aioqloop.context:_QueueSource",
    "aioqloop.source:Source", "aioqloop.sources:IdleSource", "aioqloop.sources:TimeoutSource",
    "aioqloop.sources:FdSource", "aioqloop.unix:SignalSource",
    "aioqloop.unix:ChildWatchSource", "aioqloop.bottomhalf:BottomHalf",
    "aioqloop.bottomhalf:_BHSource", "aioqloop._stock:_SelectorHook",
    "aioqloop.bridge:PlainDriver", "aioqloop.mainloop:MainLoop", "aioqloop.biglock:BigLock",
    "aioqloop.glib:MainContext", "aioqloop.glib:MainLoop", "aioqloop.glib:Source",
    "aioqloop.glib:Idle", "aioqloop.glib:Timeout", "aioqloop.glib:IOChannel",
    "aioqloop.glib._sources:_Adapter", "aioqloop.glib._sources:_AdapterP",
    "aioqloop.glib._sources:_AdapterC", "aioqloop.glib._sources:_AdapterPC",
    "aioqloop.glib._functions:_IOWatch", "aioqloop.glib._sources:_SecondsTimeout",
    "aioqloop.glib._sources:_Disposing",
    "aioqloop._demo_machine:VirtualTimer",
)
#: Working objects of the core whose C fields the probe deletes or sets to a wrong type.
BROKEN_TARGETS = ("context", "source", "plain", "hook", "bh", "fds", "shared", "waker",
                  "carrier")


def probe_for_crashes(kind: str, what: str) -> list[str]:
    """Run `_uninit_probe` on ``what``; the calls that killed the process.

    A new child starts after each call that killed one, so one crash hides no other.
    """
    crashes: list[str] = []
    start = 0
    while True:
        progress = os.path.join(os.environ.get("TMPDIR", "/tmp"),
                                f"aioqloop-probe-{os.getpid()}-{threading.get_ident()}")
        try:
            proc = subprocess.run(
                [sys.executable, PROBE, kind, what, str(start), progress],
                capture_output=True, text=True, timeout=240, check=False,
            )
            with open(progress) as f:
                lines = f.read().splitlines()
        finally:
            if os.path.exists(progress):
                os.unlink(progress)
        if lines and lines[-1] == "DONE" and proc.returncode == 0:
            return crashes
        begun = [line for line in lines if line.startswith("B ")]
        assert begun, f"the probe did not start (exit {proc.returncode}): {proc.stderr[-2000:]}"
        _, number, label = begun[-1].split(" ", 2)
        crashes.append(f"{label} (exit {proc.returncode})")
        start = int(number) + 1


def needs_core(target: str) -> None:
    if target.startswith(CORE) and aioqloop.ENGINE != "c":
        pytest.skip("a type of the compiled core")


@pytest.mark.timeout(300)
@pytest.mark.parametrize("target", UNINIT_TARGETS)
def test_pass2_item_3_objects_whose_init_never_ran_do_not_crash(target: str) -> None:
    # Before: MainContext.__new__(MainContext).time(), has_work(), poll_ready() and
    # _collect(), and PlainCore()._kick() and .place(0), died of SIGSEGV.
    needs_core(target)
    assert probe_for_crashes("uninit", target) == []


@pytest.mark.timeout(300)
@pytest.mark.parametrize("what", BROKEN_TARGETS)
def test_pass2_item_3_core_objects_with_a_broken_field_do_not_crash(what: str) -> None:
    # Before: a source whose _order was deleted crashed attach; a context whose _clock,
    # _port, _fds or _deadlines was deleted crashed its iteration.
    if aioqloop.ENGINE != "c":
        pytest.skip("probes the fields of the compiled core's types")
    assert probe_for_crashes("broken", what) == []


def test_pass2_item_3_every_core_type_and_class_built_on_one_is_probed() -> None:
    if aioqloop.ENGINE != "c":
        pytest.skip("the compiled core is not in use")
    import importlib
    import pkgutil

    from aioqloop import _cengine

    for module in pkgutil.walk_packages(aioqloop.__path__, "aioqloop."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)  # every class built on the core exists

    exported = {CORE + n for n, v in vars(_cengine).items() if isinstance(v, type)}
    assert exported <= set(UNINIT_TARGETS)

    def built_on(cls: type) -> Iterator[type]:
        subs: list[type] = cls.__subclasses__()
        for sub in subs:
            yield sub
            yield from built_on(sub)

    core_types = [v for v in vars(_cengine).values() if isinstance(v, type)]
    ours = {f"{c.__module__}:{c.__qualname__}" for t in core_types for c in built_on(t)
            if c.__module__.startswith("aioqloop.") and "<locals>" not in c.__qualname__}
    # The _stock._HookBase, bridge._PlainBase and bottomhalf._BHBase
    # glue classes only order the bases of the classes above.
    glue = {"aioqloop._stock:_HookBase", "aioqloop.bridge:_PlainBase",
            "aioqloop.bottomhalf:_BHBase", "aioqloop.bottomhalf:_CarrierBase"}
    assert ours - glue <= set(UNINIT_TARGETS)


def test_pass2_item_3_an_uninitialised_context_says_so() -> None:
    # The compiled core names the missing field (the pure engine: AttributeError).
    ctx = MainContext.__new__(MainContext)
    expected = RuntimeError if aioqloop.ENGINE == "c" else AttributeError
    for call in (ctx._time, ctx._has_work, ctx._poll_ready):
        with pytest.raises(expected, match=r"not initialised: _\w+ is not set|has no attribute"):
            call()


#: States that the Python code the core runs mid-operation can leave behind.
MID_OPERATION = {
    # apply_polled() read the results by a length taken once, while marking a source
    # ready runs the driver's Python hook, which may change the list.
    "poll results shrunk": """
import os, aioqloop
ctx = aioqloop.MainContext(_driver="standalone")
r, w = os.pipe()
for _ in range(3):
    src = aioqloop.FdSource(r, aioqloop.IOCondition.IN)
    src.set_callback(lambda *a: True)
    src.attach(ctx)
events = [(r, 1)] * 50
def shrink(priority):
    del events[:]
ctx._source_ready = shrink  # the driver's hook, run when a source becomes ready
ctx._apply_polled(events)
""",
    # Marking a child ready marks its parent too; the hook run for the child took the
    # child out of its ready queue again and gave the parent an order the queues cannot
    # compare, before the parent's turn.
    "ready queue changed": """
import aioqloop
ctx = aioqloop.MainContext(_driver="standalone")
parent = aioqloop.Source()
parent.set_callback(lambda: True)
parent.attach(ctx)
other = aioqloop.Source()
other.attach(ctx)
ctx._mark_ready(other)
child = aioqloop.Source()
parent.add_child_source(child)
def drop(priority):
    ctx._unmark_ready(child)
    parent._order = None
ctx._source_ready = drop
try:
    ctx._mark_ready(child)
except Exception:  # any exception is a clean answer (TypeError, AttributeError)
    pass
ctx._source_ready = None
parent._order = (99, 1)
ctx._mark_ready(child)  # the queues are intact: both still go in and out
ctx._unmark_ready(parent)
ctx._unmark_ready(other)
""",
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("scenario", MID_OPERATION)
def test_pass2_item_3_state_changed_mid_operation_does_not_crash(scenario: str) -> None:
    # Found by reading the core after the probes: both died of SIGSEGV.
    code = MID_OPERATION[scenario] + "print('alive')\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert (proc.returncode, proc.stdout.strip()) == (0, "alive"), proc.stderr[-2000:]
