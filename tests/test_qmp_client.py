"""QEMU's own client library, ``qemu.qmp``, drives the demo's monitor (and real QEMU).

One script — negotiation, ``query-status``, ``stop`` and its STOP event, ``cont`` and
RESUME, an unknown command, a bad argument, a clean disconnect — runs against the demo
machine (``python -m aioqloop demo --qmp PATH``, on each base) with the client on plain
asyncio and on aioqloop's loop (both bases).  When Debian's ``qemu-system-x86_64`` is installed,
the same script runs against a real QEMU and the two transcripts must be equal, the
greeting's version and package aside.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

qmp = pytest.importorskip("qemu.qmp")

import aioqloop  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
#: Seconds any single step of the script may take.
STEP = 10.0

Transcript = list[tuple[str, Any]]


async def _script(path: str) -> Transcript:
    """The user's session: every step's outcome, as plain data."""
    client = qmp.QMPClient("test")
    log: Transcript = []

    async def step(name: str, cmd: str, args: dict[str, Any] | None = None) -> Any:
        try:
            result = await asyncio.wait_for(client.execute(cmd, args), STEP)
        except qmp.ExecuteError as exc:
            log.append((name, {"error": exc.error_class, "desc": str(exc)}))
            return None
        log.append((name, result))
        return result

    await asyncio.wait_for(client.connect(path), STEP)
    greeting = client.greeting
    assert greeting is not None
    version = greeting.QMP.version  # a plain dict in qemu.qmp 0.0.6
    log.append(("greeting", {
        "qemu": sorted(version["qemu"]),  # the shape only: major, minor, micro
        "package": isinstance(version["package"], str),
        "capabilities": list(greeting.QMP.capabilities),
    }))
    with client.listener(("STOP", "RESUME")) as events:
        await step("status", "query-status")
        await step("stop", "stop")
        stop = await asyncio.wait_for(events.get(), STEP)
        log.append(("event", (stop["event"], sorted(stop["timestamp"]))))
        await step("status paused", "query-status")
        await step("cont", "cont")
        resume = await asyncio.wait_for(events.get(), STEP)
        log.append(("event", (resume["event"], sorted(resume["timestamp"]))))
    await step("unknown command", "frobnicate")
    log.append(("still connected", client.runstate.name))
    await step("status again", "query-status")
    await step("bad argument", "stop", {"x": 1})
    await step("missing argument", "human-monitor-command")
    await step("wrong type", "human-monitor-command", {"command-line": 5})
    await step("hmp", "human-monitor-command", {"command-line": "info status"})
    await step("hmp unknown", "human-monitor-command", {"command-line": "frob x"})
    await asyncio.wait_for(client.disconnect(), STEP)
    log.append(("disconnected", client.runstate.name))
    return log


# What real QEMU 7.2 says, step by step (after its greeting).
EXPECTED_STEPS = [
    ("status", {"status": "running", "singlestep": False, "running": True}),
    ("stop", {}),
    ("event", ("STOP", ["microseconds", "seconds"])),
    ("status paused", {"status": "paused", "singlestep": False, "running": False}),
    ("cont", {}),
    ("event", ("RESUME", ["microseconds", "seconds"])),
    ("unknown command",
     {"error": "CommandNotFound", "desc": "The command frobnicate has not been found"}),
    ("still connected", "RUNNING"),
    ("status again", {"status": "running", "singlestep": False, "running": True}),
    ("bad argument", {"error": "GenericError", "desc": "Parameter 'x' is unexpected"}),
    ("missing argument",
     {"error": "GenericError", "desc": "Parameter 'command-line' is missing"}),
    ("wrong type", {"error": "GenericError",
                    "desc": "Invalid parameter type for 'command-line', expected: string"}),
    ("hmp", "VM status: running\r\n"),
    ("hmp unknown", "unknown command: 'frob'\r\n"),
    ("disconnected", "IDLE"),
]
GREETING = ("greeting", {"qemu": ["major", "micro", "minor"], "package": True,
                         "capabilities": ["oob"]})


def _run_client(kind: str, path: str) -> Transcript:
    if kind == "asyncio":
        return asyncio.run(_script(path))
    base = kind.split("/")[1]
    if base == "uvloop":
        pytest.importorskip("uvloop")
    loop = aioqloop.new_event_loop(base=base)
    try:
        return loop.run_until_complete(_script(path))
    finally:
        loop.close()


@pytest.fixture(scope="module", params=["demo on asyncio", "demo on uvloop"])
def demo_socket(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A demo machine serving QMP; shut down with ``quit`` when the module is done."""
    base = request.param.split()[-1]
    if base == "uvloop":
        pytest.importorskip("uvloop")
    path = str(tmp_path_factory.mktemp("qmp") / "demo.sock")
    env = dict(os.environ, NO_COLOR="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "aioqloop", "demo", "--qmp", path, "--vcpus", "1",
         "--base", base],
        cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # printed once the socket listens
        assert "machine up" in first, (first, proc.stderr.read() if proc.stderr else "")
        yield path
        asyncio.run(_quit(path))
        out, err = proc.communicate(timeout=STEP)
        assert proc.returncode == 0, (out, err)
        assert err == "", err
        assert "machine down" in out
        assert not os.path.exists(path)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def _quit(path: str) -> None:
    client = qmp.QMPClient("quit")
    await asyncio.wait_for(client.connect(path), STEP)
    with client.listener("SHUTDOWN") as events:
        await asyncio.wait_for(client.execute("quit"), STEP)
        shutdown = await asyncio.wait_for(events.get(), STEP)
    assert shutdown["data"] == {"guest": False, "reason": "host-qmp-quit"}
    await asyncio.wait_for(client.disconnect(), STEP)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("client_loop", ["asyncio", "aioqloop/asyncio", "aioqloop/uvloop"])
def test_qemu_qmp_client_drives_the_demo(demo_socket: str, client_loop: str) -> None:
    log = _run_client(client_loop, demo_socket)
    assert log == [GREETING, *EXPECTED_STEPS]


def test_demo_socket_is_private(demo_socket: str) -> None:
    assert os.stat(demo_socket).st_mode & 0o777 == 0o600


@contextlib.contextmanager
def _real_qemu(tmp_path: Path) -> Iterator[str]:
    exe = shutil.which("qemu-system-x86_64")
    if exe is None:
        pytest.skip("qemu-system-x86_64 is not installed (Debian: qemu-system-x86)")
    path = str(tmp_path / "qemu.sock")
    pidfile = tmp_path / "qemu.pid"
    # -daemonize: the command returns once QEMU is initialised and its socket listens.
    subprocess.run(
        [exe, "-machine", "none", "-nodefaults", "-display", "none", "-daemonize",
         "-pidfile", str(pidfile), "-qmp", f"unix:{path},server=on,wait=off"],
        check=True, timeout=STEP, capture_output=True,
    )
    pid = int(pidfile.read_text())
    try:
        yield path
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("client_loop", ["asyncio", "aioqloop/asyncio", "aioqloop/uvloop"])
def test_same_transcript_as_real_qemu(
    demo_socket: str, tmp_path: Path, client_loop: str
) -> None:
    with _real_qemu(tmp_path) as path:
        qemu_log = _run_client(client_loop, path)
    demo_log = _run_client(client_loop, demo_socket)
    assert qemu_log == [GREETING, *EXPECTED_STEPS]  # the facts the demo is held to
    assert demo_log == qemu_log
