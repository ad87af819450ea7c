"""Instructions per operation under callgrind: aioqloop beside asyncio, uvloop and GLib.

Wall-clock figures move with whatever else the machine does; the number of instructions a
workload executes does not.  Each workload runs at two sizes under ``valgrind
--tool=callgrind`` with ``PYTHONHASHSEED=0``, and the figure is
``(Ir(n2) - Ir(n1)) / (n2 - n1)``: start-up, imports and loop creation cancel out.

Implementations: ``asyncio``, ``uvloop``, ``aioqloop/asyncio``, ``aioqloop/uvloop``,
``glib`` (GLib through PyGObject, under whichever Python imports ``gi``:
``$AIOQLOOP_BENCH_GLIB_PYTHON`` or ``/usr/bin/python3``) and ``glib-c`` (the same workload
written against GLib in C, compiled on the fly with ``cc`` and ``pkg-config glib-2.0``: the
floor).  An implementation that is not available prints a blank.

Workloads (one "operation" each):

* ``idle`` -- a repeating idle source (GLib, aioqloop); a ``call_soon`` chain (asyncio,
  uvloop): one callback.
* ``chain`` -- a ``call_soon`` chain on every asyncio loop, aioqloop's included (plain
  asyncio work that uses no source): one callback.
* ``fd`` -- a one-byte ping-pong over a socketpair: ``FdSource`` / ``g_unix_fd_add``
  (aioqloop, GLib), ``add_reader`` (asyncio, uvloop): one round trip (two callbacks).
* ``timers`` -- a burst of one-shot timers, all created, then run: one timer.
* ``timer0`` -- a chain of 0-delay one-shot timers, each scheduling the next: one timer.
* ``bh`` -- a worker thread hands work to the loop and waits for it to run: a
  ``BottomHalf`` (aioqloop) or ``call_soon_threadsafe`` (asyncio, uvloop): one hand-off.

Run ``python benchmarks/instructions.py [--only WORKLOAD ...] [--impl IMPL ...]
[--sizes N1,N2] [--json FILE]``; needs valgrind.  The engine measured is the one
``AIOQLOOP_ENGINE`` selects.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

WORKLOADS = ("idle", "chain", "fd", "timers", "timer0", "bh")
IMPLS = ("asyncio", "uvloop", "aioqloop/asyncio", "aioqloop/uvloop", "glib", "glib-c")
#: Sizes per workload: large enough that the difference dwarfs noise, small enough that a
#: run under callgrind takes seconds.
SIZES = {"idle": (2000, 12000), "chain": (2000, 12000), "fd": (1000, 6000), "timers": (1000, 6000),
         "timer0": (1000, 6000), "bh": (500, 2500)}
#: Workloads with no GLib variant (GLib has no ``call_soon``; a thread hand-off through
#: ``g_idle_add`` is ``bench_wakeup.py``'s business).
_NOT_GLIB = ("chain", "bh")
#: Runs per figure, the median kept: a thread hand-off's count depends on whether the
#: loop is already asleep when the worker posts (a wake-up write and an ``epoll_wait``
#: more or less, and asyncio's self-pipe read ending in ``EAGAIN`` or not), which moves a
#: single figure by up to a fifth between runs of the same tree.
REPEATS = {"bh": 3}
_HERE = Path(__file__).resolve().parent
_COLLECTED = re.compile(rb"Collected\s*:\s*(\d+)")


# --------------------------------------------------------------------------- children
# Each runs one workload of size n in this process; the parent counts its instructions.

def _asyncio_loop(impl: str) -> Any:
    if impl == "asyncio":
        import asyncio

        return asyncio.new_event_loop()
    if impl == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    import aioqloop

    return aioqloop.new_event_loop(base=impl.split("/")[1])


def _child_asyncio(impl: str, workload: str, n: int) -> None:
    loop = _asyncio_loop(impl)
    aio = impl.startswith("aioqloop")
    done = loop.create_future()
    count = 0

    def finish() -> None:
        if not done.done():
            done.set_result(None)

    if workload in ("idle", "chain"):
        if aio and workload == "idle":
            import aioqloop

            def repeat() -> bool:
                nonlocal count
                count += 1
                if count >= n:
                    finish()
                    return False
                return True

            aioqloop.idle_add(repeat, context=aioqloop.get_main_context(loop))
        else:
            def step() -> None:
                nonlocal count
                count += 1
                if count < n:
                    loop.call_soon(step)
                else:
                    finish()

            loop.call_soon(step)
    elif workload == "fd":
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)

        def bounce(sock: socket.socket, reply: bool) -> None:
            nonlocal count
            sock.recv(16)
            if not reply:
                count += 1
                if count >= n:
                    finish()
                    return
            sock.send(b"x")

        if aio:
            import aioqloop

            ctx = aioqloop.get_main_context(loop)

            def on_b(fd: int, cond: int) -> bool:
                bounce(b, True)
                return True

            def on_a(fd: int, cond: int) -> bool:
                bounce(a, False)
                return not done.done()

            aioqloop.fd_add(b.fileno(), aioqloop.IOCondition.IN, on_b, context=ctx)
            aioqloop.fd_add(a.fileno(), aioqloop.IOCondition.IN, on_a, context=ctx)
        else:
            loop.add_reader(b.fileno(), bounce, b, True)
            loop.add_reader(a.fileno(), bounce, a, False)
        a.send(b"x")
    elif workload in ("timers", "timer0"):
        if aio:
            import aioqloop

            ctx = aioqloop.get_main_context(loop)

        def fired() -> bool:
            nonlocal count
            count += 1
            if count >= n:
                finish()
            elif workload == "timer0":
                arm(0.0)
            return False

        def arm(delay: float) -> None:
            if aio:
                aioqloop.timeout_add(delay, fired, context=ctx)
            else:
                loop.call_later(delay, fired)

        if workload == "timer0":
            arm(0.0)
        else:
            for i in range(n):
                arm((i % 100) * 1e-5)  # 0 to 1 ms, interleaved
    elif workload == "bh":
        sem = threading.Semaphore(0)

        def ran() -> None:
            nonlocal count
            count += 1
            sem.release()
            if count >= n:
                finish()

        if aio:
            import aioqloop

            bh = aioqloop.BottomHalf(ran, context=aioqloop.get_main_context(loop))
            post: Callable[[], Any] = bh.schedule
        else:
            def post() -> None:
                loop.call_soon_threadsafe(ran)

        def worker() -> None:
            for _ in range(n):
                post()
                sem.acquire()

        threading.Thread(target=worker, daemon=True).start()
    loop.run_until_complete(done)
    loop.close()


def _child_glib(workload: str, n: int) -> None:
    import gi

    gi.require_version("GLib", "2.0")
    from gi.repository import GLib

    ml = GLib.MainLoop()
    count = 0

    if workload == "idle":
        def repeat() -> bool:
            nonlocal count
            count += 1
            if count >= n:
                ml.quit()
                return False
            return True

        GLib.idle_add(repeat)
    elif workload == "fd":
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)

        def on_b(fd: int, cond: int) -> bool:
            b.recv(16)
            b.send(b"x")
            return True

        def on_a(fd: int, cond: int) -> bool:
            nonlocal count
            a.recv(16)
            count += 1
            if count >= n:
                ml.quit()
                return False
            a.send(b"x")
            return True

        GLib.unix_fd_add_full(GLib.PRIORITY_DEFAULT, b.fileno(), GLib.IOCondition.IN, on_b)
        GLib.unix_fd_add_full(GLib.PRIORITY_DEFAULT, a.fileno(), GLib.IOCondition.IN, on_a)
        a.send(b"x")
    elif workload in ("timers", "timer0"):
        def fired() -> bool:
            nonlocal count
            count += 1
            if count >= n:
                ml.quit()
            elif workload == "timer0":
                GLib.timeout_add(0, fired)
            return False

        if workload == "timer0":
            GLib.timeout_add(0, fired)
        else:
            for i in range(n):
                GLib.timeout_add(i % 2, fired)  # GLib's unit is 1 ms: 0 or 1 ms
    else:
        raise SystemExit(f"no GLib variant of {workload}")
    ml.run()


# --------------------------------------------------------------------------- the C floor

_C_FLOOR = _HERE / "instructions_floor.c"


def _build_floor(tmp: Path) -> Path | None:
    cc = shutil.which(os.environ.get("CC", "cc"))
    if cc is None or shutil.which("pkg-config") is None:
        return None
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "glib-2.0"],
                           capture_output=True, text=True, check=False)
    if flags.returncode != 0:
        return None
    exe = tmp / "floor"
    proc = subprocess.run([cc, "-O2", str(_C_FLOOR), "-o", str(exe), *flags.stdout.split()],
                          capture_output=True, text=True, check=False)
    return exe if proc.returncode == 0 else None


# --------------------------------------------------------------------------- the parent

def _glib_python() -> str | None:
    candidates = [os.environ.get("AIOQLOOP_BENCH_GLIB_PYTHON", ""), sys.executable,
                  "/usr/bin/python3"]
    for exe in candidates:
        if exe and Path(exe).exists():
            probe = subprocess.run([exe, "-c", "import gi; gi.require_version('GLib', '2.0')"],
                                   capture_output=True, check=False)
            if probe.returncode == 0:
                return exe
    return None


def _count(cmd: list[str]) -> int | None:
    env = dict(os.environ, PYTHONHASHSEED="0")
    proc = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                           *cmd], capture_output=True, env=env, check=False, timeout=600)
    found = _COLLECTED.search(proc.stderr)
    if proc.returncode != 0 or found is None:
        tail = proc.stderr.decode(errors="replace")[-800:]
        sys.stderr.write(f"failed: {' '.join(cmd)}\n{tail}\n")
        return None
    return int(found.group(1))


def _command(impl: str, workload: str, n: int, glib_py: str | None,
             floor: Path | None) -> list[str] | None:
    if impl == "glib-c":
        if floor is None or workload in _NOT_GLIB:
            return None
        return [str(floor), workload, str(n)]
    if impl == "glib":
        if glib_py is None or workload in _NOT_GLIB:
            return None
        return [glib_py, __file__, "--child", impl, workload, str(n)]
    if impl in ("uvloop", "aioqloop/uvloop"):
        try:
            import uvloop  # noqa: F401
        except ImportError:
            return None
    return [sys.executable, __file__, "--child", impl, workload, str(n)]


#: What ``measure`` says when callgrind cannot run here.
NO_VALGRIND = "valgrind: not installed"


def valgrind_missing() -> str | None:
    """``NO_VALGRIND`` when ``valgrind`` is not on ``PATH``, else None."""
    return NO_VALGRIND if shutil.which("valgrind") is None else None


Progress = Callable[[str], None]


def measure(workloads: tuple[str, ...], impls: tuple[str, ...],
            sizes: tuple[int, int] | dict[str, tuple[int, int]] | None = None,
            progress: Progress | None = None) -> dict[str, dict[str, float | None]]:
    """Instructions per operation: ``{workload: {impl: figure or None}}``.

    ``sizes`` is one ``(n1, n2)`` pair for every workload, or a pair per workload (default:
    ``SIZES``).  ``progress`` gets one line per implementation and workload measured;
    without it the lines go to stderr.  Raises RuntimeError when valgrind is missing.
    """
    missing = valgrind_missing()
    if missing is not None:
        raise RuntimeError(f"{missing} (Debian: apt-get install valgrind)")

    def say(text: str) -> None:
        if progress is None:
            print(text, file=sys.stderr, flush=True)
        else:
            progress(text)

    glib_py = _glib_python() if "glib" in impls else None
    results: dict[str, dict[str, float | None]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        floor = _build_floor(Path(tmp)) if "glib-c" in impls else None
        for workload in workloads:
            if isinstance(sizes, dict):
                n1, n2 = sizes.get(workload, SIZES[workload])
            else:
                n1, n2 = sizes or SIZES[workload]
            row: dict[str, float | None] = {}
            for impl in impls:
                figure = None
                cmds = [_command(impl, workload, n, glib_py, floor) for n in (n1, n2)]
                if cmds[0] is not None and cmds[1] is not None:
                    repeats = REPEATS.get(workload, 1)
                    runs = f", median of {repeats} runs" if repeats > 1 else ""
                    say(f"{workload} {impl} (callgrind, n={n1} and n={n2}{runs})")
                    figures = []
                    for _ in range(repeats):
                        ir1, ir2 = _count(cmds[0]), _count(cmds[1])
                        if ir1 is None or ir2 is None:
                            break
                        figures.append((ir2 - ir1) / (n2 - n1))
                    else:
                        figure = statistics.median(figures)
                row[impl] = figure
                shown = "-" if figure is None else f"{figure:,.0f}"
                if progress is None:
                    say(f"  {workload:7} {impl:17} {shown:>10}")
            results[workload] = row
    return results


def describe() -> str:
    """The machine and interpreter line printed above the table."""
    import aioqloop
    from aioqloop.bench import _cpu_model

    try:
        import uvloop

        uv = f"uvloop {uvloop.__version__}"
    except ImportError:
        uv = "uvloop not installed"
    glib = "GLib not installed"
    glib_py = _glib_python()
    if glib_py is not None:
        probe = subprocess.run(
            [glib_py, "-c", "import gi; gi.require_version('GLib', '2.0'); "
             "from gi.repository import GLib; "
             "print('.'.join(map(str, GLib.glib_version)), gi.__version__)"],
            capture_output=True, text=True, check=False)
        if probe.returncode == 0 and len(probe.stdout.split()) == 2:
            version, gi_version = probe.stdout.split()
            glib = f"GLib {version} via PyGObject {gi_version} ({glib_py})"
    tool = subprocess.run(["valgrind", "--version"], capture_output=True, text=True,
                          check=False).stdout.strip() if shutil.which("valgrind") else ""
    return (f"{_cpu_model()}, {os.cpu_count()} CPUs, {platform.system()} "
            f"{platform.release()}; {platform.python_implementation()} "
            f"{platform.python_version()}; aioqloop {aioqloop.__version__}, engine "
            f"{aioqloop.ENGINE}; {uv}; {glib}; {tool or 'valgrind'} "
            f"(callgrind, PYTHONHASHSEED=0): instructions per operation")


def _table(results: dict[str, dict[str, float | None]], impls: tuple[str, ...]) -> str:
    lines = ["| workload | " + " | ".join(impls) + " |",
             "|---" * (len(impls) + 1) + "|"]
    for workload, row in results.items():
        cells = ["" if row.get(i) is None else f"{row[i]:,.0f}" for i in impls]
        lines.append(f"| {workload} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--only", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    parser.add_argument("--impl", nargs="+", choices=IMPLS, default=list(IMPLS))
    parser.add_argument("--sizes", help="N1,N2 for every workload (default: per workload)")
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--child", nargs=3, metavar=("IMPL", "WORKLOAD", "N"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        impl, workload, n = args.child
        if impl == "glib":
            _child_glib(workload, int(n))
        else:
            _child_asyncio(impl, workload, int(n))
        return 0
    sizes = None
    if args.sizes:
        n1, n2 = (int(x) for x in args.sizes.split(","))
        sizes = (n1, n2)
    impls = tuple(args.impl)
    missing = valgrind_missing()
    if missing is not None:
        print(f"{missing} (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    results = measure(tuple(args.only), impls, sizes)
    print(describe())
    print(_table(results, impls))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
