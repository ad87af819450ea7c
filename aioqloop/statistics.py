"""Statistics records returned by `MainContext.statistics`, and a table of them.

Times are seconds measured with ``time.perf_counter``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._engine import core

if TYPE_CHECKING:
    from ._console import Table
    from .context import MainContext

__all__ = ("ContextStatistics", "SourceStatistics", "SourceStats", "statistics_table")


class _PySourceStatistics:
    """Per-source counters kept by the context (see `MainContext.statistics`)."""

    __slots__ = ("dispatch_time", "dispatches", "max_dispatch_time", "waited")

    def __init__(self) -> None:
        self.dispatches: int = 0
        self.dispatch_time: float = 0.0
        self.max_dispatch_time: float = 0.0
        self.waited: int = 0


# The compiled core updates its own record type in place (no allocation per dispatch).
if TYPE_CHECKING or core is None:  # noqa: SIM108 (the branch mypy sees)
    SourceStatistics = _PySourceStatistics
else:
    SourceStatistics = core.SourceStatistics


@dataclass(frozen=True)
class SourceStats:
    """One source's figures.

    :ivar dispatches: how many times it was dispatched.
    :ivar dispatch_time: total seconds spent in its dispatch.
    :ivar max_dispatch_time: longest single dispatch, seconds.
    :ivar waited: iterations in which it was ready but a more urgent priority ran instead.
    """

    id: int
    name: str
    priority: int
    dispatches: int
    dispatch_time: float
    max_dispatch_time: float
    waited: int


@dataclass(frozen=True)
class ContextStatistics:
    """A context's figures.

    :ivar iterations: iterations that dispatched something.
    :ivar poll_time: seconds spent waiting in the context's own poll (hand-run iterations).
    :ivar dispatch_time: seconds spent dispatching sources.
    :ivar sources: one `SourceStats` per attached source.
    :ivar wakeup_writes: cross-thread wake-ups sent so far: writes of the wake-up eventfd,
        or, before a uvloop-based context has opened it, wake-ups through uvloop's own
        ``call_soon_threadsafe`` (a burst of bottom-half schedules or invokes while the
        loop sleeps costs one).
    :ivar driver_iterations: iterations the driver ran from loop callbacks (the plain
        driver: the uvloop base, a context on another asyncio loop; 0 on the stock base,
        which iterates inside its selector).
    :ivar empty_iterations: how many of those dispatched nothing.
    :ivar timer_arms: ``call_at`` timers the driver armed for a ready time, a
        ``prepare()`` timeout or the audit of watched fds.
    :ivar timer_fires: how many of those fired.
    """

    iterations: int
    poll_time: float
    dispatch_time: float
    sources: tuple[SourceStats, ...]
    wakeup_writes: int = 0
    driver_iterations: int = 0
    empty_iterations: int = 0
    timer_arms: int = 0
    timer_fires: int = 0


def statistics_table(ctx: MainContext, *, title: str | None = None) -> Table:
    """A table of ``ctx``'s per-source statistics, busiest first.

    ``print(table)`` shows it as aligned plain text; rich (the ``rich`` extra) renders it
    as a rich table (``Console().print(table)``: it has ``__rich__``).  ``title`` is
    console markup (`rich.markup.escape` a literal ``[``).  Times in the table are
    milliseconds (``total ms``) and microseconds (``mean µs``, ``max µs``).
    """
    from ._console import Table, escape

    stats = ctx.statistics()
    table = Table(
        title
        or f"sources: {stats.iterations} dispatching iterations, "
        f"{stats.dispatch_time * 1e3:.1f} ms dispatching",
    )
    for col, justify in (
        ("id", "right"),
        ("name", "left"),
        ("priority", "right"),
        ("dispatches", "right"),
        ("total ms", "right"),
        ("mean µs", "right"),
        ("max µs", "right"),
        ("waited", "right"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for row in sorted(stats.sources, key=lambda r: r.dispatch_time, reverse=True):
        mean = row.dispatch_time / row.dispatches * 1e6 if row.dispatches else 0.0
        table.add_row(
            str(row.id),
            escape(row.name),
            str(row.priority),
            str(row.dispatches),
            f"{row.dispatch_time * 1e3:.2f}",
            f"{mean:.1f}",
            f"{row.max_dispatch_time * 1e6:.1f}",
            str(row.waited),
        )
    return table
