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
import json
import os
import select
import signal
import sys
import tempfile
import threading
import time
import tty
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from ._console import Console, Table, escape, make_console
from .biglock import BigLock
from .bottomhalf import BottomHalf
from .constants import PRIORITY_DEFAULT_IDLE, SOURCE_CONTINUE, SOURCE_REMOVE, IOCondition
from .context import MainContext, get_main_context
from .loop import run
from .qmp import Command, JSONStream, QMPError, QMPServer
from .source import Source
from .sources import FdSource, TimeoutSource, idle_add
from .statistics import statistics_table

__all__ = ("Machine", "main")

#: Seconds between two timer-device interrupts.
TIMER_PERIOD = 0.02
#: Seconds between two guest console lines.
CONSOLE_PERIOD = 0.05
#: Seconds between two housekeeping passes (the idle source is re-added this often).
HOUSEKEEPING_PERIOD = 0.1
#: Seconds ``stop`` waits for the vCPUs to park before it reports an error.
STOP_TIMEOUT = 5.0
#: The QMP protocol level the monitor follows, announced as ``version.qemu``.
QMP_VERSION = (7, 2, 0)


class VirtualTimer(Source):
    """A periodic timer on the guest's virtual clock (a QEMU ``QEMU_CLOCK_VIRTUAL`` timer).

    Ready every ``period`` seconds while the clock runs; `stop_clock` makes it never
    ready (ready time -1) and `start_clock` re-arms it one period from now.  The source
    stays attached throughout, unlike destroying and recreating a `TimeoutSource`,
    so its statistics cover the whole run.
    """

    def __init__(self, period: float, *, name: str) -> None:
        super().__init__(name=name)
        self.period = period
        self.ticking: bool = False

    def start_clock(self) -> None:
        """Run the clock: ready one ``period`` (seconds) from the iteration's time."""
        self.ticking = True
        self.set_ready_time(self.time() + self.period)

    def stop_clock(self) -> None:
        """Stop the clock: never ready until `start_clock`."""
        self.ticking = False
        self.set_ready_time(-1)

    def dispatch(self, callback: Callable[..., Any] | None, args: tuple[Any, ...]) -> bool:
        """Run the callback, then re-arm one period later while the clock runs."""
        if not self.ticking:
            return SOURCE_CONTINUE  # stopped between the readiness check and dispatch
        keep = super().dispatch(callback, args)
        if keep and self.ticking and not self.is_destroyed:
            self.set_ready_time(self.time() + self.period)
        return keep


