"""Differential tests: the same programs on real GLib (PyGObject) and on `aioqloop.glib`.

Every scenario of ``_glib_scenarios`` runs once with ``gi.repository.GLib`` and once
with ``aioqloop.glib`` in this process, and the observations (dispatch order, counts,
return values, depths) must be equal.  Needs PyGObject, which the project's own venv
does not have: ``.ci/glib-differential.sh`` builds a venv on Debian's ``python3-gi``.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

try:
    with warnings.catch_warnings():
        # PyGObject 3.42's importer trips Python's ImportWarning (an error under -W error).
        warnings.simplefilter("ignore", ImportWarning)
        import gi

        gi.require_version("GLib", "2.0")
        from gi.repository import GLib as RealGLib
except (ImportError, ValueError) as exc:  # pragma: no cover - depends on the venv
    pytest.skip(
        f"real GLib is not importable through PyGObject ({exc}); "
        "run .ci/glib-differential.sh to build a venv with python3-gi",
        allow_module_level=True,
    )

from aioqloop import glib as AioGLib

sys.path.insert(0, str(Path(__file__).parent))
import _glib_programs as programs
import _glib_scenarios as scenarios

# Seconds timeouts take their phase from a hash of one of these, read once per process by
# both implementations: make sure there is one, so the phase comparison means something.
if not os.environ.get("DBUS_SESSION_BUS_ADDRESS") and not os.environ.get("HOSTNAME"):
    os.environ["HOSTNAME"] = "aioqloop-differential"


@pytest.fixture(autouse=True)
def _fresh_default_loop() -> Any:
    scenarios.reset_aioqloop_default()
    yield
    scenarios.reset_aioqloop_default()


def _run_real(name: str) -> Any:
    # PyGObject turns GLib's criticals (e.g. removing an unknown id) into warnings.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return scenarios.SCENARIOS[name](RealGLib)


@pytest.mark.parametrize("name", sorted(scenarios.SCENARIOS))
def test_same_observations_as_glib(name: str) -> None:
    expected = _run_real(name)
    got = scenarios.SCENARIOS[name](AioGLib)
    assert got == expected


@pytest.mark.parametrize("name", sorted(scenarios.EXPECTED))
def test_recorded_results_still_describe_glib(name: str) -> None:
    # tests/test_glib.py checks aioqloop against these recordings in the normal venv.
    assert _run_real(name) == scenarios.EXPECTED[name]


def test_there_are_enough_scenarios() -> None:
    assert len(scenarios.SCENARIOS) >= 12


def _fuzz_seeds() -> range:
    # AIOQLOOP_FUZZ=N: N more programs from a seed of this run (printed on failure).
    extra = int(os.environ.get("AIOQLOOP_FUZZ", "0") or 0)
    start = int.from_bytes(os.urandom(3), "big") * 1000 if extra else 0
    return range(start, start + extra)


def test_random_programs_observe_what_glib_does() -> None:
    # The same random programs on real GLib and on aioqloop.glib: every dispatch, every
    # iteration's result and the final states must be equal (`_glib_programs`).
    seeds = [*programs.SEEDS, *_fuzz_seeds()]
    for seed in seeds:
        ops = programs.generate(seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = programs.run(RealGLib, ops)
        got = programs.run(AioGLib, ops)
        assert got == expected, f"seed {seed}: {ops}"


def test_recorded_program_digest_still_describes_glib() -> None:
    # tests/test_glib.py checks aioqloop against this digest in the normal venv.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert programs.digest(RealGLib) == programs.RECORDED
