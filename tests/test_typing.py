"""What type checkers and ``help()`` see: the loop and task types, and signatures."""

from __future__ import annotations

import asyncio
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import aioqloop

ROOT = Path(__file__).resolve().parent.parent
BASES = ["asyncio", "uvloop"]


@pytest.mark.parametrize("base", BASES)
def test_new_event_loop_is_an_aioqloop_event_loop(base: str) -> None:
    loop = aioqloop.new_event_loop(base=base)
    try:
        assert isinstance(loop, aioqloop.EventLoop)
        assert isinstance(loop, asyncio.AbstractEventLoop)
        assert loop.main_context is aioqloop.get_main_context(loop)
    finally:
        loop.close()


@pytest.mark.parametrize("base", BASES)
def test_create_task_returns_an_aioqloop_task(base: str) -> None:
    async def answer() -> int:
        return 42

    async def main() -> int:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, aioqloop.EventLoop)
        task = loop.create_task(answer())
        assert isinstance(task, aioqloop.Task)
        assert isinstance(asyncio.create_task(answer()), aioqloop.Task)
        task.set_priority(aioqloop.PRIORITY_HIGH)
        assert task.get_priority() == aioqloop.PRIORITY_HIGH
        return await task

    assert aioqloop.run(main(), base=base) == 42


def test_plain_asyncio_loops_are_not_aioqloop_event_loops() -> None:
    loop = asyncio.new_event_loop()
    try:
        assert not isinstance(loop, aioqloop.EventLoop)
    finally:
        loop.close()


def test_task_is_generic_at_run_time() -> None:
    # ``aioqloop.Task[int]`` in an annotation evaluated at run time must not raise.
    assert aioqloop.Task[int] is not None
    assert issubclass(aioqloop.Task, asyncio.Task)


def test_public_names_have_docstrings() -> None:
    for name in ("EventLoop", "Task"):
        assert name in aioqloop.__all__
        assert inspect.getdoc(getattr(aioqloop, name)), name
    assert inspect.getdoc(aioqloop.EventLoop.main_context)
    assert inspect.getdoc(aioqloop.EventLoop.create_task)


_CHECKED = '''\
import asyncio
import aioqloop

async def answer() -> int:
    return 42

loop = aioqloop.new_event_loop()
reveal_type(loop)
reveal_type(loop.main_context)
reveal_type(loop.create_task(answer()))
reveal_type(aioqloop.EventLoopPolicy("uvloop").new_event_loop())
aioqloop.timeout_ad
'''


def test_mypy_sees_the_loop_and_task_types(tmp_path: Path) -> None:
    checked = tmp_path / "checked.py"
    checked.write_text(_CHECKED, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
         "--strict", "--no-error-summary", "--hide-error-context", str(checked)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    # (mypy versions differ in spelling builtins: "builtins.int" or "int")
    lines = [line.split("checked.py:", 1)[1].split(":", 1)[1].strip().replace("builtins.", "")
             for line in proc.stdout.splitlines() if "checked.py:" in line]
    assert lines == [
        'note: Revealed type is "aioqloop._tasks.EventLoop"',
        'note: Revealed type is "aioqloop.context.MainContext"',
        'note: Revealed type is "aioqloop._tasks.QTask[int]"',
        'note: Revealed type is "aioqloop._tasks.EventLoop"',
        # A misspelt name is an error, not Any (no module __getattr__ for checkers).
        'error: Module has no attribute "timeout_ad"; maybe "timeout_add"?  [attr-defined]',
    ], proc.stdout + proc.stderr
