"""aioqloop under the ecosystem's runners: anyio (``loop_factory``, its pytest plugin) and
pytest-asyncio (its ``pytest_asyncio_loop_factories`` hook), on both bases."""

from __future__ import annotations

import asyncio
import functools
import socket
import sys
import threading
from typing import Any

import anyio
import anyio.abc
import pytest
import uvloop

import aioqloop
from aioqloop.loop import QSelectorEventLoop

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

pytest_plugins = ("pytester",)

FACTORIES = {
    "aioqloop": aioqloop.new_event_loop,
    "aioqloop-uvloop": functools.partial(aioqloop.new_event_loop, base="uvloop"),
}
LOOP_CLASSES = {"aioqloop": QSelectorEventLoop, "aioqloop-uvloop": uvloop.Loop}


# ------------------------------------------------------------ anyio.run(...)
@pytest.mark.parametrize("name", FACTORIES)
def test_anyio_run_with_loop_factory(name: str) -> None:
    async def main(x: int) -> tuple[int, asyncio.AbstractEventLoop, list[str]]:
        log: list[str] = []
        fired = anyio.Event()

        def on_timeout() -> bool:
            log.append("source")
            fired.set()
            return False

        aioqloop.timeout_add(0.001, on_timeout)
        with anyio.fail_after(10):
            await fired.wait()
        return x + 1, asyncio.get_running_loop(), log

    value, loop, log = anyio.run(
        main, 41, backend="asyncio", backend_options={"loop_factory": FACTORIES[name]}
    )
    assert value == 42
    assert isinstance(loop, LOOP_CLASSES[name])
    assert log == ["source"]


# --------------------------------------------- anyio's pytest plugin, both bases
@pytest.fixture(
    scope="module",
    params=[pytest.param(("asyncio", {"loop_factory": f}), id=n) for n, f in FACTORIES.items()],
)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param


def loop_name() -> str:
    loop = asyncio.get_running_loop()
    return "aioqloop-uvloop" if isinstance(loop, uvloop.Loop) else "aioqloop"


@pytest.mark.anyio
async def test_anyio_tests_run_on_aioqloop(anyio_backend: Any) -> None:
    loop = asyncio.get_running_loop()
    assert anyio_backend[1]["loop_factory"] is FACTORIES[loop_name()]
    assert isinstance(loop, LOOP_CLASSES[loop_name()])
    assert aioqloop.get_main_context() is loop.main_context  # type: ignore[attr-defined]


@pytest.mark.anyio
async def test_anyio_task_group(anyio_backend: Any) -> None:
    results: list[tuple[int, int]] = []
    idle_seen = anyio.Event()
    aioqloop.idle_add(lambda: idle_seen.set() and False)

    async def worker(n: int) -> None:
        for step in range(3):
            results.append((n, step))
            await anyio.sleep(0)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for n in range(4):
                tg.start_soon(worker, n)
        await idle_seen.wait()  # sources still dispatch once the group is done
    assert sorted(results) == [(n, s) for n in range(4) for s in range(3)]
    # the workers really interleaved (each yields between steps)
    assert [n for n, _ in results[:4]] == [0, 1, 2, 3]


@pytest.mark.anyio
async def test_anyio_task_group_propagates_errors(anyio_backend: Any) -> None:
    async def boom() -> None:
        await anyio.sleep(0)
        raise ValueError("boom")

    async def forever() -> None:
        await anyio.sleep_forever()

    with pytest.raises(BaseExceptionGroup) as info:
        async with anyio.create_task_group() as tg:
            tg.start_soon(forever)
            tg.start_soon(boom)
    assert info.group_contains(ValueError, match="boom")


@pytest.mark.anyio
async def test_anyio_streams_over_a_socketpair(anyio_backend: Any) -> None:
    a, b = socket.socketpair()
    left = await anyio.abc.SocketStream.from_socket(a)
    right = await anyio.abc.SocketStream.from_socket(b)
    async with left, right:
        received: list[bytes] = []

        async def reader() -> None:
            async for chunk in right:
                received.append(chunk)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(reader)
                for i in range(5):
                    await left.send(f"msg{i};".encode())
                await left.send_eof()
        assert b"".join(received) == b"".join(f"msg{i};".encode() for i in range(5))


