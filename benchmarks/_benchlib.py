"""Shared harness for the aioqloop benchmarks: implementations, interleaved runs, records.

Every benchmark module compares *implementations* of the same work:

* ``asyncio`` — the stock selector loop (the baseline of every ratio);
* ``uvloop`` — plain uvloop (the baseline of ``aioqloop/uvloop``'s second ratio);
* ``aioqloop/asyncio`` and ``aioqloop/uvloop`` — aioqloop on each base;
* ``glib`` — real GLib through PyGObject, run in a helper process (``_glib_worker.py``) by
  whichever Python can import ``gi``: this one, or the system's ``/usr/bin/python3``.

Runs are interleaved (A B C A B C …) so that drift in machine load hits every
implementation alike, and each figure is the median of its runs.  Results are plain
dicts ("records"), printed one JSON line each:

* ``{"kind": "figure", "bench", "figure", "unit", "better", "values", "ratios", ...}``;
  ``ratios`` divide by the ``asyncio`` value (or the record's ``baseline``) and
  ``ratios_vs_uvloop`` holds ``aioqloop/uvloop`` divided by ``uvloop``;
* ``{"kind": "target", "bench", "target", "goal", "measured", "ok", "detail"}`` for the
  performance goals (reported, never asserted).
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import gc
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if (ROOT / "aioqloop" / "__init__.py").is_file() and str(ROOT) not in sys.path:
    # A source checkout works without installing the package.  (Installed, the
    # workloads live inside the package, whose directory must not go on sys.path: its
    # modules would shadow the standard library's, e.g. ``statistics``.)
    sys.path.insert(0, str(ROOT))

ASYNCIO = "asyncio"
UVLOOP = "uvloop"
AQ = "aioqloop/asyncio"
AQUV = "aioqloop/uvloop"
GLIB = "glib"
LOOP_IMPLS = (ASYNCIO, UVLOOP, AQ, AQUV)
ALL_IMPLS = (*LOOP_IMPLS, GLIB)

Report = Callable[[str], None]
Record = dict[str, Any]


def _quiet(_: str) -> None:
    pass


# --------------------------------------------------------------------------- loops


def have_uvloop() -> bool:
    return importlib.util.find_spec("uvloop") is not None


def loop_impls() -> list[str]:
    """The in-process implementations available here (uvloop is optional)."""
    if have_uvloop():
        return list(LOOP_IMPLS)
    return [ASYNCIO, AQ]


def new_loop(impl: str) -> asyncio.AbstractEventLoop:
    """A fresh, not running loop of implementation ``impl`` (not ``glib``)."""
    if impl == ASYNCIO:
        return asyncio.SelectorEventLoop()
    if impl == UVLOOP:
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        return loop
    import aioqloop

    if impl == AQ:
        return aioqloop.new_event_loop(base="asyncio")
    if impl == AQUV:
        return aioqloop.new_event_loop(base="uvloop")
    raise ValueError(f"unknown implementation {impl!r}")


def is_aioqloop(impl: str) -> bool:
    return impl in (AQ, AQUV)


def close_loop(loop: asyncio.AbstractEventLoop) -> None:
    with contextlib.suppress(Exception):
        loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()


def messages_per_second(impl: str, workload: Callable[[int, int], Any], conns: int,
                        n: int) -> float:
    """Messages per second of ``workload(conns, n)`` (a coroutine function returning its
    elapsed seconds for ``conns * n`` messages) on a fresh loop of ``impl``."""
    loop = new_loop(impl)
    try:
        elapsed: float = loop.run_until_complete(workload(conns, n))
        return conns * n / elapsed
    finally:
        close_loop(loop)


def raise_nofile_limit() -> int:
    """Raise RLIMIT_NOFILE's soft limit to the hard limit; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 20)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def fd_budget(cap: int = 19_000, reserve: int = 400) -> int:
    """How many fds a benchmark may open for idle watches (even, at most ``cap``)."""
    limit = raise_nofile_limit()
    return max(0, min(cap, limit - reserve)) // 2 * 2


# --------------------------------------------------------------------------- GLib


