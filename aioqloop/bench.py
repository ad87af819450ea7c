"""``aioqloop bench``: run the benchmark suite and show medians and ratios.

The workloads (``bench_<name>.py``; each also runs alone) ship inside the package as
``aioqloop/_benchmarks`` and live in the source tree's ``benchmarks/`` directory.  This
runner loads them by path, runs them with a progress display (one line per run when
stderr is not a terminal), prints one table per workload (medians; ratios to plain
asyncio, and for aioqloop on uvloop also to plain uvloop) and the performance goals
with OK/MISS, and optionally writes the records as JSON and the scaling curves as a
PNG (needs the ``plot`` extra, matplotlib).

Real GLib (PyGObject) is measured in a helper process under whichever Python can import
``gi``; without it the tables say "GLib: not installed".  Instructions per operation
under callgrind (the ``instructions`` workload) run only when asked for
(``--instructions`` or ``--only instructions``); without valgrind the output says
"valgrind: not installed".
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import inspect
import json
import math
import os
import platform
import shutil
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from ._console import Console, PlainConsole, Table, escape, make_console

__all__ = ("WORKLOADS", "main")

#: The workloads, in the order the suite runs them (``benchmarks/bench_<name>.py``).
WORKLOADS = ("dispatch", "timers", "fd", "scaling", "wakeup", "biglock", "echo", "pingpong",
             "instructions")
#: Workloads that run only when asked for (``--only NAME``, or ``--instructions``):
#: ``instructions`` needs valgrind and takes minutes.
OPT_IN = ("instructions",)

_IMPL_ORDER = ("asyncio", "uvloop", "aioqloop/asyncio", "aioqloop/uvloop", "glib", "glib-c")


#: Exit status of ``--check`` when a performance goal is missed.
EXIT_GOAL_MISSED = 3
#: Output width when stdout is not a terminal (logs, pipes): the tables fit 80 columns.
_PLAIN_WIDTH = 80


def _default_bench_dir() -> Path:
    """The workloads: the source tree's ``benchmarks/`` in a checkout, else the package's."""
    here = Path(__file__).resolve().parent
    checkout = here.parent / "benchmarks"
    if (checkout / "_benchlib.py").is_file() and (here.parent / "pyproject.toml").is_file():
        return checkout
    return here / "_benchmarks"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aioqloop bench",
        description="Run aioqloop's benchmark suite: asyncio, uvloop, aioqloop on each "
        "base and real GLib side by side (medians of interleaved runs).",
    )
    parser.add_argument("--quick", action="store_true",
                        help="smaller workloads and fewer runs (about a minute)")
    parser.add_argument("--only", action="append", choices=WORKLOADS, metavar="NAME",
                        help=f"run only this workload (repeatable): {', '.join(WORKLOADS)}")
    parser.add_argument("--instructions", action="store_true",
                        help="also count instructions per operation under callgrind (needs "
                        "valgrind; takes minutes)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write all records as JSON")
    parser.add_argument("--plot", type=Path, metavar="FILE",
                        help="write a PNG of the scaling curves (needs matplotlib)")
    parser.add_argument("--no-glib", action="store_true", help="do not measure real GLib")
    parser.add_argument("--runs", type=int, metavar="N",
                        help="interleaved runs per implementation (default: 3 quick, 5-7 full)")
    parser.add_argument("--scale", type=float, default=1.0, metavar="F",
                        help="multiply workload sizes by F (e.g. 0.1 for a smoke run)")
    parser.add_argument("--bench-dir", type=Path, metavar="DIR",
                        help="where the bench_<name>.py files are (default: the ones "
                        "installed with the package, or the source tree's)")
    parser.add_argument("--check", action="store_true",
                        help=f"exit with status {EXIT_GOAL_MISSED} when a performance goal "
                        "is missed (default: goals are reported only)")
    return parser


def _selected(args: argparse.Namespace) -> list[str]:
    """The workloads to run: ``--only``'s, else all but the opt-in ones; ``--instructions``."""
    chosen = set(args.only) if args.only else {n for n in WORKLOADS if n not in OPT_IN}
    if args.instructions:
        chosen.add("instructions")
    return [n for n in WORKLOADS if n in chosen]


