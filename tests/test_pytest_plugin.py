"""The pytest plugin, exercised on inner pytest runs (``pytester``, in process)."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

# Imported once here: pytester drops modules first imported during a test, and
# aioqloop's uvloop base class must stay a subclass of the one the inner tests see.
with contextlib.suppress(ImportError):
    import uvloop  # noqa: F401
# Likewise the big lock: aioqloop keeps ``aioqloop.BigLock`` once looked up, so a
# biglock module dropped and imported again would give the plugin's isinstance check a
# second, different class.
import aioqloop.biglock  # noqa: F401

pytest_plugins = ["pytester"]

INI = """
[pytest]
asyncio_default_fixture_loop_scope = function
{extra}
"""

HELPERS = """
import asyncio
import pytest
import aioqloop
from aioqloop.loop import QSelectorEventLoop

def on_aioqloop():
    loop = asyncio.get_running_loop()
    return isinstance(loop, QSelectorEventLoop)

def on_aioqloop_any_base():
    return hasattr(asyncio.get_running_loop(), "main_context")
"""


def run(pytester: pytest.Pytester, source: str, *args: str, ini: str = "") -> pytest.RunResult:
    if "no:asyncio" in args:
        pytester.makeini(f"[pytest]\n{ini}\n")
    else:
        pytester.makeini(INI.format(extra=ini))
    pytester.makepyfile(helpers=HELPERS, test_inner=source)
    # hypothesis's plugin re-imports its package on every in-process run: not needed here.
    # looptime's plugin swaps the class of every pytest-asyncio loop (tests/test_looptime.py
    # covers looptime on its own terms).
    return pytester.runpytest("-p", "no:cacheprovider", "-p", "no:hypothesispytest",
                              "-p", "no:looptime_plugin", "-W", "error", *args)


# ----------------------------------------------------------------- inert
def test_inert_when_not_opted_in(pytester: pytest.Pytester) -> None:
    result = run(pytester, """
import asyncio, pytest
from helpers import on_aioqloop

@pytest.mark.asyncio
async def test_stock(request):
    assert not on_aioqloop()
    # Not even registered: pytest-asyncio's own default path is untouched.
    pm = request.config.pluginmanager
    assert pm.get_plugin("aioqloop-loop-factories") is None
    assert pm.hasplugin("aioqloop")

@pytest.mark.asyncio
async def test_errors_left_to_asyncio():
    asyncio.get_running_loop().call_soon(lambda: 1 / 0)  # only logged, as usual
    await asyncio.sleep(0)

def test_sync():
    pass
""")
    result.assert_outcomes(passed=3)


def test_inert_run_keeps_user_event_loop_policy(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("""
import asyncio
def pytest_asyncio_loop_factories(config, item):
    return {"mine": asyncio.SelectorEventLoop}
""")
    result = run(pytester, """
import asyncio, pytest
from helpers import on_aioqloop

@pytest.mark.asyncio
async def test_users_factory_wins():
    assert not on_aioqloop()
    assert type(asyncio.get_running_loop()) is asyncio.SelectorEventLoop
""", "--aioqloop")
    result.assert_outcomes(passed=1)


# ---------------------------------------------------------- pytest-asyncio
@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_run_level_option(pytester: pytest.Pytester, mode: str) -> None:
    marker = "@pytest.mark.asyncio" if mode == "strict" else ""
    result = run(pytester, f"""
import asyncio, pytest
from helpers import on_aioqloop

{marker}
async def test_on_aioqloop():
    assert on_aioqloop()
    assert aioqloop.get_main_context() is asyncio.get_running_loop().main_context

def test_sync_untouched():
    pass
""".replace("import asyncio, pytest", "import asyncio, pytest, aioqloop"),
        "--aioqloop", f"--asyncio-mode={mode}")
    result.assert_outcomes(passed=2)


def test_ini_option(pytester: pytest.Pytester) -> None:
    result = run(pytester, """
import pytest
from helpers import on_aioqloop

@pytest.mark.asyncio
async def test_on_aioqloop():
    assert on_aioqloop()
""", ini="aioqloop = true")
    result.assert_outcomes(passed=1)


def test_module_scoped_async_fixture(pytester: pytest.Pytester) -> None:
    result = run(pytester, """
import asyncio, pytest, pytest_asyncio
from helpers import on_aioqloop

@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def shared():
    assert on_aioqloop()
    return asyncio.get_running_loop()

@pytest.mark.asyncio(loop_scope="module")
async def test_one(shared):
    assert asyncio.get_running_loop() is shared

@pytest.mark.asyncio(loop_scope="module")
async def test_two(shared):
    assert asyncio.get_running_loop() is shared
""", "--aioqloop")
    result.assert_outcomes(passed=2)


def test_marker_opts_in_one_test(pytester: pytest.Pytester) -> None:
    result = run(pytester, """
import asyncio, pytest
from helpers import on_aioqloop

@pytest.mark.asyncio
async def test_plain_before():
    assert not on_aioqloop()

@pytest.mark.aioqloop
@pytest.mark.asyncio
async def test_marked():
    assert on_aioqloop()

@pytest.mark.asyncio
async def test_plain_after():
    assert not on_aioqloop()
