"""asyncio streams ping-pong over 64 socketpairs: many connections busy at once.

64 ``socket.socketpair()`` connections, both ends opened as asyncio streams
(``asyncio.open_connection(sock=...)``) on one loop.  On each pair one end writes a
100-byte message and awaits its echo (``readexactly``); the other end echoes what it
reads.  All 64 pairs run at once, so every loop iteration has many ready sockets: the
shape of a server with many active clients.  No GLib column: plain asyncio work.

Figure (messages per second, higher is better): ``ping-pong, 64 socketpairs``.  Goal:
aioqloop on the uvloop base ≥ 1.15x asyncio.  Measured in a child process with glibc's
mmap threshold fixed (``MALLOC_MMAP_THRESHOLD_``, see
``_benchlib.run_in_fixed_allocator``), so that every loop runs in the same allocator
state.  Run ``python benchmarks/bench_pingpong.py [--quick]``.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _benchlib as c

BENCH = "pingpong"
PAIRS = 64
MESSAGE = b"x" * 100


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        data = await reader.read(65536)
        if not data:
            break
        writer.write(data)
        await writer.drain()
    writer.close()


async def _ping(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
    size = len(MESSAGE)
    for _ in range(n):
        writer.write(MESSAGE)
        await reader.readexactly(size)
    writer.close()
    await writer.wait_closed()


async def _pingpong(pairs: int, n: int) -> float:
    """Seconds for ``n`` round trips on each of ``pairs`` socketpairs, all at once."""
    ends = []
    for _ in range(pairs):
        a, b = socket.socketpair()
        ends.append((await asyncio.open_connection(sock=a), await asyncio.open_connection(sock=b)))
    echoes = [asyncio.ensure_future(_echo(*b)) for _a, b in ends]
    t0 = time.perf_counter()
    await asyncio.gather(*(_ping(*a, n) for a, _b in ends))
    elapsed = time.perf_counter() - t0
    await asyncio.gather(*echoes)
    return elapsed


def run(
    quick: bool = False,
    *,
    runs: int | None = None,
    scale: float = 1.0,
    report: c.Report | None = None,
) -> list[c.Record]:
    """Measure ping-pong throughput on every loop; return figure and target records.

    The measurements run in a child process in the fixed allocator state.
    """
    return c.run_in_fixed_allocator(Path(__file__), _run_here, quick, runs=runs, scale=scale,
                                    report=report)


def _run_here(
    quick: bool,
    *,
    runs: int | None,
    scale: float,
    report: c.Report | None,
) -> list[c.Record]:
    per = c.scaled(100 if quick else 1_000, scale, minimum=2)
    nruns = c.pick(quick, runs, 3, 7)
    impls = c.loop_impls()
    samples = c.interleaved(
        impls, nruns,
        lambda impl: {"msg_s": c.messages_per_second(impl, _pingpong, PAIRS, per)},
        report, BENCH)
    values = c.medians(samples, "msg_s")
    name = f"ping-pong, {PAIRS} socketpairs"
    records = [
        c.figure(BENCH, name, "msg/s", values, runs=nruns, better="higher",
                 params={"pairs": PAIRS, "messages": PAIRS * per, "bytes": len(MESSAGE),
                         **c.allocator_params()})
    ]
    if c.AQUV in values:
        records.append(
            c.ratio_target(BENCH, f"{name} on {c.AQUV} vs asyncio", values[c.AQUV],
                           values[c.ASYNCIO], 1.15, at_least=True)
        )
    else:
        records.append(c.target(BENCH, f"{name} on {c.AQUV} vs asyncio", "≥ 1.15x", None,
                                None, "uvloop is not installed"))
    return records


if __name__ == "__main__":
    c.standalone(run, __doc__)
