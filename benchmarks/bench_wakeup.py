"""Cross-thread wake-ups: a worker thread hands items to the loop in bursts.

The producer thread sends a burst of items, waits until the loop has handled all of
them, and repeats.  Each implementation uses its idiomatic hand-off:

* asyncio, uvloop: ``loop.call_soon_threadsafe(handle, item)`` per item;
* aioqloop: append the item to a deque and ``BottomHalf.schedule()`` (idempotent: a
  burst costs one wake-up; the bottom half drains the deque) — QEMU's pattern;
* GLib: ``GLib.idle_add(handle, item)`` per item from the thread.

Figures: items per second (higher is better); wake-up writes per burst, counted
honestly: ``loop._write_to_self`` calls for the selector loops, and ``os.eventfd_write``
calls inside aioqloop (a benchmark-only wrapper around the module's ``os``); uvloop's
``uv_async_send`` and GLib's wake-ups cannot be counted from Python.  Plain asyncio
``call_soon_threadsafe`` on the aioqloop loops is measured too.
Run ``python benchmarks/bench_wakeup.py [--quick]``.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _benchlib as c

BENCH = "wakeup"


class _ContextWrites:
    """Reads the wake-up writes of the loop's context from `MainContext.statistics`."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        import aioqloop

        self._ctx = aioqloop.get_main_context(loop)

    @property
    def writes(self) -> int:
        return self._ctx.statistics().wakeup_writes


def _measure(impl: str, kind: str, burst: int, bursts: int) -> dict[str, float]:
    loop = c.new_loop(impl)
    try:
        if kind == "bh":
            return _handoff(loop, kind, burst, bursts, _ContextWrites(loop))
        return _handoff(loop, kind, burst, bursts, None)
    finally:
        c.close_loop(loop)


def _handoff(
    loop: asyncio.AbstractEventLoop, kind: str, burst: int, bursts: int, counter: Any
) -> dict[str, float]:
    processed = 0
    goal = 0
    done = threading.Event()
    sink: deque[int] = deque(maxlen=1)
    writes = [0]
    if counter is None and hasattr(loop, "_write_to_self"):
        real_write = loop._write_to_self

        def counted_write() -> None:
            writes[0] += 1
            real_write()

        loop._write_to_self = counted_write  # type: ignore[attr-defined]
        counter = writes

    def handle(i: int) -> None:
        nonlocal processed
        sink.append(i)
        processed += 1
        if processed >= goal:
            done.set()

    if kind == "bh":
        import aioqloop

        items: deque[int] = deque()

        def drain() -> None:
            nonlocal processed
            pop = items.popleft
            while items:
                sink.append(pop())
                processed += 1
            if processed >= goal:
                done.set()

        bh = aioqloop.BottomHalf(drain, context=aioqloop.get_main_context(loop))

        def send(i: int) -> None:
            items.append(i)
            bh.schedule()
    else:
        threadsafe = loop.call_soon_threadsafe

        def send(i: int) -> None:
            threadsafe(handle, i)

    def count() -> int:
        if counter is None:
            return -1
        if isinstance(counter, list):
            return int(counter[0])
        return int(counter.writes)

    result: dict[str, float] = {}

    def producer() -> None:
        nonlocal goal
        w0 = count()
        t0 = time.perf_counter()
        for b in range(bursts):
            goal = (b + 1) * burst
            done.clear()
            for i in range(burst):
                send(i)
            done.wait()
        elapsed = time.perf_counter() - t0
        w1 = count()
        result["items_per_s"] = burst * bursts / elapsed
        if w0 >= 0:
            result["writes_per_burst"] = (w1 - w0) / bursts

    async def main() -> None:
        thread = threading.Thread(target=producer)
        thread.start()
        while thread.is_alive():
            # Polling join keeps the measured hand-offs the only cross-thread wake-ups.
            await asyncio.sleep(0.005)
        thread.join()

    loop.run_until_complete(main())
    return result


def run(
    quick: bool = False,
    *,
    runs: int | None = None,
    scale: float = 1.0,
    report: c.Report | None = None,
) -> list[c.Record]:
    """Measure hand-off throughput and wake-up writes; return figure and target records."""
    burst = 1000
    bursts = c.scaled(20 if quick else 100, scale, 2)
    nruns = c.pick(quick, runs, 3, 7)
    impls = c.impls_with_glib()
    variants = [f"{i}:cst" for i in impls if i != c.GLIB]
    variants += [f"{i}:bh" for i in impls if c.is_aioqloop(i)]
    if c.GLIB in impls:
        variants.append(f"{c.GLIB}:idle_add")

    def measure(variant: str) -> dict[str, float]:
        impl, kind = variant.split(":")
        if impl == c.GLIB:
            reply = c.glib().call("wakeup", burst=burst, bursts=bursts)
            return {"items_per_s": float(reply["items_per_s"])}
        return _measure(impl, kind, burst, bursts)

    samples = c.interleaved(variants, nruns, measure, report, BENCH)
    rate = c.medians(samples, "items_per_s")
    writes = c.medians(samples, "writes_per_burst")
    params = {"burst": burst, "bursts": bursts}

    def pick_kind(table: dict[str, float], kind_for: dict[str, str]) -> dict[str, float]:
        return {i: table[f"{i}:{k}"] for i, k in kind_for.items() if f"{i}:{k}" in table}

    native = {i: ("bh" if c.is_aioqloop(i) else "idle_add" if i == c.GLIB else "cst")
              for i in impls}
    names = {"bh": "BottomHalf", "idle_add": "g_idle_add", "cst": "call_soon_threadsafe"}
    labels = {i: names[k] for i, k in native.items()}
    cst = {i: "cst" for i in impls if i != c.GLIB}
    records = [
        c.figure(BENCH, "burst hand-off", "items/s", pick_kind(rate, native), runs=nruns,
                 better="higher", params=params, labels=labels),
        c.figure(BENCH, "wake-up writes per burst", "writes", pick_kind(writes, native),
                 runs=nruns, params=params, labels=labels,
                 note="self-pipe / eventfd writes; uvloop and GLib cannot be counted"),
        c.figure(BENCH, "call_soon_threadsafe hand-off", "items/s", pick_kind(rate, cst),
                 runs=nruns, better="higher", params=params),
    ]
    for impl, base in ((c.AQ, c.ASYNCIO), (c.AQUV, c.UVLOOP)):
        if impl not in impls:
            continue
        records.append(
            c.ratio_target(BENCH, f"BottomHalf on {impl} vs {base} call_soon_threadsafe "
                           "(bursts)", rate.get(f"{impl}:bh"), rate.get(f"{base}:cst"),
                           3.0 if impl == c.AQ else 1.0, at_least=True)
        )
    for impl, base in ((c.AQ, c.ASYNCIO), (c.AQUV, c.ASYNCIO)):
        bh_key, cst_key = f"{impl}:bh", f"{base}:cst"
        if bh_key in writes and cst_key in writes:
            bh_w, cst_w = writes[bh_key], writes[cst_key]
            records.append(
                c.target(BENCH, f"wake-up writes avoided per burst by BottomHalf on {impl}",
                         "report", cst_w - bh_w, None,
                         f"{bh_w:.1f} eventfd writes vs {cst_w:.0f} self-pipe writes "
                         f"({base} call_soon_threadsafe) per burst of {burst}")
            )
    return records


if __name__ == "__main__":
    c.standalone(run, __doc__)