""")
    result.assert_outcomes(passed=3)


def test_marker_both_bases(pytester: pytest.Pytester) -> None:
    pytest.importorskip("uvloop")
    result = run(pytester, """
import asyncio, pytest
import uvloop
from helpers import on_aioqloop_any_base

SEEN = []

@pytest.mark.aioqloop(base="both")
@pytest.mark.asyncio
async def test_both():
    assert on_aioqloop_any_base()
    SEEN.append(isinstance(asyncio.get_running_loop(), uvloop.Loop))

def test_saw_both():
    assert sorted(SEEN) == [False, True]
""", "-v")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*test_both?aioqloop?*PASSED*",
                                 "*test_both?aioqloop-uvloop?*PASSED*"])


def test_run_level_base_uvloop(pytester: pytest.Pytester) -> None:
    pytest.importorskip("uvloop")
    result = run(pytester, """
import asyncio, pytest, uvloop
from helpers import on_aioqloop_any_base

@pytest.mark.asyncio
async def test_uv():
    assert on_aioqloop_any_base()
    assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
""", "--aioqloop", "--aioqloop-base=uvloop")
    result.assert_outcomes(passed=1)


def test_bad_marker_arguments(pytester: pytest.Pytester) -> None:
    result = run(pytester, """
import pytest

@pytest.mark.aioqloop(base="tokio")
@pytest.mark.asyncio
async def test_x():
    pass
""")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*base must be 'asyncio', 'uvloop' or 'both'*"])


@pytest.mark.parametrize("args", [
    [],                                   # marker alone: no --aioqloop, no ini key
    ["--asyncio-mode=auto"],
])
def test_loop_factories_marker_alone(pytester: pytest.Pytester, args: list[str]) -> None:
    result = run(pytester, """
import asyncio, pytest
from helpers import on_aioqloop

SEEN = []

@pytest.mark.asyncio
async def test_unnamed_before():
    assert not on_aioqloop()

@pytest.mark.asyncio(loop_factories=["aioqloop"])
async def test_named():
    assert on_aioqloop()

@pytest.mark.asyncio(loop_factories=["aioqloop"])
async def test_named_loop_error_fails():
    asyncio.get_running_loop().call_soon(lambda: 1 / 0)
    await asyncio.sleep(0)
    await asyncio.sleep(0)

@pytest.mark.asyncio(loop_factories=["aioqloop"])
async def test_named_with_fixtures(main_context, virtual_clock):
    assert asyncio.get_running_loop().main_context is main_context
    await asyncio.sleep(3600)
    assert virtual_clock.time() == 3600.0

@pytest.mark.asyncio(loop_factories=["aioqloop", "asyncio"])
async def test_compared():
    SEEN.append(on_aioqloop())

def test_saw_both():
    assert SEEN == [True, False]

@pytest.mark.asyncio
async def test_unnamed_after():
    assert not on_aioqloop()
""", "-v", *args)
    result.assert_outcomes(passed=7, failed=1)
    result.stdout.fnmatch_lines(["*test_named_loop_error_fails FAILED*"])
    result.stdout.fnmatch_lines(["*exception handler during the test*",
                                 "*ZeroDivisionError*"])
    # Tests that name no factory keep their ids (and their loop).
    result.stdout.fnmatch_lines(["*::test_unnamed_before PASSED*",
                                 "*::test_unnamed_after PASSED*"])


def test_loop_factories_marker_uvloop(pytester: pytest.Pytester) -> None:
    pytest.importorskip("uvloop")
    result = run(pytester, """
import asyncio, pytest, uvloop
from helpers import on_aioqloop_any_base

@pytest.mark.asyncio(loop_factories=["aioqloop-uvloop"])
async def test_uv():
    assert on_aioqloop_any_base()
    assert isinstance(asyncio.get_running_loop(), uvloop.Loop)

@pytest.mark.asyncio(loop_factories=["aioqloop-uvloop"])
async def test_uv_virtual_clock(virtual_clock):
    pass
""")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*a virtual clock needs the 'aioqloop' loop factory*"])
    assert "/pluggy/" not in result.stdout.str()


@pytest.mark.parametrize("decorators", [
    "@pytest.mark.aioqloop(bse='uvloop')\n@pytest.mark.asyncio",
    "@pytest.mark.aioqloop(bse='uvloop')",
    "@pytest.mark.aioqloop(base='tokio')\n@pytest.mark.asyncio",
])
def test_marker_usage_error_without_traceback(pytester: pytest.Pytester,
                                               decorators: str) -> None:
    result = run(pytester, f"""
import pytest

{decorators}
async def test_typo():
    pass
""")
    assert result.ret != 0
    out = result.stdout.str()
    result.stdout.fnmatch_lines(["*test_inner.py::test_typo: mark.aioqloop got unknown "
                                 "arguments ?'bse'?*" if "bse" in decorators else
                                 "*test_inner.py::test_typo: aioqloop base must be*"])
    # The message alone: no frames of pluggy, pytest-asyncio or the plugin.
    assert "/pluggy/" not in out and "pytest_plugin.py" not in out, out
    assert "_plugin_options.py" not in out, out
    assert "Traceback" not in out and "UsageError" not in out, out
    lines = out.splitlines()
    first = next(i for i, line in enumerate(lines) if "= ERRORS =" in line)
    last = next(i for i, line in enumerate(lines) if "short test summary" in line)
    assert last - first <= 3, out  # the "ERROR collecting" header and the message


# --------------------------------------------------------------- plain path
def test_plain_pytest_marker_runs_coroutine(pytester: pytest.Pytester) -> None:
    result = run(pytester, """
