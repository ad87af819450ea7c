"""`MainContext.statistics()` figures and `statistics_table` rendering."""

from __future__ import annotations

import io

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
