"""``python -m aioqloop demo``: a toy machine in QEMU's style, built on aioqloop.

Everything here is real: real file descriptors, real threads, a real Unix socket.  The
pieces mirror how QEMU structures a machine around its main loop and its big lock:

* **serial device** — a pseudo-terminal (QEMU's ``-serial pty``).  A guest console
  thread writes lines on the slave side; an `FdSource` on the master side reads them on
  the loop and echoes each line back, which the guest reads.
* **timer device** — a periodic `Source` on the guest's virtual clock raising
  "interrupts" (QEMU's ``QEMU_CLOCK_VIRTUAL`` timers): ``stop`` sets its ready time to
  never and ``cont`` re-arms it, as QEMU's virtual clock stops with the vCPUs.  It is
  one source for the whole run, so its statistics count every interrupt.
* **vCPUs** — worker threads running guest work outside the lock and taking the big lock
  (``with lock:``) to touch device registers, like QEMU's vCPU threads do for MMIO.
* **bottom halves** — vCPUs complete I/O by scheduling a `BottomHalf` that runs on the
  loop; scheduling is idempotent, so a burst of requests costs one run.
* **housekeeping** — an idle-priority source that runs only when nothing more urgent
  is ready, then removes itself; a slow timer re-adds it, so it never spins the CPU.
* **monitor** — QMP, QEMU's monitor protocol, on a Unix socket served by asyncio streams
  (`aioqloop.qmp`): ``query-status``, ``stop``, ``cont``, ``system_reset``, ``quit``,
  ``query-commands``, ``query-version`` and ``x-query-machine-stats``, with QEMU's
  events.  QEMU's own client library (``qemu.qmp``) and ``socat`` can drive it
  (``--qmp PATH``); without ``--qmp`` a built-in client drives it during the run.

The loop is created with ``bql=lock``: it dispatches sources holding the lock and drops
it while it waits for events (QEMU's ``os_host_main_loop_wait``), so source callbacks
may touch device state directly, while coroutines use ``async with lock:``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import tempfile
from collections.abc import Sequence
from typing import TextIO

from ._console import Console, Table, escape, make_console

# The machine and its monitor live in their own modules; their names stay reachable here.
from ._demo_machine import (  # noqa: F401
    CONSOLE_PERIOD,
    HOUSEKEEPING_PERIOD,
    QMP_VERSION,
    STOP_TIMEOUT,
    TIMER_PERIOD,
    Machine,
    VirtualTimer,
)
from ._demo_monitor import Monitor, _monitor_client
from .biglock import BigLock
from .context import get_main_context
from .loop import run
from .statistics import statistics_table

__all__ = ("Machine", "main")


# -------------------------------------------------------------------- command line
class _PipeSafeStdout:
    """Standard output that goes quiet once the reader is gone (``demo | head -3``).

    The first write that meets a closed pipe points file descriptor 1 at /dev/null,
    so neither later prints nor the interpreter's final flush raise ``BrokenPipeError``;
    the machine finishes its run as usual.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.closed_pipe = False

    def _silence(self) -> None:
        self.closed_pipe = True
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, self._stream.fileno())
        finally:
            os.close(devnull)

    def write(self, text: str) -> int:
        if self.closed_pipe:
            return len(text)
        try:
            self._stream.write(text)
        except BrokenPipeError:
            self._silence()
        return len(text)

    def flush(self) -> None:
        if self.closed_pipe:
            return
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._silence()

    def isatty(self) -> bool:
        return self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()

    @property
    def encoding(self) -> str:
        return self._stream.encoding


# -------------------------------------------------------------------- main
#: What the per-source statistics columns mean, printed under the table.
_STATS_CAPTION = (
    "dispatches: callback runs; total/mean/max: time in dispatch; waited: iterations "
    "in which the source was ready but a more urgent priority ran first; "
    "bottom halves: every BottomHalf of the context, as one source"
)


