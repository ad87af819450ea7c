"""An fd source sees HUP when the peer closes, with the exact poll(2) conditions.

The callback receives an ``IOCondition``: IN while there is data, and HUP (reported
even though only IN was asked for, as poll(2) does) once the other end has closed.
"""

import asyncio
import socket

import aioqloop
from aioqloop import IOCondition


async def main() -> None:
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    closed = asyncio.Event()

    def on_ready(sock: socket.socket, condition: IOCondition) -> bool:
        data = sock.recv(4096) if condition & IOCondition.IN else b""
        print(f"condition {condition!r}, read {data!r}")
        if condition & IOCondition.HUP:
            print("peer hung up: removing the watch")
            closed.set()
            return aioqloop.SOURCE_REMOVE
        return aioqloop.SOURCE_CONTINUE

    aioqloop.fd_add(ours, IOCondition.IN, on_ready)
    peer.sendall(b"hello")
    await asyncio.sleep(0.05)
    peer.sendall(b"goodbye")
    peer.close()
    await asyncio.wait_for(closed.wait(), 2)
    ours.close()


aioqloop.run(main())
