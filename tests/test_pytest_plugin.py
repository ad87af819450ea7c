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
    from aioqloop import pytest_plugin as plugin

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
    from aioqloop import pytest_plugin as plugin

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
