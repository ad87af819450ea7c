"""The demo's monitor: QMP commands on the toy machine (see :mod:`aioqloop.demo`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from ._console import Console, escape
from ._demo_machine import QMP_VERSION, STOP_TIMEOUT, Machine
from .qmp import Command, JSONStream, QMPError, QMPServer


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