import asyncio, pytest
from helpers import on_aioqloop

@pytest.mark.aioqloop
async def test_plain():
    assert on_aioqloop()
    await asyncio.sleep(0)

@pytest.mark.aioqloop
async def test_plain_fails():
    assert False, "boom"
""")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*boom*"])


def test_plain_pytest_both_bases(pytester: pytest.Pytester) -> None:
    pytest.importorskip("uvloop")
    result = run(pytester, """
import asyncio, pytest
from helpers import on_aioqloop_any_base

@pytest.mark.aioqloop(base="both")
async def test_plain(main_context):
    assert on_aioqloop_any_base()
    assert asyncio.get_running_loop().main_context is main_context
""", "-p", "no:asyncio", "-p", "no:anyio", "-v")
    result.assert_outcomes(passed=2)


# -------------------------------------------------------------------- anyio
def test_anyio_backend_with_loop_factory(pytester: pytest.Pytester) -> None:
    pytest.importorskip("anyio")
    result = run(pytester, """
import asyncio, pytest, aioqloop
from helpers import on_aioqloop

@pytest.fixture
def anyio_backend():
    return ("asyncio", {"loop_factory": aioqloop.new_event_loop})

@pytest.mark.anyio
async def test_on_aioqloop(main_context):
    assert on_aioqloop()
    assert aioqloop.get_main_context() is main_context

@pytest.fixture
def anyio_backend_virtual():
    pass
""")
    result.assert_outcomes(passed=1)


def test_anyio_virtual_clock_factory(pytester: pytest.Pytester) -> None:
    pytest.importorskip("anyio")
    result = run(pytester, """
import asyncio, pytest, anyio
from aioqloop.pytest_plugin import loop_factory

@pytest.fixture
def anyio_backend():
    return ("asyncio", {"loop_factory": loop_factory(virtual_clock=True)})

@pytest.mark.anyio
async def test_virtual(virtual_clock):
    await anyio.sleep(3600)
    assert virtual_clock.time() == 3600.0
""")
    result.assert_outcomes(passed=1)


# ----------------------------------------------------------------- fixtures
def test_fixtures_under_pytest_asyncio(pytester: pytest.Pytester) -> None:
    result = run(pytester, """
import asyncio, pytest, aioqloop

@pytest.mark.asyncio
async def test_main_context(main_context):
    assert isinstance(main_context, aioqloop.MainContext)
    assert main_context is aioqloop.get_main_context()
    ran = asyncio.Event()
    aioqloop.idle_add(lambda: ran.set() or False)
    await ran.wait()

@pytest.mark.asyncio
async def test_bql(bql):
    assert isinstance(bql, aioqloop.BigLock) and bql is not aioqloop.bql
    async with bql:
        assert bql.held()
    assert not bql.locked()

_first = []

def test_bql_is_fresh_a(bql):
    _first.append(bql)

def test_bql_is_fresh_b(bql):
    assert bql is not _first[0]

@pytest.mark.aioqloop(virtual_clock=True)
@pytest.mark.asyncio
async def test_virtual_clock(virtual_clock):
    loop = asyncio.get_running_loop()
    assert loop.time() == virtual_clock.time() == 0.0
    await asyncio.sleep(86400)
    assert loop.time() == 86400.0
    await virtual_clock.advance_async(5)
    assert loop.time() == 86405.0

@pytest.mark.asyncio
async def test_virtual_clock_fixture_alone_implies_clock(virtual_clock):
    await asyncio.sleep(1e6)
    assert virtual_clock.time() == 1e6
""", "--aioqloop")
    result.assert_outcomes(passed=6)


def test_virtual_clock_on_plain_path(pytester: pytest.Pytester) -> None:
    result = run(pytester, """
import asyncio, pytest

@pytest.mark.aioqloop(virtual_clock=True)
async def test_plain_virtual():
    await asyncio.sleep(7200)
    assert asyncio.get_running_loop().time() == 7200.0

@pytest.mark.aioqloop
async def test_plain_fixture(virtual_clock):
    await asyncio.sleep(60)
    assert virtual_clock.time() == 60.0
""")
    result.assert_outcomes(passed=2)


def test_virtual_clock_without_aioqloop_loop_is_an_error(pytester: pytest.Pytester) -> None:
    result = run(pytester, """
import pytest

def test_sync(virtual_clock):
    pass
""")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*needs the test's event loop*"])


# --------------------------------------------------------- errors and leaks
def test_swallowed_loop_exception_fails_the_test(pytester: pytest.Pytester) -> None:
    result = run(pytester, """
import asyncio, pytest, aioqloop

def boom():
    raise ValueError("from a callback")

@pytest.mark.asyncio
async def test_call_soon_raises():
    asyncio.get_running_loop().call_soon(boom)
    await asyncio.sleep(0)
    await asyncio.sleep(0)