@pytest.mark.anyio
async def test_anyio_to_thread_and_back(anyio_backend: Any) -> None:
    loop_thread = threading.get_ident()
    ctx = aioqloop.get_main_context()
    invoked = anyio.Event()
    seen: dict[str, int] = {}

    def in_worker() -> int:
        seen["worker"] = threading.get_ident()

        def in_loop() -> bool:
            seen["invoked"] = threading.get_ident()
            invoked.set()
            return False

        ctx.invoke(in_loop)  # a foreign thread: queued to the loop, which is woken
        seen["from_thread"] = anyio.from_thread.run_sync(threading.get_ident)
        return 7

    with anyio.fail_after(10):
        assert await anyio.to_thread.run_sync(in_worker) == 7
        await invoked.wait()
    assert seen["worker"] != loop_thread
    assert seen["invoked"] == loop_thread
    assert seen["from_thread"] == loop_thread


@pytest.mark.anyio
async def test_anyio_cancel_scopes(anyio_backend: Any) -> None:
    with anyio.move_on_after(0.01) as scope:
        await anyio.sleep(30)
    assert scope.cancelled_caught

    with pytest.raises(TimeoutError):
        with anyio.fail_after(0.01):
            await anyio.sleep(30)

    # a scope cancelled from a GLib-style source callback
    with anyio.fail_after(10):
        with anyio.CancelScope() as by_source:
            aioqloop.timeout_add(0.001, lambda: by_source.cancel() or False)
            await anyio.sleep_forever()
    assert by_source.cancelled_caught

    # shielded work finishes although its outer scope is cancelled
    done: list[str] = []
    with anyio.CancelScope() as outer:
        outer.cancel()
        with anyio.CancelScope(shield=True):
            await anyio.sleep(0.001)
            done.append("shielded")
        await anyio.sleep(0)  # the pending cancellation is delivered here
        done.append("not reached")
    assert done == ["shielded"]
    assert outer.cancelled_caught


# ----------------------------------------------------------- pytest-asyncio
CONFTEST = """
import functools

import aioqloop


# Built once: pytest-asyncio reuses a scoped loop only for the same factory object.
FACTORIES = {
    "aioqloop": aioqloop.new_event_loop,
    "aioqloop-uvloop": functools.partial(aioqloop.new_event_loop, base="uvloop"),
}


def pytest_asyncio_loop_factories(config, item):
    return FACTORIES
"""

TESTS = """
import asyncio

import pytest
import pytest_asyncio
import uvloop

import aioqloop
from aioqloop.loop import QSelectorEventLoop

CLASSES = {"aioqloop": QSelectorEventLoop, "aioqloop-uvloop": uvloop.Loop}
SEEN = {}


def factory_name(request):
    return "aioqloop-uvloop" if "aioqloop-uvloop" in request.node.name else "aioqloop"


@pytest_asyncio.fixture
async def ticked():
    loop = asyncio.get_running_loop()
    fired = loop.create_future()
    aioqloop.timeout_add(0.001, lambda: fired.set_result("tick") or False)
    return await asyncio.wait_for(fired, 10)


@pytest.mark.asyncio
async def test_function_loop(request, ticked):
    loop = asyncio.get_running_loop()
    assert isinstance(loop, CLASSES[factory_name(request)])
    assert ticked == "tick"
    assert aioqloop.get_main_context().loop is loop


@pytest_asyncio.fixture(loop_scope="module")
async def module_loop():
    return asyncio.get_running_loop()


@pytest.mark.asyncio(loop_scope="module")
async def test_module_loop_1(request, module_loop):
    assert asyncio.get_running_loop() is module_loop
    SEEN.setdefault(factory_name(request), set()).add(id(module_loop))


@pytest.mark.asyncio(loop_scope="module")
async def test_module_loop_2(request, module_loop):
    assert asyncio.get_running_loop() is module_loop
    SEEN.setdefault(factory_name(request), set()).add(id(module_loop))
    assert len(SEEN[factory_name(request)]) == 1


@pytest.mark.asyncio(loop_factories=["aioqloop-uvloop"])
async def test_only_uvloop():
    assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
"""

INI = """
[pytest]
asyncio_mode = strict
asyncio_default_fixture_loop_scope = function
asyncio_default_test_loop_scope = function
filterwarnings = error
"""


@pytest.mark.timeout(120)
def test_pytest_asyncio_runs_tests_on_aioqloop(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_on_aioqloop=TESTS)
    pytester.makeini(INI)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v")
    # two factories for three tests and one fixture-driven test, one uvloop-only test
    result.assert_outcomes(passed=7)
    result.stdout.fnmatch_lines(
        [
            "*test_function_loop?aioqloop? PASSED*",
            "*test_function_loop?aioqloop-uvloop? PASSED*",
            "*test_only_uvloop* PASSED*",
        ]
    )
