"""`MainContext.statistics()` figures and `statistics_table` rendering."""

from __future__ import annotations

import asyncio
import io
import socket
from typing import Any

import pytest
from conftest import iterate, recorder
from rich.console import Console

import aioqloop
from aioqloop import (
    PRIORITY_HIGH,
    PRIORITY_LOW,
    ContextStatistics,
    IdleSource,
    MainContext,
    SourceStats,
    statistics_table,
)


def _idle(ctx: MainContext, name: str, priority: int, log: list[str]) -> IdleSource:
    src = IdleSource(priority=priority, name=name)
    src.set_callback(recorder(log, name))
    src.attach(ctx)
    return src


def test_counts_dispatches_and_waits(ctx: MainContext) -> None:
    log: list[str] = []
    high = _idle(ctx, "high", PRIORITY_HIGH, log)
    low = _idle(ctx, "low", PRIORITY_LOW, log)
    assert iterate(ctx, 3) == 3
    stats = ctx.statistics()
    assert isinstance(stats, ContextStatistics)
    assert stats.iterations == 3
    rows = {r.name: r for r in stats.sources}
    assert isinstance(rows["high"], SourceStats)
    assert (rows["high"].id, rows["high"].priority) == (high.id, PRIORITY_HIGH)
    assert rows["high"].dispatches == 3 and rows["high"].waited == 0
    assert rows["low"].dispatches == 0 and rows["low"].waited == 3
    assert rows["high"].dispatch_time >= rows["high"].max_dispatch_time >= 0.0
    high.destroy()
    ctx.iteration(False)
    rows = {r.name: r for r in ctx.statistics().sources}
    assert set(rows) == {"low"}
    assert rows["low"].dispatches == 1 and rows["low"].waited == 3
    assert ctx.statistics().iterations == 4
    assert low.id == rows["low"].id


def test_unnamed_source_uses_class_name(ctx: MainContext) -> None:
    IdleSource().attach(ctx)
    (row,) = ctx.statistics().sources
    assert row.name == "IdleSource"
    assert row.dispatches == 0


def test_statistics_are_frozen(ctx: MainContext) -> None:
    stats = ctx.statistics()
    try:
        stats.iterations = 5  # type: ignore[misc]
    except AttributeError:
        pass
    else:
        raise AssertionError("ContextStatistics must be frozen")


def test_statistics_table_renders(ctx: MainContext) -> None:
    log: list[str] = []
    _idle(ctx, "busy-source", PRIORITY_HIGH, log)
    _idle(ctx, "starved-source", PRIORITY_LOW, log)
    iterate(ctx, 2)
    table = aioqloop.statistics_table(ctx, title="my sources")
    assert table is not None
    out = io.StringIO()
    Console(file=out, width=160, color_system=None).print(table)
    text = out.getvalue()
    assert "my sources" in text
    assert "busy-source" in text and "starved-source" in text
    assert text.index("busy-source") < text.index("starved-source")  # busiest first
    default = statistics_table(ctx)
    out = io.StringIO()
    Console(file=out, width=160, color_system=None).print(default)
    assert "2 dispatching iterations" in out.getvalue()


#: The plain driver's two homes: the uvloop base, and a context bound to a plain asyncio loop.
PLAIN_BASES = ("uvloop", "asyncio")


def _run_plain(base: str, main: Any) -> Any:
    if base == "uvloop":
        pytest.importorskip("uvloop")
        return aioqloop.run(main(), base="uvloop")
    return asyncio.run(main())


@pytest.mark.parametrize("base", PLAIN_BASES)
def test_fd_round_trips_cost_one_iteration_per_readiness_and_no_timer(base: str) -> None:
    # A dispatching iteration whose prepare said "wait 0" (something was ready) must not
    # re-arm that stale zero: it fired a timer and an empty iteration after dispatches.
    n = 50

    async def main() -> tuple[ContextStatistics, ContextStatistics]:
        loop = asyncio.get_running_loop()
        ctx = aioqloop.get_main_context() if base == "uvloop" else MainContext()
        audit = ctx.fd_audit_interval
        ctx.fd_audit_interval = 3600.0  # no fd audit falls due while the test runs
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        count = 0
        goal = 1
        done = loop.create_future()

        def echo(*_: Any) -> bool:
            b.send(b.recv(64))
            return True

        def counted(*_: Any) -> bool:
            nonlocal count
            a.recv(64)
            count += 1
            if count == goal:
                done.set_result(None)
            else:
                a.send(b"x")
            return True

        async def idle() -> None:
            # Let the loop sleep a while: a timer armed for "now" would fire meanwhile.
            slept = loop.create_future()
            loop.call_later(0.02, slept.set_result, None)
            await slept

        ids = [aioqloop.fd_add(b, aioqloop.IOCondition.IN, echo, context=ctx),
               aioqloop.fd_add(a, aioqloop.IOCondition.IN, counted, context=ctx)]
        try:
            a.send(b"x")  # one round trip to settle the attach iterations
            await done
            await idle()
            before = ctx.statistics()
            done = loop.create_future()
            goal += n
            a.send(b"x")
            await done
            await idle()
            after = ctx.statistics()
        finally:
            for sid in ids:
                aioqloop.source_remove(sid, context=ctx)
            a.close()
            b.close()
            # the uvloop base's is the global default context: leave it as found
            ctx.fd_audit_interval = audit
            if base == "asyncio":
                ctx.close()
        return before, after

    before, after = _run_plain(base, main)
    assert after.iterations - before.iterations == 2 * n  # two readiness reports a trip
    assert after.driver_iterations - before.driver_iterations == 2 * n
    assert after.empty_iterations == before.empty_iterations
    assert after.timer_arms == before.timer_arms
    assert after.timer_fires == before.timer_fires


def test_stock_base_reports_no_driver_figures() -> None:
    async def main() -> ContextStatistics:
        return aioqloop.get_main_context().statistics()

    stats = aioqloop.run(main())
    assert (stats.driver_iterations, stats.empty_iterations, stats.timer_arms,
            stats.timer_fires) == (0, 0, 0, 0)
