"""asyncio TCP echo over 127.0.0.1 with streams: plain asyncio work on every loop.

An ``asyncio.start_server`` echo server and its clients (``open_connection``) share one
loop.  Each client writes a 100-byte message and awaits its echo (``readexactly``), so
every message is a full round trip through the loop.  No GLib column: this is the
"aioqloop costs nothing to asyncio code that uses no sources" check.

Figures (messages per second, higher is better): one stream, and 8 concurrent streams.
They are measured in a child process with glibc's mmap threshold fixed
(``MALLOC_MMAP_THRESHOLD_``, see ``_benchlib.run_in_fixed_allocator``), so that every
loop runs in the same allocator state.
Run ``python benchmarks/bench_echo.py [--quick]``.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _benchlib as c

BENCH = "echo"
MESSAGE = b"x" * 100


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


async def _client(port: int, n: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    size = len(MESSAGE)
    for _ in range(n):
        writer.write(MESSAGE)
        await reader.readexactly(size)
    writer.close()
    await writer.wait_closed()


async def _echo(streams: int, n: int) -> float:
    server = await asyncio.start_server(_serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        t0 = time.perf_counter()
        await asyncio.gather(*(_client(port, n) for _ in range(streams)))
        return time.perf_counter() - t0
    finally:
        server.close()
        await server.wait_closed()


def run(
    quick: bool = False,
    *,
    runs: int | None = None,
    scale: float = 1.0,
    report: c.Report | None = None,
) -> list[c.Record]:
    """Measure echo throughput on every loop; return figure and target records.

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
    n = c.scaled(1_000 if quick else 10_000, scale)
    nruns = c.pick(quick, runs, 3, 7)
    impls = c.loop_impls()
    shapes = {"1 stream": (1, n), "8 streams": (8, max(1, n // 8))}
    variants = [f"{impl}|{shape}" for shape in shapes for impl in impls]

    def measure(variant: str) -> dict[str, float]:
        impl, shape = variant.split("|")
        streams, per = shapes[shape]
        return {"msg_s": c.messages_per_second(impl, _echo, streams, per)}

    samples = c.interleaved(variants, nruns, measure, report, BENCH)
    rate = c.medians(samples, "msg_s")
    records: list[c.Record] = []
    for shape, (streams, per) in shapes.items():
        values = {i: rate[f"{i}|{shape}"] for i in impls}
        records.append(
            c.figure(BENCH, f"TCP echo, {shape}", "msg/s", values, runs=nruns,
                     better="higher",
                     params={"streams": streams, "messages": streams * per, "bytes": 100,
                             **c.allocator_params()})
        )
        for impl, base in ((c.AQ, c.ASYNCIO), (c.AQUV, c.UVLOOP)):
            if impl in values:
                records.append(
                    c.ratio_target(BENCH, f"TCP echo ({shape}) on {impl} vs {base}",
                                   values[impl], values[base], 0.95, at_least=True,
                                   detail="within 5% of the base loop")
                )
    return records


if __name__ == "__main__":
    c.standalone(run, __doc__)