class Machine:
    """The toy machine: device registers guarded by ``lock``, and its devices' sources.

    Register state (``regs``) and the counters below may only be touched with ``lock``
    held: by source callbacks (the loop holds it while dispatching), by vCPU threads
    inside ``with lock:``, and by coroutines inside ``async with lock:``.
    """

    def __init__(self, lock: BigLock, ctx: MainContext, n_vcpus: int, console: Console) -> None:
        self.lock = lock
        self.ctx = ctx
        self.console = console
        self.n_vcpus = n_vcpus
        # -- state guarded by the big lock --------------------------------
        self.regs: dict[str, int] = {"irq_count": 0, "dma_pending": 0, "dma_done": 0}
        self.running: bool = True
        self.serial_echoes: int = 0
        self.interrupts: int = 0
        self.vcpu_lock_acquisitions: list[int] = [0] * n_vcpus
        self.io_requests: int = 0
        self.dma_completed: int = 0  # survives system_reset, unlike the dma_done register
        self.bh_runs: int = 0
        self.housekeeping_runs: int = 0
        self.parked: int = 0
        # -- thread coordination (not guarded by the lock) ---------------------
        self.shutdown: threading.Event = threading.Event()
        self.run_event: threading.Event = threading.Event()  # set while vCPUs may run
        self.run_event.set()
        self.guest_echoes_seen: int = 0  # written by the console thread only
        self.all_parked: asyncio.Event = asyncio.Event()
        # -- devices --------------------------------------------------------
        self.serial_master: int
        self.serial_slave: int
        self.serial_master, self.serial_slave = os.openpty()
        tty.setraw(self.serial_slave)  # no line discipline: bytes pass through unchanged
        os.set_blocking(self.serial_master, False)
        self._serial_buf = b""
        self.serial_source: FdSource = FdSource(self.serial_master, IOCondition.IN, name="serial0")
        self.serial_source.set_callback(self._serial_readable)
        self.serial_source.attach(ctx)
        self.timer_source: VirtualTimer = VirtualTimer(TIMER_PERIOD, name="timer0")
        self.timer_source.set_callback(self._timer_fired)
        self.timer_source.attach(ctx)
        self.timer_source.start_clock()
        self.io_bh: BottomHalf = BottomHalf(self._complete_io, context=ctx, name="dma-complete")
        self.parked_bh: BottomHalf = BottomHalf(self._vcpu_parked, context=ctx, name="vcpu-parked")
        self._idle_id = 0
        self.housekeeping_timer: TimeoutSource = TimeoutSource(
            HOUSEKEEPING_PERIOD, name="housekeeping-kick"
        )
        self.housekeeping_timer.set_callback(self._kick_housekeeping)
        self.housekeeping_timer.attach(ctx)
        self.threads: list[threading.Thread] = [
            threading.Thread(target=self._vcpu, args=(i,), name=f"vcpu{i}") for i in range(n_vcpus)
        ]
        self.threads.append(threading.Thread(target=self._guest_console, name="guest-console"))

    # ------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Start the vCPU and guest console threads."""
        for t in self.threads:
            t.start()

    def join_threads(self) -> None:
        """Stop and join the threads.  Blocks: call it off the loop, without the lock."""
        self.shutdown.set()
        self.run_event.set()
        for t in self.threads:
            t.join()

    def close(self) -> None:
        """Remove the sources and bottom halves, close the pty.  Loop thread, after join."""
        idle = self.ctx.find_source_by_id(self._idle_id) if self._idle_id else None
        srcs: tuple[Source | None, ...] = (
            self.serial_source, self.timer_source, self.housekeeping_timer, idle)
        for src in srcs:
            if src is not None:
                src.destroy()
        self.io_bh.delete()
        self.parked_bh.delete()
        os.close(self.serial_master)
        os.close(self.serial_slave)

    # ------------------------------------------------------------ run state
    def pause_locked(self) -> None:
        """QEMU's ``pause_all_vcpus`` + stopping the virtual clock.  Caller holds the lock."""
        self.lock.assert_held()
        self.running = False
        self.parked = 0
        self.all_parked.clear()
        self.run_event.clear()
        self.timer_source.stop_clock()

    def resume_locked(self) -> None:
        """QEMU's ``resume_all_vcpus``.  Caller holds the lock."""
        self.lock.assert_held()
        self.running = True
        self.timer_source.start_clock()
        self.run_event.set()

    def reset_locked(self) -> None:
        """QEMU's ``qemu_system_reset``: device registers back to power-on values."""
        self.lock.assert_held()
        self.regs = dict.fromkeys(self.regs, 0)

    # ------------------------------------------------- source callbacks (loop)
    def _serial_readable(self, fd: int, cond: IOCondition) -> bool:
        """FdSource callback: read what the guest wrote, echo each complete line back."""
        if cond & (IOCondition.HUP | IOCondition.ERR):
            return SOURCE_REMOVE
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return SOURCE_CONTINUE
        self._serial_buf += data
        *lines, self._serial_buf = self._serial_buf.split(b"\n")
        for line in lines:
            self.serial_echoes += 1
            if self.serial_echoes <= 3:
                self.console.print(f"[cyan]serial0[/] guest says: {escape(repr(line.decode()))}")
            os.write(fd, b"echo: " + line + b"\n")
        return SOURCE_CONTINUE

    def _timer_fired(self) -> bool:
        """TimeoutSource callback: raise an interrupt (the loop holds the big lock here)."""
        self.lock.assert_held()
        self.interrupts += 1
        self.regs["irq_count"] += 1
        return SOURCE_CONTINUE

    def _complete_io(self) -> None:
        """Bottom half: complete every DMA request the vCPUs queued since the last run."""
        self.lock.assert_held()
        self.bh_runs += 1
        self.regs["dma_done"] += self.regs["dma_pending"]
        self.dma_completed += self.regs["dma_pending"]
        self.regs["dma_pending"] = 0

    def _vcpu_parked(self) -> None:
        """Bottom half: a vCPU stopped; wake the ``stop`` command once all have."""
        if not self.running and self.parked == self.n_vcpus:
            self.all_parked.set()

    def _kick_housekeeping(self) -> bool:
        """Timer: re-add the idle housekeeping source unless it is still waiting to run."""
        if self.ctx.find_source_by_id(self._idle_id) is None:
            self._idle_id = idle_add(
                self._housekeeping, priority=PRIORITY_DEFAULT_IDLE, context=self.ctx
            )
        return SOURCE_CONTINUE

    def _housekeeping(self) -> bool:
        """Idle source: runs only when nothing more urgent is ready, once per kick."""
        self.housekeeping_runs += 1
        return SOURCE_REMOVE

    # --------------------------------------------------------------- threads
    def _vcpu(self, index: int) -> None:
        """A vCPU thread: guest work outside the lock, MMIO under it, I/O via a BH."""
        acc = index
        while not self.shutdown.is_set():
            if not self.run_event.is_set():
                with self.lock:
                    self.parked += 1
                self.parked_bh.schedule()
                self.run_event.wait()
                continue
            # Guest work: runs in parallel with the loop, without the lock.
            for i in range(2000):
                acc = (acc * 1103515245 + i) & 0xFFFFFFFF
            with self.lock:  # an MMIO write to the DMA controller
                if not self.running:
                    continue
                self.vcpu_lock_acquisitions[index] += 1
                self.regs["dma_pending"] += 1
                self.io_requests += 1
            self.io_bh.schedule()
            time.sleep(0.001)  # the guest has other things to do before its next access

    def _guest_console(self) -> None:
        """The guest side of the serial port: write a line, read back the echo."""
        n = 0
        pending = b""
        while not self.shutdown.is_set():
            self.run_event.wait()  # a stopped guest writes nothing
            n += 1
            os.write(self.serial_slave, f"guest line {n}\n".encode())
            deadline = time.monotonic() + CONSOLE_PERIOD
            while not self.shutdown.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                ready, _, _ = select.select([self.serial_slave], [], [], left)
                if ready:
                    pending += os.read(self.serial_slave, 4096)
                    while b"\n" in pending:
                        _, pending = pending.split(b"\n", 1)
                        self.guest_echoes_seen += 1

    # ------------------------------------------------------------ reporting
    def snapshot_locked(self) -> dict[str, Any]:
        """The counters as a dict (the ``query-stats`` reply).  Caller holds the lock."""
        self.lock.assert_held()
        return {
            "running": self.running,
            "serial": self.serial_echoes,
            "irqs": self.interrupts,
            "vcpu-locks": list(self.vcpu_lock_acquisitions),
            "io-requests": self.io_requests,
            "bh-runs": self.bh_runs,
            "housekeeping": self.housekeeping_runs,
            "registers": dict(self.regs),
        }