def _valgrind_status() -> str:
    """``valgrind: <path>`` or ``valgrind: not installed`` (for the instructions workload)."""
    found = shutil.which("valgrind")
    return f"valgrind: {found}" if found else "valgrind: not installed"


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _run_workload(
    name: str, module: ModuleType, lib: Any, args: argparse.Namespace,
    report: Callable[[str], None],
) -> list[dict[str, Any]]:
    run = module.run
    accepted = inspect.signature(run).parameters
    kwargs: dict[str, Any] = {}
    if "runs" in accepted:
        kwargs["runs"] = args.runs
    if "scale" in accepted:
        kwargs["scale"] = args.scale
    if "report" in accepted:
        kwargs["report"] = report
    report(name)
    results: list[dict[str, Any]] = run(args.quick, **kwargs)
    if name == "biglock":
        return list(lib.biglock_records(results))
    return results


# ----------------------------------------------------------------------- output


def _fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    mag = abs(value)
    if mag >= 1000:
        return f"{value:,.0f}"
    if mag >= 100:
        return f"{value:.0f}"
    if mag >= 10:
        return f"{value:.1f}"
    if mag >= 0.01 or mag == 0:
        return f"{value:.2f}"
    return f"{value:.2g}"


def _ratio(value: float | None) -> str:
    if value is None or math.isnan(value) or math.isinf(value):
        return ""
    return f"{value:.2f}x"


def _columns(figures: list[dict[str, Any]]) -> list[str]:
    seen: list[str] = []
    for rec in figures:
        for impl in rec["values"]:
            if impl not in seen:
                seen.append(impl)
    known = [i for i in _IMPL_ORDER if i in seen]
    return known + [i for i in seen if i not in known]


def _figure_table(bench: str, figures: list[dict[str, Any]]) -> Table:
    columns = _columns(figures)
    baselines = sorted({str(rec["baseline"]) for rec in figures})
    table = Table(
        title=f"[bold]{escape(bench)}[/bold]",
        caption=f"median of interleaved runs; (x) = ratio to {' / '.join(baselines)}"
        + ("; ÷uv = aioqloop/uvloop ÷ uvloop" if "aioqloop/uvloop" in columns else ""),
        title_justify="left",
    )
    table.add_column("figure", overflow="fold")
    table.add_column("unit")
    for col in columns:
        table.add_column(col, justify="right")
    for rec in figures:
        cells = []
        for col in columns:
            value = rec["values"].get(col)
            if value is None:
                cells.append("")
                continue
            text = _fmt(value)
            ratio = _ratio(rec.get("ratios", {}).get(col))
            if ratio and col != rec["baseline"]:
                text += f" ({ratio})"
            vs_uv = _ratio(rec.get("ratios_vs_uvloop", {}).get(col))
            if vs_uv:
                text += f"\n÷uv {vs_uv}"
            label = rec.get("labels", {}).get(col)
            if label and label != rec["figure"]:
                text += f"\n[dim]{escape(str(label))}[/dim]"
            cells.append(text)
        better = "↑" if rec.get("better") == "higher" else "↓"
        table.add_row(escape(str(rec["figure"])), escape(f"{rec['unit']} {better}"), *cells)
    return table


