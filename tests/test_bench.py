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
    names = ["dispatch", "timers", "fd", "scaling", "wakeup", "echo", "pingpong"]
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
    # The socket workloads ran with glibc's thresholds fixed (same allocator state).
    for rec in figures:
        if rec["bench"] in ("echo", "pingpong"):
            assert rec["params"]["malloc_mmap_threshold"] == str(1 << 20), rec
    # Wake-up writes are read from the context's statistics: nothing was patched.
    assert aioqloop._waker.os is os  # type: ignore[attr-defined]  # the module's own import

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


# --------------------------------------------------------------------------- opt-in workloads


def test_instructions_is_opt_in() -> None:
    def selected(*argv: str) -> list[str]:
        return bench._selected(bench._parser().parse_args(list(argv)))

    default = selected()
    assert "instructions" not in default
    assert "pingpong" in default and "echo" in default
    assert selected("--instructions") == [*default, "instructions"]
    assert selected("--only", "echo", "--instructions") == ["echo", "instructions"]
    assert selected("--only", "instructions") == ["instructions"]


#: Instructions per operation the fake callgrind reports: ``{workload: {impl: Ir/op}}``.
_FAKE_IR = {
    "idle": {"asyncio": 16000, "uvloop": 4000, "aioqloop/asyncio": 11000,
             "aioqloop/uvloop": 3000, "glib": 3500, "glib-c": 1200},
    "chain": {"asyncio": 16000, "uvloop": 4000, "aioqloop/asyncio": 16500,
              "aioqloop/uvloop": 4100},
    "fd": {"asyncio": 40000, "uvloop": 10000, "aioqloop/asyncio": 39000,
           "aioqloop/uvloop": 12000, "glib": 11000, "glib-c": 3000},
    "timers": {"asyncio": 20000, "uvloop": 8000, "aioqloop/asyncio": 14000,
               "aioqloop/uvloop": 9000, "glib": 5000, "glib-c": 1000},
    "timer0": {"asyncio": 18000, "uvloop": 5000, "aioqloop/asyncio": 18000,
               "aioqloop/uvloop": 6000, "glib": 4000, "glib-c": 900},
    "bh": {"asyncio": 30000, "uvloop": 20000, "aioqloop/asyncio": 33000,
           "aioqloop/uvloop": 21000},
}

# valgrind's own options come first, then the command it runs: a child of instructions.py
# (``python instructions.py --child IMPL WORKLOAD N``) or the C floor (``floor WORKLOAD N``).
_FAKE_VALGRIND = """#!{python}
import json, os, sys
cmd = sys.argv[3:]
if "--child" in cmd:
    i = cmd.index("--child")
    impl, workload, n = cmd[i + 1:i + 4]
else:
    impl, (workload, n) = "glib-c", cmd[1:3]
per = json.loads(os.environ["FAKE_IR_PER_OP"])[workload][impl]
sys.stderr.write("==7== Events    : Ir\\n==7== Collected : %d\\n" % (123456789 + per * int(n)))
"""
# The C floor's compiler: makes the executable the fake valgrind never runs.
_FAKE_CC = """#!{python}
import sys
open(sys.argv[sys.argv.index("-o") + 1], "w").close()
"""


def _script(path: Path, text: str) -> None:
    path.write_text(text.format(python=sys.executable), encoding="utf-8")
    path.chmod(0o755)


@pytest.mark.timeout(120)
def test_instructions_records_and_goals_from_fake_callgrind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    _script(fake_bin / "valgrind", _FAKE_VALGRIND)
    _script(fake_bin / "cc", _FAKE_CC)
    _script(fake_bin / "pkg-config", "#!/bin/sh\necho -I/nowhere\n")
    _script(fake_bin / "gi-python", "#!/bin/sh\nexit 0\n")  # "imports gi"
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("CC", "cc")
    monkeypatch.setenv("FAKE_IR_PER_OP", json.dumps(_FAKE_IR))
    monkeypatch.setenv("AIOQLOOP_BENCH_GLIB_PYTHON", str(fake_bin / "gi-python"))
    out = tmp_path / "results.json"
    assert bench.main(["--only", "instructions", "--scale", "0.1", "--json", str(out)]) == 0

    shown = capsys.readouterr()
    assert f"valgrind:{fake_bin / 'valgrind'}" in "".join(shown.err.split())  # wrapped
    records = json.loads(out.read_text(encoding="utf-8"))["records"]
    assert {r["bench"] for r in records} == {"instructions"}
    figures = {r["params"]["workload"]: r for r in records if r["kind"] == "figure"}
    have_uv = importlib.util.find_spec("uvloop") is not None
    assert set(figures) == set(_FAKE_IR)
    for workload, per_op in _FAKE_IR.items():
        rec = figures[workload]
        _check_figure(rec)
        assert rec["unit"] == "instr/op"
        assert rec["params"]["n2"] > rec["params"]["n1"]
        expected = {impl: float(v) for impl, v in per_op.items()
                    if have_uv or "uvloop" not in impl}
        assert rec["values"] == pytest.approx(expected)
    assert figures["idle"]["labels"]["aioqloop/asyncio"] == "idle source"
    assert figures["idle"]["labels"]["asyncio"] == "call_soon chain"

    targets = {r["target"]: r for r in records if r["kind"] == "target"}
    expected_goals = {
        # name: (goal, measured ratio, ok)
        "repeating idle on aioqloop/asyncio vs asyncio call_soon chain": ("≤ 0.75x", 11/16),
        "FdSource round trip on aioqloop/asyncio vs asyncio add_reader": ("≤ 0.95x", 39/40),
        "one-shot timer burst on aioqloop/asyncio vs asyncio call_later": ("≤ 0.75x", 14/20),
        "0-delay timer chain on aioqloop/asyncio vs asyncio call_later(0)": ("≤ 1x", 1.0),
        "BottomHalf on aioqloop/asyncio vs asyncio call_soon_threadsafe": ("≤ 1x", 33/30),
        "call_soon chain on aioqloop/asyncio vs asyncio": ("≤ 1.02x", 16.5/16),
        "repeating idle on aioqloop/uvloop vs GLib+PyGObject idle_add": ("≤ 1x", 3/3.5),
        "FdSource round trip on aioqloop/uvloop vs GLib+PyGObject unix_fd_add": (
            "≤ 1x", 12/11),
        "call_soon chain on aioqloop/uvloop vs uvloop": ("≤ 1.05x", 4.1/4),
    }
    assert set(targets) == set(expected_goals)
    for name, (goal, ratio) in expected_goals.items():
        rec = targets[name]
        assert rec["goal"] == goal
        if "uvloop" in name and not have_uv:
            assert rec["ok"] is None and rec["measured"] is None
            continue
        limit = float(goal.split()[1].rstrip("x"))
        assert rec["measured"] == pytest.approx(ratio), name
        assert rec["ok"] is (ratio <= limit), name
    # Both verdicts occur, and the goals table shows them.
    assert {r["ok"] for r in targets.values()} >= {True, False}
    flat = " ".join(shown.out.split())
    assert "instructions" in flat and "MISS" in flat and "OK" in flat