@pytest.mark.asyncio
async def test_source_raises():
    done = asyncio.Event()
    def cb():
        done.set()
        raise KeyError("from a source")
    aioqloop.idle_add(cb)
    await done.wait()
    await asyncio.sleep(0)

@pytest.mark.asyncio
async def test_clean():
    await asyncio.sleep(0)

@pytest.mark.aioqloop
async def test_plain_path_too():
    asyncio.get_running_loop().call_soon(boom)
    await asyncio.sleep(0)
""", "--aioqloop")
    result.assert_outcomes(passed=1, failed=3)
    result.stdout.fnmatch_lines([
        "*exception handler during the test*",
        "*ValueError: from a callback*",
    ])
    result.stdout.fnmatch_lines(["*KeyError*from a source*"])


def test_user_handler_takes_over(pytester: pytest.Pytester) -> None:
    result = run(pytester, """
import asyncio, pytest

@pytest.mark.asyncio
async def test_own_handler():
    loop = asyncio.get_running_loop()
    seen = []
    loop.set_exception_handler(lambda l, c: seen.append(c["exception"]))
    loop.call_soon(lambda: 1 / 0)
    await asyncio.sleep(0)
    assert isinstance(seen[0], ZeroDivisionError)
""", "--aioqloop")
    result.assert_outcomes(passed=1)


def test_leaked_source_and_bottom_half_reported(pytester: pytest.Pytester) -> None:
    result = run(pytester, """
import asyncio, pytest, pytest_asyncio, aioqloop

@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def ctx():
    return aioqloop.get_main_context()

@pytest.mark.asyncio(loop_scope="module")
async def test_leaks_timeout(ctx):
    aioqloop.timeout_add(3600, lambda: True)

def test_leaks_bh(ctx):
    # The module's loop is not running between tests: this one stays scheduled.
    aioqloop.BottomHalf(lambda: None, context=ctx).schedule()

@pytest.mark.asyncio(loop_scope="module")
async def test_cleans_up(ctx):
    await asyncio.sleep(0)  # lets the bottom half left above run
    sid = aioqloop.timeout_add(3600, lambda: True)
    bh = aioqloop.BottomHalf(lambda: None)
    bh.schedule()
    bh.cancel()
    assert aioqloop.source_remove(sid)
""", "--aioqloop", "-W", "default::aioqloop.pytest_plugin.AioqloopLeakWarning")
    result.assert_outcomes(passed=3, warnings=2)
    result.stdout.fnmatch_lines([
        "*AioqloopLeakWarning: the test left*TimeoutSource*",
        "*AioqloopLeakWarning: the test left*1 bottom half(s) still scheduled*",
    ])


def test_leak_is_an_error_under_w_error(pytester: pytest.Pytester) -> None:
    result = run(pytester, """
import pytest, aioqloop

@pytest.mark.asyncio
async def test_leaks():
    aioqloop.idle_add(lambda: True)
""", "--aioqloop")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*AioqloopLeakWarning*IdleSource*"])


# ------------------------------------------------- pytest / pluggy versions
def test_version_guard() -> None:
    from aioqloop import _plugin_options as plugin

    assert plugin._version_tuple("8.2.1") == (8, 2, 1)
    assert plugin._version_tuple("1.0.0rc1") == (1, 0, 0)
    assert plugin._version_tuple("1.2.dev3") == (1, 2)
    assert plugin._unsupported_reason("8.3.4", "1.5.0") is None
    assert plugin._unsupported_reason("7.0.0", "1.2.0") is None
    # Debian bookworm: pytest 7.2 with pluggy 1.0 (no hookimpl(wrapper=True)).
    reason = plugin._unsupported_reason("7.4.4", "1.0.0")
    assert reason is not None
    assert "disabled" in reason and "pluggy >= 1.2 (found 1.0.0)" in reason
    assert "pytest >=" not in reason
    reason = plugin._unsupported_reason("6.2.5", "1.2.0")
    assert reason is not None and "pytest >= 7.0 (found 6.2.5)" in reason
    # This run has what it needs, so the plugin is active.
    assert plugin._DISABLED is None


def test_pytest_asyncio_version_guard() -> None:
    from aioqloop import _plugin_options as plugin

    # 1.4.0 brought the pytest_asyncio_loop_factories hook the plugin gives loops through.
    assert plugin.MIN_PYTEST_ASYNCIO == (1, 4)
    for version in ("1.4.0", "1.4.1.post1", "1.5.0", "2.0.0rc1"):
        assert plugin._pytest_asyncio_reason(version) is None, version
    for version in ("0.26.0", "1.0.0", "1.3.0", "0.21.2"):
        reason = plugin._pytest_asyncio_reason(version)
        assert reason is not None
        assert f"needs pytest-asyncio >= 1.4 (found {version}" in reason
        assert "pip install 'pytest-asyncio>=1.4'" in reason


def test_too_old_pytest_asyncio_fails_tests_that_ask_for_aioqloop(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    # The version as an old pytest-asyncio reports it; the real old one runs in a venv
    # below (test_old_pytest_asyncio_*).
    from aioqloop import _plugin_options as plugin

    monkeypatch.setattr(plugin, "_pytest_asyncio_version", lambda: "0.26.0")
    source = """