def _target_table(targets: list[dict[str, Any]]) -> Table:
    table = Table(
        title="[bold]performance goals[/bold]", title_justify="left",
        caption="OK: the goal is met in this run. MISS: the measured figure is outside the "
        "target in this run, on this machine (a slow or loaded machine misses more; "
        f"--check turns a MISS into exit status {EXIT_GOAL_MISSED}). n/a: not measured "
        "here (an implementation is missing). info: a figure reported without a goal.",
    )
    for col, justify in (("workload", "left"), ("goal", "left"), ("target", "left"),
                         ("measured", "right"), ("", "center"), ("detail", "left")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for rec in targets:
        ok = rec["ok"]
        verdict = ("[green]OK[/green]" if ok else "[red]MISS[/red]") if ok is not None else (
            "info" if rec["goal"] == "report" else "n/a")
        measured = rec["measured"]
        # Three decimals, so that a ratio just past its limit does not print as the limit.
        is_ratio = measured is not None and str(rec["goal"]).endswith("x")
        shown = f"{measured:.3f}x" if is_ratio else _fmt(measured)
        table.add_row(escape(str(rec["bench"])), escape(str(rec["goal"])),
                      escape(str(rec["target"])), shown if measured is not None else "-",
                      verdict, escape(str(rec["detail"])))
    return table


def _plot(records: list[dict[str, Any]], path: Path) -> bool:
    """Draw iteration cost against source count per implementation; False if no data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points: dict[str, list[tuple[int, float]]] = {}
    for rec in records:
        if rec.get("kind") != "figure" or rec.get("bench") != "scaling":
            continue
        k = rec.get("params", {}).get("sources")
        if k is None or "iterations" not in rec.get("params", {}):
            continue
        for impl, value in rec["values"].items():
            points.setdefault(impl, []).append((int(k), float(value)))
    if not points:
        return False
    fig, ax = plt.subplots(figsize=(8, 5))
    for impl in _columns([{"values": points}]):
        series = sorted(points[impl])
        ax.plot([p[0] for p in series], [p[1] for p in series], marker="o", label=impl)
    ax.set_xscale("symlog", linthresh=1000)
    ticks = sorted({k for series in points.values() for k, _ in series})
    ax.set_xticks(ticks, [f"{k:,}" for k in ticks])
    ax.set_yscale("log")
    ax.set_xlabel("attached non-ready sources (fd watches + far timeouts)")
    ax.set_ylabel("µs per loop iteration")
    ax.set_title("Iteration cost vs number of sources")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def _cpu_model() -> str:
    """The CPU's model name (Linux), for "the machine it came from"."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _meta(args: argparse.Namespace, lib: Any, names: list[str], elapsed: float) -> dict[str, Any]:
    import aioqloop

    uv: str | None = None
    with contextlib.suppress(ImportError):
        import uvloop

        uv = str(getattr(uvloop, "__version__", "installed"))
    from . import _engine

    return {
        "engine": _engine.engine_info(),
        "cpu_model": _cpu_model(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "aioqloop": aioqloop.__version__,
        "uvloop": uv or "not installed",
        "glib": lib.glib().version or lib.glib().status,
        "quick": args.quick,
        "runs": args.runs,
        "scale": args.scale,
        "workloads": names,
        "elapsed_s": round(elapsed, 2),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


@contextlib.contextmanager
def _plain_progress(
    console: Console, total: int
) -> Iterator[tuple[Callable[[str], None], Callable[[], None]]]:
    """Progress for logs and pipes: one line per step reported, no animation."""
    done = 0
    started = time.perf_counter()

    def report(text: str) -> None:
        elapsed = time.perf_counter() - started
        console.print(f"[{done + 1}/{total}] {text} ({elapsed:.0f} s)", markup=False,
                      highlight=False)

    def advance() -> None:
        nonlocal done
        done += 1

    yield report, advance


@contextlib.contextmanager
def _progress(
    console: Console, total: int
) -> Iterator[tuple[Callable[[str], None], Callable[[], None]]]:
    if not console.is_terminal or isinstance(console, PlainConsole):
        with _plain_progress(console, total) as pair:
            yield pair
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,  # type: ignore[arg-type]  # a rich console: not a PlainConsole
        transient=False,
    )
    task = progress.add_task("benchmarks", total=total)

    def report(text: str) -> None:
        progress.update(task, description=text)

    def advance() -> None:
        progress.advance(task)

    with progress:
        yield report, advance


def main(argv: list[str] | None = None) -> int:
    """Run the suite with ``argv`` (the arguments after ``bench``); return the exit status.

    0 when every workload ran (performance goals are reported, not enforced), 1 when a
    workload failed, 2 on a usage error, `EXIT_GOAL_MISSED` (3) with ``--check`` when a
    goal was missed.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    # Wide enough for one column per implementation when the output is not a terminal.
    out = make_console(width=None if sys.stdout.isatty() else _PLAIN_WIDTH)
    err = make_console(stderr=True)
    if args.runs is not None and args.runs < 1:
        parser.error("--runs must be at least 1")
    if not (args.scale > 0 and math.isfinite(args.scale)):
        parser.error("--scale must be a positive number")
    if args.plot is not None and importlib.util.find_spec("matplotlib") is None:
        hint = escape("pip install 'aioqloop[plot]'")
        err.print(f"[red]--plot needs matplotlib: {hint}[/red]")
        return 2
    bench_dir: Path = args.bench_dir or _default_bench_dir()
    lib_path = bench_dir / "_benchlib.py"
    if not lib_path.is_file():
        err.print(f"[red]no benchmarks found in {escape(str(bench_dir))} "
                  "(use --bench-dir DIR)[/red]")
        return 2
    names = _selected(args)
    if str(bench_dir) not in sys.path:
        sys.path.insert(0, str(bench_dir))
    lib = _load(lib_path, "_benchlib")
    lib.configure_glib(not args.no_glib)
    records: list[dict[str, Any]] = []
    failed: list[str] = []
    started = time.perf_counter()
    try:
        glib_status = lib.glib().status
        mode = "quick" if args.quick else "full"
        err.print(f"aioqloop benchmarks ({mode}): {', '.join(names)}")
        err.print(f"GLib: {escape(str(glib_status))}")
        valgrind = _valgrind_status() if "instructions" in names else None
        if valgrind is not None:
            err.print(escape(valgrind))
        seconds: dict[str, float] = {}
        with _progress(err, len(names)) as (report, advance):
            for name in names:
                t0 = time.perf_counter()
                try:
                    module = _load(bench_dir / f"bench_{name}.py", f"_aioqloop_bench_{name}")
                    records.extend(_run_workload(name, module, lib, args, report))
                except Exception:
                    failed.append(name)
                    err.print(f"[red]workload {name} failed:[/red]\n"
                              f"{escape(traceback.format_exc())}")
                seconds[name] = round(time.perf_counter() - t0, 2)
                advance()
        elapsed = time.perf_counter() - started
        meta = _meta(args, lib, names, elapsed)
        meta["workload_seconds"] = seconds
    finally:
        lib.configure_glib(True)
    figures = [r for r in records if r.get("kind") == "figure"]
    targets = [r for r in records if r.get("kind") == "target"]
    out.print(escape(f"aioqloop {meta['aioqloop']} on Python {meta['python']}, "
                     f"{meta['cpus']} CPUs; uvloop: {meta['uvloop']}; GLib: {glib_status}"))
    out.print(escape(f"engine: {meta['engine']}; CPU: {meta['cpu_model']}"))
    if valgrind is not None:
        out.print(escape(valgrind))
    for name in names:
        mine = [r for r in figures if r.get("bench") == name]
        if mine:
            out.print(_figure_table(name, mine))
    if targets:
        out.print(_target_table(targets))
    per = ", ".join(f"{n} {s:.1f} s" for n, s in seconds.items())
    out.print(f"{len(names)} workload(s) in {elapsed:.1f} s ({per})"
              + (f"; failed: {', '.join(failed)}" if failed else ""))
    if args.json is not None:
        args.json.write_text(
            json.dumps({"meta": meta, "records": records}, indent=1, sort_keys=True) + "\n",
            encoding="utf-8",
        )
        out.print(f"wrote {escape(str(args.json))}")
    if args.plot is not None:
        if _plot(records, args.plot):
            out.print(f"wrote {escape(str(args.plot))}")
        else:
            err.print("[yellow]no scaling figures to plot (run the 'scaling' workload)[/yellow]")
    if failed:
        return 1
    missed = [t for t in targets if t.get("ok") is False]
    if missed:
        goals = ", ".join(f"{t['bench']}: {t['target']}" for t in missed)
        err.print(f"[yellow]{len(missed)} goal(s) missed: {escape(goals)}[/yellow]")
        if args.check:
            return EXIT_GOAL_MISSED
    return 0
