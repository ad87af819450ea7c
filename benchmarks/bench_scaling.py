"""Iteration cost against the number of attached, non-ready sources (0 to 100k).

The non-ready sources are idle fd watches (both ends of socketpairs that carry no data;
as many as RLIMIT_NOFILE allows, at most 19k and at most half of them) and far-future
(one hour) timeouts for the rest.  With them in place, the cost of one loop iteration is
measured by a self-renewing callback: a repeating idle source on aioqloop and GLib,
a ``call_soon`` chain on asyncio and uvloop (``add_reader`` and ``call_later`` hold
their sources there).  GLib walks every source in prepare and check and polls every
fd, so its cost grows with the count; the others should stay flat.

Figures: µs per iteration at each count (the points of the scaling curve), the cost at
the largest count divided by the cost with none (flatness), and µs per attached source.
Run ``python benchmarks/bench_scaling.py [--quick]``.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _benchlib as c
from bench_dispatch import _chain

BENCH = "scaling"
COUNTS = (0, 1_000, 10_000, 100_000)
FAR = 3600.0


def _never(*_: Any) -> bool:
    return True


class _Rig:
    """One loop of one implementation holding ``k`` non-ready sources."""

    def __init__(self, impl: str, k: int, fds: list[socket.socket]) -> None:
        self.impl = impl
        self.loop = c.new_loop(impl)
        loop = self.loop
        t0 = time.perf_counter()
        if c.is_aioqloop(impl):
            import aioqloop

            ctx = aioqloop.get_main_context(loop)
            cond = aioqloop.IOCondition.IN
            for s in fds:
                aioqloop.fd_add(s.fileno(), cond, _never, context=ctx)
            for _ in range(k - len(fds)):
                aioqloop.timeout_add(FAR, _never, context=ctx)
        else:
            for s in fds:
                loop.add_reader(s.fileno(), _never)
            for _ in range(k - len(fds)):
                loop.call_later(FAR, _never)
        self.attach_us = (time.perf_counter() - t0) / k * 1e6 if k else 0.0

    def iteration_us(self, m: int) -> float:
        kind = "idle_repeat" if c.is_aioqloop(self.impl) else "chain"
        elapsed: float = self.loop.run_until_complete(_chain(self.loop, self.impl, kind, m))
        return elapsed / m * 1e6

    def close(self) -> None:
        loop: asyncio.AbstractEventLoop = self.loop
        c.close_loop(loop)


def run(
    quick: bool = False,
    *,
    runs: int | None = None,
    scale: float = 1.0,
    report: c.Report | None = None,
    counts: tuple[int, ...] | None = None,
) -> list[c.Record]:
    """Measure the scaling curve; return figure and target records."""
    report = report or (lambda _: None)
    m = c.scaled(2_000 if quick else 10_000, scale)
    nruns = c.pick(quick, runs, 3, 5)
    glib_budget = 0.1 if quick else 0.5  # seconds per GLib measurement
    if counts is None:
        counts = tuple(c.scaled(k, scale, 0) if k else 0 for k in COUNTS)
    impls = c.impls_with_glib()
    budget = c.fd_budget()
    pool: list[socket.socket] = []
    per_k: list[tuple[int, int, dict[str, float], dict[str, float]]] = []
    try:
        for k in counts:
            n_fd = min(k // 2, budget) // 2 * 2
            while len(pool) < n_fd:
                pool.extend(socket.socketpair())
            rigs: dict[str, _Rig] = {}
            attach: dict[str, float] = {}
            try:
                for impl in impls:
                    report(f"{BENCH} attaching {k} sources on {impl}")
                    if impl == c.GLIB:
                        attach[impl] = float(
                            c.glib().call("scaling_setup", k=k, n_fd=n_fd)["attach_us"]
                        )
                    else:
                        rigs[impl] = _Rig(impl, k, pool[:n_fd])
                        attach[impl] = rigs[impl].attach_us

                def measure(impl: str) -> dict[str, float]:
                    if impl == c.GLIB:
                        reply = c.glib().call("scaling_measure", m=m, budget=glib_budget)
                        return {"us": float(reply["us"])}
                    return {"us": rigs[impl].iteration_us(m)}  # noqa: B023

                samples = c.interleaved(impls, nruns, measure, report, f"{BENCH} k={k}")
            finally:
                for rig in rigs.values():
                    rig.close()
                if c.GLIB in impls:
                    c.glib().call("scaling_teardown")
            per_k.append((k, n_fd, c.medians(samples, "us"), attach))
    finally:
        for s in pool:
            s.close()
    return _records(per_k, impls, nruns, m)


def _records(
    per_k: list[tuple[int, int, dict[str, float], dict[str, float]]],
    impls: list[str],
    nruns: int,
    m: int,
) -> list[c.Record]:
    records: list[c.Record] = []
    labels = {i: ("repeating idle" if c.is_aioqloop(i) or i == c.GLIB else "call_soon chain")
              for i in impls}
    for k, n_fd, us, _attach in per_k:
        records.append(
            c.figure(BENCH, f"iteration cost, {k} sources", "µs/iteration", us, runs=nruns,
                     params={"sources": k, "fds": n_fd, "timeouts": k - n_fd,
                             "iterations": m},
                     labels=labels)
        )
    if len(per_k) < 2:
        return records
    k0, _, us0, _ = per_k[0]
    kmax, n_fd, usmax, attach = per_k[-1]
    flat = {i: usmax[i] / us0[i] for i in impls if i in us0 and i in usmax and us0[i]}
    records.append(
        c.figure(BENCH, f"flatness: cost at {kmax} ÷ at {k0}", "x", flat, runs=nruns,
                 params={"sources": kmax, "fds": n_fd})
    )
    if kmax:
        records.append(
            c.figure(BENCH, f"attach cost, {kmax} sources", "µs/source", attach, runs=1,
                     params={"sources": kmax, "fds": n_fd})
        )
    for impl in (c.AQ, c.AQUV):
        if impl in flat:
            records.append(
                c.ratio_target(BENCH, f"iteration cost flat from {k0} to {kmax} sources "
                               f"on {impl}", usmax[impl], us0[impl], 1.2,
                               detail=f"{us0[impl]:.2f} → {usmax[impl]:.2f} µs")
            )
    return records


if __name__ == "__main__":
    c.standalone(run, __doc__)