import asyncio, pytest, aioqloop
from helpers import on_aioqloop

def test_sync():
    pass

@pytest.mark.asyncio
async def test_unrelated():
    assert not on_aioqloop()

@pytest.mark.aioqloop
@pytest.mark.asyncio
async def test_marked():
    pass

@pytest.mark.asyncio
async def test_virtual_clock(virtual_clock):
    pass

@pytest.mark.asyncio
async def test_main_context_on_its_own_loop(main_context):
    assert not on_aioqloop()
    assert aioqloop.get_main_context() is main_context  # bridged onto it

@pytest.mark.aioqloop
async def test_plain_path_still_works():
    assert on_aioqloop()
"""
    result = run(pytester, source, "-rE")
    result.assert_outcomes(passed=4, errors=2)
    for name in ("test_marked", "test_virtual_clock"):
        result.stdout.fnmatch_lines([f"*::{name}: aioqloop needs pytest-asyncio >= 1.4 "
                                     "(found 0.26.0*"])
    result = run(pytester, source, "--aioqloop")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--aioqloop*needs pytest-asyncio >= 1.4 (found 0.26.0*"])
    # Without pytest-asyncio in the run, its version does not matter.
    result = run(pytester, """
import pytest
from helpers import on_aioqloop

@pytest.mark.aioqloop
async def test_plain():
    assert on_aioqloop()
""", "-p", "no:asyncio", "--aioqloop")
    result.assert_outcomes(passed=1)


# A real pytest-asyncio from before the loop-factories hook, next to pytest 8.4, in a venv of
# its own (fresh processes: the versions are this run's own otherwise).
OLD_PYTEST_ASYNCIO = ("pytest==8.4.*", "pytest-asyncio==0.26.*")
# What pip says when the package index cannot be reached (the only reason to skip).
_NO_INDEX = ("No matching distribution found", "Could not find a version that satisfies",
             "Failed to establish a new connection", "Temporary failure in name resolution",
             "Network is unreachable", "connection broken", "Max retries exceeded")


def _pip(python: Path, *args: str) -> None:
    # This interpreter's pip installs into the venv (--python): no pip of its own to set up.
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install",
                           "-q", "--disable-pip-version-check", *args],
                          capture_output=True, text=True, timeout=600)
    if proc.returncode == 0:
        return
    output = proc.stdout + proc.stderr
    if any(sign in output for sign in _NO_INDEX):
        pytest.skip(f"pip install {' '.join(args)}: the package index cannot be reached:\n"
                    f"{output[-2000:]}")
    pytest.fail(f"pip install {' '.join(args)} failed:\n{output}", pytrace=False)


@pytest.fixture(scope="session")
def old_pytest_asyncio(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv's python with pytest 8.4, pytest-asyncio 0.26 and this package (built from
    this tree, --no-deps), made once per session under the session's temporary dir."""
    venv = tmp_path_factory.mktemp("old-pytest-asyncio") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=300)
    python = venv / "bin" / "python"
    _pip(python, *OLD_PYTEST_ASYNCIO, "backports.asyncio.runner>=1.1; python_version < '3.11'")
    _pip(python, "--no-deps", str(Path(__file__).resolve().parents[1]))
    return python


def _run_in(python: Path, project: Path, files: dict[str, str],
            *args: str) -> subprocess.CompletedProcess[str]:
    """pytest -rA in a fresh process of ``python`` on a project made of ``files``."""
    project.mkdir()
    (project / "pytest.ini").write_text("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    for name, text in files.items():
        (project / name).write_text(text)
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTEST_ADDOPTS", "PYTHONPATH", "PYTEST_PLUGINS",
                        "PYTEST_DISABLE_PLUGIN_AUTOLOAD")}
    # Newer Pythons deprecate the event loop policies pytest-asyncio 0.26 calls: its own
    # warnings, not the plugin's.
    own = "ignore::DeprecationWarning:pytest_asyncio.plugin"
    return subprocess.run([str(python), "-m", "pytest", "-rA", "-p", "no:cacheprovider", *args,
                           "-W", own],
                          cwd=project, env=env, capture_output=True, text=True, timeout=120)


def _outcomes(output: str) -> dict[str, str]:
    """test name -> PASSED / FAILED / ERROR, from -rA's short summary."""
    found: dict[str, str] = {}
    for match in re.finditer(r"^(PASSED|FAILED|ERROR) \S+::(\w+)", output, re.MULTILINE):
        found.setdefault(match.group(2), match.group(1))
        if match.group(1) != "PASSED":
            found[match.group(2)] = match.group(1)
    return found


