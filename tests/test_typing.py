"""What type checkers and ``help()`` see: the loop and task types, and signatures."""

from __future__ import annotations

import ast
import asyncio
import inspect
import pydoc
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import aioqloop

ROOT = Path(__file__).resolve().parent.parent
def test_new_event_loop_is_an_aioqloop_event_loop(base: str) -> None:
    loop = aioqloop.new_event_loop(base=base)
    try:
        assert isinstance(loop, aioqloop.EventLoop)
        assert isinstance(loop, asyncio.AbstractEventLoop)
        assert loop.main_context is aioqloop.get_main_context(loop)
    finally:
        loop.close()


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


@pytest.mark.timeout(150)
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


# -- the compiled core's methods: text signatures that agree with _cengine.pyi --------
_CORE_TYPES = ("SourceStatistics", "SourceCore", "ContextCore", "HookCore", "PlainCore",
               "BHCore")


def _core() -> ModuleType:
    try:
        from aioqloop import _cengine
    except ImportError:
        pytest.skip("the compiled core is not built")
    return _cengine


def _c_methods(cls: type) -> dict[str, Any]:
    return {name: value for name, value in vars(cls).items()
            if not name.startswith("__") and callable(value)}


def _stub_params(fn: ast.FunctionDef) -> list[tuple[str, str, bool]]:
    a = fn.args
    positional = [*a.posonlyargs, *a.args]
    defaults = [False] * (len(positional) - len(a.defaults)) + [True] * len(a.defaults)
    params = [(p.arg, "POSITIONAL_ONLY" if i < len(a.posonlyargs) else
               "POSITIONAL_OR_KEYWORD", d)
              for i, (p, d) in enumerate(zip(positional, defaults))]
    if a.vararg is not None:
        params.append((a.vararg.arg, "VAR_POSITIONAL", False))
    params += [(p.arg, "KEYWORD_ONLY", d is not None)
               for p, d in zip(a.kwonlyargs, a.kw_defaults)]
    if a.kwarg is not None:
        params.append((a.kwarg.arg, "VAR_KEYWORD", False))
    return params


def _runtime_params(fn: Any) -> list[tuple[str, str, bool]]:
    sig = inspect.signature(fn)
    return [(p.name, p.kind.name, p.default is not inspect.Parameter.empty)
            for p in sig.parameters.values()]


def _stubs() -> dict[str, dict[str, ast.FunctionDef]]:
    tree = ast.parse((ROOT / "aioqloop" / "_cengine.pyi").read_text(encoding="utf-8"))
    out: dict[str, dict[str, ast.FunctionDef]] = {"": {}}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            out[""][node.name] = node
        elif isinstance(node, ast.ClassDef):
            out[node.name] = {f.name: f for f in node.body if isinstance(f, ast.FunctionDef)}
    return out


def test_every_compiled_method_has_a_signature() -> None:
    core = _core()
    seen = 0
    for type_name in _CORE_TYPES:
        for name, method in _c_methods(getattr(core, type_name)).items():
            params = inspect.signature(method).parameters  # raises without a signature
            assert next(iter(params)) == "self", (type_name, name)
            seen += 1
    assert "refs" in inspect.signature(core.configure).parameters
    assert seen >= 25


def test_compiled_signatures_agree_with_the_stub() -> None:
    core = _core()
    stubs = _stubs()
    for type_name in _CORE_TYPES:
        methods = _c_methods(getattr(core, type_name))
        stubbed = stubs.get(type_name, {})
        assert sorted(methods) == sorted(stubbed), type_name
        for name, method in methods.items():
            assert _runtime_params(method) == _stub_params(stubbed[name]), (type_name, name)
    assert _runtime_params(core.configure) == _stub_params(stubs[""]["configure"])


# -- help(MainContext): the public surface, without the loop layer's driver methods --
MAIN_CONTEXT_PUBLIC = {
    "acquire", "close", "closed", "default", "fd_audit_interval", "find_source_by_id",
    "invoke", "is_owner", "iteration", "loop", "pending", "release", "schedule_oneshot",
    "statistics", "wakeup",
}


def test_main_context_public_surface() -> None:
    public = {name for name in dir(aioqloop.MainContext) if not name.startswith("_")}
    assert public == MAIN_CONTEXT_PUBLIC


def test_help_main_context_shows_no_driver_methods() -> None:
    # pydoc.plaintext (the plain-text renderer help() uses) is missing from typeshed.
    renderer = pydoc.plaintext  # type: ignore[attr-defined]
    text = pydoc.render_doc(aioqloop.MainContext, renderer=renderer)
    for name in ("iterate", "dispatch", "poll_ready", "apply_polled", "has_work",
                 "next_deadline", "driver_attach", "driver_fileno", "driver_share_fds",
                 "call_at_priority", "close_with_loop", "is_empty", "set_home_thread",
                 "set_bql", "in_hook"):
        assert f" |  {name}(" not in text and f" |  {name}\n" not in text, name
    for name in MAIN_CONTEXT_PUBLIC:
        assert f" |  {name}" in text, name
