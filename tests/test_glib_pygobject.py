"""PyGObject's own main-loop test files, run on `aioqloop.glib` and on real GLib.

`tests/peer/pygobject.py` downloads the pinned PyGObject sdist (cached under ``.cache/``)
and runs its main-loop test files through a small ``gi`` shim on aioqloop.glib, and the
same files on real PyGObject of that release when a Python with it is found (built by
``.ci/glib-differential.sh`` under ``.tox/pygobject``).  Every test that passes on real
GLib must pass here, except the exclusions of `tests/peer/exclusions.py` (not main loop)
and its ``KNOWN_GAPS``.  Without a real PyGObject the recorded list of real passes
(``tests/peer/real-passes-<version>.txt``, test ids only) stands in for it.

Slow (about a minute), so it runs when ``AIOQLOOP_PEER=1`` (CI sets it in
``.ci/glib-differential.sh``); skipped without network and cache.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.peer import exclusions, pygobject

pytestmark = [
    pytest.mark.skipif(
        os.environ.get("AIOQLOOP_PEER") != "1", reason="PyGObject's suite runs with AIOQLOOP_PEER=1"
    ),
    pytest.mark.timeout(1800),
]

RECORDED = Path(__file__).parent / "peer" / f"real-passes-{pygobject.VERSION}.txt"
_GOOD = {"passed", "xfailed"}


def _short(nodeid: str) -> str:
    return nodeid.removeprefix("pgtests/")


def _show(config: pytest.Config, text: str) -> None:
    # In the run's output, not only in a failure's captured stdout: CI logs the counts.
    reporter = config.pluginmanager.getplugin("terminalreporter")
    capture = config.pluginmanager.getplugin("capturemanager")
    if reporter is None:
        return
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        reporter.write_line("")
        for line in text.splitlines():
            reporter.write_line(line)


@pytest.fixture(scope="module")
def outcomes(pytestconfig: pytest.Config) -> tuple[dict[str, str], dict[str, str] | None]:
    try:
        pygobject.sdist_tests()
    except pygobject.Unavailable as exc:
        pytest.skip(str(exc))
    aio = {_short(k): v for k, v in pygobject.run("aioqloop").items()}
    try:
        real: dict[str, str] | None = {_short(k): v for k, v in pygobject.run("real").items()}
    except pygobject.Unavailable:
        real = None
    _show(pytestconfig, pygobject.report(aio, real, pygobject.VERSION))
    return aio, real


def _real_passes(real: dict[str, str] | None) -> set[str]:
    if real is None:
        return set(RECORDED.read_text().split())
    return {k for k, v in real.items() if v in _GOOD}


def test_every_main_loop_test_passing_on_glib_passes(
    outcomes: tuple[dict[str, str], dict[str, str] | None],
) -> None:
    aio, real = outcomes
    required = {t for t in _real_passes(real) if exclusions.excluded(t) is None}
    failing = sorted(t for t in required if aio.get(t) not in _GOOD)
    unexpected = [t for t in failing if t not in exclusions.KNOWN_GAPS]
    fixed = sorted(t for t in exclusions.KNOWN_GAPS if aio.get(t) in _GOOD)
    assert not unexpected, f"main-loop tests passing on real GLib fail here: {unexpected}"
    assert not fixed, f"known gaps that pass now (remove them from KNOWN_GAPS): {fixed}"


def test_exclusions_name_real_tests(
    outcomes: tuple[dict[str, str], dict[str, str] | None],
) -> None:
    aio, _ = outcomes
    named = set(exclusions.EXCLUDED) | set(exclusions.KNOWN_GAPS)
    assert named <= set(aio), f"stale exclusions: {sorted(named - set(aio))}"


def test_recorded_real_passes_are_current(
    outcomes: tuple[dict[str, str], dict[str, str] | None],
) -> None:
    _, real = outcomes
    if real is None:
        pytest.skip("no real PyGObject here; the recorded list is used as is")
    flaky = set(exclusions.FLAKY_ON_REAL)
    assert _real_passes(real) - flaky == set(RECORDED.read_text().split()) - flaky


_UV_FILES = ("test_events.py",)


def _failing(outcomes: dict[str, str]) -> set[str]:
    return {k for k, v in outcomes.items() if v not in _GOOD and v != "skipped"}


def test_gi_events_on_uvloop_fails_only_where_plain_uvloop_does(
    pytestconfig: pytest.Config,
) -> None:
    # PyGObject's test_events.py served on the uvloop base, and, as the control, on
    # plain uvloop (no aioqloop): most of its loop tests are CPython's, written for the
    # selector loop, and uvloop fails a number of them on its own.  aioqloop's uvloop
    # base may fail only those.
    try:
        pygobject.sdist_tests()
    except pygobject.Unavailable as exc:
        pytest.skip(str(exc))
    aio = {_short(k): v for k, v in
           pygobject.run("aioqloop", base="uvloop", files=_UV_FILES, timeout=10).items()}
    plain = {_short(k): v for k, v in
             pygobject.run("aioqloop", base="uvloop-plain", files=_UV_FILES, timeout=10).items()}
    passed = sum(v == "passed" for v in aio.values())
    _show(pytestconfig, f"test_events.py on the uvloop base: {passed}/{len(aio)} passed; "
          f"plain uvloop {sum(v == 'passed' for v in plain.values())}/{len(plain)}")
    assert passed >= 60, f"too few tests ran on the uvloop base: {aio}"
    extra = sorted(_failing(aio) - _failing(plain))
    assert not extra, f"fail on aioqloop's uvloop base but not on plain uvloop: {extra}"
    # The policy's own tests need aioqloop (plain uvloop has no GLib context): on the
    # uvloop base they must pass, except the raw nested iteration (docs/tutorial/pygobject.md).
    policy = {k: v for k, v in aio.items() if "::GLibEventLoopPolicyTests::" in k}
    assert policy and all(
        v in _GOOD or v == "skipped" or k.endswith("test_inside_context_iteration")
        for k, v in policy.items()
    ), policy



# ---------------------------------------------- the current release (3.58.1) files
CURRENT = pygobject.CURRENT


@pytest.fixture(scope="module")
def current(pytestconfig: pytest.Config) -> dict[str, str]:
    try:
        pygobject.sdist_tests(CURRENT)
    except pygobject.Unavailable as exc:
        pytest.skip(str(exc))
    aio = {_short(k): v for k, v in pygobject.run("aioqloop", version=CURRENT).items()}
    _show(pytestconfig, pygobject.report(aio, None, CURRENT))
    return aio


def test_current_release_passes_every_main_loop_test(current: dict[str, str]) -> None:
    # No real PyGObject of this release runs here (it needs a newer GLib than Debian's
    # to build): every test not excluded must pass, or skip by the file's own decision
    # (no Gtk, an older Python, Windows-only).
    failing = sorted(
        t for t, v in current.items()
        if exclusions.excluded(t, CURRENT) is None and v not in _GOOD and v != "skipped"
    )
    assert not failing, f"PyGObject {CURRENT}'s main-loop tests failing here: {failing}"
    assert sum(v == "passed" for v in current.values()) >= 165, current


def test_current_release_exclusions_name_real_tests(current: dict[str, str]) -> None:
    stale = sorted(set(exclusions.EXCLUDED_CURRENT) - set(current))
    assert not stale, f"stale exclusions: {stale}"
    # An exclusion that passes is no longer needed (the list only shrinks).
    passing = sorted(t for t in exclusions.EXCLUDED_CURRENT if current.get(t) in _GOOD)
    assert not passing, f"excluded tests that pass now: {passing}"


def test_current_gi_events_on_uvloop_fails_only_where_plain_uvloop_does(
    pytestconfig: pytest.Config,
) -> None:
    try:
        pygobject.sdist_tests(CURRENT)
    except pygobject.Unavailable as exc:
        pytest.skip(str(exc))
    aio = {_short(k): v for k, v in pygobject.run(
        "aioqloop", base="uvloop", files=_UV_FILES, timeout=10, version=CURRENT).items()}
    plain = {_short(k): v for k, v in pygobject.run(
        "aioqloop", base="uvloop-plain", files=_UV_FILES, timeout=10, version=CURRENT).items()}
    passed = sum(v == "passed" for v in aio.values())
    _show(pytestconfig, f"{CURRENT}'s test_events.py on the uvloop base: {passed}/{len(aio)} "
          f"passed; plain uvloop {sum(v == 'passed' for v in plain.values())}/{len(plain)}")
    assert passed >= 65, f"too few tests ran on the uvloop base: {aio}"
    extra = sorted(_failing(aio) - _failing(plain))
    assert not extra, f"fail on aioqloop's uvloop base but not on plain uvloop: {extra}"
    policy = {k: v for k, v in aio.items() if "::GLibEventLoopPolicyTests::" in k}
    assert policy and all(
        v in _GOOD or v == "skipped" or k in exclusions.UVLOOP_POLICY_GAPS
        or exclusions.excluded(k, CURRENT) is not None
        for k, v in policy.items()
    ), policy