@pytest.mark.timeout(900)
def test_old_pytest_asyncio_leaves_an_unrelated_run_alone(old_pytest_asyncio: Path,
                                                          tmp_path: Path) -> None:
    files = {"test_unrelated.py": """
import asyncio, pytest

def test_sync():
    pass

@pytest.mark.asyncio
async def test_async():
    await asyncio.sleep(0)
"""}
    proc = _run_in(old_pytest_asyncio, tmp_path / "default", files)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "pytest-asyncio-0.26" in out or "asyncio-0.26" in out, out
    summary = out.strip().splitlines()[-1]
    assert re.search(r"\b2 passed\b", summary), out
    warnings = re.search(r"(\d+) warnings?", summary)
    assert warnings is None or int(warnings.group(1)) <= 1, out
    proc = _run_in(old_pytest_asyncio, tmp_path / "werror", files, "-W", "error")
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.timeout(900)
def test_old_pytest_asyncio_never_runs_an_aioqloop_test_elsewhere(old_pytest_asyncio: Path,
                                                                  tmp_path: Path) -> None:
    files = {"test_marked.py": """
import asyncio, pytest

def on_aioqloop():
    return type(asyncio.get_running_loop()).__module__.startswith("aioqloop")

@pytest.mark.aioqloop
@pytest.mark.asyncio
async def test_on_aioqloop():
    assert on_aioqloop()

@pytest.mark.aioqloop
@pytest.mark.asyncio
async def test_loop_error():
    asyncio.get_running_loop().call_soon(lambda: 1 / 0)
    await asyncio.sleep(0)
    await asyncio.sleep(0)

@pytest.mark.asyncio
async def test_main_context(main_context):
    assert on_aioqloop()

@pytest.mark.asyncio
async def test_virtual_clock(virtual_clock):
    assert on_aioqloop()

@pytest.mark.aioqloop
async def test_plain_marker():
    assert on_aioqloop()

@pytest.mark.aioqloop
async def test_plain_loop_error():
    asyncio.get_running_loop().call_soon(lambda: 1 / 0)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
"""}
    proc = _run_in(old_pytest_asyncio, tmp_path / "marked", files)
    out = proc.stdout + proc.stderr
    outcomes = _outcomes(out)
    assert set(outcomes) == {"test_on_aioqloop", "test_loop_error", "test_main_context",
                             "test_virtual_clock", "test_plain_marker",
                             "test_plain_loop_error"}, out
    needs = "aioqloop needs pytest-asyncio >= 1.4 (found 0.26.0"
    for name, outcome in outcomes.items():
        if outcome != "PASSED":
            # Refused with the version it needs, or failed by a loop error on aioqloop.
            assert (f"::{name}: {needs}" in out
                    or (name.endswith("loop_error") and "ZeroDivisionError" in out)), out
    # Not one ran on another loop: the loop errors fail their tests.
    assert outcomes["test_loop_error"] != "PASSED", out
    assert outcomes["test_plain_loop_error"] != "PASSED", out
    # The plain path (a test marked aioqloop alone) runs on aioqloop as it always did.
    assert outcomes["test_plain_marker"] == "PASSED", out
    assert "AttributeError" not in out, out
    proc = _run_in(old_pytest_asyncio, tmp_path / "run-level", files, "--aioqloop")
    assert proc.returncode == pytest.ExitCode.USAGE_ERROR, proc.stdout + proc.stderr
    assert needs in proc.stderr, proc.stdout + proc.stderr


# ---------------------------------------------------- options: marker, ini, CLI
def test_marker_bql_gives_the_loop_the_tests_lock(pytester: pytest.Pytester) -> None:
    result = run(pytester, """
import asyncio, pytest, aioqloop

@pytest.mark.aioqloop(bql=True)
@pytest.mark.asyncio
async def test_held_in_sources(bql):
    seen = []
    done = asyncio.Event()
    def cb():
        seen.append(bql.held())
        done.set()
        return False
    aioqloop.idle_add(cb)
    await done.wait()
    assert seen == [True]
    assert not bql.held()  # released while the test's task runs outside the lock

_LOCK = aioqloop.BigLock()

@pytest.mark.aioqloop(bql=_LOCK)
async def test_given_lock_plain_path():
    seen = []
    done = asyncio.Event()
    aioqloop.idle_add(lambda: seen.append(_LOCK.held()) or done.set() or False)
    await done.wait()
    assert seen == [True]

@pytest.mark.aioqloop(bql=True)
@pytest.mark.asyncio
async def test_source_error_under_bql_fails():
    done = asyncio.Event()
    def failing_source_callback():
        done.set()
        raise KeyError("raised under the big lock")
    aioqloop.idle_add(failing_source_callback)
    await done.wait()
    await asyncio.sleep(0)
""")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines([
        "*exception handler during the test*",
        "*KeyError*raised under the big lock*",
    ])
    # The callback's own traceback is shown, not only the test's frames.
    result.stdout.fnmatch_lines(["*in failing_source_callback*",
                                 '*raise KeyError("raised under the big lock")*'])


