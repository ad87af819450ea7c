"""Every script in examples/ runs to completion and prints what it is meant to show.

The scripts run as subprocesses, all started together so the whole file costs about as
much as the slowest example.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
TIME_LIMIT = 30.0  # seconds per example; each finishes in well under 3 s

#: How the example's ``IOCondition.IN | IOCondition.HUP`` prints: 3.10's Flag repr lists
#: the members highest value first, 3.11+ in definition order.
_IN_HUP = "IN|HUP" if sys.version_info >= (3, 11) else "HUP|IN"

#: example file -> lines (substrings) its output must contain
EXPECTED: dict[str, tuple[str, ...]] = {
    "custom_source.py": ("received all 100 messages in order; source destroyed: True",),
    "priorities.py": ("0: high-priority timeout", "order respects priorities"),
    "fd_hup.py": ("read b'hello'", _IN_HUP, "peer hung up: removing the watch"),
    "bottom_halves.py": ("10000 of 10000 requests handled", "after delete():"),
    "big_lock.py": ("counter=5020 (expected 5020), irqs=20",),
    "pygobject_compat.py": ("tick (depth 1)", "idle ran", "pipe readable", "main loop finished"),
    "uvloop_base.py": ("loop is a uvloop.Loop: True", "bottom half ran on the loop thread: True",
                       "timeout fired 5 times"),
    "pytest_virtual_clock.py": ("2 passed",),
    "pytest_seeded_race.py": ("1 passed",),
}


def _command(name: str) -> list[str]:
    if name.startswith("pytest_"):
        return [sys.executable, "-m", "pytest", f"examples/{name}", "-p", "no:cacheprovider",
                "-q"]
    return [sys.executable, f"examples/{name}"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("FORCE_COLOR", None)
    env["NO_COLOR"] = "1"
    env.pop("PYTEST_ADDOPTS", None)
    return env


_procs: dict[str, subprocess.Popen[str]] = {}


def _start_all() -> None:
    if _procs:
        return
    for name in EXPECTED:
        _procs[name] = subprocess.Popen(
            _command(name), cwd=ROOT, env=_env(), text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )


def _finish(name: str) -> tuple[int, str, str]:
    _start_all()
    proc = _procs[name]
    try:
        out, err = proc.communicate(timeout=TIME_LIMIT)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"{name} did not finish within {TIME_LIMIT} s\n{out}\n{err}")
    return proc.returncode, out, err


def test_every_example_is_covered() -> None:
    scripts = {p.name for p in EXAMPLES.glob("*.py")}
    assert scripts == set(EXPECTED)


def test_examples_are_short_and_documented() -> None:
    for name in EXPECTED:
        text = (EXAMPLES / name).read_text()
        assert text.startswith('"""'), f"{name} needs a docstring saying what it shows"
        assert len(text.splitlines()) <= 70, f"{name} is too long for an example"


@pytest.mark.timeout(90)
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs(name: str) -> None:
    if name == "uvloop_base.py":
        pytest.importorskip("uvloop")
    code, out, err = _finish(name)
    assert code == 0, f"{name} exited {code}\nstdout:\n{out}\nstderr:\n{err}"
    for line in EXPECTED[name]:
        assert line in out, f"{name}: {line!r} missing from output:\n{out}\nstderr:\n{err}"
    assert "Traceback" not in err, err
