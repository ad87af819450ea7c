"""Timer storm: N one-shot timers spread over 200 ms (100k in the full run).

Every implementation gets the same deadlines (a fixed shuffle of evenly spaced points,
starting a calibrated lead after scheduling begins, so that all are set in time) through
its ordinary relative API: ``loop.call_later`` on asyncio and uvloop, ``timeout_add`` on
aioqloop, ``GLib.timeout_add`` (whole ms, computed from GLib's cached time) on GLib.

Figures: CPU µs per timer (scheduling + firing, ``time.process_time``); median and p99
lateness against the intended deadline on ``time.monotonic()`` (µs); the number of
early firings over all runs (the real clock read in the callback is before the
deadline) and the largest one.  Run ``python benchmarks/bench_timers.py [--quick]``.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _benchlib as c
from _glib_worker import _timer_figures, timer_offsets

BENCH = "timers"
SPREAD = 0.2


def _calibrate_lead(impl: str, n: int) -> float:
    """Seconds of lead for scheduling ``n`` timers: 1.5 times a measured tenth, + 30 ms."""
    k = max(100, n // 10)
    loop = c.new_loop(impl)
    try:
        add = _adder(loop, impl, lambda i: False)
        mono = time.monotonic
        far = mono() + 3600.0
        t0 = time.perf_counter()
        for i in range(k):
            add(far - mono(), i)
        per = (time.perf_counter() - t0) / k
    finally:
        c.close_loop(loop)
    return 0.03 + 1.5 * per * n


def _adder(loop: asyncio.AbstractEventLoop, impl: str, fire: Any) -> Any:
    if c.is_aioqloop(impl):
        import aioqloop

        ctx = aioqloop.get_main_context(loop)

        def add(delay: float, i: int) -> None:
            aioqloop.timeout_add(delay, fire, i, context=ctx)

        return add
    call_later = loop.call_later

    def add_handle(delay: float, i: int) -> None:
        call_later(delay, fire, i)

    return add_handle


def _measure(impl: str, n: int, lead: float) -> dict[str, float]:
    loop = c.new_loop(impl)
    try:
        return _storm(loop, impl, n, lead)
    finally:
        c.close_loop(loop)


def _storm(loop: asyncio.AbstractEventLoop, impl: str, n: int, lead: float) -> dict[str, float]:
    offsets = timer_offsets(n)
    fired = [0.0] * n
    remaining = [n]
    done = loop.create_future()
    mono = time.monotonic

    def fire(i: int) -> bool:
        fired[i] = mono()
        remaining[0] -= 1
        if not remaining[0]:
            done.set_result(None)
        return False

    add = _adder(loop, impl, fire)
    cpu0 = time.process_time()
    base = mono() + lead
    deadlines = [base + SPREAD * off for off in offsets]
    late_at_schedule = 0
    for i, when in enumerate(deadlines):
        delay = when - mono()
        if delay <= 0:
            late_at_schedule += 1
            delay = 0.0
        add(delay, i)
    loop.run_until_complete(done)
    cpu = time.process_time() - cpu0
    return _timer_figures(fired, deadlines, cpu, late_at_schedule)


def run(
    quick: bool = False,
    *,
    runs: int | None = None,
    scale: float = 1.0,
    report: c.Report | None = None,
) -> list[c.Record]:
    """Measure the storm on every implementation; return figure and target records."""
    n = c.scaled(10_000 if quick else 100_000, scale)
    nruns = c.pick(quick, runs, 3, 5)
    impls = c.impls_with_glib()

    leads: dict[str, float] = {}

    def measure(impl: str) -> dict[str, float]:
        if impl == c.GLIB:
            reply = c.glib().call("timers", n=n, spread=SPREAD)
            return {k: float(v) for k, v in reply.items()}
        if impl not in leads:
            leads[impl] = _calibrate_lead(impl, n)
        return _measure(impl, n, leads[impl])

    samples = c.interleaved(impls, nruns, measure, report, BENCH)
    params = {"timers": n, "spread_ms": SPREAD * 1e3}
    cpu = c.medians(samples, "cpu_us")
    late = c.medians(samples, "late_median_us")
    p99 = c.medians(samples, "late_p99_us")
    early = {i: float(sum(m["early"])) for i, m in samples.items()}
    max_early = {i: max(m["max_early_us"]) for i, m in samples.items()}
    missed = {i: float(sum(m["late_at_schedule"])) for i, m in samples.items()}
    records = [
        c.figure(BENCH, "CPU per timer", "µs", cpu, runs=nruns, params=params),
        c.figure(BENCH, "median lateness", "µs", late, runs=nruns, params=params),
        c.figure(BENCH, "p99 lateness", "µs", p99, runs=nruns, params=params),
        c.figure(BENCH, "early firings (all runs)", "count", early, runs=nruns,
                 params=params, note="a firing is early when time.monotonic() in the "
                 "callback is before the intended deadline"),
        c.figure(BENCH, "largest early firing", "µs", max_early, runs=nruns, params=params),
    ]
    if any(missed.values()):
        records.append(
            c.figure(BENCH, "deadlines passed while scheduling", "count", missed,
                     runs=nruns, params=params,
                     note="scheduling took longer than the lead; lateness is inflated")
        )
    for impl in (c.AQ, c.AQUV):
        if impl not in impls:
            continue
        records.append(
            c.ratio_target(BENCH, f"CPU per timer on {impl} vs asyncio call_later",
                           cpu.get(impl), cpu.get(c.ASYNCIO), 1.0)
        )
        if c.GLIB in impls:
            records.append(
                c.ratio_target(BENCH, f"median lateness on {impl} vs GLib",
                               late.get(impl), late.get(c.GLIB), 1.0,
                               detail=f"{late[impl]:.0f} µs vs {late[c.GLIB]:.0f} µs")
            )
        else:
            records.append(c.target(BENCH, f"median lateness on {impl} vs GLib", "≤ 1x",
                                    None, None, "GLib not available"))
        records.append(
            c.target(BENCH, f"never early on {impl}", "0 early", early[impl],
                     early[impl] == 0,
                     f"largest {max_early[impl]:.0f} µs early" if early[impl] else "")
        )
    return records


if __name__ == "__main__":
    c.standalone(run, __doc__)