@pytest.mark.parametrize("where", ["marker", "ini", "cli"])
def test_bql_option_everywhere(pytester: pytest.Pytester, where: str) -> None:
    mark = "@pytest.mark.aioqloop(bql=True)" if where == "marker" else "@pytest.mark.aioqloop"
    result = run(pytester, f"""
import asyncio, pytest, aioqloop

{mark}
@pytest.mark.asyncio
async def test_held(bql):
    seen = []
    done = asyncio.Event()
    aioqloop.idle_add(lambda: seen.append(bql.held()) or done.set() or False)
    await done.wait()
    assert seen == [True]
""", *(["--aioqloop-bql"] if where == "cli" else []),
        ini="aioqloop_bql = true" if where == "ini" else "")
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize("where", ["marker", "ini", "cli"])
def test_autojump_threshold_everywhere(pytester: pytest.Pytester, where: str) -> None:
    mark = ("@pytest.mark.aioqloop(autojump_threshold=0.25)" if where == "marker"
            else "@pytest.mark.aioqloop(virtual_clock=True)")
    result = run(pytester, f"""
import asyncio, pytest

{mark}
@pytest.mark.asyncio
async def test_threshold(virtual_clock):
    assert virtual_clock.autojump_threshold == 0.25
    assert virtual_clock.autojump
    assert asyncio.get_running_loop().time() == virtual_clock.time()
""", *(["--aioqloop-autojump-threshold=0.25"] if where == "cli" else []),
        ini="aioqloop_autojump_threshold = 0.25" if where == "ini" else "")
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize("where", ["marker", "ini", "cli"])
def test_manual_clock_everywhere(pytester: pytest.Pytester, where: str) -> None:
    mark = ("@pytest.mark.aioqloop(autojump=False)" if where == "marker"
            else "@pytest.mark.aioqloop(virtual_clock=True)")
    result = run(pytester, f"""
import asyncio, pytest

{mark}
@pytest.mark.asyncio
async def test_manual(virtual_clock):
    assert virtual_clock.autojump is False
    task = asyncio.ensure_future(asyncio.sleep(5))
    await asyncio.sleep(0)
    assert not task.done()  # no autojump: time waits for advance()
    await virtual_clock.advance_async(5)
    assert task.done() and virtual_clock.time() == 5.0
""", *(["--aioqloop-autojump=false"] if where == "cli" else []),
        ini="aioqloop_autojump = false" if where == "ini" else "")
    result.assert_outcomes(passed=1)


def test_marker_beats_command_line_and_ini(pytester: pytest.Pytester) -> None:
    result = run(pytester, """
import pytest

@pytest.mark.aioqloop(autojump_threshold=0.5, autojump=True)
@pytest.mark.asyncio
async def test_marker_wins(virtual_clock):
    assert virtual_clock.autojump_threshold == 0.5 and virtual_clock.autojump

@pytest.mark.aioqloop(virtual_clock=True)
@pytest.mark.asyncio
async def test_cli_beats_ini(virtual_clock):
    assert virtual_clock.autojump_threshold == 0.125 and not virtual_clock.autojump
""", "--aioqloop-autojump-threshold=0.125", "--aioqloop-autojump=false",
        ini="aioqloop_autojump_threshold = 2\naioqloop_autojump = true")
    result.assert_outcomes(passed=2)


def test_virtual_clock_instance_through_marker_is_used(pytester: pytest.Pytester) -> None:
    result = run(pytester, """
import asyncio, pytest, aioqloop

CLOCK = aioqloop.VirtualClock(100.0, autojump_threshold=0.0)
MANUAL = aioqloop.VirtualClock(7.0, autojump=False)

@pytest.mark.aioqloop(virtual_clock=CLOCK)
@pytest.mark.asyncio
async def test_given(virtual_clock):
    assert virtual_clock is CLOCK
    assert asyncio.get_running_loop().time() == 100.0
    await asyncio.sleep(50)
    assert CLOCK.time() == 150.0

@pytest.mark.aioqloop(virtual_clock=MANUAL)
async def test_given_plain_path():
    loop = asyncio.get_running_loop()
    assert loop.time() == 7.0 and MANUAL.loop is loop
""")
    result.assert_outcomes(passed=2)


@pytest.mark.parametrize(("args", "message"), [
    ("autojump=False, virtual_clock=aioqloop.VirtualClock()", "*set them on the clock*"),
    ("virtual_clock='yes'", "*virtual_clock=) takes True, False or a VirtualClock*"),
    ("bql=1", "*bql=) takes True, False or a BigLock*"),
    ("autojump_threshold=-1", "*autojump_threshold must be a number of seconds >= 0*"),
    ("autojump='no'", "*autojump=) takes True or False*"),
    ("base='uvloop', virtual_clock=True", "*a virtual clock needs base='asyncio'*"),
    ("clock=1", "*unknown arguments ?'clock'?; it takes base, virtual_clock*"),
])
def test_bad_marker_values_fail_clearly(pytester: pytest.Pytester, args: str,
                                         message: str) -> None:
    result = run(pytester, f"""
import pytest, aioqloop

@pytest.mark.aioqloop({args})
@pytest.mark.asyncio
async def test_x():
    pass
""")
    assert result.ret != 0
    result.stdout.fnmatch_lines([message])


def test_no_aioqloop_overrides_the_ini_key(pytester: pytest.Pytester) -> None:
    source = """
import os, pytest
from helpers import on_aioqloop

@pytest.mark.asyncio
async def test_unmarked():
    assert on_aioqloop() is (os.environ["EXPECT"] == "on")

@pytest.mark.aioqloop
@pytest.mark.asyncio
async def test_marked():
    assert on_aioqloop()  # the marker wins over the command line
"""
    for args, expect in [((), "on"), (("--no-aioqloop",), "off"),
                         (("--no-aioqloop", "--aioqloop"), "on")]:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("EXPECT", expect)
            result = run(pytester, source, *args, ini="aioqloop = true")
        result.assert_outcomes(passed=2)


