"""fd ping-pong: µs per round trip of one byte over a socketpair, both ends watched.

One end echoes what it reads, the other counts a round trip and sends the next byte, so
every round trip is two readiness reports and two loop iterations.

Figures (lower is better):

* ``round trip (fd source)`` — ``FdSource`` (``fd_add``) on aioqloop, ``unix_fd_add`` on
  GLib; the asyncio and uvloop columns are ``loop.add_reader``.
* ``round trip (add_reader)`` — ``loop.add_reader`` on every loop, aioqloop's included:
  plain asyncio fd work.

Run ``python benchmarks/bench_fd.py [--quick]``.
"""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _benchlib as c

BENCH = "fd"


def _measure(impl: str, kind: str, n: int) -> float:
    loop = c.new_loop(impl)
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    try:
        return loop.run_until_complete(_pingpong(loop, kind, a, b, n))
    finally:
        c.close_loop(loop)
        a.close()
        b.close()


async def _pingpong(loop: Any, kind: str, a: socket.socket, b: socket.socket, n: int) -> float:
    done = loop.create_future()
    count = 0

    def echo() -> None:
        b.send(b.recv(64))

    def counted() -> None:
        nonlocal count
        a.recv(64)
        count += 1
        if count >= n:
            done.set_result(None)
        else:
            a.send(b"x")

    if kind == "add_reader":
        loop.add_reader(b.fileno(), echo)
        loop.add_reader(a.fileno(), counted)
        t0 = time.perf_counter()
        a.send(b"x")
        await done
        elapsed = time.perf_counter() - t0
        loop.remove_reader(a.fileno())
        loop.remove_reader(b.fileno())
        return elapsed

    import aioqloop

    ctx = aioqloop.get_main_context(loop)

    def on_b(_fd: Any, _cond: Any) -> bool:
        echo()
        return True

    def on_a(_fd: Any, _cond: Any) -> bool:
        counted()
        return True

    ids = [
        aioqloop.fd_add(b, aioqloop.IOCondition.IN, on_b, context=ctx),
        aioqloop.fd_add(a, aioqloop.IOCondition.IN, on_a, context=ctx),
    ]
    t0 = time.perf_counter()
    a.send(b"x")
    await done
    elapsed = time.perf_counter() - t0
    for sid in ids:
        aioqloop.source_remove(sid, context=ctx)
    return elapsed


def run(
    quick: bool = False,
    *,
    runs: int | None = None,
    scale: float = 1.0,
    report: c.Report | None = None,
) -> list[c.Record]:
    """Measure both figures; return figure and target records."""
    n = c.scaled(2_000 if quick else 20_000, scale)
    nruns = c.pick(quick, runs, 3, 7)
    impls = c.impls_with_glib()
    variants = [f"{i}:add_reader" for i in impls if i != c.GLIB]
    variants += [f"{i}:fd_source" for i in impls if c.is_aioqloop(i) or i == c.GLIB]

    def measure(variant: str) -> dict[str, float]:
        impl, kind = variant.split(":")
        if impl == c.GLIB:
            return {"us": float(c.glib().call("fd_pingpong", n=n)["us"])}
        return {"us": _measure(impl, kind, n) / n * 1e6}

    samples = c.interleaved(variants, nruns, measure, report, BENCH)
    us = c.medians(samples, "us")
    params = {"round_trips": n}
    reader = {i: us[f"{i}:add_reader"] for i in impls if f"{i}:add_reader" in us}
    source: dict[str, float] = {}
    labels: dict[str, str] = {}
    for impl in impls:
        if f"{impl}:fd_source" in us:
            source[impl] = us[f"{impl}:fd_source"]
            labels[impl] = "FdSource" if impl != c.GLIB else "g_unix_fd_add"
        else:
            source[impl] = us[f"{impl}:add_reader"]
            labels[impl] = "add_reader"
    records = [
        c.figure(BENCH, "round trip (fd source)", "µs", source, runs=nruns, params=params,
                 labels=labels),
        c.figure(BENCH, "round trip (add_reader)", "µs", reader, runs=nruns, params=params),
    ]
    for impl, base in ((c.AQ, c.ASYNCIO), (c.AQUV, c.UVLOOP)):
        if impl not in impls:
            continue
        records.append(
            c.ratio_target(BENCH, f"FdSource round trip on {impl} vs {base} add_reader",
                           us.get(f"{impl}:fd_source"), us.get(f"{base}:add_reader"), 1.1)
        )
        if impl == c.AQUV and c.GLIB in impls:
            records.append(
                c.ratio_target(BENCH, f"FdSource round trip on {impl} vs GLib g_unix_fd_add",
                               us.get(f"{impl}:fd_source"), us.get(f"{c.GLIB}:fd_source"), 1.0)
            )
        records.append(
            c.ratio_target(BENCH, f"add_reader round trip on {impl} vs {base}",
                           us.get(f"{impl}:add_reader"), us.get(f"{base}:add_reader"), 1.05)
        )
    return records


if __name__ == "__main__":
    c.standalone(run, __doc__)
