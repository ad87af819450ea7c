"""Benchmarks for :class:`aioqloop.biglock.BigLock`.

Workloads:

* ``uncontended_async``: one task, ``async with lock: pass``; BigLock vs ``asyncio.Lock``.
* ``uncontended_sync``: one thread, ``with lock: pass``; BigLock vs ``threading.Lock``.
* ``contended_mixed``: two threads and two tasks (on one loop) take the lock in a tight
  loop; throughput (ops/s) and p99/max wait per acquisition, BigLock vs ``aiologic.Lock``
  vs a ``threading.Lock`` that the tasks take through ``asyncio.to_thread``.

Each figure is the median of several runs; the implementations are interleaved run by
run so that drift in machine load hits them alike.  Run ``python
benchmarks/bench_biglock.py [--quick]``: one JSON line per workload, then a summary.
A suite runner can load this file by path and call :func:`run`.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import statistics
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

_ROOT = Path(__file__).resolve().parent.parent


def _load_biglock() -> ModuleType:
    """Import ``aioqloop.biglock``; fall back to loading the file when the package is absent."""
    if (_ROOT / "aioqloop" / "__init__.py").is_file() and str(_ROOT) not in sys.path:
        sys.path.insert(0, str(_ROOT))  # a source checkout, not the installed package
    try:
        import aioqloop.biglock as module
    except ImportError:
        spec = importlib.util.spec_from_file_location(
            "_bench_biglock_impl", _ROOT / "aioqloop" / "biglock.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    return module


BigLock: Any = _load_biglock().BigLock

try:
    import aiologic
except ImportError:  # optional competitor
    aiologic = None


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


# --------------------------------------------------------------------------- #
# Uncontended
# --------------------------------------------------------------------------- #


async def _async_loop(lock: Any, ops: int) -> float:
    start = time.perf_counter()
    for _ in range(ops):
        async with lock:
            pass
    return time.perf_counter() - start


def _sync_loop(lock: Any, ops: int) -> float:
    start = time.perf_counter()
    for _ in range(ops):
        with lock:
            pass
    return time.perf_counter() - start


def _uncontended(
    name: str,
    factories: dict[str, Callable[[], Any]],
    measure: Callable[[Any, int], float],
    ops: int,
    repeats: int,
    baseline: str,
) -> dict[str, Any]:
    samples: dict[str, list[float]] = {impl: [] for impl in factories}
    for _ in range(repeats):
        for impl, factory in factories.items():
            samples[impl].append(measure(factory(), ops) / ops * 1e9)
    ns = {impl: _median(values) for impl, values in samples.items()}
    return {
        "workload": name,
        "ops": ops,
        "repeats": repeats,
        "ns_per_op": ns,
        "ratio_vs_" + baseline: ns["BigLock"] / ns[baseline],
    }


def _bench_uncontended_async(ops: int, repeats: int) -> dict[str, Any]:
    loop = asyncio.new_event_loop()
    try:

        def measure(lock: Any, n: int) -> float:
            return loop.run_until_complete(_async_loop(lock, n))

        factories: dict[str, Callable[[], Any]] = {"BigLock": BigLock, "asyncio.Lock": asyncio.Lock}
        return _uncontended("uncontended_async", factories, measure, ops, repeats, "asyncio.Lock")
    finally:
        loop.close()


def _bench_uncontended_sync(ops: int, repeats: int) -> dict[str, Any]:
    factories: dict[str, Callable[[], Any]] = {
        "BigLock": BigLock,
        "threading.Lock": threading.Lock,
    }
    return _uncontended("uncontended_sync", factories, _sync_loop, ops, repeats, "threading.Lock")


# --------------------------------------------------------------------------- #
# Contended: 2 threads + 2 tasks
# --------------------------------------------------------------------------- #

# How one task takes and drops the lock: (acquire awaitable factory, release).
_TaskOps = tuple[Callable[[], Awaitable[Any]], Callable[[], None]]


def _contended_once(
    lock: Any, task_ops: _TaskOps, ops_per_worker: int
) -> tuple[float, list[float]]:
    """Run the 2+2 workload once; return (ops per second, wait samples in seconds)."""
    waits: list[list[float]] = [[] for _ in range(4)]
    counter = [0]
    start_line = threading.Barrier(3)
    acquire_async, release_async = task_ops

    def thread_worker(index: int) -> None:
        record = waits[index].append
        clock = time.perf_counter
        start_line.wait()
        for _ in range(ops_per_worker):
            t0 = clock()
            with lock:
                record(clock() - t0)
                counter[0] += 1

    async def task_worker(index: int) -> None:
        record = waits[index].append
        clock = time.perf_counter
        for _ in range(ops_per_worker):
            t0 = clock()
            await acquire_async()
            try:
                record(clock() - t0)
                counter[0] += 1
            finally:
                release_async()

    async def tasks_main() -> float:
        await asyncio.to_thread(start_line.wait)
        begin = time.perf_counter()
        await asyncio.gather(task_worker(2), task_worker(3))
        return begin

    threads = [threading.Thread(target=thread_worker, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    begin = asyncio.run(tasks_main())
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - begin
    assert counter[0] == 4 * ops_per_worker, "lost updates: the lock is broken"
    return 4 * ops_per_worker / elapsed, [w for per_worker in waits for w in per_worker]


def _contenders() -> dict[str, Callable[[], tuple[Any, _TaskOps]]]:
    def big() -> tuple[Any, _TaskOps]:
        lock = BigLock()
        return lock, (lock.acquire, lock.release)

    def via_to_thread() -> tuple[Any, _TaskOps]:
        lock = threading.Lock()
        return lock, (lambda: asyncio.to_thread(lock.acquire), lock.release)

    contenders: dict[str, Callable[[], tuple[Any, _TaskOps]]] = {"BigLock": big}
    if aiologic is not None:

        def logic() -> tuple[Any, _TaskOps]:
            lock = aiologic.Lock()
            return lock, (lock.async_acquire, lock.async_release)

        contenders["aiologic.Lock"] = logic
    contenders["threading.Lock+to_thread"] = via_to_thread
    return contenders


def _bench_contended(ops_per_worker: int, repeats: int) -> dict[str, Any]:
    contenders = _contenders()
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    p99s: dict[str, list[float]] = {name: [] for name in contenders}
    maxes: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, make in contenders.items():
            lock, task_ops = make()
            rate, waits = _contended_once(lock, task_ops, ops_per_worker)
            rates[name].append(rate)
            p99s[name].append(_percentile(waits, 0.99))
            maxes[name].append(max(waits))
    result: dict[str, Any] = {
        "workload": "contended_mixed",
        "threads": 2,
        "tasks": 2,
        "ops_per_worker": ops_per_worker,
        "repeats": repeats,
        "ops_per_s": {name: _median(v) for name, v in rates.items()},
        "p99_wait_us": {name: _median(v) * 1e6 for name, v in p99s.items()},
        "max_wait_us": {name: _median(v) * 1e6 for name, v in maxes.items()},
    }
    big_rate = result["ops_per_s"]["BigLock"]
    result["throughput_ratio"] = {
        f"BigLock/{name}": big_rate / rate
        for name, rate in result["ops_per_s"].items()
        if name != "BigLock"
    }
    return result


# --------------------------------------------------------------------------- #
# Entry points
# --------------------------------------------------------------------------- #


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Run every workload; return one dict per workload (what ``main`` prints as JSON)."""
    if quick:
        return [
            _bench_uncontended_async(20_000, 3),
            _bench_uncontended_sync(50_000, 3),
            _bench_contended(1_000, 3),
        ]
    return [
        _bench_uncontended_async(200_000, 7),
        _bench_uncontended_sync(500_000, 7),
        _bench_contended(5_000, 5),
    ]


def _summary(results: list[dict[str, Any]]) -> str:
    lines = []
    for result in results:
        name = result["workload"]
        if "ns_per_op" in result:
            parts = ", ".join(f"{impl} {ns:.0f} ns" for impl, ns in result["ns_per_op"].items())
            ratio = next(v for k, v in result.items() if k.startswith("ratio_vs_"))
            lines.append(f"{name:<18} {parts}  (BigLock is {ratio:.2f}x)")
        else:
            lines.append(f"{name:<18} 2 threads + 2 tasks:")
            for impl, rate in result["ops_per_s"].items():
                lines.append(
                    f"    {impl:<26} {rate:>10,.0f} ops/s   p99 wait "
                    f"{result['p99_wait_us'][impl]:>9.1f} us   max wait "
                    f"{result['max_wait_us'][impl]:>9.1f} us"
                )
            for label, ratio in result["throughput_ratio"].items():
                lines.append(f"    throughput {label}: {ratio:.2f}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer operations and runs")
    args = parser.parse_args(argv)
    results = run(quick=args.quick)
    for result in results:
        print(json.dumps(result, sort_keys=True))
    print()
    print(_summary(results))


if __name__ == "__main__":
    main()
