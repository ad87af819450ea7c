"""Loop behaviour that differs by Python version or base: ``create_task``'s signature, and
uvloop's close with a handle left open while ResourceWarning is an error."""

from __future__ import annotations

import asyncio
import contextvars
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

import aioqloop
from aioqloop.loop import QTask

uvloop = pytest.importorskip("uvloop")

_var: contextvars.ContextVar[str] = contextvars.ContextVar("_var", default="unset")


async def _read_var() -> str:
    return _var.get()


def _factory_tasks(log: list[dict[str, Any]]) -> Any:
    """A task factory in the form asyncio documents: ``(loop, coro, **kwargs)``."""

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> Any:
        log.append(kwargs)
        return asyncio.Task(coro, loop=loop, **kwargs)

    return factory


@pytest.fixture
def loop(base: str) -> Iterator[asyncio.AbstractEventLoop]:
    lp = aioqloop.new_event_loop(base=base)
    yield lp
    lp.close()


def _context_with_var() -> contextvars.Context:
    ctx = contextvars.copy_context()
    ctx.run(_var.set, "given")
    return ctx


def _accepts_context(loop: asyncio.AbstractEventLoop) -> bool:
    # The base loop's own signature: asyncio from 3.11, uvloop on every version.
    return sys.version_info >= (3, 11) or isinstance(loop, uvloop.Loop)


@pytest.mark.parametrize("with_factory", [False, True], ids=["no-factory", "factory"])
def test_create_task_without_context(loop: asyncio.AbstractEventLoop, with_factory: bool) -> None:
    log: list[dict[str, Any]] = []
    if with_factory:
        loop.set_task_factory(_factory_tasks(log))
    task = loop.create_task(_read_var(), name="plain")
    assert loop.run_until_complete(task) == "unset"
    assert task.get_name() == "plain"
    if with_factory:
        # asyncio calls the factory without context (3.10 has no such parameter, 3.11+
        # use the legacy form); uvloop passes its own keywords (context=None, ...).
        assert len(log) == 1 and log[0].get("context") is None
        if not isinstance(loop, uvloop.Loop):
            # asyncio 3.14 hands the factory exactly the keywords given.
            assert log == ([{"name": "plain"}] if sys.version_info >= (3, 14) else [{}])
        assert not isinstance(task, QTask)
    else:
        assert isinstance(task, QTask)


@pytest.mark.parametrize("with_factory", [False, True], ids=["no-factory", "factory"])
def test_create_task_with_context_follows_the_base_signature(
    loop: asyncio.AbstractEventLoop, with_factory: bool
) -> None:
    log: list[dict[str, Any]] = []
    if with_factory:
        loop.set_task_factory(_factory_tasks(log))
    coro = _read_var()
    if not _accepts_context(loop):
        with pytest.raises(TypeError, match="context"):
            loop.create_task(coro, name="ctx", context=_context_with_var())  # type: ignore[call-arg]
        coro.close()
        return
    task = loop.create_task(coro, name="ctx", context=_context_with_var())  # type: ignore[call-arg]
    assert loop.run_until_complete(task) == "given"
    assert task.get_name() == "ctx"
    assert isinstance(task, QTask) is (not with_factory)
    if with_factory and sys.version_info >= (3, 11):
        assert isinstance(log[0]["context"], contextvars.Context)


def test_stock_base_signature_matches_asyncio() -> None:
    import inspect

    ours = inspect.signature(aioqloop.loop.QSelectorEventLoop.create_task).parameters
    theirs = inspect.signature(asyncio.BaseEventLoop.create_task).parameters
    if sys.version_info >= (3, 14):
        # create_task(coro, **kwargs): every keyword goes on to the task (or factory).
        assert any(p.kind is p.VAR_KEYWORD for p in ours.values())
        assert any(p.kind is p.VAR_KEYWORD for p in theirs.values())
    else:
        assert ("context" in ours) is ("context" in theirs)


def test_uvloop_close_with_open_server_under_resourcewarning_error() -> None:
    """A server left open used to make close() block forever in uv_run when
    ResourceWarning is an error (pytest's ``filterwarnings = error``): uvloop's warning
    raised before the handle was closed.  Now close() returns and shows the warning."""
    code = textwrap.dedent("""
        import asyncio, aioqloop
        loop = aioqloop.new_event_loop(base="uvloop")
        server = loop.run_until_complete(
            loop.create_server(asyncio.Protocol, "127.0.0.1", 0))
        loop.close()
        print("closed", loop.is_closed())
    """)
    proc = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "closed True" in proc.stdout
    assert "ResourceWarning: unclosed resource <TCPServer" in proc.stderr
