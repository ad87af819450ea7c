"""Code written for PyGObject's GLib main loop, running unchanged on aioqloop.

Only the import differs from a PyGObject program (``from gi.repository import GLib``):
GLib units throughout (timeouts in ms, source times in µs), a ``GLib.Source`` subclass
with prepare/check/dispatch, an fd watch, and a ``MainLoop`` run from plain synchronous
code with no asyncio in sight.
"""

import os

from aioqloop import glib as GLib


class DeadlineSource(GLib.Source):
    """Fires once its deadline (µs of the monotonic clock) has passed."""

    def __init__(self, delay_ms):
        super().__init__()
        self.deadline = GLib.get_monotonic_time() + delay_ms * 1000

    def prepare(self):
        remaining_ms = (self.deadline - self.get_time() + 999) // 1000
        return remaining_ms <= 0, max(remaining_ms, 0)

    def check(self):
        return self.get_time() >= self.deadline

    def dispatch(self, callback, args):
        return callback(*args)


def main():
    loop = GLib.MainLoop()
    events = []
    sources = []
    read_fd, write_fd = os.pipe()

    def tick(label):
        events.append(label)
        print(f"{label} (depth {GLib.main_depth()})")
        if events.count("tick") < 3:
            return GLib.SOURCE_CONTINUE
        source = DeadlineSource(30)  # after the third tick: write to the pipe in 30 ms
        source.set_callback(deadline_reached)
        source.attach(None)
        sources.append(source)
        return GLib.SOURCE_REMOVE

    def deadline_reached():
        print("custom source: deadline reached, writing to the pipe")
        os.write(write_fd, b"ping")
        return GLib.SOURCE_REMOVE

    def on_readable(fd, condition):
        print(f"pipe readable ({condition!r}): {os.read(fd, 100)!r}")
        loop.quit()
        return GLib.SOURCE_REMOVE

    GLib.timeout_add(20, tick, "tick")
    GLib.idle_add(lambda: print("idle ran") or GLib.SOURCE_REMOVE)
    GLib.unix_fd_add_full(GLib.PRIORITY_DEFAULT, read_fd, GLib.IOCondition.IN, on_readable)
    loop.run()
    os.close(read_fd)
    os.close(write_fd)
    assert events.count("tick") == 3 and sources[0].is_destroyed()
    print("main loop finished")


if __name__ == "__main__":
    main()