def test_instructions_without_valgrind_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no valgrind there
    out = tmp_path / "results.json"
    assert bench.main(["--only", "instructions", "--no-glib", "--json", str(out)]) == 0
    shown = capsys.readouterr()
    assert "valgrind: not installed" in shown.err
    assert "valgrind: not installed" in shown.out
    targets = json.loads(out.read_text(encoding="utf-8"))["records"]
    assert len(targets) == 9
    for rec in targets:
        assert rec["kind"] == "target"
        assert rec["ok"] is None
        assert rec["detail"] == "valgrind: not installed"


# --------------------------------------------------------------------------- allocator state


def test_socket_workloads_run_with_fixed_malloc_thresholds(tmp_path: Path) -> None:
    lib = _load_benchlib()
    script = BENCH_DIR / "bench_pingpong.py"
    argv, env = lib.fixed_allocator_command(script, True, 2, 0.5, environ={"KEEP": "1"})
    assert argv[:3] == [sys.executable, str(script), "--progress-json"]
    assert argv[argv.index("--runs") + 1] == "2"
    assert float(argv[argv.index("--scale") + 1]) == 0.5
    assert "--quick" in argv
    # glibc's mmap threshold is fixed above asyncio's 256 KiB receive buffer, and the trim
    # threshold at twice that, as glibc's own adjustment would set them.
    assert env == {"KEEP": "1", "MALLOC_MMAP_THRESHOLD_": str(1 << 20),
                   "MALLOC_TRIM_THRESHOLD_": str(2 << 20)}
    # Without the setting, a workload runs in such a child, not in this process.
    assert not lib.in_fixed_allocator()
    assert lib.in_fixed_allocator() is (
        os.environ.get("MALLOC_MMAP_THRESHOLD_") == str(1 << 20))


@pytest.mark.timeout(120)
def test_pingpong_figures_come_from_the_fixed_allocator_child() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    proc = subprocess.run(
        [sys.executable, str(BENCH_DIR / "bench_pingpong.py"), *TINY, "--no-glib"],
        capture_output=True, text=True, timeout=100, check=True, env=env,
    )
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    figures = [r for r in lines if r["kind"] == "figure"]
    assert len(figures) == 1
    rec = figures[0]
    _check_figure(rec)
    assert rec["params"]["pairs"] == 64
    assert rec["params"]["malloc_mmap_threshold"] == str(1 << 20)
    assert rec["params"]["malloc_trim_threshold"] == str(2 << 20)
    assert {"asyncio", "aioqloop/asyncio"} <= rec["values"].keys()
    targets = [r for r in lines if r["kind"] == "target"]
    assert [t["goal"] for t in targets] == ["≥ 1.15x"]


def test_a_thread_hand_off_figure_is_the_median_of_its_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``bh`` is measured ``REPEATS["bh"]`` times and the median kept (one run's count
    moves with whether the loop was asleep); other workloads once."""
    path = BENCH_DIR / "instructions.py"
    spec = importlib.util.spec_from_file_location("_instructions_under_test", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.REPEATS["bh"] == 3
    # per run: n1 then n2 -> per-op figures 100, 300, 200 for bh; 50 for idle
    counts = iter([0, 100 * 10, 0, 300 * 10, 0, 200 * 10, 0, 50 * 10])
    calls: list[list[str]] = []

    def fake_count(cmd: list[str]) -> int:
        calls.append(cmd)
        return next(counts)

    monkeypatch.setattr(mod, "_count", fake_count)
    monkeypatch.setattr(mod, "valgrind_missing", lambda: None)
    got = mod.measure(("bh", "idle"), ("asyncio",), sizes=(10, 20), progress=lambda _: None)
    assert got == {"bh": {"asyncio": 200.0}, "idle": {"asyncio": 50.0}}
    assert len(calls) == 8
