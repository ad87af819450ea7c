"""Instructions per operation under callgrind (``instructions.py``) as suite records.

Opt-in (``aioqloop bench --instructions`` or ``--only instructions``): it needs valgrind
and takes minutes.  Each figure is ``(Ir(n2) - Ir(n1)) / (n2 - n1)`` from two runs under
``valgrind --tool=callgrind``: it does not move with the machine's load, so a single run
per size is enough (``--runs`` is ignored; ``--scale`` multiplies the sizes).  Without
valgrind every goal is reported as not measured, with "valgrind: not installed".

Figures (instructions per operation, lower is better): repeating idle, ``call_soon``
chain, fd round trip, one-shot timer burst, 0-delay timer chain, thread hand-off; columns
asyncio, uvloop, aioqloop on both bases, GLib through PyGObject (``glib``) and GLib in C
(``glib-c``, the floor).

Run ``python benchmarks/bench_instructions.py [--scale F] [--no-glib]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _benchlib as c
import instructions

BENCH = "instructions"
GLIB_C = "glib-c"

#: ``workload: (figure name, {impl: what it ran})``.
_FIGURES: dict[str, tuple[str, dict[str, str]]] = {
    "idle": ("repeating idle", {
        c.ASYNCIO: "call_soon chain", c.UVLOOP: "call_soon chain", c.AQ: "idle source",
        c.AQUV: "idle source", c.GLIB: "GLib.idle_add", GLIB_C: "g_idle_add"}),
    "chain": ("call_soon chain", {}),
    "fd": ("fd round trip", {
        c.ASYNCIO: "add_reader", c.UVLOOP: "add_reader", c.AQ: "FdSource",
        c.AQUV: "FdSource", c.GLIB: "GLib.unix_fd_add_full", GLIB_C: "g_unix_fd_add"}),
    "timers": ("one-shot timer burst", {
        c.ASYNCIO: "call_later", c.UVLOOP: "call_later", c.AQ: "timeout_add",
        c.AQUV: "timeout_add", c.GLIB: "GLib.timeout_add", GLIB_C: "g_timeout_add"}),
    "timer0": ("0-delay timer chain", {
        c.ASYNCIO: "call_later(0)", c.UVLOOP: "call_later(0)", c.AQ: "timeout_add(0)",
        c.AQUV: "timeout_add(0)", c.GLIB: "GLib.timeout_add(0)", GLIB_C: "g_timeout_add(0)"}),
    "bh": ("thread hand-off", {
        c.ASYNCIO: "call_soon_threadsafe", c.UVLOOP: "call_soon_threadsafe",
        c.AQ: "BottomHalf", c.AQUV: "BottomHalf"}),
}

#: The goals of the compiled core: ``(name, workload, impl, baseline workload, baseline
#: impl, limit)``, each ``Ir/op(impl) <= limit * Ir/op(baseline)``.
GOALS: tuple[tuple[str, str, str, str, str, float], ...] = (
    (f"repeating idle on {c.AQ} vs asyncio call_soon chain", "idle", c.AQ, "idle",
     c.ASYNCIO, 0.75),
    (f"repeating idle on {c.AQUV} vs GLib+PyGObject idle_add", "idle", c.AQUV, "idle",
     c.GLIB, 1.0),
    (f"FdSource round trip on {c.AQ} vs asyncio add_reader", "fd", c.AQ, "fd", c.ASYNCIO,
     0.95),
    (f"FdSource round trip on {c.AQUV} vs GLib+PyGObject unix_fd_add", "fd", c.AQUV, "fd",
     c.GLIB, 1.0),
    (f"one-shot timer burst on {c.AQ} vs asyncio call_later", "timers", c.AQ, "timers",
     c.ASYNCIO, 0.75),
    (f"0-delay timer chain on {c.AQ} vs asyncio call_later(0)", "timer0", c.AQ, "timer0",
     c.ASYNCIO, 1.0),
    (f"BottomHalf on {c.AQ} vs asyncio call_soon_threadsafe", "bh", c.AQ, "bh", c.ASYNCIO,
     1.0),
    (f"call_soon chain on {c.AQ} vs asyncio", "chain", c.AQ, "chain", c.ASYNCIO, 1.02),
    (f"call_soon chain on {c.AQUV} vs uvloop", "chain", c.AQUV, "chain", c.UVLOOP, 1.05),
)


def records(results: dict[str, dict[str, float | None]],
            sizes: dict[str, tuple[int, int]]) -> list[c.Record]:
    """Figures and goals from ``instructions.measure``'s ``{workload: {impl: Ir/op}}``."""
    out: list[c.Record] = []
    for workload, row in results.items():
        values = {impl: v for impl, v in row.items() if v is not None}
        if not values:
            continue
        name, labels = _FIGURES.get(workload, (workload, {}))
        n1, n2 = sizes[workload]
        out.append(c.figure(
            BENCH, name, "instr/op", values, runs=1,
            params={"workload": workload, "n1": n1, "n2": n2},
            labels={impl: label for impl, label in labels.items() if impl in values} or None,
            note="(Ir(n2) - Ir(n1)) / (n2 - n1) under callgrind, PYTHONHASHSEED=0",
        ))
    for name, workload, impl, base_workload, base_impl, limit in GOALS:
        num = results.get(workload, {}).get(impl)
        den = results.get(base_workload, {}).get(base_impl)
        detail = "" if num is None or den is None else f"{num:,.0f} vs {den:,.0f} instr/op"
        out.append(c.ratio_target(BENCH, name, num, den, limit, detail=detail))
    return out


def not_measured(why: str) -> list[c.Record]:
    """Every goal as "not measured", saying ``why``."""
    return [c.ratio_target(BENCH, name, None, None, limit, detail=why)
            for name, _w, _i, _bw, _bi, limit in GOALS]


def run(
    quick: bool = False,
    *,
    runs: int | None = None,
    scale: float = 1.0,
    report: c.Report | None = None,
) -> list[c.Record]:
    """Count instructions per operation on every implementation; figures and goals.

    ``quick`` and ``runs`` change nothing (one callgrind run per size is exact);
    ``scale`` multiplies both sizes of every workload.
    """
    missing = instructions.valgrind_missing()
    if missing is not None:
        if report is not None:
            report(missing)
        return not_measured(missing)
    impls = [i for i in instructions.IMPLS
             if (c.have_uvloop() or i not in (c.UVLOOP, c.AQUV))
             and (c.glib_enabled() or i not in (c.GLIB, GLIB_C))]
    sizes = {w: (c.scaled(n1, scale), max(c.scaled(n2, scale), c.scaled(n1, scale) + 10))
             for w, (n1, n2) in instructions.SIZES.items()}
    progress = None if report is None else (lambda text: report(f"{BENCH} {text}"))
    results = instructions.measure(instructions.WORKLOADS, tuple(impls), sizes, progress)
    return records(results, sizes)


if __name__ == "__main__":
    c.standalone(run, __doc__)
