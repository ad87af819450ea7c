"""The pytest plugin, exercised on inner pytest runs (``pytester``, in process)."""

from __future__ import annotations

import contextlib

import pytest

# Imported once here: pytester drops modules first imported during a test, and
# aioqloop's uvloop base class must stay a subclass of the one the inner tests see.
with contextlib.suppress(ImportError):
    import uvloop  # noqa: F401

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
    return pytester.runpytest("-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-W", "error",
                              *args)


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
