"""The demo's toy machine: its devices, vCPUs and bottom halves (see :mod:`aioqloop.demo`)."""

from __future__ import annotations

import asyncio
import os
import select
import threading
import time
import tty
from collections.abc import Callable
from typing import Any

from ._console import Console, escape
from .biglock import BigLock
from .bottomhalf import BottomHalf
from .constants import PRIORITY_DEFAULT_IDLE, SOURCE_CONTINUE, SOURCE_REMOVE, IOCondition
from .context import MainContext
from .source import Source
from .sources import FdSource, TimeoutSource, idle_add

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