# ------------------------------------------------------------------ monitor
class Monitor:
    """The machine's QMP commands (QEMU's ``qmp_stop``, ``qmp_cont``...) on a `QMPServer`.

    Each command takes the big lock for the machine state it reads or changes, as QEMU's
    monitor runs its commands under the BQL.  ``quit`` sets `quit_requested`; the
    demo then shuts the machine down and closes the connections.
    """

    def __init__(self, machine: Machine) -> None:
        import aioqloop

        self.machine = machine
        self.quit_requested: asyncio.Event = asyncio.Event()
        self.server: QMPServer = QMPServer(
            [
                Command("query-status", self.query_status),
                Command("stop", self.stop),
                Command("cont", self.cont),
                Command("system_reset", self.system_reset),
                Command("quit", self.quit),
                Command("x-query-machine-stats", self.query_machine_stats),
                Command("human-monitor-command", self.human_monitor_command,
                        {"command-line": "str", "cpu-index?": "int"}),
            ],
            version=QMP_VERSION,
            package=f"aioqloop {aioqloop.__version__} demo machine",
        )

    async def query_status(self) -> dict[str, Any]:
        """QEMU's ``StatusInfo``: ``running`` or ``paused`` (the toy has no other state)."""
        async with self.machine.lock:
            running = self.machine.running
        return {"status": "running" if running else "paused", "singlestep": False,
                "running": running}

    async def stop(self) -> None:
        """Pause the vCPUs and the virtual clock; ``STOP`` once they are parked."""
        m = self.machine
        async with m.lock:
            was_running = m.running
            if was_running:
                m.pause_locked()
        if was_running:
            # pause_all_vcpus waits for every vCPU to park, without the lock.
            try:
                await asyncio.wait_for(m.all_parked.wait(), STOP_TIMEOUT)
            except asyncio.TimeoutError:
                raise QMPError("vCPUs did not stop in time") from None
            self.server.emit("STOP")

    async def cont(self) -> None:
        """Resume the vCPUs and the virtual clock; ``RESUME`` if they were paused."""
        async with self.machine.lock:
            was_paused = not self.machine.running
            if was_paused:
                self.machine.resume_locked()
        if was_paused:
            self.server.emit("RESUME")

    async def system_reset(self) -> None:
        """Reset the device registers; ``RESET`` as QEMU reports a monitor reset."""
        async with self.machine.lock:
            self.machine.reset_locked()
        self.server.emit("RESET", {"guest": False, "reason": "host-qmp-system-reset"})

    async def quit(self) -> None:
        """Shut the machine down after this reply; ``SHUTDOWN`` as QEMU reports it."""
        self.server.emit("SHUTDOWN", {"guest": False, "reason": "host-qmp-quit"})
        self.quit_requested.set()

    async def human_monitor_command(self, command_line: str,
                                    cpu_index: int | None = None) -> str:
        """A few HMP commands through QMP: ``info status``, ``stop``, ``cont``, ``help``.

        The reply is HMP's text output with ``\r\n`` line ends, as QEMU returns it.
        """
        words = command_line.split()
        if not words:
            return ""
        if words == ["info", "status"]:
            status = (await self.query_status())["status"]
            return f"VM status: {status}\r\n"
        if words == ["stop"]:
            await self.stop()
            return ""
        if words in (["cont"], ["c"]):
            await self.cont()
            return ""
        if words == ["help"]:
            return ("cont|c  -- resume emulation\r\ninfo status  -- show the machine's status"
                    "\r\nstop  -- stop emulation\r\n")
        shown = " ".join(words[:2]) if words[0] == "info" else words[0]
        return f"unknown command: '{shown}'\r\n"

    async def query_machine_stats(self) -> dict[str, Any]:
        """The machine's counters (an ``x-`` command: the toy's own, not QEMU's)."""
        async with self.machine.lock:
            return self.machine.snapshot_locked()


