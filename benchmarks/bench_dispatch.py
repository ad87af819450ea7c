"""Callback-chain dispatch: µs per callback of self-renewing work, source vs call_soon.

Figures (one JSON line each; lower is better):

* ``call_soon chain`` — a callback that re-schedules itself with ``loop.call_soon`` on
  every loop, aioqloop's included: plain asyncio work that uses no source.
* ``repeating idle`` — an idle source whose callback returns True (``idle_add``), on
  aioqloop and GLib; the asyncio and uvloop columns are their ``call_soon`` chain.
* ``one-shot idle chain`` — each callback attaches the next idle source and returns False
  (attach + destroy per step).
* ``repeating timeout(0)`` — ``timeout_add(0, ...)`` returning True.

Run ``python benchmarks/bench_dispatch.py [--quick]``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _benchlib as c

BENCH = "dispatch"
_KINDS = ("chain", "idle_repeat", "idle_oneshot", "timeout0")


def _measure_loop(impl: str, kind: str, n: int) -> float:
    """Seconds for ``n`` callbacks of ``kind`` on a fresh loop of ``impl``."""
    loop = c.new_loop(impl)
    try:
        return loop.run_until_complete(_chain(loop, impl, kind, n))
    finally:
        c.close_loop(loop)


async def _chain(loop: Any, impl: str, kind: str, n: int) -> float:
    done = loop.create_future()
    count = 0
    call_soon = loop.call_soon

    def step() -> None:
        nonlocal count
        count += 1
        if count < n:
            call_soon(step)
        else:
            done.set_result(None)

    if kind == "chain" or not c.is_aioqloop(impl):
        t0 = time.perf_counter()
        call_soon(step)
        await done
        return time.perf_counter() - t0

    import aioqloop

    ctx = aioqloop.get_main_context(loop)

    def repeat() -> bool:
        nonlocal count
        count += 1
        if count >= n:
            done.set_result(None)
            return False
        return True

    def oneshot() -> bool:
        nonlocal count
        count += 1
        if count >= n:
            done.set_result(None)
        else:
            aioqloop.idle_add(oneshot, context=ctx)
        return False

    t0 = time.perf_counter()
    if kind == "idle_repeat":
        aioqloop.idle_add(repeat, context=ctx)
    elif kind == "idle_oneshot":
        aioqloop.idle_add(oneshot, context=ctx)
    else:
        aioqloop.timeout_add(0, repeat, context=ctx)
    await done
    return time.perf_counter() - t0


def run(
    quick: bool = False,
    *,
    runs: int | None = None,
    scale: float = 1.0,
    report: c.Report | None = None,
) -> list[c.Record]:
    """Measure every figure; return the figure and target records."""
    n = c.scaled(5_000 if quick else 100_000, scale)
    nruns = c.pick(quick, runs, 3, 7)
    impls = c.impls_with_glib()
    variants: list[str] = []
    for kind in _KINDS:
        for impl in impls:
            if impl == c.GLIB:
                if kind != "chain":
                    variants.append(f"{impl}:{kind}")
            elif kind == "chain" or c.is_aioqloop(impl):
                variants.append(f"{impl}:{kind}")

    def measure(variant: str) -> dict[str, float]:
        impl, kind = variant.split(":")
        if impl == c.GLIB:
            return {"us": float(c.glib().call("dispatch", kind=kind, n=n)["us"])}
        return {"us": _measure_loop(impl, kind, n) / n * 1e6}

    samples = c.interleaved(variants, nruns, measure, report, BENCH)
    us = c.medians(samples, "us")

    def values(kind: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for impl in impls:
            own = us.get(f"{impl}:{kind}")
            if own is not None:
                out[impl] = own
            elif kind != "chain" and impl != c.GLIB:
                out[impl] = us[f"{impl}:chain"]  # asyncio's nearest equivalent
        return out

    params = {"callbacks": n}
    records = [
        c.figure(BENCH, "call_soon chain", "µs/callback", values("chain"), runs=nruns,
                 params=params)
    ]
    titles = {
        "idle_repeat": "repeating idle",
        "idle_oneshot": "one-shot idle chain",
        "timeout0": "repeating timeout(0)",
    }
    for kind, title in titles.items():
        labels = {i: ("call_soon chain" if i in (c.ASYNCIO, c.UVLOOP) else title) for i in impls}
        records.append(
            c.figure(BENCH, title, "µs/dispatch", values(kind), runs=nruns, params=params,
                     labels=labels)
        )
    records.extend(_targets(us, impls))
    return records


def _targets(us: dict[str, float], impls: list[str]) -> list[c.Record]:
    out: list[c.Record] = []
    chain = us.get(f"{c.ASYNCIO}:chain")
    for kind, title in (("idle_repeat", "repeating idle"), ("timeout0", "repeating timeout(0)")):
        out.append(
            c.ratio_target(
                BENCH,
                f"{title} dispatch vs call_soon callback (stock base)",
                us.get(f"{c.AQ}:{kind}"),
                chain,
                1.0,
                detail="aioqloop/asyncio source ÷ asyncio call_soon chain",
            )
        )
    if c.AQUV in impls:
        glib_us = us.get(f"{c.GLIB}:idle_repeat")
        out.append(
            c.ratio_target(
                BENCH,
                "repeating idle on the uvloop base vs GLib+PyGObject",
                us.get(f"{c.AQUV}:idle_repeat"),
                glib_us,
                1.0,
                detail="aioqloop/uvloop ÷ GLib" if glib_us else "GLib not available",
            )
        )
    for impl, base in ((c.AQ, c.ASYNCIO), (c.AQUV, c.UVLOOP)):
        if impl in impls:
            out.append(
                c.ratio_target(
                    BENCH,
                    f"call_soon chain on {impl} vs {base}",
                    us.get(f"{impl}:chain"),
                    us.get(f"{base}:chain"),
                    1.03,
                )
            )
    return out


if __name__ == "__main__":
    c.standalone(run, __doc__)
