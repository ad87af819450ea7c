"""Which engine runs (`aioqloop._engine`): the compiled core or the pure-Python reference.

The whole suite runs on both (CI runs it twice); these tests pin the choice itself: the
environment variable, a missing or stale build, and what the compiled core takes over.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import aioqloop
from aioqloop import _engine, statistics
from aioqloop.context import MainContext
from aioqloop.source import Source

ROOT = Path(__file__).resolve().parent.parent
PKG = Path(aioqloop.__file__).resolve().parent
WANTED = os.environ.get("AIOQLOOP_ENGINE", "auto")

try:
    from aioqloop import _cengine as built_core
except ImportError:
    built_core = None  # type: ignore[assignment]

needs_build = pytest.mark.skipif(built_core is None, reason="the compiled core is not built")


def _engine_in(pkg_parent: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Import aioqloop from ``pkg_parent`` in a fresh interpreter; print its engine."""
    code = "import aioqloop, aioqloop._engine as e; print(aioqloop.ENGINE, '|', e.REASON)"
    full = {**os.environ, "PYTHONPATH": str(pkg_parent), **env}
    return subprocess.run([sys.executable, "-W", "default", "-c", code], env=full,
                          capture_output=True, text=True, timeout=60, check=False,
                          cwd=pkg_parent)


def _copy_package(tmp_path: Path, *, with_core: bool) -> Path:
    dest = tmp_path / "aioqloop"
    ignore = shutil.ignore_patterns("__pycache__", *(() if with_core else ("*.so",)))
    shutil.copytree(PKG, dest, ignore=ignore)
    return tmp_path


def test_engine_is_the_one_asked_for() -> None:
    if WANTED == "python":
        assert aioqloop.ENGINE == "python"
    elif WANTED == "c":
        assert aioqloop.ENGINE == "c"
    else:
        assert aioqloop.ENGINE == ("c" if built_core is not None else "python")


def test_compiled_core_takes_over_the_hot_types() -> None:
    mro_ctx = MainContext.__mro__
    mro_src = Source.__mro__
    if aioqloop.ENGINE == "c":
        assert built_core is not None
        assert built_core.ContextCore in mro_ctx
        assert built_core.SourceCore in mro_src
        # (mypy sees the Python twins here: the C core replaces them only at import.)
        assert statistics.SourceStatistics is built_core.SourceStatistics  # type: ignore[comparison-overlap]
        # The C methods come first in the MRO; the Python twins are the reference.
        assert MainContext._dispatch is built_core.ContextCore._dispatch  # type: ignore[comparison-overlap]
        assert MainContext._iterate is built_core.ContextCore._iterate  # type: ignore[comparison-overlap]
        assert _engine.source_hash() == built_core.SOURCE_HASH
    else:
        assert all(c.__module__ != "aioqloop._cengine" for c in (*mro_ctx, *mro_src))
        assert statistics.SourceStatistics is statistics._PySourceStatistics


@pytest.mark.parametrize("kind", ["idle", "timeout", "fd"])
def test_builtin_dispatch_runs_no_python_frame_but_the_callback(
    kind: str,
    pipe: tuple[int, int],
) -> None:
    callers: list[str] = []
    r, w = pipe
    os.write(w, b"x")

    def record(*_args: Any) -> bool:
        callers.append(sys._getframe(1).f_code.co_filename)
        loop.stop()
        return False

    loop = aioqloop.new_event_loop()
    try:
        ctx = aioqloop.get_main_context(loop)
        if kind == "idle":
            aioqloop.idle_add(record, context=ctx)
        elif kind == "timeout":
            aioqloop.timeout_add(0, record, context=ctx)
        else:
            aioqloop.fd_add(r, aioqloop.IOCondition.IN, record, context=ctx)
        loop.call_later(30, loop.stop)
        loop.run_forever()
    finally:
        loop.close()
        os.close(r)
        os.close(w)
    assert len(callers) == 1
    engine_files = {"source.py", "sources.py", "_dispatch.py", "context.py"}
    caller = Path(callers[0]).name
    if aioqloop.ENGINE == "c":
        assert caller not in engine_files  # the loop's hook called the core, the core us
    else:
        assert caller in {"source.py", "sources.py"}  # the pure engine's dispatch()


