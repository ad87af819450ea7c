"""Smoke tests of the benchmark suite runner (`aioqloop.bench`) and its record format.

They run tiny workloads (``--scale``) once each and check the JSON records, the tables
and the error paths; they never assert on timings.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from aioqloop import bench

BENCH_DIR = Path(__file__).resolve().parent.parent / "benchmarks"
TINY = ["--quick", "--scale", "0.01", "--runs", "1"]


def _load_benchlib() -> ModuleType:
    path = BENCH_DIR / "_benchlib.py"
    spec = importlib.util.spec_from_file_location("_benchlib_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check_figure(rec: dict[str, Any]) -> None:
    assert {"kind", "bench", "figure", "unit", "better", "baseline", "runs", "values",
            "ratios"} <= rec.keys()
    assert rec["better"] in ("lower", "higher")
    assert rec["runs"] >= 1
    assert rec["values"], rec
    for impl, value in rec["values"].items():
        assert isinstance(impl, str)
        assert isinstance(value, (int, float))
    if rec["baseline"] in rec["values"] and rec["values"][rec["baseline"]]:
        assert rec["ratios"][rec["baseline"]] == pytest.approx(1.0)
        for impl, ratio in rec["ratios"].items():
            assert ratio == pytest.approx(rec["values"][impl] / rec["values"][rec["baseline"]])
    if "aioqloop/uvloop" in rec["values"] and rec["values"].get("uvloop"):
        vs = rec["ratios_vs_uvloop"]["aioqloop/uvloop"]
        assert vs == pytest.approx(rec["values"]["aioqloop/uvloop"] / rec["values"]["uvloop"])


@pytest.mark.timeout(120)
def test_tiny_suite_writes_records_and_tables(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import aioqloop.bottomhalf
    import aioqloop.context

    # No GLib helper: this Python has no gi (normally) and the system one is hidden.
    monkeypatch.setenv("AIOQLOOP_BENCH_GLIB_PYTHON", str(tmp_path / "no-such-python"))
    out = tmp_path / "results.json"
    png = tmp_path / "scaling.png"
    plot = importlib.util.find_spec("matplotlib") is not None
    names = ["dispatch", "timers", "fd", "scaling", "wakeup", "echo"]
    argv = [*TINY, "--json", str(out), *(["--plot", str(png)] if plot else [])]
    for name in names:
        argv += ["--only", name]
    assert bench.main(argv) == 0

    data = json.loads(out.read_text(encoding="utf-8"))
    meta = data["meta"]
    assert meta["quick"] is True
    assert meta["engine"].startswith(f"{aioqloop.ENGINE} (")  # which engine was measured
    assert meta["workloads"] == names
    assert set(meta["workload_seconds"]) == set(names)
    records = data["records"]
    figures = [r for r in records if r["kind"] == "figure"]
    targets = [r for r in records if r["kind"] == "target"]
    assert {r["bench"] for r in figures} == set(names)
    assert len(figures) + len(targets) == len(records)
    no_gi = importlib.util.find_spec("gi") is None
    for rec in figures:
        _check_figure(rec)
        if no_gi:
            assert "glib" not in rec["values"]  # the system Python was hidden
    for rec in targets:
        assert {"bench", "target", "goal", "measured", "ok", "detail"} <= rec.keys()
        assert rec["ok"] in (True, False, None)
    # Scaling figures carry the source counts that the plot uses.
    counts = sorted(r["params"]["sources"] for r in figures
                    if r["bench"] == "scaling" and "iterations" in r.get("params", {}))
    assert counts == [0, 10, 100, 1000]
    if plot:
        assert png.read_bytes().startswith(b"\x89PNG")
    # Wake-up writes are read from the context's statistics: nothing was patched.
    assert aioqloop._waker.os is os

    shown = capsys.readouterr()
    for name in names:
        assert name in shown.out
    assert "performance goals" in shown.out
    assert f"engine: {aioqloop.ENGINE} (" in shown.out
    assert "OK" in shown.out or "MISS" in shown.out
    if no_gi:
        assert "GLib: not installed" in shown.out
    # Not a terminal: the tables fit 80 columns, and progress is one plain line per run.
    widest = max(shown.out.splitlines(), key=len)
    assert len(widest) <= 80, widest
    progress = [line for line in shown.err.splitlines() if line.startswith("[")]
    assert any("(run 1/1)" in line for line in progress), shown.err
    assert all(re.fullmatch(r"\[\d+/\d+\] .+ \(\d+ s\)", line) for line in progress), progress


def test_standalone_script_prints_json_lines() -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH_DIR / "bench_echo.py"), *TINY, "--no-glib"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert {r["kind"] for r in lines} == {"figure", "target"}
    for rec in lines:
        if rec["kind"] == "figure":
            _check_figure(rec)
            assert rec["bench"] == "echo"
    assert "GLib: disabled" in proc.stderr


def test_biglock_results_become_figures_and_targets() -> None:
    lib = _load_benchlib()
    contended = {
        "workload": "contended_mixed", "threads": 2, "tasks": 2, "ops_per_worker": 10,
        "repeats": 3,
        "ops_per_s": {"BigLock": 300.0, "aiologic.Lock": 100.0},
        "p99_wait_us": {"BigLock": 5.0, "aiologic.Lock": 4.0},
        "max_wait_us": {"BigLock": 9.0, "aiologic.Lock": 8.0},
    }
    uncontended = {"workload": "uncontended_sync", "repeats": 3,
                   "ns_per_op": {"BigLock": 200.0, "threading.Lock": 100.0}}
    records = lib.biglock_records([uncontended, contended])
    figures = {r["figure"]: r for r in records if r["kind"] == "figure"}
    for rec in figures.values():
        _check_figure(rec)
    assert figures["uncontended_sync"]["ratios"]["BigLock"] == pytest.approx(2.0)
    assert figures["contended_mixed throughput"]["better"] == "higher"
    targets = {r["target"]: r for r in records if r["kind"] == "target"}
    throughput = targets["BigLock contended throughput vs aiologic.Lock"]
    assert throughput["measured"] == pytest.approx(3.0)
    assert throughput["ok"] is True
    assert targets["BigLock contended p99 wait below aiologic.Lock's"]["ok"] is False


def test_ratio_target_verdicts() -> None:
    lib = _load_benchlib()
    assert lib.ratio_target("b", "t", 1.2, 1.0, 1.3)["ok"] is True
    assert lib.ratio_target("b", "t", 1.4, 1.0, 1.3)["ok"] is False
    assert lib.ratio_target("b", "t", 3.5, 1.0, 3.0, at_least=True)["ok"] is True
    missing = lib.ratio_target("b", "t", None, 1.0, 1.3)
    assert missing["ok"] is None
    assert missing["measured"] is None


def test_unknown_workload_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        bench.main(["--only", "nope"])
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--runs", "0"], ["--scale", "0"], ["--scale", "nan"]])
def test_bad_numbers_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        bench.main(argv)
    assert info.value.code == 2


def test_missing_bench_dir_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bench.main(["--bench-dir", str(tmp_path), "--only", "echo"]) == 2
    assert "no benchmarks found" in capsys.readouterr().err


def test_plot_without_matplotlib_is_refused_up_front(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "matplotlib":
            return None
        return real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    assert bench.main(["--plot", str(tmp_path / "x.png"), "--only", "echo"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'aioqloop[plot]'" in " ".join(err.split())  # [plot] not eaten as markup
    assert not (tmp_path / "x.png").exists()


def test_failing_workload_gives_status_1_and_the_rest_still_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copy(BENCH_DIR / "_benchlib.py", tmp_path / "_benchlib.py")
    (tmp_path / "bench_dispatch.py").write_text(
        "def run(quick, **kwargs):\n    raise RuntimeError('boom')\n", encoding="utf-8"
    )
    shutil.copy(BENCH_DIR / "bench_echo.py", tmp_path / "bench_echo.py")
    argv = ["--bench-dir", str(tmp_path), "--only", "dispatch", "--only", "echo", "--no-glib",
            *TINY]
    assert bench.main(argv) == 1
    shown = capsys.readouterr()
    assert "workload dispatch failed" in shown.err
    assert "boom" in shown.err
    assert "TCP echo" in shown.out
    assert "failed: dispatch" in shown.out


_MISSING_GOAL = """
def run(quick, **kwargs):
    return [{"kind": "target", "bench": "dispatch", "target": "under 1 us", "goal": "<= 1.0x",
             "measured": 2.0, "ok": False, "detail": "made up"},
            {"kind": "target", "bench": "dispatch", "target": "at all", "goal": "<= 9.0x",
             "measured": 2.0, "ok": True, "detail": "made up"}]
"""


@pytest.mark.parametrize("check", [False, True])
def test_check_fails_on_a_missed_goal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], check: bool
) -> None:
    shutil.copy(BENCH_DIR / "_benchlib.py", tmp_path / "_benchlib.py")
    (tmp_path / "bench_dispatch.py").write_text(_MISSING_GOAL, encoding="utf-8")
    argv = ["--bench-dir", str(tmp_path), "--only", "dispatch", "--no-glib", *TINY]
    status = bench.main(argv + (["--check"] if check else []))
    assert status == (bench.EXIT_GOAL_MISSED if check else 0)
    shown = capsys.readouterr()
    flat = " ".join(shown.out.split())
    assert "MISS" in flat and "OK" in flat
    assert "MISS: the measured figure is outside the target" in flat  # MISS explained
    assert "1 goal(s) missed: dispatch: under 1 us" in " ".join(shown.err.split())


def test_default_workloads_are_the_checkout_ones_here() -> None:
    assert bench._default_bench_dir() == BENCH_DIR
