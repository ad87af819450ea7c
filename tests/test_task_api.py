"""asyncio 3.12-3.14's task API on aioqloop loops: ``create_task``'s keywords, eager task
factories (with GLib priorities) and 3.14's call-graph introspection.

Each behaviour is checked against a stock asyncio loop on the same interpreter: what
asyncio accepts or refuses there, aioqloop accepts or refuses too.
"""

from __future__ import annotations

import asyncio
import io
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import aioqloop
from aioqloop.constants import PRIORITY_DEFAULT, PRIORITY_DEFAULT_IDLE, PRIORITY_HIGH
from aioqloop.loop import QSelectorEventLoop, QTask

EAGER = sys.version_info >= (3, 12)
PY314 = sys.version_info >= (3, 14)
_NO_EAGER = "eager task factories are asyncio 3.12+"
_NO_GRAPH = "call-graph introspection is asyncio 3.14+ (no 3.14 interpreter runs this)"


@pytest.fixture
def loop(base: str) -> Iterator[asyncio.AbstractEventLoop]:
    lp = aioqloop.new_event_loop(base=base)
    yield lp
    lp.close()


async def _noop() -> None:
    return None


def _outcome(lp: asyncio.AbstractEventLoop, **kwargs: Any) -> str:
    """``create_task(coro, **kwargs)`` on ``lp``: "ok" or the exception's type name."""
    coro = _noop()
    try:
        task = lp.create_task(coro, **kwargs)
    except Exception as exc:
        coro.close()
        return type(exc).__name__
    lp.run_until_complete(task)
    return "ok"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"eager_start": False},
        {"eager_start": True},
        {"spam": 1},
        {"name": "n", "eager_start": None},
    ],
    ids=["eager-false", "eager-true", "unknown", "eager-none"],
)
def test_create_task_keywords_accepted_and_refused_as_by_asyncio(
    loop: asyncio.AbstractEventLoop, kwargs: dict[str, Any]
) -> None:
    stock = asyncio.new_event_loop()
    try:
        expected = _outcome(stock, **kwargs)
    finally:
        stock.close()
    assert _outcome(loop, **kwargs) == expected
    # What asyncio 3.14 takes, it takes; before 3.14 eager_start= is refused.
    if "spam" not in kwargs:
        assert expected == ("ok" if PY314 else "TypeError")


@pytest.mark.skipif(not PY314, reason="eager_start= is asyncio 3.14's")
def test_create_task_eager_start_runs_the_first_step_at_once(
    loop: asyncio.AbstractEventLoop,
) -> None:
    steps: list[str] = []

    async def child() -> str:
        steps.append("first step")
        await asyncio.sleep(0)
        return "done"

    async def main() -> None:
        task = loop.create_task(  # type: ignore[call-arg]  # 3.14 (the test skips before)
            child(), eager_start=True, name="eager")
        assert steps == ["first step"]
        assert isinstance(task, QTask) and task.get_name() == "eager"
        assert await task == "done"

    loop.run_until_complete(main())


def _priority_order(
    loop: asyncio.AbstractEventLoop, make_task: Callable[[Any], asyncio.Task[Any]]
) -> tuple[list[tuple[str, int]], list[bool]]:
    """Three tasks, each setting its own priority in its first step (for an eager task,
    inside ``create_task``), then stepping twice; the order of what they did."""
    order: list[tuple[str, int]] = []
    eager: list[bool] = []

    async def worker(prio: int) -> None:
        task = asyncio.current_task()
        assert isinstance(task, QTask)
        task.set_priority(prio)
        order.append(("start", prio))
        for _ in range(2):
            await asyncio.sleep(0)
            order.append(("step", prio))

    async def main() -> None:
        tasks = []
        for prio in (PRIORITY_DEFAULT_IDLE, PRIORITY_DEFAULT, PRIORITY_HIGH):
            before = len(order)
            tasks.append(make_task(worker(prio)))
            eager.append(len(order) > before)  # the first step ran inside create_task
        await asyncio.gather(*tasks)

    loop.run_until_complete(main())
    return order, eager


_STARTS = [("start", p) for p in (PRIORITY_DEFAULT_IDLE, PRIORITY_DEFAULT, PRIORITY_HIGH)]
_STEPS = [("step", p) for p in (PRIORITY_HIGH,) * 2 + (PRIORITY_DEFAULT,) * 2
          + (PRIORITY_DEFAULT_IDLE,) * 2]


def _check_steps(loop: asyncio.AbstractEventLoop, steps: list[tuple[str, int]]) -> None:
    if isinstance(loop, QSelectorEventLoop):
        assert steps == _STEPS
    else:
        # The uvloop base is not strict against asyncio's own queue (docs/tutorial/uvloop.md): the
        # steps at PRIORITY_DEFAULT may run among the others; the rest keep their order.
        assert [s for s in steps if s[1] != PRIORITY_DEFAULT] == [
            s for s in _STEPS if s[1] != PRIORITY_DEFAULT
        ]