def test_python_engine_on_request(tmp_path: Path) -> None:
    proc = _engine_in(_copy_package(tmp_path, with_core=True), {"AIOQLOOP_ENGINE": "python"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("python | AIOQLOOP_ENGINE=python")


def test_unknown_engine_name_is_refused(tmp_path: Path) -> None:
    proc = _engine_in(_copy_package(tmp_path, with_core=False), {"AIOQLOOP_ENGINE": "fast"})
    assert proc.returncode != 0
    assert "AIOQLOOP_ENGINE must be 'auto', 'c' or 'python', not 'fast'" in proc.stderr


def test_without_a_build_auto_falls_back_and_c_says_why(tmp_path: Path) -> None:
    parent = _copy_package(tmp_path, with_core=False)
    proc = _engine_in(parent, {"AIOQLOOP_ENGINE": "auto"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("python | the compiled core is not built")
    proc = _engine_in(parent, {"AIOQLOOP_ENGINE": "c"})
    assert proc.returncode != 0
    assert "AIOQLOOP_ENGINE=c, but the compiled core is not built" in proc.stderr


@needs_build
@pytest.mark.parametrize("edited", ["_cengine.c", "_csrc/timers.h", "_deadlines.py"])
def test_a_stale_build_never_shadows_edited_sources(tmp_path: Path, edited: str) -> None:
    parent = _copy_package(tmp_path, with_core=True)
    proc = _engine_in(parent, {"AIOQLOOP_ENGINE": "auto"})
    assert proc.stdout.startswith("c |"), proc.stderr  # the copy as built: current
    with (parent / "aioqloop" / edited).open("a") as f:
        f.write("\n// edited\n" if edited.endswith((".c", ".h")) else "\n# edited\n")
    proc = _engine_in(parent, {"AIOQLOOP_ENGINE": "auto"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("python | the compiled core")
    assert "is stale" in proc.stderr and "RuntimeWarning" in proc.stderr
    proc = _engine_in(parent, {"AIOQLOOP_ENGINE": "c"})
    assert proc.returncode != 0
    assert "is stale" in proc.stderr


@needs_build
def test_an_edit_the_core_does_not_depend_on_keeps_the_build(tmp_path: Path) -> None:
    # _dispatch.py is the Python twin of the core's dispatch: the core calls none of it
    # and repeats none of its data, so the build stays current (the suite, run on both
    # engines, is what keeps the twins in step).
    assert "_dispatch.py" not in _engine.HASHED
    parent = _copy_package(tmp_path, with_core=True)
    with (parent / "aioqloop" / "_dispatch.py").open("a") as f:
        f.write("\n# edited\n")
    proc = _engine_in(parent, {"AIOQLOOP_ENGINE": "c"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("c | built and current")


def test_the_hash_covers_every_part_of_the_core() -> None:
    # A part added to the compilation unit but not to HASHED would let a stale build
    # through.
    unit = (PKG / "_cengine.c").read_text(encoding="utf-8")
    included = re.findall(r'^#include "(_csrc/[^"]+)"', unit, re.MULTILINE)
    on_disk = sorted(f"_csrc/{p.name}" for p in (PKG / "_csrc").iterdir())
    hashed_c = [n for n in _engine.HASHED if n.endswith((".c", ".h"))]
    assert sorted(included) == on_disk
    assert hashed_c == ["_cengine.c", *included]


@needs_build
@pytest.mark.timeout(300)
def test_the_stub_agrees_with_the_compiled_core() -> None:
    # mypy's stubtest imports the built module and compares every name, signature and
    # class of aioqloop/_cengine.pyi with it; the allowlist holds what a stub cannot say.
    pytest.importorskip("mypy.stubtest")
    allowlist = ROOT / "tests" / "stubtest_allowlist.txt"
    proc = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "aioqloop._cengine", "--allowlist",
         str(allowlist), "--mypy-config-file", str(ROOT / "pyproject.toml")],
        capture_output=True, text=True, timeout=280, check=False, cwd=ROOT,
        env={**os.environ, "AIOQLOOP_ENGINE": "c"},
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "Success" in proc.stdout


@needs_build
def test_the_core_runs_in_an_interpreter_with_its_own_gil() -> None:
    # The module declares itself per-interpreter-GIL safe (PEP 684): it keeps no process
    # state, so a subinterpreter with its own GIL imports it and runs a loop on it.
    interpreters = pytest.importorskip("_interpreters", reason="needs Python 3.13+")
    if aioqloop.ENGINE != "c":
        pytest.skip("the compiled core is not in use")
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(PKG.parent)!r})
        import aioqloop
        assert aioqloop.ENGINE == "c", aioqloop.engine_info()
        loop = aioqloop.new_event_loop()
        hits = []
        def idle():
            hits.append(1)
            if len(hits) == 3:
                loop.stop()
            return True
        aioqloop.idle_add(idle, context=aioqloop.get_main_context(loop))
        loop.run_forever()
        loop.close()
        assert len(hits) == 3
    """)
    iid = interpreters.create("isolated")
    try:
        failure = interpreters.run_string(iid, code)
    finally:
        interpreters.destroy(iid)
    assert failure is None, (failure.type, failure.msg, failure.formatted)


def test_build_without_a_compiler_says_so_and_builds_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sys.path.insert(0, str(ROOT))
    try:
        import hatch_build
    finally:
        sys.path.remove(str(ROOT))
    monkeypatch.setenv("CC", "/nonexistent/cc")
    assert hatch_build.compile_core(tmp_path) is None
    assert "not building the compiled core: no C compiler" in capsys.readouterr().err
    monkeypatch.setenv("CC", "false")  # a compiler that fails
    assert hatch_build.compile_core(tmp_path) is None
    assert "the C compiler failed" in capsys.readouterr().err
    monkeypatch.setenv("AIOQLOOP_NO_EXTENSION", "1")
    assert hatch_build.compile_core(tmp_path) is None
    assert "AIOQLOOP_NO_EXTENSION is set" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@needs_build
def test_build_hook_builds_a_core_that_loads(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT))
    try:
        import hatch_build
    finally:
        sys.path.remove(str(ROOT))
    built = hatch_build.compile_core(tmp_path)
    assert built is not None and built.exists()
    code = textwrap.dedent(f"""
        import importlib.util
        spec = importlib.util.spec_from_file_location("aioqloop._cengine", {str(built)!r})
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        print(mod.SOURCE_HASH)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == _engine.source_hash()


def _hatch_build() -> Any:
    sys.path.insert(0, str(ROOT))
    try:
        import hatch_build
    finally:
        sys.path.remove(str(ROOT))
    return hatch_build


@needs_build
def test_an_installed_build_is_not_hashed_at_import(tmp_path: Path) -> None:
    # A wheel's build (not made in place) is installed with the sources it was built
    # from: import neither hashes them nor loads the hashing module.  An in-place build
    # (an editable install, a checkout) is still checked (the stale-build test above).
    parent = _copy_package(tmp_path, with_core=False)
    built = _hatch_build().compile_core(parent / "aioqloop")  # as the wheel build does
    assert built is not None
    code = ("import sys, aioqloop, aioqloop._engine as e; "
            "print(aioqloop.ENGINE, 'aioqloop._corehash' in sys.modules, "
            "getattr(e.core, 'INPLACE', None))")
    full = {**os.environ, "PYTHONPATH": str(parent), "AIOQLOOP_ENGINE": "c"}
    proc = subprocess.run([sys.executable, "-c", code], env=full, capture_output=True,
                          text=True, timeout=60, check=False, cwd=parent)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["c", "False", "0"]
    inplace = _hatch_build().compile_core(tmp_path / "inplace", inplace=True)
    assert inplace is not None
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import importlib.util
        spec = importlib.util.spec_from_file_location("aioqloop._cengine", {str(inplace)!r})
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        print(mod.INPLACE)
    """)], capture_output=True, text=True, timeout=60, check=False)
    assert proc.stdout.strip() == "1", proc.stderr


def test_import_loads_no_optional_module() -> None:
    # `import aioqloop` stays cheap: what only some programs need is imported on first
    # use (the big lock, signal and child-watch sources, uvloop, rich, the hashing of a
    # build's sources, the demo, the benchmarks, the pytest plugin).
    code = ("import sys, aioqloop; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('uvloop', 'rich', "
            "'hashlib', 'pathlib', 'pytest', 'gi') or m in ('aioqloop.biglock', "
            "'aioqloop.unix', 'aioqloop._corehash', 'aioqloop.demo', 'aioqloop.bench', "
            "'aioqloop.pytest_plugin', 'aioqloop._uvloop')))")
    full = {**os.environ, "AIOQLOOP_ENGINE": "python"}
    proc = subprocess.run([sys.executable, "-c", code], env=full, capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
    proc = subprocess.run([sys.executable, "-c", "import aioqloop as a; "
                           "print(a.bql.name, a.SignalSource.__name__, 'BigLock' in dir(a))"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.stdout.split() == ["bql", "SignalSource", "True"], proc.stderr


def test_no_memory_grows_with_dispatches(base: str) -> None:
    """Dispatch, re-arm, attach, destroy and report exceptions many times: the engine
    (the compiled core's reference counting above all) keeps nothing per operation."""
    import gc

    def run(n: int) -> None:
        loop = aioqloop.new_event_loop(base=base)
        r, w = os.pipe()
        try:
            loop.set_exception_handler(lambda _loop, _context: None)
            ctx = aioqloop.get_main_context(loop)
            counts = {"idle": 0, "t0": 0, "fd": 0, "oneshot": 0}

            def idle() -> bool:
                counts["idle"] += 1
                return counts["idle"] < n

            def t0() -> bool:
                counts["t0"] += 1
                return counts["t0"] < n

            def fd(_fd: int, _cond: Any) -> bool:
                counts["fd"] += 1
                return counts["fd"] < n

            def oneshot(i: int) -> bool:
                counts["oneshot"] += 1
                if i < n:
                    aioqloop.timeout_add(0, oneshot, i + 1, context=ctx)
                if i % 7 == 0:
                    raise ValueError(i)  # reported, the source destroyed
                return False

            def stop_when_done() -> bool:
                if min(counts.values()) >= n - 1:
                    loop.stop()
                    return False
                return True

            os.write(w, b"x")
            aioqloop.idle_add(idle, context=ctx)
            aioqloop.timeout_add(0, t0, context=ctx)
            aioqloop.fd_add(r, aioqloop.IOCondition.IN, fd, context=ctx)
            aioqloop.timeout_add(0, oneshot, 1, context=ctx)
            aioqloop.idle_add(stop_when_done, priority=aioqloop.PRIORITY_LOW, context=ctx)
            loop.call_later(30, loop.stop)
            loop.run_forever()
            assert counts["idle"] >= n - 1 and counts["fd"] >= n - 1
        finally:
            loop.close()
            os.close(r)
            os.close(w)

    run(500)  # warm caches, first-use allocations
    gc.collect()
    before = sys.getallocatedblocks()
    run(20_000)
    gc.collect()
    grown = sys.getallocatedblocks() - before
    assert grown < 2_000, f"{grown} blocks kept after ~80k dispatches"


# The engines agree where the compiled core once did not (each fails on that core).


def test_check_hook_of_a_source_attached_from_another_thread_is_called_at_once() -> None:
    import threading

    class AlwaysReady(Source):
        def check(self) -> bool:
            return True

    ran: list[int] = []
    ctx = MainContext()
    assert ctx.acquire()
    try:
        src = AlwaysReady()
        src.set_callback(lambda: bool(ran.append(1)))
        # Attached from another thread while this one owns the context: the insert is
        # posted, as when it arrives during this thread's poll.
        worker = threading.Thread(target=src.attach, args=(ctx,))
        worker.start()
        worker.join(10)
        assert not worker.is_alive() and ctx._waker.ops
        # GLib's check after that poll: the posted insert runs first, then the new
        # source's check() is called in the same check phase, and it dispatches.
        assert ctx._check() == 0
        ctx._dispatch(0)
        assert ran == [1]
    finally:
        ctx.release()
        ctx.close()


def test_timeout_subclass_set_ready_time_is_called_on_every_rearm() -> None:
    from aioqloop.sources import TimeoutSource

    calls: list[float] = []

    class Logged(TimeoutSource):
        def set_ready_time(self, when: float) -> None:
            calls.append(when)
            super().set_ready_time(when)

    ctx = MainContext()
    src = Logged(0.0)
    src.set_callback(lambda: True)
    src.attach(ctx)
    for _ in range(3):
        ctx.iteration(False)
    assert len(calls) == 3  # each re-arm goes through the override
    src.destroy()
    ctx.close()


def test_a_dispatch_result_whose_truth_fails_is_reported_and_destroys_the_source() -> None:
    class Falsy:
        def __bool__(self) -> bool:
            raise ZeroDivisionError

    class Odd(Source):
        def dispatch(self, callback: Any, args: tuple[Any, ...]) -> Any:
            return Falsy()

    ctx = MainContext()
    reports: list[dict[str, Any]] = []
    ctx._port.report = reports.append  # type: ignore[method-assign,assignment]
    src = Odd()
    src.set_callback(lambda: True)
    src.attach(ctx)
    ctx._mark_ready(src)
    assert ctx.iteration(False)
    # Both engines take the truth inside the dispatch's guard: a fault of the source.
    assert [type(r["exception"]) for r in reports] == [ZeroDivisionError]
    assert reports[0]["source"] is src and src.is_destroyed
    ctx.close()


def test_a_failing_callback_is_reported_as_it_is_after_the_failure() -> None:
    ctx = MainContext()
    reports: list[dict[str, Any]] = []
    ctx._port.report = reports.append  # type: ignore[method-assign,assignment]

    def replacement() -> bool:
        return False

    def first() -> bool:
        src.set_callback(replacement)
        raise ValueError("boom")

    from aioqloop.sources import IdleSource

    src = IdleSource()
    src.set_callback(first)
    src.attach(ctx)
    ctx.iteration(False)
    assert [type(r["exception"]) for r in reports] == [ValueError]
    assert reports[0]["callback"] is replacement
    ctx.close()


def test_timeout_add_and_one_shot_firing_run_no_python_frame_but_the_callback(
    base: str,
) -> None:
    """GLib's g_timeout_add and the firing of a one-shot timeout: on the compiled core,
    making one runs no Python frame but the public ``timeout_add`` itself (from inside
    the loop and from outside it), and firing one runs none but its callback: no check,
    no attach, no clock, no destroy or finalize, no sort key, no prepare in Python.  The
    pure engine runs the same timeouts (its frames are its reference code)."""
    import asyncio

    n = 40
    fired: list[int] = []
    calls: list[tuple[str, str]] = []

    def profile(frame: Any, event: str, _arg: Any) -> None:
        if event == "call":
            code = frame.f_code
            calls.append((code.co_filename, code.co_name))

    def oneshot(i: int) -> bool:
        fired.append(i)
        if len(fired) == 2 * n + 1:
            done.set_result(None)
        return False

    def ours(seen: list[tuple[str, str]]) -> list[tuple[str, str]]:
        # Frames of the package (the loop's own per-iteration frames are asyncio's).
        return [(Path(f).name, name) for f, name in seen if Path(f).parent == PKG]

    loop = aioqloop.new_event_loop(base=base)
    try:
        ctx = aioqloop.get_main_context(loop)
        done = loop.create_future()
        # Outside the running loop: the context is not owned (a wake-up is considered).
        # The first timeout tells the loop once (its timer, a wake-up); the rest not.
        aioqloop.timeout_add(0, oneshot, -1, context=ctx)
        sys.setprofile(profile)
        try:
            for i in range(n):
                aioqloop.timeout_add(0, oneshot, i, context=ctx)
        finally:
            sys.setprofile(None)
        made_outside = ours(calls)
        calls.clear()

        async def main() -> list[tuple[str, str]]:
            await asyncio.sleep(0)  # the first n fire
            calls.clear()
            sys.setprofile(profile)
            try:
                for i in range(n, 2 * n):
                    aioqloop.timeout_add(0.0, oneshot, i, priority=1, context=ctx)
                inside = calls[:]
                calls.clear()
                await done  # the next n fire, all in one iteration
            finally:
                sys.setprofile(None)
            return ours(inside)

        made_inside = loop.run_until_complete(main())
    finally:
        loop.close()
    assert sorted(fired) == list(range(-1, 2 * n))
    callbacks = [c for c in calls if c[1] == "oneshot"]
    assert len(callbacks) == n  # the first n fired during main(), before profiling
    if aioqloop.ENGINE != "c":
        return
    # At most one timeout becomes the heap's new head and tells the driver (a frame per
    # wake-up, not per timeout): which one depends on what fired meanwhile, i.e. on time.
    notify = ("bridge.py", "deadline_changed")
    for made in (made_outside, made_inside):
        assert made.count(notify) <= 1, made
        assert [c for c in made if c != notify] == [("sources.py", "timeout_add")] * n
    # The plain driver's loop-timer callback is the loop's entry into the context (one
    # per wake-up of the uvloop base), not a frame of a timeout.
    assert [c for c in ours(calls) if c != ("bridge.py", "_on_timer")] == []
    # What else ran is the loop's own iterations, not a frame per timeout.
    others = [c for c in calls if c[1] not in ("oneshot", "main")]
    assert len(others) < n // 2, others