async def _run_machine(seconds: float | None, n_vcpus: int, lock: BigLock, console: Console,
                       *, base: str, qmp_path: str | None) -> Machine:
    ctx = get_main_context()
    machine = Machine(lock, ctx, n_vcpus, console)
    monitor = Monitor(machine)
    loop = asyncio.get_running_loop()
    with tempfile.TemporaryDirectory(prefix="aioqloop-demo-") as tmp:
        path = qmp_path or os.path.join(tmp, "qmp.sock")
        server = await monitor.server.start_unix_server(path)
        console.print(
            f"[bold]machine up[/]: base={base}, {n_vcpus} vCPUs, serial0 on "
            f"{escape(os.ttyname(machine.serial_slave))}, QMP on {escape(path)}"
        )
        machine.start()
        t0 = loop.time()
        client: asyncio.Task[None] | None = None
        try:
            if qmp_path is None:
                assert seconds is not None
                client = asyncio.create_task(_monitor_client(path, seconds, console))
            quit_wait = asyncio.ensure_future(monitor.quit_requested.wait())
            await asyncio.wait([quit_wait], timeout=seconds)
            quit_wait.cancel()
            if client is not None:
                await client
        finally:
            # Threads may be queued on the lock: join them off the loop so it keeps going.
            await loop.run_in_executor(None, machine.join_threads)
            server.close()
            monitor.server.close_connections()
            await server.wait_closed()
            if qmp_path is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(qmp_path)
            elapsed = loop.time() - t0
            console.print(
                f"[bold]machine down[/] after {elapsed:.2f} s; "
                f"{monitor.server.replies} monitor replies"
            )
            # Print while the sources are still attached: statistics cover attached ones.
            table = statistics_table(ctx, title="main context sources")
            table.caption = _STATS_CAPTION
            console.print(table)
            machine.close()
    return machine


def _machine_table(machine: Machine) -> Table:
    table = Table(title="machine")
    table.add_column("counter")
    table.add_column("value", justify="right")
    rows = [
        ("serial lines echoed", machine.serial_echoes),
        ("echoes read by guest", machine.guest_echoes_seen),
        ("timer interrupts", machine.interrupts),
        ("io requests (vCPU MMIO)", machine.io_requests),
        ("bottom-half runs", machine.bh_runs),
        ("dma completed", machine.dma_completed),
        ("housekeeping runs", machine.housekeeping_runs),
    ]
    rows += [(f"vcpu{i} lock acquisitions", n)
             for i, n in enumerate(machine.vcpu_lock_acquisitions)]
    for name, value in rows:
        table.add_row(name, str(value))
    return table


def _lock_table(lock: BigLock) -> Table:
    st = lock.statistics()
    table = Table(title="big lock contention")
    for col in ("owner", "acquisitions", "contended", "wait ms", "max wait µs",
                "hold ms", "max hold µs"):
        table.add_column(col, justify="left" if col == "owner" else "right")
    for label, row in (("tasks", st.tasks), ("threads", st.threads), ("total", st)):
        table.add_row(
            label,
            str(row.acquisitions),
            str(row.contended_acquisitions),
            f"{row.total_wait_time * 1e3:.2f}",
            f"{row.max_wait_time * 1e6:.0f}",
            f"{row.total_hold_time * 1e3:.2f}",
            f"{row.max_hold_time * 1e6:.0f}",
        )
    return table


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="aioqloop demo",
        description="Run a toy QEMU-style machine on aioqloop and print its statistics.",
    )
    p.add_argument("--seconds", type=float, default=None,
                   help="how long the machine runs, in seconds (default: 3; with --qmp: "
                   "until a client sends quit)")
    p.add_argument("--base", choices=("asyncio", "uvloop"), default="asyncio",
                   help="the event loop base (default: asyncio)")
    p.add_argument("--vcpus", type=int, default=2, help="number of vCPU threads (default: 2)")
    p.add_argument("--qmp", metavar="PATH",
                   help="serve QMP on a Unix socket at PATH (mode 0600) for your own client "
                   "(qemu.qmp, socat) instead of running the built-in one")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; ``argv`` excludes the program name.  Returns the exit status."""
    args = _parser().parse_args(argv)
    out = _PipeSafeStdout(sys.stdout)
    # Logs and pipes: wide enough for the tables.
    console = make_console(out, width=None if out.isatty() else 120)  # type: ignore[arg-type]
    if args.seconds is None and args.qmp is None:
        args.seconds = 3.0
    if (args.seconds is not None and not args.seconds > 0) or args.vcpus < 1:
        console.print("[red]--seconds must be > 0 and --vcpus >= 1[/]")
        return 2
    if args.base == "uvloop":
        try:
            import uvloop  # noqa: F401
        except ImportError:
            hint = escape("pip install 'aioqloop[uvloop]'")
            console.print(f"[red]--base uvloop needs uvloop: {hint}[/]")
            return 2
    lock = BigLock(name="bql")
    try:
        machine = run(
            _run_machine(args.seconds, args.vcpus, lock, console, base=args.base,
                         qmp_path=args.qmp),
            base=args.base, bql=lock)
    except KeyboardInterrupt:
        return 128 + signal.SIGINT
    console.print(_machine_table(machine))
    console.print(_lock_table(lock))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
