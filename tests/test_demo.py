"""``python -m aioqloop demo`` runs a working machine on both bases; the CLI dispatches."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import BASES

from aioqloop import __main__ as cli

ROOT = Path(__file__).resolve().parent.parent
_procs: dict[str, subprocess.Popen[str]] = {}


def _start_all() -> None:
    """Start the demo on every available base at once: the file costs one run, not two."""
    if _procs:
        return
    env = dict(os.environ)
    env.pop("FORCE_COLOR", None)
    env["NO_COLOR"] = "1"
    for base in BASES:
        if base == "uvloop" and importlib.util.find_spec("uvloop") is None:
            continue
        _procs[base] = subprocess.Popen(
            [sys.executable, "-m", "aioqloop", "demo", "--seconds", "1", "--base", base],
            cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )


def _counter(out: str, label: str) -> int:
    m = re.search(rf"{re.escape(label)}\s*│\s*(\d+)", out)
    assert m, f"{label!r} missing from the machine table:\n{out}"
    return int(m.group(1))


@pytest.mark.timeout(90)
def test_demo_machine_works(base: str) -> None:
    _start_all()
    proc = _procs[base]
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out}\n{err}"
    assert err == "", err
    assert f"machine up: base={base}, 2 vCPUs" in out
    assert "serial0 guest says: 'guest line 1'" in out
    # the monitor answered, and stop/cont round-tripped
    running = '{"return":{"status":"running","singlestep":false,"running":true}}'
    assert f"QMP -> query-status          <- {running}" in out
    assert '{"return":{"status":"paused","singlestep":false,"running":false}}' in out
    assert '"qemu": {"micro": 0, "minor": 2, "major": 7}' in out
    assert "event STOP" in out and "event RESUME" in out
    assert re.search(r"while stopped: interrupts (\d+) -> \1 \(frozen\)", out), out
    assert "CommandNotFound" in out
    assert re.search(r"machine down after [\d.]+ s; 10 monitor replies", out), out
    # one timer source for the whole run, stopped and restarted: its dispatches are the
    # machine's interrupts, even though the clock stopped in between
    m = re.search(r"│\s*\d+ │ timer0\s*│\s*-?\d+ │\s*(\d+) │", out)
    assert m, out
    assert int(m.group(1)) == _counter(out, "timer interrupts")
    assert "waited: iterations in which" in " ".join(out.split())  # the columns explained
    # every device did work
    assert _counter(out, "serial lines echoed") > 0
    assert _counter(out, "echoes read by guest") > 0
    assert _counter(out, "timer interrupts") > 0
    assert _counter(out, "housekeeping runs") > 0
    requests = _counter(out, "io requests (vCPU MMIO)")
    assert requests > 0
    assert 0 < _counter(out, "bottom-half runs") <= requests
    assert _counter(out, "dma completed") == requests
    assert _counter(out, "vcpu0 lock acquisitions") > 0
    assert _counter(out, "vcpu1 lock acquisitions") > 0
    # the tables
    assert "main context sources" in out
    for name in ("serial0", "timer0", "bottom halves", "housekeeping-kick"):
        assert re.search(rf"│\s*{name}\s*│", out), f"{name} missing from statistics table"
    assert "big lock contention" in out
    m = re.search(r"│ threads\s*│\s*(\d+)", out)
    assert m and int(m.group(1)) > 0


@pytest.mark.timeout(60)
def test_demo_into_a_closed_pipe_exits_quietly(base: str) -> None:
    """``python -m aioqloop demo | head -3``: no BrokenPipeError, no task tracebacks."""
    env = dict(os.environ, NO_COLOR="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "aioqloop", "demo", "--seconds", "0.5", "--base", base],
        cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    assert first.startswith("machine up")
    proc.stdout.close()  # what head does after its lines
    err = proc.stderr.read()
    assert proc.wait(timeout=30) == 0
    assert err == ""


def test_cli_without_arguments_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    assert "usage: aioqloop" in out
    assert "demo" in out and "bench" in out


def test_cli_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["frobnicate"])
    assert info.value.code == 2
    assert "invalid choice: 'frobnicate'" in capsys.readouterr().err


def test_cli_passes_arguments_to_the_subcommand(monkeypatch: pytest.MonkeyPatch) -> None:
    import aioqloop.demo

    seen: list[list[str]] = []

    def fake_main(argv: list[str]) -> int:
        seen.append(list(argv))
        return 7

    monkeypatch.setattr(aioqloop.demo, "main", fake_main)
    assert cli.main(["demo", "--seconds", "2"]) == 7
    assert seen == [["--seconds", "2"]]


def test_cli_reports_a_missing_subcommand_module(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(cli._COMMANDS, "bench", ("aioqloop._no_such_module", "x"))
    assert cli.main(["bench"]) == 1
    err = capsys.readouterr().err
    assert "'bench' command is not available" in err


def test_demo_rejects_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    import aioqloop.demo

    assert aioqloop.demo.main(["--seconds", "0"]) == 2
    assert "--seconds must be > 0" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        aioqloop.demo.main(["--base", "trio"])