class GLibBackend:
    """The GLib workloads of ``_glib_worker.py``, run in a helper process.

    The helper speaks JSON lines over its stdin/stdout.  It runs under this Python when
    ``gi`` imports here, else under ``$AIOQLOOP_BENCH_GLIB_PYTHON`` (default
    ``/usr/bin/python3``) when ``gi`` imports there.  A helper process keeps GLib's
    global default context away from the asyncio loops being measured.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.version: str | None = None
        self.status = "not installed"
        self._proc: subprocess.Popen[str] | None = None
        if not enabled:
            self.status = "disabled"
            return
        python = self._find_python()
        if python is None:
            return
        try:
            self._proc = subprocess.Popen(
                [python, "-u", str(HERE / "_glib_worker.py"), "--serve"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            hello = self._read()
        except (OSError, RuntimeError) as exc:
            self.close()
            self.status = f"unavailable ({exc})"
            return
        self.version = str(hello.get("version"))
        self.status = f"{self.version} via {python}"

    @staticmethod
    def _find_python() -> str | None:
        if importlib.util.find_spec("gi") is not None:
            return sys.executable
        python = os.environ.get("AIOQLOOP_BENCH_GLIB_PYTHON", "/usr/bin/python3")
        if not python or not Path(python).exists():
            return None
        try:
            probe = subprocess.run(
                [python, "-c", "import gi; gi.require_version('GLib', '2.0')"],
                capture_output=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return python if probe.returncode == 0 else None

    @property
    def available(self) -> bool:
        return self._proc is not None

    def _read(self) -> dict[str, Any]:
        assert self._proc is not None and self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError("the GLib helper process exited")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"GLib helper: {reply['error']}")
        return reply

    def call(self, op: str, **kwargs: Any) -> dict[str, Any]:
        """Run ``op`` in the helper; return its figures."""
        if self._proc is None or self._proc.stdin is None:
            raise RuntimeError("GLib is not available")
        self._proc.stdin.write(json.dumps({"op": op, "kwargs": kwargs}) + "\n")
        self._proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError, ValueError):
            assert proc.stdin is not None
            proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


_glib: GLibBackend | None = None
_glib_enabled = True


def configure_glib(enabled: bool) -> None:
    """Enable or disable the GLib helper for the coming benchmarks (closes a running one)."""
    global _glib, _glib_enabled
    if _glib is not None:
        _glib.close()
        _glib = None
    _glib_enabled = enabled


def glib_enabled() -> bool:
    """False after ``configure_glib(False)`` (``--no-glib``): measure no GLib at all."""
    return _glib_enabled


def glib() -> GLibBackend:
    """The shared GLib helper (started on first use)."""
    global _glib
    if _glib is None:
        _glib = GLibBackend(_glib_enabled)
    return _glib


def _close_glib() -> None:
    if _glib is not None:
        _glib.close()


atexit.register(_close_glib)


def impls_with_glib(impls: Iterable[str] | None = None) -> list[str]:
    chosen = list(impls) if impls is not None else loop_impls()
    if glib().available:
        chosen.append(GLIB)
    return chosen


# --------------------------------------------------------------------------- runs


def interleaved(
    variants: list[str],
    runs: int,
    measure: Callable[[str], dict[str, float]],
    report: Report | None = None,
    label: str = "",
) -> dict[str, dict[str, list[float]]]:
    """Run ``measure(variant)`` ``runs`` times per variant, in alternation.

    Returns ``{variant: {metric: [sample per run]}}``.
    """
    report = report or _quiet
    samples: dict[str, dict[str, list[float]]] = {v: {} for v in variants}
    for r in range(runs):
        for variant in variants:
            report(f"{label} {variant} (run {r + 1}/{runs})")
            gc.collect()
            for metric, value in measure(variant).items():
                samples[variant].setdefault(metric, []).append(value)
    return samples


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: list[float], fraction: float) -> float:
    """The ``fraction`` quantile (nearest rank) of ``values``."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def medians(samples: dict[str, dict[str, list[float]]], metric: str) -> dict[str, float]:
    """``{variant: median of metric}`` over the variants that have the metric."""
    return {v: median(m[metric]) for v, m in samples.items() if metric in m}


# --------------------------------------------------------------------------- records


def figure(
    bench: str,
    name: str,
    unit: str,
    values: dict[str, float],
    *,
    runs: int,
    better: str = "lower",
    baseline: str = ASYNCIO,
    params: dict[str, Any] | None = None,
    note: str | None = None,
    labels: dict[str, str] | None = None,
) -> Record:
    """One figure: medians per implementation and their ratios to ``baseline``.

    ``labels`` names what each implementation ran (e.g. "call_soon chain") when it
    differs between implementations.
    """
    base = values.get(baseline)
    ratios = {
        impl: (v / base if base else float("nan")) for impl, v in values.items() if base is not None
    }
    record: Record = {
        "kind": "figure",
        "bench": bench,
        "figure": name,
        "unit": unit,
        "better": better,
        "baseline": baseline,
        "runs": runs,
        "values": values,
        "ratios": ratios,
    }
    if AQUV in values and UVLOOP in values and values[UVLOOP]:
        record["ratios_vs_uvloop"] = {AQUV: values[AQUV] / values[UVLOOP]}
    if params:
        record["params"] = params
    if labels:
        record["labels"] = labels
    if note:
        record["note"] = note
    return record


