"""rich is optional: the demo, the benchmarks and `statistics_table` print plain aligned
text without it, and text shown literally (install hints) survives rich's markup.

rich is hidden in-process: ``sys.modules["rich"] = None`` makes every ``import rich...``
raise ImportError, and the module under test is imported afresh so that nothing it
bound at an earlier import is reused.
"""

from __future__ import annotations

import importlib
import io
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest
from conftest import iterate, recorder
from hypothesis import given
from hypothesis import strategies as st

import aioqloop
from aioqloop import PRIORITY_HIGH, PRIORITY_LOW, IdleSource, MainContext, statistics_table
from aioqloop._console import escape, strip_markup

BENCH_DIR = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture
def no_rich(monkeypatch: pytest.MonkeyPatch) -> None:
    """rich is not installed, as far as any import in this test can tell."""
    for name in [n for n in sys.modules if n == "rich" or n.startswith("rich.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "rich", None)
    with pytest.raises(ImportError):
        import rich.table  # noqa: F401


def _fresh(monkeypatch: pytest.MonkeyPatch, name: str) -> ModuleType:
    """``aioqloop.<name>`` imported again; the original is put back after the test."""
    monkeypatch.setattr(aioqloop, name, importlib.import_module(f"aioqloop.{name}"))
    monkeypatch.delitem(sys.modules, f"aioqloop.{name}")
    return importlib.import_module(f"aioqloop.{name}")


def _columns(line: str) -> list[str]:
    return re.split(r"\s{2,}", line.strip())


@pytest.mark.usefixtures("no_rich")
def test_statistics_table_is_plain_text_without_rich(ctx: MainContext) -> None:
    log: list[str] = []
    for name, prio in (("busy-source", PRIORITY_HIGH), ("[starved]", PRIORITY_LOW)):
        src = IdleSource(priority=prio, name=name)
        src.set_callback(recorder(log, name))
        src.attach(ctx)
    iterate(ctx, 2)
    text = str(statistics_table(ctx))
    lines = text.splitlines()
    assert lines[0] == "sources: 2 dispatching iterations, " + lines[0].split(", ")[1]
    assert _columns(lines[1]) == ["id", "name", "priority", "dispatches", "total ms",
                                  "mean µs", "max µs", "waited"]
    assert set(lines[2]) <= {"-", " "}
    busy, starved = (_columns(line) for line in lines[3:5])
    assert busy[1:4] == ["busy-source", str(PRIORITY_HIGH), "2"]
    assert starved[1:4] == ["[starved]", str(PRIORITY_LOW), "0"]  # a name is not markup
    assert starved[-1] == "2"  # waited twice
    # right-justified numbers end in the same column as their header
    for row in (lines[3], lines[4]):
        assert len(row) == len(lines[1])
    assert "│" not in text and "[/" not in text


@pytest.mark.timeout(60)
@pytest.mark.usefixtures("no_rich")
def test_demo_prints_plain_tables_without_rich(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    demo = _fresh(monkeypatch, "demo")
    assert demo.main(["--seconds", "0.3"]) == 0
    out = capsys.readouterr().out
    assert "machine up: base=asyncio, 2 vCPUs" in out
    assert "QMP -> query-status" in out  # the markup tags are gone, the text stays
    assert "[magenta]" not in out and "[/" not in out and "│" not in out
    lines = out.splitlines()
    for title, header in (("main context sources", ["id", "name", "priority"]),
                          ("machine", ["counter", "value"]),
                          ("big lock contention", ["owner", "acquisitions", "contended"])):
        at = lines.index(title)
        assert _columns(lines[at + 1])[: len(header)] == header
        assert set(lines[at + 2]) <= {"-", " "}
    interrupts = [_columns(line) for line in lines if line.startswith("timer interrupts")]
    assert len(interrupts) == 1 and int(interrupts[0][1]) > 0
    assert "waited: iterations in which" in " ".join(out.split())  # the caption


_RECORDS = """
def run(quick, **kwargs):
    return [
        {"kind": "figure", "bench": "dispatch", "figure": "one [callback]", "unit": "us",
         "better": "lower", "baseline": "asyncio", "runs": 1,
         "values": {"asyncio": 2.0, "uvloop": 1.0, "aioqloop/asyncio": 3.0,
                    "aioqloop/uvloop": 1.5},
         "ratios": {"asyncio": 1.0, "uvloop": 0.5, "aioqloop/asyncio": 1.5,
                    "aioqloop/uvloop": 0.75},
         "ratios_vs_uvloop": {"aioqloop/uvloop": 1.5},
         "labels": {"uvloop": "call_soon [x]"}},
        {"kind": "target", "bench": "dispatch", "target": "under 1 us", "goal": "<= 1.0x",
         "measured": 2.0, "ok": False, "detail": "made up [detail]"},
        {"kind": "target", "bench": "dispatch", "target": "at all", "goal": "<= 9.0x",
         "measured": 2.0, "ok": True, "detail": "made up"},
    ]
"""


@pytest.mark.usefixtures("no_rich")
def test_bench_prints_plain_tables_without_rich(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = _fresh(monkeypatch, "bench")
    (tmp_path / "_benchlib.py").write_bytes((BENCH_DIR / "_benchlib.py").read_bytes())
    (tmp_path / "bench_dispatch.py").write_text(_RECORDS, encoding="utf-8")
    argv = ["--bench-dir", str(tmp_path), "--only", "dispatch", "--no-glib", "--quick"]
    assert bench.main(argv) == 0
    shown = capsys.readouterr()
    lines = shown.out.splitlines()
    assert max(len(line) for line in lines) <= 80  # not a terminal: 80 columns
    assert "│" not in shown.out and "[bold]" not in shown.out and "[dim]" not in shown.out
    at = lines.index("dispatch")
    assert _columns(lines[at + 1])[:3] == ["figure", "unit", "asyncio"]
    assert "one [callback]" in shown.out and "call_soon [x]" in shown.out
    assert "÷uv 1.50x" in shown.out
    at = lines.index("performance goals")
    assert _columns(lines[at + 1])[:3] == ["workload", "goal", "target"]
    verdicts = " ".join(lines[at:])
    assert "MISS" in verdicts and "OK" in verdicts and "made up [detail]" in verdicts
    assert "1 goal(s) missed: dispatch: under 1 us" in shown.err
    assert "[yellow]" not in shown.err


@pytest.mark.parametrize("rich", ["installed", "missing"])
def test_uvloop_hint_keeps_its_brackets(
    rich: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """rich's markup would read ``[uvloop]`` as a style and swallow it."""
    if rich == "installed":
        pytest.importorskip("rich")
    else:
        monkeypatch.setitem(sys.modules, "rich", None)
    demo = _fresh(monkeypatch, "demo")
    monkeypatch.setitem(sys.modules, "uvloop", None)
    assert demo.main(["--base", "uvloop"]) == 2
    out = " ".join(capsys.readouterr().out.split())
    assert "--base uvloop needs uvloop: pip install 'aioqloop[uvloop]'" in out


_MARKUP_CHARS = st.text(alphabet="[]/\\#@ab=: ", max_size=24)


@given(_MARKUP_CHARS)
def test_escape_round_trips_through_rich_and_plain(text: str) -> None:
    from rich.text import Text

    alone = escape(text)
    assert strip_markup(alone) == Text.from_markup(alone, emoji=False).plain
    if not text.endswith("\\"):  # a trailing backslash is doubled to protect a next tag
        assert strip_markup(alone) == text
    # between tags, as the faces use it
    assert Text.from_markup(f"[red]{escape(text)}[/red]", emoji=False).plain == text
    assert strip_markup(f"[red]{escape(text)}[/red]") == text


def test_strip_markup_reads_tags_as_rich_does() -> None:
    from rich.text import Text

    for markup in ("[bold]up[/]: x", "[cyan]serial0[/] says", "a [5] b", "a \\[5] b",
                   "\\[bold] literal", "\\\\[bold]two[/bold]", "x [#ff0000]y[/]",
                   "[link=https://x]z[/link]"):
        assert strip_markup(markup) == Text.from_markup(markup, emoji=False).plain, markup


def test_plain_table_wraps_to_the_width() -> None:
    from aioqloop._console import PlainConsole, Table

    table = Table("t", caption="a caption long enough to be wrapped at the table's width")
    table.add_column("name")
    table.add_column("figure", justify="right")
    table.add_row("a rather long name that must wrap", "12.5")
    table.add_row("two\nlines", "1")
    buf = io.StringIO()
    PlainConsole(buf, width=24).print(table)
    lines = buf.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 24
    assert [line.split("  ")[0] for line in lines[3:6]] == ["a rather long", "name that must",
                                                           "wrap"]
    assert any(line.startswith("two") for line in lines)
    assert any(line.startswith("lines") for line in lines)
    with pytest.raises(ValueError, match="2 columns"):
        table.add_row("only one")


def test_plain_prose_wraps_to_the_width_as_rich_does() -> None:
    from aioqloop._console import PlainConsole

    buf = io.StringIO()
    console = PlainConsole(buf, width=20)
    console.print("engine: python (AIOQLOOP_ENGINE=python; cpython 3.11.7)\nshort")
    console.print("a-word-longer-than-twenty-columns stays whole")
    lines = buf.getvalue().splitlines()
    assert lines == ["engine: python", "(AIOQLOOP_ENGINE=python;", "cpython 3.11.7)", "short",
                     "a-word-longer-than-twenty-columns", "stays whole"]
    unlimited = io.StringIO()
    PlainConsole(unlimited).print("x " * 100)  # not a terminal, no width: one line
    assert unlimited.getvalue().count("\n") == 1
