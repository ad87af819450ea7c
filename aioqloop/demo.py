"""``python -m aioqloop demo``: a toy machine in QEMU's style, built on aioqloop.

Everything here is real: real file descriptors, real threads, a real Unix socket.  The
pieces mirror how QEMU structures a machine around its main loop and its big lock:

* **serial device** — a pseudo-terminal (QEMU's ``-serial pty``).  A guest console
  thread writes lines on the slave side; an `FdSource` on the master side reads them on
  the loop and echoes each line back, which the guest reads.
* **timer device** — a `TimeoutSource` raising periodic "interrupts".  ``stop`` removes
  it and ``cont`` re-arms it, as QEMU's virtual clock stops with the vCPUs.
* **vCPUs** — worker threads running guest work outside the lock and taking the big lock
  (``with lock:``) to touch device registers, like QEMU's vCPU threads do for MMIO.
* **bottom halves** — vCPUs complete I/O by scheduling a `BottomHalf` that runs on the
  loop; scheduling is idempotent, so a burst of requests costs one run.
* **housekeeping** — an idle-priority source that runs only when nothing more urgent
  is ready, then removes itself; a slow timer re-adds it, so it never spins the CPU.
* **monitor** — a QMP-like JSON protocol on a Unix socket served by asyncio streams
  (``query-status``, ``query-stats``, ``stop``, ``cont``), and a client coroutine that
  drives it during the run.

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
import tempfile
import threading
import time
import tty
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .biglock import BigLock
from .bottomhalf import BottomHalf
from .constants import PRIORITY_DEFAULT_IDLE, SOURCE_CONTINUE, SOURCE_REMOVE, IOCondition
from .context import MainContext, get_main_context
from .loop import run
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
        self.running = True
        self.serial_echoes = 0
        self.interrupts = 0
        self.vcpu_lock_acquisitions = [0] * n_vcpus
        self.io_requests = 0
        self.bh_runs = 0
        self.housekeeping_runs = 0
        self.parked = 0
        # -- thread coordination (not guarded by the lock) ---------------------
        self.shutdown = threading.Event()
        self.run_event = threading.Event()  # set while vCPUs may run
        self.run_event.set()
        self.guest_echoes_seen = 0  # written by the console thread only
        self.all_parked = asyncio.Event()
        # -- devices --------------------------------------------------------
        self.serial_master, self.serial_slave = os.openpty()
        tty.setraw(self.serial_slave)  # no line discipline: bytes pass through unchanged
        os.set_blocking(self.serial_master, False)
        self._serial_buf = b""
        self.serial_source = FdSource(self.serial_master, IOCondition.IN, name="serial0")
        self.serial_source.set_callback(self._serial_readable)
        self.serial_source.attach(ctx)
        self.timer_source: TimeoutSource | None = None
        self._start_timer()
        self.io_bh = BottomHalf(self._complete_io, context=ctx, name="dma-complete")
        self.parked_bh = BottomHalf(self._vcpu_parked, context=ctx, name="vcpu-parked")
        self._idle_id = 0
        self.housekeeping_timer = TimeoutSource(HOUSEKEEPING_PERIOD, name="housekeeping-kick")
        self.housekeeping_timer.set_callback(self._kick_housekeeping)
        self.housekeeping_timer.attach(ctx)
        self.threads = [
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
        for src in (self.serial_source, self.timer_source, self.housekeeping_timer, idle):
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
        if self.timer_source is not None:
            self.timer_source.destroy()
            self.timer_source = None

    def resume_locked(self) -> None:
        """QEMU's ``resume_all_vcpus``.  Caller holds the lock."""
        self.lock.assert_held()
        self.running = True
        self._start_timer()
        self.run_event.set()

    def _start_timer(self) -> None:
        self.timer_source = TimeoutSource(TIMER_PERIOD, name="timer0")
        self.timer_source.set_callback(self._timer_fired)
        self.timer_source.attach(self.ctx)

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
                self.console.print(f"[cyan]serial0[/] guest says: {line.decode()!r}")
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
    """A QMP-like monitor: one JSON object per line, greeting then capabilities handshake."""

    def __init__(self, machine: Machine) -> None:
        self.machine = machine
        self.replies = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one client connection until it closes."""

        async def send(obj: dict[str, Any]) -> None:
            writer.write(json.dumps(obj).encode() + b"\n")
            await writer.drain()

        try:
            await send({"QMP": {"version": {"package": "aioqloop-demo"}, "capabilities": []}})
            while line := await reader.readline():
                try:
                    cmd = json.loads(line)
                    name = cmd["execute"]
                except (ValueError, KeyError, TypeError):
                    await send({"error": {"class": "GenericError", "desc": "bad request"}})
                    continue
                reply, event = await self.execute(str(name))
                self.replies += 1
                await send(reply)
                if event is not None:
                    await send({"event": event, "timestamp": time.time()})
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def execute(self, name: str) -> tuple[dict[str, Any], str | None]:
        """Run one command under the big lock; return (reply, event name or None)."""
        m = self.machine
        if name == "qmp_capabilities":
            return {"return": {}}, None
        if name == "query-status":
            async with m.lock:
                running = m.running
            return {"return": {"running": running,
                               "status": "running" if running else "paused"}}, None
        if name == "query-stats":
            async with m.lock:
                return {"return": m.snapshot_locked()}, None
        if name == "stop":
            async with m.lock:
                was_running = m.running
                if was_running:
                    m.pause_locked()
            if was_running:
                # pause_all_vcpus waits for every vCPU to park, without the lock.
                try:
                    await asyncio.wait_for(m.all_parked.wait(), STOP_TIMEOUT)
                except asyncio.TimeoutError:
                    return {"error": {"class": "GenericError",
                                      "desc": "vCPUs did not stop in time"}}, None
            return {"return": {}}, "STOP" if was_running else None
        if name == "cont":
            async with m.lock:
                was_paused = not m.running
                if was_paused:
                    m.resume_locked()
            return {"return": {}}, "RESUME" if was_paused else None
        return {"error": {"class": "CommandNotFound",
                          "desc": f"The command {name} has not been found"}}, None


def _brief(msg: dict[str, Any]) -> str:
    """One short line for a QMP reply: big ``return`` objects as ``key=value`` pairs."""
    ret = msg.get("return")
    if isinstance(ret, dict) and len(ret) > 2:
        return "ok: " + " ".join(
            f"{k}={json.dumps(v, separators=(',', ':'))}" for k, v in ret.items()
            if k != "registers"
        )
    shown = json.dumps(msg, separators=(",", ":"))
    return shown if len(shown) <= 80 else shown[:77] + "..."


async def _monitor_client(path: str, seconds: float, console: Console) -> None:
    """Talk to the monitor during the run: query, stop, check the pause, cont."""
    reader, writer = await asyncio.open_unix_connection(path)

    async def call(name: str) -> dict[str, Any]:
        writer.write(json.dumps({"execute": name}).encode() + b"\n")
        await writer.drain()
        while True:
            msg: dict[str, Any] = json.loads(await reader.readline())
            if "event" in msg:
                console.print(f"[magenta]QMP[/] <- event {msg['event']}")
                continue
            console.print(f"[magenta]QMP[/] -> {name:<16} <- {escape(_brief(msg))}")
            return msg

    try:
        greeting = json.loads(await reader.readline())
        console.print(f"[magenta]QMP[/] greeting: {escape(json.dumps(greeting))}")
        await call("qmp_capabilities")
        await asyncio.sleep(seconds * 0.25)
        await call("query-status")
        await call("query-stats")
        await call("stop")
        before = (await call("query-stats"))["return"]["irqs"]
        await asyncio.sleep(seconds * 0.2)
        await call("query-status")
        after = (await call("query-stats"))["return"]["irqs"]
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


# -------------------------------------------------------------------- main
async def _run_machine(seconds: float, n_vcpus: int, lock: BigLock, console: Console,
                       base: str) -> Machine:
    ctx = get_main_context()
    machine = Machine(lock, ctx, n_vcpus, console)
    monitor = Monitor(machine)
    with tempfile.TemporaryDirectory(prefix="aioqloop-demo-") as tmp:
        path = os.path.join(tmp, "qmp.sock")
        server = await asyncio.start_unix_server(monitor.handle, path)
        console.print(
            f"[bold]machine up[/]: base={base}, {n_vcpus} vCPUs, serial0 on "
            f"{os.ttyname(machine.serial_slave)}, QMP on {path}"
        )
        machine.start()
        t0 = asyncio.get_running_loop().time()
        try:
            client = asyncio.create_task(_monitor_client(path, seconds, console))
            await asyncio.sleep(seconds)
            await client
        finally:
            # Threads may be queued on the lock: join them off the loop so it keeps going.
            await asyncio.get_running_loop().run_in_executor(None, machine.join_threads)
            server.close()
            await server.wait_closed()
            elapsed = asyncio.get_running_loop().time() - t0
            console.print(
                f"[bold]machine down[/] after {elapsed:.2f} s; {monitor.replies} monitor replies"
            )
            # Print while the sources are still attached: statistics cover attached ones.
            console.print(statistics_table(ctx, title="main context sources"))
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
        ("dma completed", machine.regs["dma_done"]),
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
    p.add_argument("--seconds", type=float, default=3.0,
                   help="how long the machine runs, in seconds (default: 3)")
    p.add_argument("--base", choices=("asyncio", "uvloop"), default="asyncio",
                   help="the event loop base (default: asyncio)")
    p.add_argument("--vcpus", type=int, default=2, help="number of vCPU threads (default: 2)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; ``argv`` excludes the program name.  Returns the exit status."""
    args = _parser().parse_args(argv)
    console = Console()
    if not console.is_terminal:
        console = Console(width=120)  # logs and pipes: wide enough for the tables
    if not args.seconds > 0 or args.vcpus < 1:
        console.print("[red]--seconds must be > 0 and --vcpus >= 1[/]")
        return 2
    if args.base == "uvloop":
        try:
            import uvloop  # noqa: F401
        except ImportError:
            console.print("[red]--base uvloop needs uvloop: pip install 'aioqloop[uvloop]'[/]")
            return 2
    lock = BigLock(name="bql")
    machine = run(_run_machine(args.seconds, args.vcpus, lock, console, args.base),
                  base=args.base, bql=lock)
    console.print(_machine_table(machine))
    console.print(_lock_table(lock))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