@pytest.mark.skipif(not EAGER, reason=_NO_EAGER)
def test_eager_task_factory_starts_eagerly_with_priorities(
    loop: asyncio.AbstractEventLoop,
) -> None:
    loop.set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined]
    order, eager = _priority_order(loop, lambda c: loop.create_task(c))
    assert eager == [True, True, True]
    assert order[:3] == _STARTS
    _check_steps(loop, order[3:])


@pytest.mark.skipif(not EAGER, reason=_NO_EAGER)
def test_create_eager_task_factory_of_qtask_has_priorities(
    loop: asyncio.AbstractEventLoop,
) -> None:
    factory = asyncio.create_eager_task_factory(QTask)  # type: ignore[attr-defined]
    loop.set_task_factory(factory)
    order, eager = _priority_order(loop, lambda c: asyncio.ensure_future(c, loop=loop))
    assert eager == [True, True, True]
    assert order[:3] == _STARTS
    _check_steps(loop, order[3:])


@pytest.mark.skipif(not EAGER, reason=_NO_EAGER)
def test_eager_task_finishing_in_its_first_step(loop: asyncio.AbstractEventLoop) -> None:
    loop.set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined]

    async def quick() -> int:
        return 7

    async def main() -> tuple[bool, bool, int]:
        task = loop.create_task(quick(), name="quick")
        return task.done(), isinstance(task, QTask), await task

    assert loop.run_until_complete(main()) == (True, True, 7)


def test_plain_tasks_keep_their_priorities(loop: asyncio.AbstractEventLoop) -> None:
    order, eager = _priority_order(loop, lambda c: loop.create_task(c))
    assert eager == [False, False, False]
    assert order[:3] == _STARTS
    _check_steps(loop, order[3:])


# ------------------------------------------------------------- 3.14 call graphs
def _graph_shape(graph: Any) -> Any:
    """A call graph without addresses: (task name, frame names, awaited-by shapes)."""
    if graph is None:
        return None
    fut = graph.future
    name = fut.get_name() if isinstance(fut, asyncio.Task) else "future"
    frames = [e.frame.f_code.co_qualname for e in graph.call_stack]
    return (name, frames, sorted(_graph_shape(g) for g in graph.awaited_by))


def _graph_program(lp: asyncio.AbstractEventLoop) -> tuple[Any, Any, str]:
    async def leaf(ready: asyncio.Future[None], gate: asyncio.Future[None]) -> Any:
        graph = asyncio.capture_call_graph()  # type: ignore[attr-defined]
        ready.set_result(None)
        await gate
        return graph

    async def middle(ready: asyncio.Future[None], gate: asyncio.Future[None]) -> Any:
        return await leaf(ready, gate)

    async def main() -> tuple[Any, Any, str]:
        ready, gate = lp.create_future(), lp.create_future()
        child = lp.create_task(middle(ready, gate), name="child")
        await ready
        outside = asyncio.capture_call_graph(future=child)  # type: ignore[attr-defined]
        buf = io.StringIO()
        asyncio.print_call_graph(child, file=buf)  # type: ignore[attr-defined]
        gate.set_result(None)
        inside = await child
        return _graph_shape(inside), _graph_shape(outside), buf.getvalue()

    return lp.run_until_complete(lp.create_task(main(), name="main"))


@pytest.mark.skipif(not PY314, reason=_NO_GRAPH)
def test_call_graph_of_aioqloop_tasks_matches_asyncio(loop: asyncio.AbstractEventLoop) -> None:
    stock = asyncio.new_event_loop()
    try:
        expected = _graph_program(stock)
    finally:
        stock.close()
    got = _graph_program(loop)
    assert got[:2] == expected[:2]
    inside = got[0]
    assert inside[0] == "child" and inside[2] and inside[2][0][0] == "main"

    def strip(text: str) -> str:
        return re.sub(r"0x[0-9a-f]+|line \d+", "", text)

    assert strip(got[2]) == strip(expected[2])
    assert "Task(name='child'" in got[2] and "Task(name='main'" in got[2]


@pytest.mark.skipif(not PY314, reason=_NO_GRAPH)
@pytest.mark.parametrize("command", ["ps", "pstree"])
def test_python_m_asyncio_ps_lists_aioqloop_tasks(base: str, command: str) -> None:
    # A program whose tasks wait forever; `python -m asyncio ps PID` reads them from
    # outside the process, as it does for asyncio's own loop.
    code = textwrap.dedent(f"""
        import asyncio, sys, aioqloop

        async def sleeper():
            await asyncio.Event().wait()

        async def main():
            asyncio.get_running_loop().create_task(sleeper(), name="aioq-sleeper")
            await asyncio.sleep(0)
            print("ready", flush=True)
            await asyncio.Event().wait()

        aioqloop.run(main(), base={base!r})
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        out = subprocess.run([sys.executable, "-m", "asyncio", command, str(proc.pid)],
                             capture_output=True, text=True, timeout=60)
        if out.returncode != 0 and re.search(r"[Pp]ermission|[Oo]peration not permitted",
                                             out.stderr):
            pytest.skip(f"cannot read another process here: {out.stderr.strip()[:200]}")
        assert out.returncode == 0, out.stderr
        assert "aioq-sleeper" in out.stdout
    finally:
        proc.kill()
        proc.wait()
