"""The GLib side of the benchmarks: the same workloads on real GLib through PyGObject.

Needs only the standard library and ``gi``, so it runs under whichever Python has
PyGObject (often the system's ``/usr/bin/python3``).  ``--serve`` answers JSON requests
``{"op": name, "kwargs": {...}}`` read line by line from stdin with one JSON line of
figures each; the first line it prints is ``{"ready": true, "version": ...}``.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import resource
import socket
import sys
import threading
import time
from collections import deque
from typing import Any, ClassVar

GLib: Any = None


def _load() -> Any:
    global GLib
    if GLib is None:
        import gi

        gi.require_version("GLib", "2.0")
        from gi.repository import GLib as glib_module

        GLib = glib_module
    return GLib


def timer_offsets(n: int, seed: int = 1) -> list[float]:
    """``n`` fractions of the spread, evenly spaced, in a fixed shuffled order."""
    offsets = [i / n for i in range(n)]
    random.Random(seed).shuffle(offsets)
    return offsets


def version() -> str:
    glib = _load()
    import gi

    return (
        f"GLib {glib.MAJOR_VERSION}.{glib.MINOR_VERSION}.{glib.MICRO_VERSION}, "
        f"PyGObject {gi.__version__}"
    )


def _run(loop: Any) -> float:
    t0 = time.perf_counter()
    loop.run()
    return time.perf_counter() - t0


def dispatch(kind: str, n: int) -> dict[str, float]:
    """Per-dispatch µs of a repeating idle, a one-shot idle chain or a repeating timeout(0)."""
    glib = _load()
    loop = glib.MainLoop()
    count = [0]

    def repeat() -> bool:
        count[0] += 1
        if count[0] >= n:
            loop.quit()
            return False
        return True

    def oneshot() -> bool:
        count[0] += 1
        if count[0] >= n:
            loop.quit()
        else:
            glib.idle_add(oneshot)
        return False

    if kind == "idle_repeat":
        glib.idle_add(repeat)
    elif kind == "idle_oneshot":
        glib.idle_add(oneshot)
    elif kind == "timeout0":
        glib.timeout_add(0, repeat)
    else:
        raise ValueError(f"unknown dispatch kind {kind!r}")
    return {"us": _run(loop) / n * 1e6}


def timers(n: int, spread: float, lead: float | None = None, seed: int = 1) -> dict[str, float]:
    """The timer storm on ``g_timeout_add``; see bench_timers.py for the figures.

    ``lead`` (seconds before the first deadline) defaults to 1.5 times the measured cost
    of scheduling ``n`` timeouts, so that every one is set before its deadline.
    """
    glib = _load()
    loop = glib.MainLoop()
    if lead is None:
        lead = calibrate_lead(n)
    offsets = timer_offsets(n, seed)
    fired = [0.0] * n
    remaining = [n]
    mono = time.monotonic

    def fire(i: int) -> bool:
        fired[i] = mono()
        remaining[0] -= 1
        if not remaining[0]:
            loop.quit()
        return False

    # g_timeout_add() computes the expiration from g_get_monotonic_time() (CLOCK_MONOTONIC,
    # as time.monotonic()), in whole ms: round up so no deadline is asked for early.
    cpu0 = time.process_time()
    base = mono() + lead
    deadlines = [base + spread * off for off in offsets]
    late_at_schedule = 0
    timeout_add = glib.timeout_add
    for i, when in enumerate(deadlines):
        ms = math.ceil((when - mono()) * 1000.0)
        if ms <= 0:
            late_at_schedule += 1
            ms = 0
        timeout_add(ms, fire, i)
    loop.run()
    cpu = time.process_time() - cpu0
    return _timer_figures(fired, deadlines, cpu, late_at_schedule)


def calibrate_lead(n: int) -> float:
    """Seconds of lead for scheduling ``n`` timeouts: 1.5 times a measured tenth, + 30 ms."""
    glib = _load()
    k = max(100, n // 10)

    def never(_: int) -> bool:
        return False

    t0 = time.perf_counter()
    ids = [glib.timeout_add(3_600_000, never, i) for i in range(k)]
    per = (time.perf_counter() - t0) / k
    for sid in ids:
        glib.source_remove(sid)
    return 0.03 + 1.5 * per * n


def _timer_figures(
    fired: list[float], deadlines: list[float], cpu: float, late_at_schedule: int
) -> dict[str, float]:
    lateness = sorted(f - d for f, d in zip(fired, deadlines, strict=True))
    n = len(lateness)
    early = [x for x in lateness if x < 0]
    return {
        "cpu_us": cpu / n * 1e6,
        "late_median_us": lateness[n // 2] * 1e6,
        "late_p99_us": lateness[min(n - 1, int(0.99 * n))] * 1e6,
        "early": float(len(early)),
        "max_early_us": (-min(early) * 1e6) if early else 0.0,
        "late_at_schedule": float(late_at_schedule),
    }


def fd_pingpong(n: int) -> dict[str, float]:
    """µs per round trip of one byte over a socketpair, both ends watched by GLib."""
    glib = _load()
    loop = glib.MainLoop()
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    count = [0]

    def on_b(fd: int, cond: Any) -> bool:
        b.send(b.recv(64))
        return True

    def on_a(fd: int, cond: Any) -> bool:
        a.recv(64)
        count[0] += 1
        if count[0] >= n:
            loop.quit()
        else:
            a.send(b"x")
        return True

    ids = [
        glib.unix_fd_add_full(glib.PRIORITY_DEFAULT, b.fileno(), glib.IOCondition.IN, on_b),
        glib.unix_fd_add_full(glib.PRIORITY_DEFAULT, a.fileno(), glib.IOCondition.IN, on_a),
    ]
    a.send(b"x")
    elapsed = _run(loop)
    for sid in ids:
        glib.source_remove(sid)
    a.close()
    b.close()
    return {"us": elapsed / n * 1e6}


class _Scaling:
    ids: ClassVar[list[int]] = []
    socks: ClassVar[list[socket.socket]] = []


def scaling_setup(k: int, n_fd: int) -> dict[str, float]:
    """Attach ``k`` non-ready sources: ``n_fd`` idle fd watches, the rest far timeouts."""
    glib = _load()
    scaling_teardown()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    n_fd = min(n_fd, k)
    socks = _Scaling.socks
    while len(socks) < n_fd:
        socks.extend(socket.socketpair())

    def never(*_: Any) -> bool:
        return True

    t0 = time.perf_counter()
    ids = _Scaling.ids
    for s in socks[:n_fd]:
        ids.append(glib.unix_fd_add_full(glib.PRIORITY_DEFAULT, s.fileno(),
                                         glib.IOCondition.IN, never))
    for _ in range(k - n_fd):
        ids.append(glib.timeout_add(3_600_000, never))
    elapsed = time.perf_counter() - t0
    return {"attach_us": elapsed / k * 1e6 if k else 0.0}


def scaling_measure(m: int, budget: float = 0.25) -> dict[str, float]:
    """µs per iteration (a repeating idle) with the attached sources in place.

    Stops after ``m`` iterations or ``budget`` seconds, whichever comes first: with
    100k sources one GLib iteration takes milliseconds.
    """
    glib = _load()
    loop = glib.MainLoop()
    count = [0]
    clock = time.perf_counter
    t0 = clock()
    deadline = t0 + budget

    def repeat() -> bool:
        count[0] += 1
        n = count[0]
        # Read the clock on iterations 1, 2, 4, 8, ... and every 256th: cheap when an
        # iteration is fast, prompt when it takes milliseconds.
        if n >= m or ((n & (n - 1) == 0 or n & 255 == 0) and clock() > deadline):
            loop.quit()
            return False
        return True

    glib.idle_add(repeat)
    loop.run()
    return {"us": (clock() - t0) / count[0] * 1e6, "iterations": float(count[0])}


def scaling_teardown() -> dict[str, float]:
    glib = _load()
    for sid in _Scaling.ids:
        glib.source_remove(sid)
    _Scaling.ids.clear()
    for s in _Scaling.socks:
        s.close()
    _Scaling.socks.clear()
    return {}


def wakeup(burst: int, bursts: int) -> dict[str, float]:
    """Items per second handed from a thread through ``g_idle_add`` (one source each)."""
    glib = _load()
    loop = glib.MainLoop()
    processed = [0]
    goal = [0]
    done = threading.Event()
    sink: deque[int] = deque(maxlen=1)
    result: list[float] = []

    def handle(i: int) -> bool:
        sink.append(i)
        processed[0] += 1
        if processed[0] >= goal[0]:
            done.set()
        return False

    def producer() -> None:
        t0 = time.perf_counter()
        for b in range(bursts):
            goal[0] = (b + 1) * burst
            done.clear()
            for i in range(burst):
                glib.idle_add(handle, i, priority=glib.PRIORITY_DEFAULT)
            done.wait()
        result.append(time.perf_counter() - t0)
        glib.idle_add(loop.quit)

    thread = threading.Thread(target=producer)
    thread.start()
    loop.run()
    thread.join()
    return {"items_per_s": burst * bursts / result[0]}


OPS = {
    "dispatch": dispatch,
    "timers": timers,
    "fd_pingpong": fd_pingpong,
    "scaling_setup": scaling_setup,
    "scaling_measure": scaling_measure,
    "scaling_teardown": scaling_teardown,
    "wakeup": wakeup,
}


def serve() -> None:
    out = sys.stdout
    try:
        hello: dict[str, Any] = {"ready": True, "version": version()}
    except Exception as exc:
        hello = {"error": f"cannot load GLib: {exc}"}
    out.write(json.dumps(hello) + "\n")
    out.flush()
    if "error" in hello:
        return
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            reply: dict[str, Any] = OPS[request["op"]](**request.get("kwargs", {}))
        except Exception as exc:
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        serve()
    else:
        print(__doc__)