@pytest.mark.parametrize(("flag", "ini", "expected"), [
    ("--no-aioqloop-virtual-clock", "aioqloop_virtual_clock = true", "virtual=False"),
    ("--aioqloop-virtual-clock", "aioqloop_virtual_clock = false", "virtual=True"),
    ("--no-aioqloop-bql", "aioqloop_bql = true", "bql=False"),
    ("--aioqloop-bql", "aioqloop_bql = false", "bql=True"),
    ("--no-aioqloop-autojump", "aioqloop_autojump = true", "autojump=False"),
    ("--aioqloop-autojump", "aioqloop_autojump = false", "autojump=True"),
    # The older spelling still works.
    ("--aioqloop-autojump=false", "aioqloop_autojump = true", "autojump=False"),
    ("--aioqloop-autojump=true", "aioqloop_autojump = false", "autojump=True"),
])
def test_on_off_flags_override_the_ini_keys(pytester: pytest.Pytester, flag: str, ini: str,
                                            expected: str) -> None:
    name, _, value = expected.partition("=")
    result = run(pytester, f"""
import asyncio, pytest, aioqloop

@pytest.mark.asyncio
async def test_option(bql):
    loop = asyncio.get_running_loop()
    clock = getattr(loop, "_aioq_clock", None)
    if {name!r} == "virtual":
        assert (clock is not None) is {value}
    elif {name!r} == "autojump":
        assert clock is not None and clock.autojump is {value}
    else:
        seen = []
        done = asyncio.Event()
        aioqloop.idle_add(lambda: seen.append(bql.held()) or done.set() or False)
        await done.wait()
        assert seen == [{value}]
""", "--aioqloop", flag, "test_inner.py",
        ini=ini + ("\naioqloop_virtual_clock = true" if name == "autojump" else ""))
    result.assert_outcomes(passed=1)


def test_on_off_options_share_one_style(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI.format(extra=""))
    result = pytester.runpytest("-p", "no:cacheprovider", "--help")
    out = result.stdout.str()
    for name in ("aioqloop", "aioqloop-virtual-clock", "aioqloop-autojump", "aioqloop-bql"):
        for flag in (f"--{name}", f"--no-{name}"):
            assert re.search(rf"^ +{flag}( |$)", out, re.MULTILINE), flag
    assert "--aioqloop-autojump=" not in out  # the older spelling works, unlisted


# ------------------------------------------------------------------ anyio
def test_anyio_marker_virtual_clock(pytester: pytest.Pytester) -> None:
    pytest.importorskip("anyio")
    result = run(pytester, """
import asyncio, pytest, anyio
from helpers import on_aioqloop

@pytest.fixture
def anyio_backend():
    return "asyncio"

@pytest.fixture
async def slept(anyio_backend):
    await anyio.sleep(10)   # an async fixture on the same virtual clock
    return asyncio.get_running_loop().time()

@pytest.mark.aioqloop(virtual_clock=True)
@pytest.mark.anyio
async def test_virtual(virtual_clock, slept):
    assert on_aioqloop()
    assert slept == 10.0
    await anyio.sleep(3600)
    assert virtual_clock.time() == 3610.0

@pytest.mark.aioqloop(autojump=False)
@pytest.mark.anyio
async def test_manual(virtual_clock):
    assert virtual_clock.autojump is False

@pytest.mark.aioqloop
@pytest.mark.anyio
async def test_marker_alone(main_context):
    assert on_aioqloop()
    loop = asyncio.get_running_loop()
    assert getattr(loop, "_aioq_clock", None) is None
""")
    result.assert_outcomes(passed=3)


def test_anyio_marker_with_default_backends(pytester: pytest.Pytester) -> None:
    pytest.importorskip("anyio")
    result = run(pytester, """
import pytest, anyio
from helpers import on_aioqloop

@pytest.mark.aioqloop(virtual_clock=True)
@pytest.mark.anyio
async def test_virtual(virtual_clock):
    assert on_aioqloop()
    await anyio.sleep(60)
    assert virtual_clock.time() == 60.0
""")
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed") == 1, result.stdout.str()
    assert outcomes.get("failed", 0) == 0 and outcomes.get("errors", 0) == 0
    # anyio's other backends (trio, when installed) are skipped, not failed.


# ------------------------------------------------------- uvloop not installed
def test_uvloop_base_without_uvloop(pytester: pytest.Pytester,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from aioqloop import _plugin_options as plugin

    monkeypatch.setattr(plugin, "_have_uvloop", lambda: False)
    source = """
import pytest

@pytest.mark.aioqloop(base="both")
@pytest.mark.asyncio
async def test_both():
    pass

@pytest.mark.aioqloop(base="uvloop")
async def test_uv_plain():
    pass
"""
    result = run(pytester, source, "-rs")
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines(["*uvloop is not installed: pip install 'aioqloop?uvloop?'*"])
    for base in ("uvloop", "both"):
        result = run(pytester, source, "--aioqloop", f"--aioqloop-base={base}")
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines(
            [f"*--aioqloop-base={base}: uvloop is not installed: pip install*"])
