"""A custom source with GLib's prepare/check/dispatch hooks.

A ``MailboxSource`` is ready whenever its mailbox holds messages.  A worker thread posts
messages and wakes the context; ``prepare`` and ``check`` say whether anything is
waiting, and ``dispatch`` hands the whole batch to the callback.
"""

import asyncio
import collections
import threading
from collections.abc import Callable
from typing import Any

import aioqloop


class MailboxSource(aioqloop.Source):
    """Ready while its mailbox is not empty (GLib's GSourceFuncs, in Python)."""

    def __init__(self) -> None:
        super().__init__(name="mailbox")
        self.mailbox: collections.deque[str] = collections.deque()

    def post(self, message: str) -> None:  # any thread
        self.mailbox.append(message)
        if self.context is not None:
            self.context.wakeup()  # the loop may be asleep in its poll

    def prepare(self) -> tuple[bool, float | None]:  # before the poll: (ready?, max wait s)
        return bool(self.mailbox), None

    def check(self) -> bool:  # after the poll
        return bool(self.mailbox)

    def dispatch(self, callback: Callable[..., bool] | None, args: tuple[Any, ...]) -> bool:
        assert callback is not None
        batch = [self.mailbox.popleft() for _ in range(len(self.mailbox))]
        return callback(batch, *args)


async def main() -> None:
    done = asyncio.Event()
    received: list[str] = []

    def on_mail(batch: list[str]) -> bool:
        received.extend(batch)
        print(f"dispatch got a batch of {len(batch)}: {batch[0]} .. {batch[-1]}")
        if received[-1] == "message 99":
            done.set()
            return aioqloop.SOURCE_REMOVE
        return aioqloop.SOURCE_CONTINUE

    source = MailboxSource()
    source.set_callback(on_mail)
    source.attach()  # to the running loop's MainContext

    def worker() -> None:
        for i in range(100):
            source.post(f"message {i}")

    thread = threading.Thread(target=worker)
    thread.start()
    await done.wait()
    thread.join()
    assert received == [f"message {i}" for i in range(100)]
    print(f"received all {len(received)} messages in order; source destroyed: "
          f"{source.is_destroyed}")


aioqloop.run(main())