def _brief(msg: dict[str, Any]) -> str:
    """One short line for a QMP reply: big ``return`` objects as ``key=value`` pairs."""
    ret = msg.get("return")
    if isinstance(ret, dict) and len(ret) > 3:
        return "ok: " + " ".join(
            f"{k}={json.dumps(v, separators=(',', ':'))}" for k, v in ret.items()
            if k != "registers"
        )
    shown = json.dumps({k: v for k, v in msg.items() if k != "id"}, separators=(",", ":"))
    return shown if len(shown) <= 80 else shown[:77] + "..."


async def _monitor_client(path: str, seconds: float, console: Console) -> None:
    """Talk to the monitor during the run: query, stop, check the pause, cont."""
    reader, writer = await asyncio.open_unix_connection(path)
    stream = JSONStream()
    pending: list[Any] = []
    next_id = 0

    async def receive() -> dict[str, Any]:
        while not pending:
            data = await reader.read(65536)
            if not data:
                raise ConnectionError("the monitor closed the connection")
            pending.extend(stream.feed(data))
        msg: dict[str, Any] = pending.pop(0)
        return msg

    async def call(name: str) -> dict[str, Any]:
        nonlocal next_id
        next_id += 1
        writer.write(json.dumps({"execute": name, "id": next_id}).encode())
        await writer.drain()
        while True:
            msg = await receive()
            if "event" in msg:
                console.print(f"[magenta]QMP[/] <- event {escape(str(msg['event']))}")
                continue
            if msg.get("id") != next_id:
                continue
            console.print(f"[magenta]QMP[/] -> {name:<21} <- {escape(_brief(msg))}")
            return msg

    try:
        greeting = await receive()
        console.print(f"[magenta]QMP[/] greeting: {escape(json.dumps(greeting))}")
        await call("qmp_capabilities")
        await asyncio.sleep(seconds * 0.25)
        await call("query-status")
        await call("x-query-machine-stats")
        await call("stop")
        before = (await call("x-query-machine-stats"))["return"]["irqs"]
        await asyncio.sleep(seconds * 0.2)
        await call("query-status")
        after = (await call("x-query-machine-stats"))["return"]["irqs"]
        console.print(
            f"[magenta]QMP[/] while stopped: interrupts {before} -> {after} "
            f"({'frozen' if before == after else 'MOVED'})"
        )
        await call("cont")
        await call("query-status")
        await call("query-frobnicate")
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


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