def target(
    bench: str,
    name: str,
    goal: str,
    measured: float | None,
    ok: bool | None,
    detail: str = "",
) -> Record:
    """A performance goal with its measured ratio; ``ok`` is None when not measurable."""
    return {
        "kind": "target",
        "bench": bench,
        "target": name,
        "goal": goal,
        "measured": measured,
        "ok": ok,
        "detail": detail,
    }


def ratio_target(
    bench: str,
    name: str,
    num: float | None,
    den: float | None,
    limit: float,
    *,
    at_least: bool = False,
    detail: str = "",
) -> Record:
    """Target ``num / den <= limit`` (or ``>= limit`` with ``at_least``)."""
    goal = f"{'≥' if at_least else '≤'} {limit:g}x"
    if num is None or den is None or den == 0 or num != num or den != den:
        return target(bench, name, goal, None, None, detail or "not measured")
    ratio = num / den
    ok = ratio >= limit if at_least else ratio <= limit
    return target(bench, name, goal, ratio, ok, detail)


def emit(records: list[Record]) -> None:
    for record in records:
        print(json.dumps(record, sort_keys=True), flush=True)


def standalone(
    run: Callable[..., list[Record]], doc: str | None, argv: list[str] | None = None
) -> None:
    """``python benchmarks/bench_<name>.py [--quick]``: one JSON line per figure and target.

    With ``--progress-json`` (the child process of `run_in_fixed_allocator`) progress goes
    to stdout too, as ``{"kind": "progress", "text": ...}`` lines.
    """
    parser = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer operations and runs")
    parser.add_argument("--runs", type=int, default=None, help="runs per implementation")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply workload sizes")
    parser.add_argument("--no-glib", action="store_true", help="skip real GLib")
    parser.add_argument("--progress-json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    configure_glib(not args.no_glib)
    if args.progress_json:
        def progress(text: str) -> None:
            print(json.dumps({"kind": "progress", "text": text}), flush=True)

        emit(run(args.quick, runs=args.runs, scale=args.scale, report=progress))
        configure_glib(True)
        return
    emit(run(args.quick, runs=args.runs, scale=args.scale))
    status = glib().status
    print(f"# GLib: {status}", file=sys.stderr)
    configure_glib(True)


# --------------------------------------------------------------------------- allocator state
# asyncio's socket transports ``recv`` into a fresh 256 KiB buffer and shrink it to the
# bytes read.  While glibc's mmap threshold is dynamic (its default), such a buffer is an
# mmap + mremap + munmap per ``recv`` until the process frees some large heap block, which
# raises the threshold for good (importing aioqloop does: it hashes its sources).  The same
# asyncio code then runs at very different speeds depending on what the process did
# before, so the socket workloads run in a child process whose threshold is fixed by
# ``MALLOC_MMAP_THRESHOLD_`` (which also turns the dynamic adjustment off): every
# implementation is measured in the same allocator state, whatever was imported first.
# The dynamic adjustment also sets the trim threshold to twice the mmap threshold; a fixed
# mmap threshold leaves it at 128 KiB, and freeing each 256 KiB buffer at the top of the
# heap would then give the memory back to the kernel (a ``brk`` per ``recv``).
# ``MALLOC_TRIM_THRESHOLD_`` is fixed the same way.

#: The environment variables glibc reads at start-up.
MMAP_THRESHOLD_ENV = "MALLOC_MMAP_THRESHOLD_"
TRIM_THRESHOLD_ENV = "MALLOC_TRIM_THRESHOLD_"
#: 1 MiB: above asyncio's 256 KiB receive buffer, so those come from the heap on every loop
#: (the state a long-running process reaches anyway once it has freed a large block).
MMAP_THRESHOLD = 1 << 20
#: Twice the mmap threshold, as glibc's dynamic adjustment would set it.
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD


def in_fixed_allocator() -> bool:
    """True in a process started with both glibc thresholds fixed to this module's values."""
    return (os.environ.get(MMAP_THRESHOLD_ENV) == str(MMAP_THRESHOLD)
            and os.environ.get(TRIM_THRESHOLD_ENV) == str(TRIM_THRESHOLD))


def allocator_params() -> dict[str, Any]:
    """The allocator setting the figures were measured under (for a record's ``params``)."""
    return {"malloc_mmap_threshold": os.environ.get(MMAP_THRESHOLD_ENV),
            "malloc_trim_threshold": os.environ.get(TRIM_THRESHOLD_ENV)}


def fixed_allocator_command(
    script: Path, quick: bool, runs: int | None, scale: float,
    environ: dict[str, str] | None = None,
) -> tuple[list[str], dict[str, str]]:
    """The child process of `run_in_fixed_allocator`: ``(argv, environment)``."""
    argv = [sys.executable, str(script), "--progress-json", "--no-glib", "--scale", repr(scale)]
    if quick:
        argv.append("--quick")
    if runs is not None:
        argv += ["--runs", str(runs)]
    env = dict(os.environ if environ is None else environ)
    env[MMAP_THRESHOLD_ENV] = str(MMAP_THRESHOLD)
    env[TRIM_THRESHOLD_ENV] = str(TRIM_THRESHOLD)
    return argv, env


def run_in_fixed_allocator(
    script: Path,
    measure_here: Callable[..., list[Record]],
    quick: bool,
    *,
    runs: int | None,
    scale: float,
    report: Report | None,
) -> list[Record]:
    """``measure_here(quick, runs=, scale=, report=)`` in the fixed allocator state.

    In a process already started that way, directly; otherwise in a child process running
    ``script`` (whose records and progress come back as JSON lines on its stdout; its
    stderr is this process's).  A child that fails raises RuntimeError.
    """
    if in_fixed_allocator():
        return measure_here(quick, runs=runs, scale=scale, report=report)
    argv, env = fixed_allocator_command(script, quick, runs, scale)
    report = report or _quiet
    records: list[Record] = []
    with subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            if not line.strip():
                continue
            record = json.loads(line)
            if record.get("kind") == "progress":
                report(str(record["text"]))
            else:
                records.append(record)
    if proc.returncode != 0:
        raise RuntimeError(f"{script.name} failed in its child process "
                           f"(exit status {proc.returncode})")
    return records


def scaled(n: int, scale: float, minimum: int = 10) -> int:
    return max(minimum, int(n * scale))


def pick(quick: bool, runs: int | None, quick_runs: int, full_runs: int) -> int:
    if runs is not None:
        if runs < 1:
            raise ValueError("runs must be >= 1")
        return runs
    return quick_runs if quick else full_runs


def biglock_records(results: list[dict[str, Any]]) -> list[Record]:
    """Turn ``bench_biglock.run()``'s dicts into figures and the big-lock target."""
    records: list[Record] = []
    for res in results:
        name = str(res.get("workload"))
        runs = int(res.get("repeats", 0))
        if "ns_per_op" in res:
            values = {k: float(v) for k, v in res["ns_per_op"].items()}
            base = next((k for k in values if k != "BigLock"), "BigLock")
            records.append(
                figure("biglock", name, "ns/op", values, runs=runs, baseline=base)
            )
        elif "ops_per_s" in res:
            rates = {k: float(v) for k, v in res["ops_per_s"].items()}
            p99 = {k: float(v) for k, v in res["p99_wait_us"].items()}
            base = "aiologic.Lock" if "aiologic.Lock" in rates else next(iter(rates))
            params = {k: res[k] for k in ("threads", "tasks", "ops_per_worker") if k in res}
            records.append(
                figure("biglock", f"{name} throughput", "ops/s", rates, runs=runs,
                       better="higher", baseline=base, params=params)
            )
            records.append(
                figure("biglock", f"{name} p99 wait", "µs", p99, runs=runs, baseline=base,
                       params=params)
            )
            if "max_wait_us" in res:
                maxes = {k: float(v) for k, v in res["max_wait_us"].items()}
                records.append(
                    figure("biglock", f"{name} max wait", "µs", maxes, runs=runs,
                           baseline=base, params=params)
                )
            if "aiologic.Lock" in rates and "BigLock" in rates:
                records.append(
                    ratio_target(
                        "biglock",
                        "BigLock contended throughput vs aiologic.Lock",
                        rates["BigLock"],
                        rates["aiologic.Lock"],
                        2.0,
                        at_least=True,
                    )
                )
                ok = p99["BigLock"] < p99["aiologic.Lock"]
                records.append(
                    target(
                        "biglock",
                        "BigLock contended p99 wait below aiologic.Lock's",
                        "< 1x",
                        p99["BigLock"] / p99["aiologic.Lock"] if p99["aiologic.Lock"] else None,
                        ok,
                        f"{p99['BigLock']:.1f} µs vs {p99['aiologic.Lock']:.1f} µs",
                    )
                )
            else:
                records.append(
                    target("biglock", "BigLock contended throughput vs aiologic.Lock", "≥ 2x",
                           None, None, "aiologic is not installed")
                )
    return records
